// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The stream formats: native pcapng and HPCAP's RAW records.
//!
//! This is the one representation of "which format" in the code base. The
//! ioctl ABI carries it as a `u32` (`abi::FORMAT_*`), converted with
//! [`TryFrom<u32>`] at that boundary; block headers carry it as a `u16`
//! ([`StreamFormat::block_header_code`]). Everything that depends on the
//! format (the record opening each block, record lengths, padding, how a
//! frame's record header is written) is a method here, so a writer never
//! matches on raw numbers.
//!
//! RAW streams have no block header records: HPCAP's RAW consumers know
//! only packet and padding records, and the RAW compatibility mode is
//! byte-exact with them. Readers still accept old RAW files whose blocks
//! open with a header-carrying padding record (see `block::header_at`).

use super::frame::WireFrame;
use super::pcapng::{
    self, EpbOptions, WriteError, BH_FORMAT_PCAPNG, BH_FORMAT_RAW, BLOCK_HEADER_LEN,
    EPB_DATA_OFFSET, MIN_BLOCK_LEN,
};
use super::raw::{self, RAW_HEADER_LEN, RAW_MAX_CAPLEN};

/// Record format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamFormat {
    /// pcapng Enhanced Packet Blocks; blocks open with a block header
    /// record and close with a local-use padding block.
    Pcapng,
    /// HPCAP RAW records (12-byte header, no alignment); blocks close with a
    /// padding record (`sec = nsec = 0`).
    Raw,
}

/// An `abi::FORMAT_*` value that names no format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownFormat(pub u32);

impl TryFrom<u32> for StreamFormat {
    type Error = UnknownFormat;

    fn try_from(v: u32) -> Result<Self, UnknownFormat> {
        match v {
            super::abi::FORMAT_PCAPNG => Ok(Self::Pcapng),
            super::abi::FORMAT_RAW => Ok(Self::Raw),
            other => Err(UnknownFormat(other)),
        }
    }
}

impl From<StreamFormat> for u32 {
    fn from(f: StreamFormat) -> u32 {
        f.abi()
    }
}

/// Smallest gap a padding record can fill, in both formats.
pub const MIN_PAD: u64 = 12;

const _: () = assert!(MIN_BLOCK_LEN as u64 == MIN_PAD && RAW_HEADER_LEN as u64 == MIN_PAD);

impl StreamFormat {
    /// Both formats, for tests and help texts.
    pub const ALL: [Self; 2] = [Self::Pcapng, Self::Raw];

    /// The `abi::FORMAT_*` value.
    pub const fn abi(self) -> u32 {
        match self {
            Self::Pcapng => super::abi::FORMAT_PCAPNG,
            Self::Raw => super::abi::FORMAT_RAW,
        }
    }

