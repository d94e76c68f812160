// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Classic BPF: arbitrary programs through the verifier; whatever it accepts
//! runs over an arbitrary packet without panicking.
//!
//! Input: `n: u8`, then `n` instructions of 8 bytes (`code: u16 LE, jt, jf,
//! k: u32 LE`), then `wirelen: u16 LE`, then the packet.
#![no_main]

use hpcap_core::bpf::{verify, SockFilter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else { return };
    let n = usize::from(n);
    if rest.len() < n * 8 + 2 {
        return;
    }
    let (code, rest) = rest.split_at(n * 8);
    let prog: Vec<SockFilter> = code
        .chunks_exact(8)
        .map(|c| SockFilter {
            code: u16::from_le_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let wirelen = u32::from(u16::from_le_bytes([rest[0], rest[1]]));
    let pkt = &rest[2..];
    if let Ok(p) = verify(&prog) {
        let v = p.run(pkt, wirelen);
        assert_eq!(v != 0, p.matches(pkt, wirelen));
    }
});
