// SPDX-License-Identifier: MIT
//! hpcap-sim as a process: what it leaves behind, and what it reports.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpcap-sim"))
}

fn shm(tag: &str) -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("hpcap-sim-test-{tag}-{}", std::process::id()))
}

/// The source file is removed at the end of the input and on SIGTERM;
/// `--keep` keeps it.
#[test]
fn removes_its_source_file_unless_kept() {
    let p = shm("end");
    let out = sim()
        .args([
            "--synthetic",
            "64:1000",
            "--buffer-size",
            "256K",
            "--block-size",
            "64K",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !p.exists(),
        "left {} behind at the end of its input",
        p.display()
    );

    let out = sim()
        .args([
            "--keep",
            "--synthetic",
            "64:10",
            "--buffer-size",
            "256K",
            "--block-size",
            "64K",
        ])
        .arg(&p)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(p.exists(), "--keep removed the file");
    std::fs::remove_file(&p).unwrap();

    let mut child = sim()
        .args([
            "--synthetic",
            "64:100",
            "--pps",
            "10",
            "--buffer-size",
            "256K",
            "--block-size",
            "64K",
        ])
        .arg(&p)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !p.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "never created");
        std::thread::sleep(Duration::from_millis(5));
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    assert!(!p.exists(), "left {} behind after SIGTERM", p.display());
}

/// Every counter of the core's table is in --stats-json; frames that find no
/// free descriptor on the software NIC are counted as the NIC's misses, the
/// others by their fate, and the two add up to what was offered.
#[test]
fn stats_json_accounts_for_every_frame() {
    let p = shm("json");
    let j = p.with_extension("json");
    let out = sim()
        .args([
            "--synthetic",
            "60-1514:20000",
            "--buffer-size",
            "256K",
            "--block-size",
            "64K",
            "--stats-json",
        ])
        .arg(&j)
        .arg(&p)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&j).unwrap()).unwrap();
    std::fs::remove_file(&j).unwrap();
    for c in hpcap::core::stats::COUNTERS {
        assert!(v[c.name].is_u64(), "{} missing", c.name);
    }
    let n = |k: &str| v[k].as_u64().unwrap();
    // No listener: everything the NIC delivered is dropped for that reason.
    assert_eq!(n("frames_offered"), 20000);
    assert_eq!(n("nic_received") + n("nic_missed"), 20000);
    assert_eq!(n("frames_seen"), n("nic_received"));
    assert_eq!(n("dropped_no_listener"), n("frames_seen"));
    assert_eq!(n("frames_stored"), 0);
}
