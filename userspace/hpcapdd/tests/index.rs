// SPDX-License-Identifier: MIT
//! hpcapdd's indexing thread: every completed file gets an index equal to
//! what `hpcap-index` rebuilds from the data file, the flow table is
//! written, `hpcap-query` over the result equals tcpdump, and a killed
//! hpcapdd never leaves an index that claims pages its data file lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hpcap_testutil::*;

/// A replayable trace of varied traffic (hpcap-synth).
fn trace(dir: &Path, packets: u64) -> PathBuf {
    let p = dir.join("trace.pcap");
    let o = run(Command::new(bin("hpcap-synth"))
        .args([
            "--packets",
            &packets.to_string(),
            "--hosts",
            "300",
            "--flows",
            "900",
            "-o",
        ])
        .arg(&p));
    assert!(o.status.success());
    p
}

fn indexes(out: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hpidx") {
                v.push(p);
            }
        }
    }
    v.sort();
    v
}

fn check_index(ix: &Path) {
    let data = ix.with_extension("pcapng");
    assert!(data.exists(), "{} without its data file", ix.display());
    let o = run(Command::new(bin("hpcap-index")).arg("--check").arg(&data));
    assert!(
        o.status.success(),
        "{}: {}",
        ix.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn every_completed_file_is_indexed_and_queryable() {
    let dir = TempDir::new("ddindex");
    let tr = trace(dir.path(), 12_000);
    let shm = ShmPath::new("ddindex");
    let out = dir.path().join("out");
    let json = dir.path().join("stats.json");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--pcap",
            &tr.to_string_lossy(),
            "--wait-listener",
            "--on-full",
            "wait",
            "--block-size",
            "256K",
            "--buffer-size",
            "4M",
        ],
    );
    let o = run(Command::new(bin("hpcapdd"))
        .args([
            "--rotate-size",
            "1M",
            "--flows",
            "--probe",
            "p1",
            "--stats-json",
        ])
        .arg(&json)
        .arg(&shm.0)
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(wait_timeout(&mut sim, 30).success());
    let files = files_under(&out);
    assert!(files.len() >= 5, "rotation made several files");
    let ixs = indexes(&out);
    assert_eq!(ixs.len(), files.len(), "one index per data file");
    for ix in &ixs {
        check_index(ix);
    }
    let last = std::fs::read_to_string(&json).unwrap();
    let v: serde_json::Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert_eq!(v["index"]["done"], files.len() as u64);
    assert_eq!(v["index"]["backlog"], 0);
    assert_eq!(v["index"]["packets"], v["packets"]);
    // Flow tables in the hive layout.
    let flows = out.join("flows").join("probe=p1");
    assert!(flows.is_dir());
    // The query over the directory equals tcpdump over its files.
    let q = dir.path().join("q.pcap");
    let o = run(Command::new(bin("hpcap-query"))
        .args(["-f", "pcap", "-w"])
        .arg(&q)
        .arg("host 10.0.0.7 or port 53")
        .arg(&out));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut want = 0;
    if have("tcpdump") {
        for f in &files {
            let o = run(Command::new("tcpdump")
                .args(["-nn", "-r"])
                .arg(f)
                .arg("host 10.0.0.7 or port 53"));
            want += String::from_utf8_lossy(&o.stdout).lines().count();
        }
        let got = run(Command::new("tcpdump").args(["-nn", "-r"]).arg(&q));
        assert_eq!(String::from_utf8_lossy(&got.stdout).lines().count(), want);
        assert!(want > 20);
    }
}

#[test]
fn a_killed_hpcapdd_never_leaves_an_index_beyond_its_data() {
    let dir = TempDir::new("ddkill");
    let tr = trace(dir.path(), 60_000);
    for (round, ms) in [150u64, 400, 700, 1100].into_iter().enumerate() {
        let shm = ShmPath::new(&format!("ddkill{round}"));
        let out = dir.path().join(format!("out{round}"));
        let mut sim = start_sim(
            &shm.0,
            &[
                "--pcap",
                &tr.to_string_lossy(),
                "--loop",
                "20",
                "--pps",
                "300000",
                "--wait-listener",
                "--on-full",
                "wait",
                "--block-size",
                "64K",
                "--buffer-size",
                "2M",
            ],
        );
        let mut dd = Command::new(bin("hpcapdd"))
            .args(["--rotate-size", "512K", "--flows"])
            .arg(&shm.0)
            .arg(&out)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        // SAFETY: signalling our own children.
        unsafe { libc::kill(dd.id() as i32, libc::SIGKILL) };
        let _ = dd.wait();
        // SAFETY: as above.
        unsafe { libc::kill(sim.id() as i32, libc::SIGTERM) };
        wait_timeout(&mut sim, 30);
        let ixs = indexes(&out);
        for ix in &ixs {
            let hidden = ix.file_name().unwrap().to_string_lossy().starts_with('.');
            if hidden {
                continue; // a partial index being written: never read
            }
            check_index(ix);
        }
        // The query reads what is there without error, indexes or not.
        let q1 = run(Command::new(bin("hpcap-query"))
            .args(["-f", "pcap", "--include-open", "host 10.0.0.9"])
            .arg(&out));
        let q2 = run(Command::new(bin("hpcap-query"))
            .args([
                "-f",
                "pcap",
                "--include-open",
                "--no-index",
                "host 10.0.0.9",
            ])
            .arg(&out));
        assert!(q1.status.success() && q2.status.success());
        assert!(
            q1.stdout == q2.stdout,
            "round {round}: index and scan disagree"
        );
    }
}
