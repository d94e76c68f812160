// SPDX-License-Identifier: MIT
//! End-to-end tests of the `hpcap-inject` binary against a socket that plays
//! QEMU's part of the `-netdev stream` protocol.

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hpcap-inject-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A classic pcap (µs) with frames of the given sizes; byte i of frame n is (n + i) as u8.
fn write_pcap(path: &Path, sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xA1B2_C3D4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let mut frames = Vec::new();
    for (n, &size) in sizes.iter().enumerate() {
        let f: Vec<u8> = (0..size).map(|i| (n + i) as u8).collect();
        for v in [n as u32, 0, size as u32, size as u32] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&f);
        frames.push(f);
    }
    std::fs::write(path, out).unwrap();
    frames
}

/// Reads length-prefixed frames until the peer closes.
fn read_frames(mut s: impl Read) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < all.len() {
        let len = u32::from_be_bytes(all[at..at + 4].try_into().unwrap()) as usize;
        frames.push(all[at + 4..at + 4 + len].to_vec());
        at += 4 + len;
    }
    frames
}

fn inject() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hpcap-inject"))
}

#[test]
fn replays_every_frame_in_order_with_loops_and_counts() {
    let d = tmpdir("order");
    let sizes: Vec<usize> = (60..=1514).step_by(97).collect();
    let frames = write_pcap(&d.join("t.pcap"), &sizes);
    let sock = d.join("s");
    let l = UnixListener::bind(&sock).unwrap();
    let mut child = inject()
        .args([
            "--connect",
            sock.to_str().unwrap(),
            "--loop",
            "3",
            "--stats-json",
        ])
        .arg(d.join("stats.json"))
        .arg(d.join("t.pcap"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (s, _) = l.accept().unwrap();
    let got = read_frames(s);
    assert!(child.wait().unwrap().success());
    let want: Vec<Vec<u8>> = (0..3).flat_map(|_| frames.clone()).collect();
    assert_eq!(got, want);
    let stats: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("stats.json")).unwrap()).unwrap();
    assert_eq!(stats["frames_sent"], want.len() as u64);
    assert_eq!(
        stats["bytes_sent"],
        want.iter().map(|f| f.len() as u64).sum::<u64>()
    );
}

