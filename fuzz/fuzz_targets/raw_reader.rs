// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! HPCAP RAW reader on arbitrary bytes, plus the converters: every packet
//! read must convert to pcapng and classic pcap and read back identically.
#![no_main]

use hpcap_core::block::{check_block, BlockIndex, Layout};
use hpcap_core::format::StreamFormat;
use hpcap_core::capfile::Packets;
use hpcap_core::pcapng::{parse_block, Block, Endian};
use hpcap_core::raw::{
    packet_to_raw, parse_raw, raw_to_epb, raw_to_pcap, RawRecord, RawRecords,
    PCAP_RECORD_HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = vec![0u8; 70_000];
    for r in RawRecords::new(data) {
        let Ok((at, rec)) = r else { break };
        let RawRecord::Packet(p) = rec else { continue };
        let n = raw_to_epb(&p, &mut buf, 0, 0).unwrap();
        let (Ok((Block::Epb(e), m)), true) = (parse_block(&buf, 0, Endian::LE), n > 0) else {
            panic!("EPB does not read back");
        };
        assert_eq!((m, e.ts, e.orig_len, e.data), (n, p.ts_ns(), u32::from(p.orig_len), p.data));
        let n = raw_to_pcap(&p, &mut buf, 0, true).unwrap();
        assert_eq!(n, PCAP_RECORD_HEADER_LEN + p.data.len());
        let mut back = vec![0u8; 12 + p.data.len()];
        packet_to_raw(p.ts_ns(), u32::from(p.orig_len), p.data, &mut back, 0).unwrap();
        assert_eq!(parse_raw(&back, 0).unwrap().0, RawRecord::Packet(p), "at {at}");
    }
    for p in Packets::new_raw(data) {
        if p.is_err() {
            break;
        }
    }
    let layout = Layout::new(1 << 16, 1 << 16, StreamFormat::Raw).unwrap();
    for _ in BlockIndex::new(data, layout) {}
    let mut block = vec![0u8; 1 << 16];
    let n = data.len().min(block.len());
    block[..n].copy_from_slice(&data[..n]);
    let _ = check_block(&block, &layout, None);
});
