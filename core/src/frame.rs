// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! A received frame as it was on the wire.
//!
//! Some NIC configurations strip the 802.1Q tag into the RX descriptor and
//! hand over the frame without it: an 82576 VF whose pool has VLAN stripping
//! on (the host set a port VLAN with `ip link set PF vf N vlan V`, or the VF
//! joined a VLAN), an XL710 queue with L2TAG1 stripping. A capture must store
//! what was on the wire, so the tag goes back between the MAC addresses and
//! the EtherType, exactly where it was. [`WireFrame`] is that view: the bytes
//! the NIC wrote plus the stripped tag, read (by the BPF interpreter) and
//! copied (into the stream) without building the tagged frame first.

/// TPID of an 802.1Q tag.
pub const TPID_8021Q: u16 = 0x8100;
/// Bytes before the tag: destination and source MAC.
pub const TAG_OFFSET: usize = 12;
/// Bytes of one 802.1Q tag.
pub const TAG_LEN: usize = 4;

/// The bytes a NIC delivered, and the tag it stripped from them, if any.
#[derive(Debug, Clone, Copy)]
pub struct WireFrame<'a> {
    bytes: &'a [u8],
    /// The 4 tag bytes as on the wire (TPID, TCI; big-endian), if stripped.
    tag: Option<[u8; TAG_LEN]>,
}

impl<'a> WireFrame<'a> {
    /// `bytes` as delivered; `tci` the tag control information (PCP, DEI,
    /// VID) the NIC stripped into the descriptor, if it did.
    #[inline]
    pub fn new(bytes: &'a [u8], tci: Option<u16>) -> Self {
        let tag = tci.map(|t| {
            let [a, b] = TPID_8021Q.to_be_bytes();
            let [c, d] = t.to_be_bytes();
            [a, b, c, d]
        });
        Self { bytes, tag }
    }

    /// A frame the NIC delivered untouched.
    pub fn plain(bytes: &'a [u8]) -> Self {
        Self { bytes, tag: None }
    }

    /// Where the tag goes: after the MAC addresses (or after every byte of
    /// a runt shorter than that).
    fn split(&self) -> usize {
        TAG_OFFSET.min(self.bytes.len())
    }

    /// Length on the wire (without FCS).
    #[inline]
    pub fn len(&self) -> usize {
        self.bytes.len() + if self.tag.is_some() { TAG_LEN } else { 0 }
    }

    /// Whether the frame has no bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a stripped tag is put back.
    pub fn has_stripped_tag(&self) -> bool {
        self.tag.is_some()
    }

    /// The bytes as delivered, when no tag was stripped: the whole frame.
    pub fn as_plain(&self) -> Option<&'a [u8]> {
        match self.tag {
            None => Some(self.bytes),
            Some(_) => None,
        }
    }

    /// Byte `i` of the frame as on the wire.
    pub fn byte(&self, i: usize) -> Option<u8> {
        let Some(tag) = &self.tag else {
            return self.bytes.get(i).copied();
        };
        let s = self.split();
        if i < s {
            self.bytes.get(i).copied()
        } else if i < s + TAG_LEN {
            tag.get(i - s).copied()
        } else {
            self.bytes.get(i - TAG_LEN).copied()
        }
    }

    /// Copies the first `n` bytes of the frame as on the wire to `dst`.
    ///
    /// # Safety
    ///
    /// `n <= self.len()`, and `dst` is valid for writes of `n` bytes that
    /// do not overlap the frame.
    #[inline]
    pub unsafe fn copy_prefix_raw(&self, dst: *mut u8, n: usize) {
        debug_assert!(n <= self.len());
        match &self.tag {
            // SAFETY: `n <= len()`, the delivered bytes; `dst` per the
            // caller.
            None => unsafe { core::ptr::copy_nonoverlapping(self.bytes.as_ptr(), dst, n) },
            Some(_) => {
                // The rare tagged case through the checked slice copy.
                // SAFETY: `dst` is valid for `n` bytes and not aliased.
                let d = unsafe { core::slice::from_raw_parts_mut(dst, n) };
                self.copy_prefix(d);
            }
        }
    }

    /// Copies the first `dst.len()` bytes of the frame as on the wire into
    /// `dst`; returns how many were copied (fewer only if `dst` is longer
    /// than the frame).
    #[inline]
    pub fn copy_prefix(&self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        if self.tag.is_none() {
            // The common case: the frame as delivered.
            if let (Some(d), Some(f)) = (dst.get_mut(..n), self.bytes.get(..n)) {
                d.copy_from_slice(f);
            }
            return n;
        }
        // Three pieces: bytes before the tag, the tag, the rest. Every range
        // is in bounds by construction; `get` keeps panics out of the kernel.
        let s = self.split().min(n);
        let (tag, t): (&[u8], usize) = match &self.tag {
            Some(tag) => (tag, TAG_LEN.min(n - s)),
            None => (&[], 0),
        };
        let pieces = [
            (0..s, self.bytes.get(..s)),
            (s..s + t, tag.get(..t)),
            (s + t..n, self.bytes.get(s..n - t)),
        ];
        for (to, from) in pieces {
            if let (Some(d), Some(f)) = (dst.get_mut(to), from) {
                d.copy_from_slice(f);
            }
        }
        n
    }
}

