// SPDX-License-Identifier: MIT
//! hpcap-check: reports what capinfos reports, flags truncated files with a
//! non-zero exit, and `--repair` turns files cut at random offsets into
//! valid ones holding a prefix of the packets.

use std::path::Path;
use std::process::Command;

use hpcap_testutil::*;

fn check(args: &[&str], f: &Path) -> (bool, serde_json::Value) {
    let o = Command::new(bin("hpcap-check"))
        .arg("--json")
        .args(args)
        .arg(f)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (o.status.success(), v)
}

#[test]
fn reports_and_repairs_files_cut_at_random_offsets() {
    let dir = TempDir::new("check");
    let shm = ShmPath::new("check");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "60-1514:20000",
            "--ts-start",
            "1700000000000000000",
            "--wait-listener",
            "--on-full",
            "wait",
            "--block-size",
            "64K",
            "--buffer-size",
            "512K",
        ],
    );
    let out = dir.path().join("out");
    run(Command::new(bin("hpcapdd")).arg(&shm.0).arg(&out));
    assert!(wait_timeout(&mut sim, 60).success());
    let files = files_under(&out);
    let orig = &files[0];
    let (ok, v) = check(&[], orig);
    assert!(ok, "{v}");
    assert_eq!(v["packets"], 20000);
    assert_eq!(v["format"], "hpcap-pcapng");
    assert_eq!(v["isb_osdrop"], 0);
    assert_eq!(v["error"], serde_json::Value::Null);
    if have("capinfos") {
        assert_eq!(capinfos_count(orig), 20000);
    }
    let all = seqs(orig);
    let size = std::fs::metadata(orig).unwrap().len();
    // Deterministic pseudo-random cut points, plus block boundaries and
    // cuts inside the file header.
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut cuts = vec![200, 4096, 4096 + 65536, 4096 + 3 * 65536 + 1];
    for _ in 0..12 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        cuts.push(100 + x % (size - 100));
    }
    for cut in cuts {
        let f = dir.path().join(format!("cut-{cut}.pcapng"));
        std::fs::copy(orig, &f).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&f)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (ok, v) = check(&[], &f);
        let at_boundary = cut >= 4096 && (cut - 4096) % 65536 == 0;
        assert_eq!(ok, at_boundary, "cut at {cut}: {v}");
        let (ok, v) = check(&["--repair"], &f);
        assert!(ok, "repair of cut at {cut}: {v}");
        if have("capinfos") {
            let n = capinfos_count(&f);
            assert_eq!(n, v["packets"].as_u64().unwrap(), "cut at {cut}");
        }
        // A prefix of the original packets, nothing invented.
        let got = if v["packets"] == 0 {
            Vec::new()
        } else {
            seqs(&f)
        };
        assert_eq!(&all[..got.len()], &got[..], "cut at {cut}");
        // Repair keeps at least every packet of the complete blocks
        // before the cut.
        if cut > 4096 {
            let whole = ((cut - 4096) / 65536 * 65536) as usize;
            let data = std::fs::read(orig).unwrap();
            let n = hpcap::StreamPackets::new(&data[4096..4096 + whole], 0).count();
            assert!(got.len() >= n, "cut at {cut}: kept {} of {n}", got.len());
        }
    }
}

#[test]
fn other_formats_and_truncated_pcap() {
    let dir = TempDir::new("check2");
    // A classic pcap file written by the library.
    let p = dir.path().join("a.pcap");
    let mut w = hpcap::files::PacketWriter::new(
        std::fs::File::create(&p).unwrap(),
        hpcap::files::OutFormat::Pcap,
        0,
        "x",
    )
    .unwrap();
    for i in 0..100u64 {
        w.write(1_700_000_000_000_000_000 + i, 100, &[i as u8; 100])
            .unwrap();
    }
    w.finish(None).unwrap();
    let (ok, v) = check(&[], &p);
    assert!(ok);
    assert_eq!(v["packets"], 100);
    assert_eq!(v["format"], "pcap-ns");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(24 + 50 * 116 + 7)
        .unwrap();
    let (ok, v) = check(&[], &p);
    assert!(!ok);
    assert_eq!(v["valid_bytes"], 24 + 50 * 116);
    let (ok, v) = check(&["--repair"], &p);
    assert!(ok);
    assert_eq!(v["packets"], 50);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 24 + 50 * 116);
    // Not a capture at all.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"hello world, not a capture").unwrap();
    let o = Command::new(bin("hpcap-check"))
        .arg(&junk)
        .output()
        .unwrap();
    assert!(!o.status.success());
}
