// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! HPCAP RAW compatibility: byte-exact records, their reader, and no-alloc
//! converters between RAW, pcapng and classic pcap.
//!
//! A RAW record is a packed 12-byte little-endian header `{sec: u32, nsec:
//! u32, caplen: u16, len: u16}` followed by `caplen` bytes, with no alignment
//! and no file header. A record with `sec == nsec == 0` is padding: its
//! `caplen` (equal to `len`) counts filler bytes, possibly 0.
//!
//! Gaps: HPCAP's tools can only skip a gap that holds a padding header, so
//! hpcap never leaves a gap of 1..=11 bytes (the block layout reserves room
//! so a gap is either 0 or at least [`RAW_HEADER_LEN`]; see `block.rs`). A
//! gap longer than one padding record can describe (12 + 65535 bytes) is
//! filled with a chain of padding records, none shorter than 12 bytes.
//!
//! Block headers: RAW streams have none (the compatibility mode is
//! byte-exact with HPCAP). Files written by early versions of hpcap-rs
//! opened each block with a padding record whose filler is the
//! [`BlockHeader`] payload; every HPCAP reader skips it as padding, and
//! hpcap's own readers still recognise it.

use super::pcapng::WriteError;
#[cfg(not(hpcap_kernel))]
use super::pcapng::{write_epb, BlockHeader, EpbOptions, BLOCK_HEADER_BODY_LEN, LINKTYPE_ETHERNET};

/// Size of a RAW record header.
pub const RAW_HEADER_LEN: usize = 12;

/// Largest capture length (and padding filler) a RAW header can describe.
pub const RAW_MAX_CAPLEN: usize = u16::MAX as usize;

/// Length of the padding record that carries a [`BlockHeader`].
#[cfg(not(hpcap_kernel))]
pub const RAW_BLOCK_HEADER_LEN: usize = RAW_HEADER_LEN + BLOCK_HEADER_BODY_LEN;

const NS_PER_SEC: u64 = 1_000_000_000;

/// A decoded RAW record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawHeader {
    /// Seconds since the Unix epoch (0 with `nsec` 0 marks padding).
    pub sec: u32,
    /// Nanoseconds within the second.
    pub nsec: u32,
    /// Bytes that follow the header.
    pub caplen: u16,
    /// Length of the frame on the wire (equal to `caplen` for padding).
    pub len: u16,
}

impl RawHeader {
    /// The 12 bytes of this header as HPCAP writes them.
    pub fn encode(&self) -> [u8; RAW_HEADER_LEN] {
        let mut b = [0u8; RAW_HEADER_LEN];
        b[0..4].copy_from_slice(&self.sec.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsec.to_le_bytes());
        b[8..10].copy_from_slice(&self.caplen.to_le_bytes());
        b[10..12].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// Decodes the header at `data[at..]`.
    #[cfg(not(hpcap_kernel))]
    pub fn decode(data: &[u8], at: usize) -> Option<Self> {
        let b = data.get(at..at.checked_add(RAW_HEADER_LEN)?)?;
        let u32_at = |i: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
        };
        let u16_at = |i: usize| -> Option<u16> {
            Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
        };
        Some(Self {
            sec: u32_at(0)?,
            nsec: u32_at(4)?,
            caplen: u16_at(8)?,
            len: u16_at(10)?,
        })
    }

    /// Whether this is a padding record.
    #[cfg(not(hpcap_kernel))]
    pub fn is_padding(&self) -> bool {
        self.sec == 0 && self.nsec == 0
    }

    /// Timestamp in nanoseconds.
    #[cfg(not(hpcap_kernel))]
    pub fn ts_ns(&self) -> u64 {
        u64::from(self.sec) * NS_PER_SEC + u64::from(self.nsec)
    }

    /// Total record length, header included.
    #[cfg(not(hpcap_kernel))]
    pub fn record_len(&self) -> usize {
        RAW_HEADER_LEN + usize::from(self.caplen)
    }
}

/// Length of a RAW record holding `caplen` bytes.
#[inline]
pub const fn raw_len(caplen: usize) -> usize {
    RAW_HEADER_LEN + caplen
}