/// A MAC address written as six hex bytes separated by colons
/// (`02:00:00:00:00:01`; one or two digits per byte), as the tools take it
/// on their command lines. Userspace only.
#[cfg(not(hpcap_kernel))]
pub fn parse_mac(s: &str) -> Result<[u8; 6], BadMac> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next().ok_or(BadMac)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(BadMac);
        }
        *b = u8::from_str_radix(p, 16).map_err(|_| BadMac)?;
    }
    if parts.next().is_some() {
        return Err(BadMac);
    }
    Ok(mac)
}

/// What [`parse_mac`] rejects.
#[cfg(not(hpcap_kernel))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadMac;

#[cfg(not(hpcap_kernel))]
impl core::fmt::Display for BadMac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("not a MAC address: six hex bytes separated by ':', like 02:00:00:00:00:01")
    }
}

#[cfg(not(hpcap_kernel))]
impl core::error::Error for BadMac {}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// The tagged frame built the obvious way.
    fn rebuilt(bytes: &[u8], tci: Option<u16>) -> Vec<u8> {
        let mut v = bytes.to_vec();
        if let Some(t) = tci {
            let at = TAG_OFFSET.min(v.len());
            let mut tag = TPID_8021Q.to_be_bytes().to_vec();
            tag.extend_from_slice(&t.to_be_bytes());
            v.splice(at..at, tag);
        }
        v
    }

    #[test]
    fn tag_goes_back_after_the_mac_addresses() {
        let bytes: Vec<u8> = (0..60).collect();
        let f = WireFrame::new(&bytes, Some(0x6064));
        assert_eq!(f.len(), 64);
        let mut out = [0u8; 64];
        assert_eq!(f.copy_prefix(&mut out), 64);
        assert_eq!(&out[..12], &bytes[..12]);
        assert_eq!(&out[12..16], &[0x81, 0x00, 0x60, 0x64]);
        assert_eq!(&out[16..], &bytes[12..]);
        assert!(f.as_plain().is_none() && f.has_stripped_tag());
        let p = WireFrame::plain(&bytes);
        assert_eq!(p.as_plain(), Some(&bytes[..]));
        assert_eq!(p.len(), 60);
    }

    proptest! {
        #[test]
        fn views_equal_the_rebuilt_frame(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
            tci in proptest::option::of(any::<u16>()),
            cut in 0usize..100,
        ) {
            let want = rebuilt(&bytes, tci);
            let f = WireFrame::new(&bytes, tci);
            prop_assert_eq!(f.len(), want.len());
            for i in 0..want.len() + 3 {
                prop_assert_eq!(f.byte(i), want.get(i).copied());
            }
            let mut out = std::vec![0xEEu8; cut];
            let n = f.copy_prefix(&mut out);
            prop_assert_eq!(n, cut.min(want.len()));
            prop_assert_eq!(&out[..n], &want[..n]);
            prop_assert!(out[n..].iter().all(|&b| b == 0xEE));
        }
    }

    #[test]
    fn parse_mac_accepts_six_colon_separated_hex_bytes() {
        assert_eq!(parse_mac("02:00:00:00:00:10"), Ok([2, 0, 0, 0, 0, 0x10]));
        assert_eq!(parse_mac("a:B:c:D:e:F"), Ok([0xa, 0xb, 0xc, 0xd, 0xe, 0xf]));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:00:00",
            "02:00:00:00:00:",
            "02:00:00:00:00:100",
            "02:00:00:00:00:+1",
            "02-00-00-00-00-01",
            "02:00:00:00:00:0g",
        ] {
            assert_eq!(parse_mac(bad), Err(BadMac), "{bad:?}");
        }
    }
}
