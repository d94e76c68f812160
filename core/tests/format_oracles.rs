// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The stream format checked by independent readers: a file the core's
//! writers produce (file header, blocks with block headers and padding, EPBs
//! with and without options, an ISB) must be accepted by capinfos, tshark and
//! tcpdump, which must report exactly the packets written with nanosecond
//! timestamps, and every prefix ending at a block boundary must be a valid
//! file too. Tests skip (with a note) when a tool is not installed.

use hpcap_core::block::{BlockWriter, Layout, StreamFormat};
use hpcap_core::pcapng::{
    epb_len, isb_len, write_epb, write_file_header_with, write_isb, EpbOptions, InterfaceInfo,
    IsbInfo, SectionInfo, FILE_HEADER_LEN,
};
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

fn build() -> Written {
    let layout = Layout::new(BLOCK as u64, 4 * BLOCK as u64, StreamFormat::Pcapng).unwrap();
    let mut ring = vec![0u8; 4 * BLOCK];
    let mut w = BlockWriter::new(layout, 0).unwrap();
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
    let mut packets = Vec::new();
    let mut flushed = 0u64;
    let mut flush = |ring: &[u8], upto: u64, file: &mut Vec<u8>| {
        while flushed + BLOCK as u64 <= upto {
            let i = layout.buffer_index(flushed);
            file.extend_from_slice(&ring[i..i + BLOCK]);
            flushed += BLOCK as u64;
        }
    };
    let base = 1_700_000_000_000_000_000u64;
    for i in 0..400u64 {
        let wire = 60 + ((i * 977) % 3000) as usize;
        let cap = wire.min(2000);
        let ts = base + i * 1_234_567 + 1;
        let opts = if i % 3 == 0 {
            EpbOptions {
                flags: Some(1),
                dropcount: Some(i),
                queue: Some((i % 4) as u32),
            }
        } else {
            EpbOptions::NONE
        };
        let s = w
            .reserve(&mut ring[..], epb_len(cap, &opts), ts, u64::MAX)
            .unwrap();
        let data: Vec<u8> = (0..cap).map(|k| (k as u64 ^ i) as u8).collect();
        write_epb(&mut ring, s.index, 0, ts, wire as u32, &data, &opts).unwrap();
        packets.push((ts, wire as u32, cap));
        flush(&ring, w.position(), &mut file);
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
    let s = w
        .reserve(&mut ring[..], isb_len(&isb), isb.ts_ns, u64::MAX)
        .unwrap();
    write_isb(&mut ring, s.index, &isb).unwrap();
    let end = w.finish_block(&mut ring[..], u64::MAX).unwrap();
    flush(&ring, end, &mut file);
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