/// Splits a timestamp into RAW `(sec, nsec)`. A timestamp of exactly 0 would
/// read back as padding, so it becomes 1 ns; past 2106 (u32 seconds) is an
/// error rather than a silent wrap.
pub fn split_ts(ts_ns: u64) -> Result<(u32, u32), WriteError> {
    let ts_ns = ts_ns.max(1);
    let sec = u32::try_from(ts_ns / NS_PER_SEC).map_err(|_| WriteError::BadValue)?;
    Ok((sec, (ts_ns % NS_PER_SEC) as u32))
}

/// Writes the header of a RAW packet record at `buf[at..]`; the caller copies
/// the `caplen` frame bytes to `buf[at + RAW_HEADER_LEN..]`. Returns the
/// record's total length. `orig_len` below `caplen` is raised to it.
pub fn write_raw_header(
    buf: &mut [u8],
    at: usize,
    ts_ns: u64,
    caplen: usize,
    orig_len: u32,
) -> Result<usize, WriteError> {
    let (sec, nsec) = split_ts(ts_ns)?;
    let cap16 = u16::try_from(caplen).map_err(|_| WriteError::BadValue)?;
    let len16 = u16::try_from(orig_len)
        .map_err(|_| WriteError::BadValue)?
        .max(cap16);
    let total = raw_len(caplen);
    let end = at.checked_add(total).ok_or(WriteError::NoSpace)?;
    let hdr = RawHeader {
        sec,
        nsec,
        caplen: cap16,
        len: len16,
    };
    buf.get_mut(at..end)
        .and_then(|r| r.get_mut(..RAW_HEADER_LEN))
        .ok_or(WriteError::NoSpace)?
        .copy_from_slice(&hdr.encode());
    Ok(total)
}

#[cfg(not(hpcap_kernel))]
/// Writes a complete RAW packet record at `buf[at..]`, returns its length.
pub fn write_raw(
    buf: &mut [u8],
    at: usize,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
) -> Result<usize, WriteError> {
    let n = write_raw_header(buf, at, ts_ns, data.len(), orig_len)?;
    let start = at + RAW_HEADER_LEN; // checked by write_raw_header
    buf.get_mut(start..start + data.len())
        .ok_or(WriteError::NoSpace)?
        .copy_from_slice(data);
    Ok(n)
}

/// Fills exactly `len` bytes at `buf[at..]` with zero-filled padding records.
/// `len` must be 0 or at least [`RAW_HEADER_LEN`].
pub fn write_raw_pad(buf: &mut [u8], at: usize, len: usize) -> Result<usize, WriteError> {
    if len != 0 && len < RAW_HEADER_LEN {
        return Err(WriteError::BadValue);
    }
    let end = at.checked_add(len).ok_or(WriteError::NoSpace)?;
    let region = buf.get_mut(at..end).ok_or(WriteError::NoSpace)?;
    region.fill(0);
    let mut pos = 0;
    let mut left = len;
    const MAX: usize = RAW_HEADER_LEN + RAW_MAX_CAPLEN;
    while left > 0 {
        let mut piece = left.min(MAX);
        if left - piece != 0 && left - piece < RAW_HEADER_LEN {
            // Leave enough for the next piece's header.
            piece -= RAW_HEADER_LEN;
        }
        let filler = (piece - RAW_HEADER_LEN) as u16; // piece <= MAX
        let hdr = RawHeader {
            sec: 0,
            nsec: 0,
            caplen: filler,
            len: filler,
        };
        region
            .get_mut(pos..pos + RAW_HEADER_LEN)
            .ok_or(WriteError::NoSpace)?
            .copy_from_slice(&hdr.encode());
        pos += piece;
        left -= piece;
    }
    Ok(len)
}

