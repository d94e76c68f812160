// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The fuzzers' seed corpus (`fuzz/seeds/<target>/`), generated here from
//! the core's own writers so it follows the format. The test fails when the
//! committed seeds are stale; `HPCAP_UPDATE_SEEDS=1 cargo test -p hpcap-core
//! --test fuzz_seeds` rewrites them.

use hpcap_core::pcapng::{
    write_block_header, write_epb, write_file_header_with, write_isb, write_pad_at, BlockHeader,
    EpbOptions, InterfaceInfo, IsbInfo, SectionInfo, BH_FLAG_FINAL, BLOCK_HEADER_LEN,
    FILE_HEADER_LEN,
};
use hpcap_core::raw::{
    write_pcap_header, write_pcap_record, write_raw, write_raw_block_header, write_raw_pad,
    RAW_BLOCK_HEADER_LEN,
};
use std::path::PathBuf;

const TS: u64 = 1_700_000_000_123_456_789;

fn tcp_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 56, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ]);
    f.extend_from_slice(&[
        0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend_from_slice(b"GET / HTTP/1.1\r\n");
    f
}

fn pcapng_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = tcp_frame();
    let mut file = vec![0u8; FILE_HEADER_LEN + 1024];
    let s = SectionInfo {
        hardware: "hw",
        os: "Linux",
        userappl: "hpcap-rs",
    };
    let i = InterfaceInfo {
        snaplen: 9018,
        name: "hpcap0",
        description: "seed",
    };
    let mut n = write_file_header_with(&mut file, &s, &i, "model").unwrap();
    let h = BlockHeader {
        block_len: 1 << 16,
        records: 3,
        first_ts_ns: TS,
        last_ts_ns: TS + 2,
        flags: BH_FLAG_FINAL,
        ..BlockHeader::default()
    };
    n += write_block_header(&mut file, n, &h).unwrap();
    n += write_epb(
        &mut file,
        n,
        0,
        TS,
        frame.len() as u32,
        &frame,
        &EpbOptions::NONE,
    )
    .unwrap();
    let opts = EpbOptions {
        flags: Some(1),
        dropcount: Some(2),
        queue: Some(3),
    };
    n += write_epb(&mut file, n, 0, TS + 1, 1514, &frame[..20], &opts).unwrap();
    let isb = IsbInfo {
        ts_ns: TS + 2,
        start_ns: Some(TS),
        ifrecv: Some(3),
        osdrop: Some(0),
        ..IsbInfo::default()
    };
    n += write_isb(&mut file, n, &isb).unwrap();
    n += write_pad_at(&mut file, n, 16).unwrap();
    file.truncate(n);
    let stream = file[FILE_HEADER_LEN..].to_vec();
    assert!(stream.len() > BLOCK_HEADER_LEN);
    let mut pcap = vec![0u8; 24 + 16 + frame.len()];
    write_pcap_header(&mut pcap, 0, true, 0).unwrap();
    write_pcap_record(&mut pcap, 24, true, TS, frame.len() as u32, &frame).unwrap();
    vec![
        ("file.pcapng", file),
        ("stream.bin", stream),
        ("classic.pcap", pcap),
    ]
}

fn raw_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let frame = tcp_frame();
    let mut raw = vec![0u8; 1024];
    let h = BlockHeader {
        format: 1,
        block_len: 1 << 16,
        records: 2,
        ..BlockHeader::default()
    };
    let mut n = write_raw_block_header(&mut raw, 0, &h).unwrap();
    assert_eq!(n, RAW_BLOCK_HEADER_LEN);
    n += write_raw(&mut raw, n, TS, frame.len() as u32, &frame).unwrap();
    n += write_raw(&mut raw, n, TS + 1, 1514, &frame[..30]).unwrap();
    n += write_raw_pad(&mut raw, n, 20).unwrap();
    raw.truncate(n);
    vec![("records.raw", raw)]
}

