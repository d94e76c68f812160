// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! A known-answer check that proves the core computes the same bytes in the
//! kernel module and in userspace.
//!
//! `hpcap.ko` runs [`file_header_digest`] at load and logs the result; the VM
//! test compares that line with the value this crate computes on the host
//! (`cargo run -p hpcap-core --example selftest`).

use super::pcapng::{write_file_header, InterfaceInfo, FILE_HEADER_LEN};

/// FNV-1a (32-bit) over `data`.
pub fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// Writes a fixed file header into `scratch` (at least [`FILE_HEADER_LEN`]
/// bytes) and returns its length and FNV-1a digest.
pub fn file_header_digest(scratch: &mut [u8]) -> Option<(usize, u32)> {
    let info = InterfaceInfo {
        snaplen: 9018,
        name: "hpcap-selftest",
        description: "hpcap-rs core known-answer test",
    };
    let n = write_file_header(scratch, &info).ok()?;
    Some((n, fnv1a32(scratch.get(..FILE_HEADER_LEN)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_stable_and_header_is_pcapng() {
        let mut a = [0xFFu8; FILE_HEADER_LEN];
        let mut b = [0x00u8; FILE_HEADER_LEN];
        let da = file_header_digest(&mut a).unwrap();
        assert_eq!(
            da,
            file_header_digest(&mut b).unwrap(),
            "no stale bytes may leak"
        );
        assert_eq!(da.0, FILE_HEADER_LEN);
        let mut it = super::super::capfile::Packets::new(&a).unwrap();
        assert!(
            it.next().is_none(),
            "header holds no packet and parses cleanly"
        );
        assert_eq!(it.offset(), FILE_HEADER_LEN);
    }

    #[test]
    fn fnv_known_answers() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
    }
}