/// Writes the padding record that carries `h` ([`RAW_BLOCK_HEADER_LEN`] bytes).
#[cfg(not(hpcap_kernel))]
pub fn write_raw_block_header(
    buf: &mut [u8],
    at: usize,
    h: &BlockHeader,
) -> Result<usize, WriteError> {
    let end = at
        .checked_add(RAW_BLOCK_HEADER_LEN)
        .ok_or(WriteError::NoSpace)?;
    let region = buf.get_mut(at..end).ok_or(WriteError::NoSpace)?;
    let filler = BLOCK_HEADER_BODY_LEN as u16;
    let hdr = RawHeader {
        sec: 0,
        nsec: 0,
        caplen: filler,
        len: filler,
    };
    let mut body = [0u8; BLOCK_HEADER_BODY_LEN];
    h.encode(&mut body);
    let (head, tail) = region
        .split_at_mut_checked(RAW_HEADER_LEN)
        .ok_or(WriteError::NoSpace)?;
    head.copy_from_slice(&hdr.encode());
    tail.copy_from_slice(&body);
    Ok(RAW_BLOCK_HEADER_LEN)
}

#[cfg(not(hpcap_kernel))]
mod read;
#[cfg(not(hpcap_kernel))]
pub use read::*;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::capfile::Packets;
    use super::super::pcapng::{write_file_header, InterfaceInfo, FILE_HEADER_LEN};
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn golden_packet_record() {
        let mut buf = [0u8; 20];
        let n = write_raw(&mut buf, 2, 1_700_000_000_123_456_789, 64, &[0xAB; 4]).unwrap();
        assert_eq!(n, 16);
        assert_eq!(
            buf,
            [
                0, 0, // untouched
                0x00, 0xF1, 0x53, 0x65, // sec 1700000000
                0x15, 0xCD, 0x5B, 0x07, // nsec 123456789
                0x04, 0x00, 0x40, 0x00, // caplen 4, len 64
                0xAB, 0xAB, 0xAB, 0xAB, 0, 0
            ]
        );
    }

    #[test]
    fn golden_padding() {
        let mut buf = [0xFFu8; 20];
        assert_eq!(write_raw_pad(&mut buf, 0, 12), Ok(12));
        assert_eq!(buf[..12], [0; 12]);
        assert_eq!(buf[12], 0xFF);
        let mut buf = [0xFFu8; 20];
        assert_eq!(write_raw_pad(&mut buf, 0, 20), Ok(20));
        assert_eq!(
            buf,
            [0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        for bad in 1..12 {
            assert_eq!(write_raw_pad(&mut buf, 0, bad), Err(WriteError::BadValue));
        }
        assert_eq!(write_raw_pad(&mut buf, 0, 0), Ok(0));
    }

    #[test]
    fn long_gaps_become_chains_of_valid_padding() {
        let max = RAW_HEADER_LEN + RAW_MAX_CAPLEN;
        for len in [
            12,
            13,
            max - 1,
            max,
            max + 1,
            max + 11,
            max + 12,
            max + 13,
            2 * max,
            2 * max + 5,
            300_000,
        ] {
            let mut buf = vec![0xEEu8; len];
            write_raw_pad(&mut buf, 0, len).unwrap();
            let mut total = 0;
            for r in RawRecords::new(&buf) {
                let (
                    _,
                    RawRecord::Padding {
                        len: l,
                        header: None,
                    },
                ) = r.unwrap()
                else {
                    panic!("{len}")
                };
                assert!(l >= RAW_HEADER_LEN);
                total += l;
            }
            assert_eq!(total, len);
        }
    }

    #[test]
    fn zero_timestamp_is_not_padding_and_bad_records_are_rejected() {
        let mut buf = [0u8; 16];
        write_raw(&mut buf, 0, 0, 4, &[1, 2, 3, 4]).unwrap();
        assert!(matches!(parse_raw(&buf, 0), Ok((RawRecord::Packet(p), 16)) if p.ts_ns() == 1));
        assert_eq!(
            parse_raw(&buf[..15], 0),
            Err(RawError::Truncated { offset: 0 })
        );
        let mut b = buf;
        b[4..8].copy_from_slice(&1_000_000_000u32.to_le_bytes());
        assert_eq!(parse_raw(&b, 0), Err(RawError::BadRecord { offset: 0 }));
        let mut b = buf;
        b[10] = 3; // len < caplen
        assert_eq!(parse_raw(&b, 0), Err(RawError::BadRecord { offset: 0 }));
        assert_eq!(
            write_raw(&mut buf, 0, u64::MAX, 4, &[0; 4]),
            Err(WriteError::BadValue)
        );
        assert_eq!(
            write_raw_header(&mut buf, 0, 5, 4, 70_000),
            Err(WriteError::BadValue)
        );
    }

    #[test]
    fn block_header_rides_in_padding() {
        let h = BlockHeader {
            format: super::super::pcapng::BH_FORMAT_RAW,
            block_len: 1 << 22,
            records: 3,
            seq: 9,
            offset: 9 << 22,
            ..BlockHeader::default()
        };
        let mut buf = [0u8; RAW_BLOCK_HEADER_LEN];
        write_raw_block_header(&mut buf, 0, &h).unwrap();
        assert_eq!(&buf[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 64, 0]);
        assert_eq!(
            parse_raw(&buf, 0),
            Ok((
                RawRecord::Padding {
                    len: 76,
                    header: Some(h)
                },
                76
            ))
        );
    }

    type Rec = (u64, u16, Vec<u8>);

    fn recs() -> impl Strategy<Value = Vec<Rec>> {
        proptest::collection::vec(
            (
                1u64..(u32::MAX as u64) * 1_000_000_000,
                any::<u16>(),
                proptest::collection::vec(any::<u8>(), 0..300),
            ),
            0..40,
        )
    }

    proptest! {
        /// RAW -> pcapng (file header + EPBs) -> pcap (ns) -> RAW is the
        /// identity; pcap (us) keeps everything but the sub-microsecond digits.
        #[test]
        fn converters_roundtrip(recs in recs()) {
            let mut raw = vec![0u8; 0];
            for (ts, orig, data) in &recs {
                let at = raw.len();
                raw.resize(at + raw_len(data.len()), 0);
                write_raw(&mut raw, at, *ts, u32::from(*orig), data).unwrap();
            }
            let mut ng = vec![0u8; FILE_HEADER_LEN + raw.len() * 2 + 64];
            let info = InterfaceInfo { snaplen: 0, name: "hpcap0", description: "" };
            let mut n = write_file_header(&mut ng, &info).unwrap();
            for r in RawRecords::new(&raw) {
                let (_, RawRecord::Packet(p)) = r.unwrap() else { panic!() };
                n += raw_to_epb(&p, &mut ng, n, 0).unwrap();
            }
            ng.truncate(n);
            for nanos in [true, false] {
                let mut pcap = vec![0u8; PCAP_HEADER_LEN + raw.len() * 2];
                let mut m = write_pcap_header(&mut pcap, 0, nanos, 0).unwrap();
                for p in Packets::new(&ng).unwrap() {
                    let p = p.unwrap();
                    m += write_pcap_record(&mut pcap, m, nanos, p.ts_ns, p.orig_len, p.data).unwrap();
                }
                pcap.truncate(m);
                let mut back = vec![0u8; raw.len()];
                let mut k = 0;
                for p in Packets::new(&pcap).unwrap() {
                    let p = p.unwrap();
                    k += packet_to_raw(p.ts_ns, p.orig_len, p.data, &mut back, k).unwrap();
                }
                prop_assert_eq!(k, raw.len());
                if nanos {
                    prop_assert_eq!(&back, &raw);
                } else {
                    let got: Vec<_> = RawRecords::new(&back).map(|r| r.unwrap().1).collect();
                    for ((ts, orig, data), g) in recs.iter().zip(got) {
                        let RawRecord::Packet(p) = g else { panic!() };
                        prop_assert_eq!(p.ts_ns(), (ts / 1000 * 1000).max(1));
                        prop_assert_eq!((p.orig_len.max(data.len() as u16), p.data), ((*orig).max(data.len() as u16), &data[..]));
                    }
                }
            }
            // The RAW stream also reads through the capfile iterator.
            let via: Vec<_> = Packets::new_raw(&raw).map(|p| p.unwrap().data.to_vec()).collect();
            let want: Vec<_> = recs.iter().map(|r| r.2.clone()).collect();
            prop_assert_eq!(via, want);
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            for r in RawRecords::new(&data) {
                let _ = r;
            }
        }
    }
}