#[test]
fn waits_for_the_start_file_and_paces() {
    let d = tmpdir("pace");
    write_pcap(&d.join("t.pcap"), &[64; 50]);
    let sock = d.join("s");
    let go = d.join("go");
    let l = UnixListener::bind(&sock).unwrap();
    let mut child = inject()
        .args([
            "--connect",
            sock.to_str().unwrap(),
            "--pps",
            "100",
            "--wait-file",
            go.to_str().unwrap(),
        ])
        .arg(d.join("t.pcap"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        s.read(&mut b).is_err(),
        "nothing may be sent before the start file exists"
    );
    s.set_read_timeout(None).unwrap();
    let t0 = Instant::now();
    std::fs::write(&go, b"").unwrap();
    let got = read_frames(s);
    assert!(child.wait().unwrap().success());
    assert_eq!(got.len(), 50);
    // 50 frames at 100 fps: the last one is due 0.49 s after the first. Sleep
    // never returns early, so this lower bound holds however slow the machine.
    assert!(
        t0.elapsed() >= Duration::from_millis(480),
        "not paced: {:?}",
        t0.elapsed()
    );
}

#[test]
fn rejects_files_that_are_not_captures() {
    let d = tmpdir("bad");
    std::fs::write(d.join("x.pcap"), b"this is not a capture file").unwrap();
    let out = inject()
        .args(["--connect", "/nonexistent/sock"])
        .arg(d.join("x.pcap"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap/pcapng file"), "{err}");
}

#[test]
fn rewrites_the_destination_mac() {
    let d = tmpdir("mac");
    let frames = write_pcap(&d.join("t.pcap"), &[60, 61]);
    let sock = d.join("s");
    let l = UnixListener::bind(&sock).unwrap();
    let mut child = inject()
        .args([
            "--connect",
            sock.to_str().unwrap(),
            "--dst-mac",
            "02:00:00:00:00:1f",
        ])
        .arg(d.join("t.pcap"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (s, _) = l.accept().unwrap();
    let got = read_frames(s);
    assert!(child.wait().unwrap().success());
    for (g, f) in got.iter().zip(&frames) {
        assert_eq!(&g[..6], &[2, 0, 0, 0, 0, 0x1f]);
        assert_eq!(&g[6..], &f[6..]);
    }
    let bad = inject()
        .args(["--connect", "x", "--dst-mac", "nope"])
        .arg(d.join("t.pcap"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "clap rejects a bad MAC");
}

/// Reads exactly `n` length-prefixed frames.
fn read_n_frames(s: &mut impl Read, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap();
            let mut f = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut f).unwrap();
            f
        })
        .collect()
}

#[test]
fn rounds_dir_replays_once_per_go_file_until_end() {
    let d = tmpdir("rounds");
    let frames = write_pcap(&d.join("t.pcap"), &[60, 200, 1514]);
    let sock = d.join("s");
    let rounds = d.join("rounds");
    std::fs::create_dir(&rounds).unwrap();
    let l = UnixListener::bind(&sock).unwrap();
    let mut child = inject()
        .args(["--connect", sock.to_str().unwrap(), "--rounds-dir"])
        .arg(&rounds)
        .arg(d.join("t.pcap"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 1];
    assert!(s.read(&mut b).is_err(), "nothing before go.1");
    s.set_read_timeout(None).unwrap();
    for (k, pps) in [(1, "0"), (2, "50\n")] {
        std::fs::write(rounds.join(format!("go.{k}")), pps).unwrap();
        assert_eq!(read_n_frames(&mut s, frames.len()), frames, "round {k}");
        let done = rounds.join(format!("done.{k}"));
        let t0 = Instant::now();
        while !done.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no done.{k}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let st: serde_json::Value = serde_json::from_slice(&std::fs::read(done).unwrap()).unwrap();
        assert_eq!(st["frames_sent"], frames.len() as u64);
        assert_eq!(st["pps_target"], pps.trim().parse::<u64>().unwrap());
    }
    std::fs::write(rounds.join("end"), b"").unwrap();
    assert!(child.wait().unwrap().success());
    assert!(read_frames(s).is_empty(), "nothing after end");
    assert!(!rounds.join("done.3").exists());
}

#[test]
fn rounds_dir_json_specs_name_their_own_files_rate_and_mac() {
    let d = tmpdir("rounds-json");
    let a = write_pcap(&d.join("a.pcap"), &[60, 100]);
    let b = write_pcap(&d.join("b.pcap"), &[1514, 64, 70]);
    let sock = d.join("s");
    let rounds = d.join("rounds");
    std::fs::create_dir(&rounds).unwrap();
    let l = UnixListener::bind(&sock).unwrap();
    // No files on the command line: every round names its own.
    let mut child = inject()
        .args(["--connect", sock.to_str().unwrap(), "--rounds-dir"])
        .arg(&rounds)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = l.accept().unwrap();
    let mac = [2u8, 0, 0, 0, 0, 0x10];
    let specs = [
        // An absolute path, twice, rewritten to the VF's MAC.
        (
            format!(
                r#"{{"files": ["{}"], "pps": 0, "loop": 2, "dst_mac": "02:00:00:00:00:10"}}"#,
                d.join("a.pcap").display()
            ),
            a.iter()
                .chain(a.iter())
                .map(|f| [&mac[..], &f[6..]].concat())
                .collect::<Vec<_>>(),
        ),
        // Relative to the rounds directory, two files in order, as they are.
        (
            r#"{"files": ["../b.pcap", "../a.pcap"], "pps": 1000}"#.to_string(),
            b.iter().chain(a.iter()).cloned().collect(),
        ),
    ];
    for (k, (spec, want)) in specs.iter().enumerate() {
        let k = k + 1;
        std::fs::write(rounds.join(format!("go.{k}")), spec).unwrap();
        assert_eq!(&read_n_frames(&mut s, want.len()), want, "round {k}");
        let done = rounds.join(format!("done.{k}"));
        let t0 = Instant::now();
        while !done.exists() {
            assert!(t0.elapsed() < Duration::from_secs(10), "no done.{k}");
            std::thread::sleep(Duration::from_millis(5));
        }
        let st: serde_json::Value = serde_json::from_slice(&std::fs::read(done).unwrap()).unwrap();
        assert_eq!(st["frames_sent"], want.len() as u64);
    }
    // A spec with an unknown field is an error that names the file.
    std::fs::write(rounds.join("go.3"), r#"{"files": [], "rate": 5}"#).unwrap();
    let st = child.wait().unwrap();
    assert_eq!(st.code(), Some(1));
}
