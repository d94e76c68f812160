// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The stream format checked by independent readers: a file the core's
//! writers produce (file header, blocks with block headers and padding, EPBs
//! with and without options, an ISB) must be accepted by capinfos, tshark and
//! tcpdump, which must report exactly the packets written with nanosecond
//! timestamps, and every prefix ending at a block boundary must be a valid
//! file too. Tests skip (with a note) when a tool is not installed.

use hpcap_core::config::Stream;
use hpcap_core::format::StreamFormat;
use hpcap_core::pcapng::{
    write_block_header, write_epb, write_file_header_with, write_isb, write_pad_at, BlockHeader,
    EpbOptions, InterfaceInfo, IsbInfo, SectionInfo, FILE_HEADER_LEN,
};
use hpcap_core::softnic::{capture, Incoming};
use std::path::PathBuf;
use std::process::Command;

const BLOCK: usize = 1 << 16;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Written {
    file: Vec<u8>,
    /// (ts_ns, orig_len, caplen) of each packet, in order.
    packets: Vec<(u64, u32, usize)>,
}

/// A file as hpcapdd stores the driver's stream: the file header, blocks
/// the capture engine wrote (snaplen 2000, so long frames are cut), then a
/// block with EPBs carrying every option and an ISB.
fn build() -> Written {
    let stream = Stream::new(StreamFormat::Pcapng, 4 * BLOCK as u64, BLOCK as u64).unwrap();
    let mut file = vec![0u8; FILE_HEADER_LEN];
    let info = InterfaceInfo {
        snaplen: 2000,
        name: "hpcap0",
        description: "format oracle test",
    };
    let section = SectionInfo {
        hardware: "test",
        os: "Linux",
        userappl: "hpcap-rs core tests",
    };
    write_file_header_with(&mut file, &section, &info, "software model").unwrap();
    let base = 1_700_000_000_000_000_000u64;
    let frames: Vec<(u64, Vec<u8>)> = (0..400u64)
        .map(|i| {
            let wire = 60 + ((i * 977) % 3000) as usize;
            let data = (0..wire).map(|k| (k as u64 ^ i) as u8).collect();
            (base + i * 1_234_567 + 1, data)
        })
        .collect();
    let incoming: Vec<Incoming<'_>> = frames
        .iter()
        .map(|(ts, d)| Incoming {
            bytes: d,
            ts_ns: Some(*ts),
            orig_len: None,
        })
        .collect();
    let c = capture(stream, 0, 2000, &incoming);
    assert_eq!(c.stats.frames_stored, 400);
    file.extend_from_slice(&c.stream);
    let mut packets: Vec<(u64, u32, usize)> = frames
        .iter()
        .map(|(ts, d)| (*ts, d.len() as u32, d.len().min(2000)))
        .collect();
    // One more block: EPBs with options, an ISB, padding.
    let mut blk = vec![0u8; BLOCK];
    let offset = c.start + c.stream.len() as u64;
    let h = BlockHeader {
        format: StreamFormat::Pcapng.block_header_code(),
        block_len: BLOCK as u32,
        records: 0,
        seq: offset / BLOCK as u64,
        offset,
        first_ts_ns: base + 900_000_000,
        last_ts_ns: 0,
        drops: 0,
        flags: 0,
    };
    let mut at = write_block_header(&mut blk, 0, &h).unwrap();
    for i in 0..6u64 {
        let ts = base + 900_000_000 + i;
        let data = vec![i as u8; 100 + i as usize];
        let opts = EpbOptions {
            flags: (i % 2 == 0).then_some(1),
            dropcount: Some(i),
            queue: (i % 3 == 0).then_some((i % 4) as u32),
        };
        at += write_epb(&mut blk, at, 0, ts, 200, &data, &opts).unwrap();
        packets.push((ts, 200, data.len()));
    }
    let isb = IsbInfo {
        interface: 0,
        ts_ns: base + 1_000_000_000,
        start_ns: Some(base),
        end_ns: Some(base + 1_000_000_000),
        ifrecv: Some(410),
        ifdrop: Some(10),
        osdrop: Some(0),
        ..IsbInfo::default()
    };
    at += write_isb(&mut blk, at, &isb).unwrap();
    write_pad_at(&mut blk, at, BLOCK - at).unwrap();
    file.extend_from_slice(&blk);
    Written { file, packets }
}

fn tmp(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hpcap-core-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn tshark_reports_exactly_the_packets_with_ns_timestamps() {
    if !have("tshark") {
        eprintln!("tshark not installed: skipped");
        return;
    }
    let w = build();
    assert!(w.file.len() > FILE_HEADER_LEN + 4 * BLOCK, "several blocks");
    let p = tmp("stream.pcapng", &w.file);
    let out = run(
        "tshark",
        &[
            "-r",
            p.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
            "-e",
            "frame.cap_len",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), w.packets.len());
    for (line, (ts, wire, cap)) in lines.iter().zip(&w.packets) {
        let f: Vec<&str> = line.split('\t').collect();
        let (sec, frac) = f[0].split_once('.').unwrap();
        assert_eq!(frac.len(), 9, "nanosecond resolution: {line}");
        let got = sec.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap();
        assert_eq!(
            (
                got,
                f[1].parse::<u32>().unwrap(),
                f[2].parse::<usize>().unwrap()
            ),
            (*ts, *wire, *cap)
        );
    }
    // The ISB is read too (tshark prints nothing for it, but must not fail).
    std::fs::remove_file(p).ok();
}

#[test]
fn capinfos_accepts_every_block_boundary_prefix() {
    if !have("capinfos") {
        eprintln!("capinfos not installed: skipped");
        return;
    }
    let w = build();
    let blocks = (w.file.len() - FILE_HEADER_LEN) / BLOCK;
    let mut seen = 0usize;
    for k in 0..=blocks {
        let end = FILE_HEADER_LEN + k * BLOCK;
        let p = tmp(&format!("prefix{k}.pcapng"), &w.file[..end]);
        let out = run("capinfos", &["-c", "-M", "-T", "-r", p.to_str().unwrap()]);
        let n: usize = out.split('\t').nth(1).unwrap().trim().parse().unwrap();
        assert!(n >= seen, "packet count grows block by block");
        seen = n;
        std::fs::remove_file(p).ok();
    }
    assert_eq!(seen, w.packets.len());
}

#[test]
fn tcpdump_reads_the_file_with_ns_precision() {
    if !have("tcpdump") {
        eprintln!("tcpdump not installed: skipped");
        return;
    }
    let w = build();
    let p = tmp("tcpdump.pcapng", &w.file);
    let o = Command::new("tcpdump")
        .args([
            "-r",
            p.to_str().unwrap(),
            "-nn",
            "-tt",
            "--time-stamp-precision=nano",
            "-q",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    // Decoders may print continuation lines (indented); packets start with a stamp.
    let stamps: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(stamps.len(), w.packets.len());
    for (s, (ts, _, _)) in stamps.iter().zip(&w.packets) {
        assert_eq!(
            *s,
            format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000)
        );
    }
    std::fs::remove_file(p).ok();
}
