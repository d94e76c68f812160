// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! pcapng readers on arbitrary bytes: the typed block iterator (both byte
//! orders), the capture-file packet iterator, and the block index/validator.
//! Besides not panicking, the iterators must make progress and stay inside
//! the data.
#![no_main]

use hpcap_core::block::{check_block, find_header, BlockIndex, IndexItem, Layout};
use hpcap_core::format::StreamFormat;
use hpcap_core::capfile::Packets;
use hpcap_core::pcapng::{Block, Blocks, Endian};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for big in [false, true] {
        let mut last = None;
        for r in Blocks::with_endian(data, Endian { big }) {
            let Ok((at, b)) = r else { break };
            assert!(last.is_none_or(|l| at > l) && at < data.len());
            last = Some(at);
            match b {
                Block::Shb(s) => {
                    let _ = (s.hardware(), s.os(), s.userappl(), s.options.is_valid());
                }
                Block::Idb(i) => {
                    let _ = (i.tsresol(), i.name(), i.description(), i.hardware());
                }
                Block::Epb(e) => {
                    let _ = (e.flags(), e.dropcount(), e.queue());
                    assert!(e.data.len() <= data.len());
                }
                Block::Isb(i) => {
                    let _ = i.info();
                }
                _ => {}
            }
        }
    }
    if let Ok(pk) = Packets::new(data) {
        for p in pk {
            let Ok(p) = p else { break };
            assert!(p.data.len() <= data.len());
        }
    }
    let layout = Layout::new(1 << 16, 1 << 16, StreamFormat::Pcapng).unwrap();
    let mut covered = 0usize;
    for it in BlockIndex::new(data, layout) {
        match it {
            IndexItem::Block { at, .. } | IndexItem::Partial { at, .. } => assert!(at >= covered),
            IndexItem::Skipped { at, len } => {
                assert!(at >= covered && len > 0);
                covered = at + len;
            }
        }
    }
    let _ = find_header(data, data.len() / 2, StreamFormat::Pcapng);
    // A whole 64 KiB block built from the input, to reach check_block's walk.
    let mut block = vec![0u8; 1 << 16];
    let n = data.len().min(block.len());
    block[..n].copy_from_slice(&data[..n]);
    let _ = check_block(&block, &layout, None);
});