    /// Lower-case name, as on command lines.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pcapng => "pcapng",
            Self::Raw => "raw",
        }
    }

    /// Length of the record that opens every block (0: none).
    pub const fn block_header_len(self) -> u64 {
        match self {
            Self::Pcapng => BLOCK_HEADER_LEN as u64,
            Self::Raw => 0,
        }
    }

    /// Every record length is a multiple of this.
    pub const fn align(self) -> u64 {
        match self {
            Self::Pcapng => 4,
            Self::Raw => 1,
        }
    }

    /// The `format` field of a block header (`pcapng::BH_FORMAT_*`).
    pub const fn block_header_code(self) -> u16 {
        match self {
            Self::Pcapng => BH_FORMAT_PCAPNG,
            Self::Raw => BH_FORMAT_RAW,
        }
    }

    /// Largest capture length a record can hold.
    pub const fn max_caplen(self) -> u32 {
        match self {
            Self::Pcapng => u32::MAX - 64,
            // CAST: u16::MAX fits u32.
            Self::Raw => RAW_MAX_CAPLEN as u32,
        }
    }

    /// Length of the record holding `caplen` captured bytes, or `None` when
    /// the format cannot express it (RAW lengths are 16 bits).
    #[inline]
    pub const fn record_len(self, caplen: u32) -> Option<u64> {
        if caplen > self.max_caplen() {
            return None;
        }
        Some(match self {
            Self::Pcapng => pcapng::epb_len(caplen as usize, &EpbOptions::NONE) as u64,
            Self::Raw => raw::raw_len(caplen as usize) as u64,
        })
    }

    /// Writes one packet record into `rec`, which must be exactly
    /// [`Self::record_len`]`(caplen)` bytes: the record header, then the
    /// first `caplen` bytes of `frame` as on the wire. `orig_len` is the
    /// frame's length on the wire.
    #[inline]
    pub fn write_record(
        self,
        rec: &mut [u8],
        ts_ns: u64,
        caplen: u32,
        orig_len: u32,
        frame: &WireFrame<'_>,
    ) -> Result<(), WriteError> {
        let data_at = match self {
            Self::Pcapng => {
                pcapng::write_epb_plain(rec, ts_ns, caplen, orig_len)?;
                EPB_DATA_OFFSET
            }
            Self::Raw => {
                raw::write_raw_header(rec, 0, ts_ns, caplen as usize, orig_len)?;
                RAW_HEADER_LEN
            }
        };
        let end = data_at
            .checked_add(caplen as usize)
            .ok_or(WriteError::NoSpace)?;
        let dst = rec.get_mut(data_at..end).ok_or(WriteError::NoSpace)?;
        frame.copy_prefix(dst);
        Ok(())
    }

    /// [`Self::write_record`] for the capture hot path: the record is written
    /// through a raw pointer into a span the reservation already bounded,
    /// with whole-word stores and one copy, and no per-record bounds checks
    /// (they are debug assertions here). Values a RAW header cannot hold are
    /// saturated rather than left unwritten (a reserved span must always
    /// hold a record): seconds past 2106, lengths above 65535.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes of [`Self::record_len`]`(caplen)` bytes that
    /// nothing else accesses meanwhile, `caplen <= frame.len()`, and
    /// `caplen <= self.max_caplen()`.
    #[inline(always)]
    pub unsafe fn write_record_raw(
        self,
        dst: *mut u8,
        ts_ns: u64,
        caplen: u32,
        orig_len: u32,
        frame: &WireFrame<'_>,
    ) {
        debug_assert!(caplen as usize <= frame.len());
        // SAFETY: the caller's contract is `write_head_raw`'s; the data
        // goes to `[data, data + caplen)`, inside the record, after the
        // head was written (which zeroed the padding the data overlaps).
        unsafe {
            let data = self.write_head_raw(dst, ts_ns, caplen, orig_len);
            frame.copy_prefix_raw(data, caplen as usize);
        }
    }

    /// Writes everything of a record but its captured bytes: the record
    /// header, and for pcapng the zeroed padding after the data and the
    /// trailing length. Returns where the `caplen` captured bytes go. The
    /// header is a few whole-word stores; no byte is written twice except
    /// the padding word, zeroed before the data overwrites its front.
    ///
    /// # Safety
    ///
    /// `dst` is valid for writes of [`Self::record_len`]`(caplen)` bytes that
    /// nothing else accesses meanwhile, and `caplen <= self.max_caplen()`.
    #[inline(always)]
    pub unsafe fn write_head_raw(
        self,
        dst: *mut u8,
        ts_ns: u64,
        caplen: u32,
        orig_len: u32,
    ) -> *mut u8 {
        debug_assert!(caplen <= self.max_caplen());
        let cap = caplen as usize;
        match self {
            Self::Pcapng => {
                let data_end = EPB_DATA_OFFSET + pcapng::pad4(cap);
                // CAST: at most `max_caplen() + 32`, below `u32::MAX`.
                let total = (data_end + 4) as u32;
                // The EPB's 28-byte header as three 64-bit words and one
                // 32-bit word (each assembled low word first, so `to_le`
                // lays the two 32-bit fields out in file order): block
                // type, total length; interface 0, timestamp high;
                // timestamp low, captured length; original length.
                let w0 = u64::from(pcapng::EPB_TYPE) | u64::from(total) << 32;
                let w1 = ts_ns & 0xFFFF_FFFF_0000_0000;
                let w2 = (ts_ns & 0xFFFF_FFFF) | u64::from(caplen) << 32;
                // SAFETY: every store is inside the `data_end + 4` bytes
                // the caller guarantees (`data_end >= 28`). The padding
                // word `[data_end - 4, data_end)` is zeroed first: it
                // holds the data's last bytes and its padding, so the
                // padding stays zero once the data overwrites its front
                // (with no data it is the original-length word, written
                // after it).
                unsafe {
                    dst.add(data_end - 4).cast::<u32>().write_unaligned(0);
                    dst.cast::<u64>().write_unaligned(w0.to_le());
                    dst.add(8).cast::<u64>().write_unaligned(w1.to_le());
                    dst.add(16).cast::<u64>().write_unaligned(w2.to_le());
                    dst.add(24).cast::<u32>().write_unaligned(orig_len.to_le());
                    dst.add(data_end)
                        .cast::<u32>()
                        .write_unaligned(total.to_le());
                    dst.add(EPB_DATA_OFFSET)
                }
            }
            Self::Raw => {
                let ts = ts_ns.max(1);
                let cap16 = u16::try_from(caplen).unwrap_or(u16::MAX);
                let hdr = raw::RawHeader {
                    sec: u32::try_from(ts / 1_000_000_000).unwrap_or(u32::MAX),
                    // CAST: below 10^9.
                    nsec: (ts % 1_000_000_000) as u32,
                    caplen: cap16,
                    len: u16::try_from(orig_len).unwrap_or(u16::MAX).max(cap16),
                };
                // SAFETY: inside the `RAW_HEADER_LEN + caplen` bytes the
                // caller guarantees.
                unsafe {
                    dst.cast::<[u8; RAW_HEADER_LEN]>()
                        .write_unaligned(hdr.encode());
                    dst.add(RAW_HEADER_LEN)
                }
            }
        }
    }

    /// Fills `span` (at least [`MIN_PAD`] bytes) with one padding record.
    pub fn write_pad(self, span: &mut [u8]) -> Result<(), WriteError> {
        let len = span.len();
        match self {
            Self::Pcapng => pcapng::write_pad_at(span, 0, len).map(|_| ()),
            Self::Raw => raw::write_raw_pad(span, 0, len).map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_codes_round_trip() {
        for f in StreamFormat::ALL {
            assert_eq!(StreamFormat::try_from(f.abi()), Ok(f));
            assert_eq!(u32::from(f), f.abi());
        }
        assert_eq!(StreamFormat::try_from(7), Err(UnknownFormat(7)));
    }

    #[test]
    fn record_lengths() {
        assert_eq!(StreamFormat::Pcapng.record_len(60), Some(92));
        assert_eq!(StreamFormat::Pcapng.record_len(61), Some(96));
        assert_eq!(StreamFormat::Raw.record_len(61), Some(73));
        assert_eq!(StreamFormat::Raw.record_len(65535), Some(65547));
        assert_eq!(StreamFormat::Raw.record_len(65536), None);
        assert_eq!(StreamFormat::Raw.block_header_len(), 0);
    }

    #[test]
    fn records_hold_the_frame_as_on_the_wire() {
        let bytes: [u8; 60] = core::array::from_fn(|i| i as u8);
        let frame = WireFrame::new(&bytes, Some(0x0064));
        for f in StreamFormat::ALL {
            let len = f.record_len(32).unwrap() as usize;
            let mut rec = [0xAAu8; 128];
            f.write_record(&mut rec[..len], 1_500_000_000_123, 32, 64, &frame)
                .unwrap();
            let at = match f {
                StreamFormat::Pcapng => EPB_DATA_OFFSET,
                StreamFormat::Raw => RAW_HEADER_LEN,
            };
            assert_eq!(&rec[at..at + 12], &bytes[..12]);
            assert_eq!(&rec[at + 12..at + 16], &[0x81, 0x00, 0x00, 0x64]);
            assert_eq!(&rec[at + 16..at + 32], &bytes[12..28]);
            assert!(
                rec[len..].iter().all(|&b| b == 0xAA),
                "wrote past the record"
            );
            // A record of the wrong size is refused, not truncated.
            assert!(f
                .write_record(&mut rec[..len - 1], 1, 32, 64, &frame)
                .is_err());
        }
    }
}