fn bpf_seed(prog: &[(u16, u8, u8, u32)], wirelen: u16, pkt: &[u8]) -> Vec<u8> {
    let insns: Vec<_> = prog
        .iter()
        .map(|&(code, jt, jf, k)| hpcap_core::bpf::SockFilter { code, jt, jf, k })
        .collect();
    let p = hpcap_core::bpf::verify(&insns).expect("seed programs pass the verifier");
    assert!(
        p.matches(pkt, u32::from(wirelen)),
        "and accept their packet"
    );
    let mut v = vec![prog.len() as u8];
    for (code, jt, jf, k) in prog {
        v.extend_from_slice(&code.to_le_bytes());
        v.extend_from_slice(&[*jt, *jf]);
        v.extend_from_slice(&k.to_le_bytes());
    }
    v.extend_from_slice(&wirelen.to_le_bytes());
    v.extend_from_slice(pkt);
    v
}

fn bpf_seeds() -> Vec<(&'static str, Vec<u8>)> {
    let f = tcp_frame();
    // tcpdump -dd 'tcp port 80'
    let port80 = [
        (0x28, 0, 0, 0x0c),
        (0x15, 0, 6, 0x86dd),
        (0x30, 0, 0, 0x14),
        (0x15, 0, 15, 0x06),
        (0x28, 0, 0, 0x36),
        (0x15, 12, 0, 0x50),
        (0x28, 0, 0, 0x38),
        (0x15, 10, 11, 0x50),
        (0x15, 0, 10, 0x0800),
        (0x30, 0, 0, 0x17),
        (0x15, 0, 8, 0x06),
        (0x28, 0, 0, 0x14),
        (0x45, 6, 0, 0x1fff),
        (0xb1, 0, 0, 0x0e),
        (0x48, 0, 0, 0x0e),
        (0x15, 2, 0, 0x50),
        (0x48, 0, 0, 0x10),
        (0x15, 0, 1, 0x50),
        (0x06, 0, 0, 0xffff),
        (0x06, 0, 0, 0),
    ];
    // tcpdump -dd 'tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420'
    let http_get = [
        (0x28, 0, 0, 0x0c),
        (0x15, 0, 13, 0x0800),
        (0x30, 0, 0, 0x17),
        (0x15, 0, 11, 0x06),
        (0x28, 0, 0, 0x14),
        (0x45, 9, 0, 0x1fff),
        (0xb1, 0, 0, 0x0e),
        (0x50, 0, 0, 0x1a),
        (0x54, 0, 0, 0xf0),
        (0x74, 0, 0, 0x02),
        (0x0c, 0, 0, 0),
        (0x07, 0, 0, 0),
        (0x40, 0, 0, 0x0e),
        (0x15, 0, 1, 0x4745_5420),
        (0x06, 0, 0, 0xffff),
        (0x06, 0, 0, 0),
    ];
    // Scratch memory, division, modulo, negation and register moves.
    let alu = [
        (0x80, 0, 0, 0),
        (0x02, 0, 0, 3),
        (0x84, 0, 0, 0),
        (0x84, 0, 0, 0),
        (0x34, 0, 0, 7),
        (0x94, 0, 0, 5),
        (0x07, 0, 0, 0),
        (0x60, 0, 0, 3),
        (0x3c, 0, 0, 0),
        (0x16, 0, 0, 0),
    ];
    vec![
        ("tcp_port_80", bpf_seed(&port80, f.len() as u16, &f)),
        ("http_get", bpf_seed(&http_get, f.len() as u16, &f)),
        ("alu_mem", bpf_seed(&alu, 1514, &f[..20])),
    ]
}

#[test]
fn seeds_are_current() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds");
    let update = std::env::var_os("HPCAP_UPDATE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (target, seeds) in [
        ("pcapng_reader", pcapng_seeds()),
        ("raw_reader", raw_seeds()),
        ("bpf", bpf_seeds()),
    ] {
        let dir = root.join(target);
        for (name, bytes) in seeds {
            assert!(bytes.len() <= 8192, "seeds stay tiny");
            let p = dir.join(name);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&p, &bytes).unwrap();
            } else if std::fs::read(&p).ok().as_deref() != Some(&bytes[..]) {
                stale.push(p.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "stale fuzz seeds {stale:?}: run HPCAP_UPDATE_SEEDS=1 cargo test -p hpcap-core --test fuzz_seeds"
    );
}
