// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Validation of every capture setting, in one place.
//!
//! The driver's module parameters, `HPCAP_IOC_SET_CONFIG`, the software
//! source's command line and the tools all check settings here, so the
//! rules (and the numbers quoted in error messages and docs) cannot drift
//! apart. Limits that depend on the NIC (ring sizes, receive buffer units)
//! come from the backend as a [`RingLimits`].

use super::arith::{div_u32, rem_u32, rem_u64};
use super::format::{StreamFormat, MIN_PAD};
use super::publish::Geometry;

/// log2 of the smallest block size (64 KiB).
pub const MIN_BLOCK_SHIFT: u32 = 16;
/// log2 of the largest block size (256 MiB).
pub const MAX_BLOCK_SHIFT: u32 = 28;
/// Smallest non-zero snapshot length: an Ethernet header.
pub const MIN_SNAPLEN: u32 = 14;
/// Largest snapshot length: what a RAW record's 16-bit length can hold.
pub const MAX_SNAPLEN: u32 = 65535;
/// Most capture threads (ring segments) per device.
pub const MAX_CONSUMERS: u32 = super::segment::MAX_CONSUMERS;

/// Why a setting was refused. `Display`-free on purpose (the kernel logs
/// with its own macros): [`ConfigError::explain`] gives the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// Unknown stream format code.
    Format,
    /// Block size not a power of two in 64 KiB..=256 MiB.
    BlockSize,
    /// Buffer smaller than two blocks (or not addressable).
    BufferSize,
    /// Snapshot length neither 0 nor in 14..=65535.
    Snaplen,
    /// Ring size outside the NIC's limits or not a multiple of its step.
    RingSize,
    /// Consumer count outside 1..=32, or more than the ring has tail units.
    Consumers,
    /// Receive buffer size outside the NIC's limits or not a multiple of
    /// its unit.
    RxBuf,
}

impl ConfigError {
    /// The rule that was broken, for error messages.
    pub const fn explain(self) -> &'static str {
        match self {
            Self::Format => "format must be 0 (pcapng) or 1 (RAW)",
            Self::BlockSize => "block size must be a power of two from 64 KiB to 256 MiB",
            Self::BufferSize => "the buffer must hold at least two blocks",
            Self::Snaplen => "snaplen must be 0 (whole frames) or 14..65535",
            Self::RingSize => "ring size must be a multiple of the NIC's step within its limits",
            Self::Consumers => "consumers must be 1..32 and at most ring size / (2 * tail step)",
            Self::RxBuf => "receive buffer must be a multiple of the NIC's unit within its limits",
        }
    }
}

/// Checks a block size.
pub const fn block_size(bytes: u64) -> Result<u64, ConfigError> {
    if !bytes.is_power_of_two() {
        return Err(ConfigError::BlockSize);
    }
    let shift = bytes.trailing_zeros();
    if shift < MIN_BLOCK_SHIFT || shift > MAX_BLOCK_SHIFT {
        return Err(ConfigError::BlockSize);
    }
    Ok(bytes)
}

/// Checks a snapshot length (0 = whole frames).
pub const fn snaplen(v: u32) -> Result<u32, ConfigError> {
    if v != 0 && (v < MIN_SNAPLEN || v > MAX_SNAPLEN) {
        return Err(ConfigError::Snaplen);
    }
    Ok(v)
}

/// A buffer size rounded down to whole blocks; at least two blocks, so a
/// reader and the producer can each hold one.
pub const fn buffer_size(bytes: u64, block: u64) -> Result<u64, ConfigError> {
    let rounded = bytes & !(block - 1);
    if block == 0 || rounded / 2 < block {
        return Err(ConfigError::BufferSize);
    }
    Ok(rounded)
}

/// Format and layout of a stream: they change together, and only while no
/// listener is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    /// Record format.
    pub format: StreamFormat,
    /// Layout of the blocks in the buffer.
    pub geo: Geometry,
}

impl Stream {
    /// Validates a format and block size for a buffer of `buffer_size`
    /// bytes (a whole number of blocks, at least two).
    pub const fn new(
        format: StreamFormat,
        buffer_size: u64,
        block: u64,
    ) -> Result<Self, ConfigError> {
        let block = match block_size(block) {
            Ok(b) => b,
            Err(e) => return Err(e),
        };
        if rem_u64(buffer_size, block) != 0 || buffer_size / 2 < block {
            return Err(ConfigError::BufferSize);
        }
        match Geometry::new(buffer_size, block, format.block_header_len(), MIN_PAD) {
            Ok(geo) => Ok(Self { format, geo }),
            Err(_) => Err(ConfigError::BufferSize),
        }
    }

    /// The stream as one word, for an atomic: format in bits 7:0, log2 of
    /// the block size in bits 15:8 (the buffer size is fixed per device).
    pub const fn word(&self) -> u64 {
        self.format.abi() as u64 | ((self.geo.block_size().trailing_zeros() as u64) << 8)
    }

    /// Inverse of [`Self::word`] for a buffer of `buffer_size` bytes.
    pub fn from_word(word: u64, buffer_size: u64) -> Result<Self, ConfigError> {
        // CAST: masked to 8 bits.
        let format =
            StreamFormat::try_from((word & 0xFF) as u32).map_err(|_| ConfigError::Format)?;
        // CAST: masked to 6 bits.
        let block = 1u64
            .checked_shl(((word >> 8) & 0x3F) as u32)
            .ok_or(ConfigError::BlockSize)?;
        Self::new(format, buffer_size, block)
    }
}

/// What a NIC allows for its RX ring; a property of the backend (and, for a
/// VF, of what its PF granted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Fewest descriptors.
    pub min: u32,
    /// Most descriptors.
    pub max: u32,
    /// The descriptor count must be a multiple of this.
    pub step: u32,
    /// Tail writes must be multiples of this many descriptors.
    pub tail_step: u32,
    /// Smallest receive buffer (bytes).
    pub buf_min: u32,
    /// Largest receive buffer (bytes).
    pub buf_max: u32,
    /// Receive buffers are programmed in units of this many bytes.
    pub buf_unit: u32,
}

/// Ring settings a backend accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingParams {
    /// Descriptors.
    pub size: u32,
    /// Capture threads, one ring segment each.
    pub consumers: u32,
    /// Receive buffer bytes per descriptor.
    pub buf: u32,
}

impl RingLimits {
    /// Checks requested ring settings against these limits. Each consumer
    /// needs at least two tail steps of descriptors, so a segment can be
    /// handed back while the NIC fills the next.
    pub const fn check(
        &self,
        size: u32,
        consumers: u32,
        buf: u32,
    ) -> Result<RingParams, ConfigError> {
        if self.step == 0 || size < self.min || size > self.max || rem_u32(size, self.step) != 0 {
            return Err(ConfigError::RingSize);
        }
        if consumers == 0
            || consumers > MAX_CONSUMERS
            || self.tail_step == 0
            || consumers > div_u32(size, 2 * self.tail_step)
        {
            return Err(ConfigError::Consumers);
        }
        if self.buf_unit == 0
            || buf < self.buf_min
            || buf > self.buf_max
            || rem_u32(buf, self.buf_unit) != 0
        {
            return Err(ConfigError::RxBuf);
        }
        Ok(RingParams {
            size,
            consumers,
            buf,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_rules() {
        let f = StreamFormat::Pcapng;
        assert_eq!(
            Stream::new(f, 1 << 20, 1 << 15),
            Err(ConfigError::BlockSize)
        );
        assert_eq!(
            Stream::new(f, 1 << 29, 1 << 29),
            Err(ConfigError::BlockSize)
        );
        assert_eq!(
            Stream::new(f, 3 << 16, 3 << 16),
            Err(ConfigError::BlockSize)
        );
        assert_eq!(
            Stream::new(f, 1 << 16, 1 << 16),
            Err(ConfigError::BufferSize)
        );
        assert_eq!(
            Stream::new(f, (1 << 17) + 4, 1 << 16),
            Err(ConfigError::BufferSize)
        );
        let s = Stream::new(StreamFormat::Raw, 3 << 16, 1 << 16).unwrap();
        assert_eq!(Stream::from_word(s.word(), 3 << 16), Ok(s));
        assert_eq!(s.geo.max_record(), 1 << 16);
        assert_eq!(Stream::from_word(7, 3 << 16), Err(ConfigError::Format));
    }

    #[test]
    fn scalar_rules() {
        assert_eq!(snaplen(0), Ok(0));
        assert_eq!(snaplen(13), Err(ConfigError::Snaplen));
        assert_eq!(snaplen(65535), Ok(65535));
        assert_eq!(snaplen(65536), Err(ConfigError::Snaplen));
        assert_eq!(buffer_size((5 << 16) + 7, 1 << 16), Ok(5 << 16));
        assert_eq!(buffer_size(1 << 16, 1 << 16), Err(ConfigError::BufferSize));
    }

    #[test]
    fn ring_rules() {
        // The 82576: multiples of 8 in 64..4096, tail step 1, 1 KiB units.
        let igb = RingLimits {
            min: 64,
            max: 4096,
            step: 8,
            tail_step: 1,
            buf_min: 1024,
            buf_max: 16384,
            buf_unit: 1024,
        };
        assert!(igb.check(4096, 1, 2048).is_ok());
        assert_eq!(igb.check(4100, 1, 2048), Err(ConfigError::RingSize));
        assert_eq!(igb.check(32, 1, 2048), Err(ConfigError::RingSize));
        assert_eq!(igb.check(64, 33, 2048), Err(ConfigError::Consumers));
        assert_eq!(igb.check(64, 0, 2048), Err(ConfigError::Consumers));
        assert_eq!(igb.check(64, 2, 2500), Err(ConfigError::RxBuf));
        // The XL710: tail step 8, up to 8160 descriptors in steps of 32,
        // 128-byte buffer units.
        let i40e = RingLimits {
            min: 64,
            max: 8160,
            step: 32,
            tail_step: 8,
            buf_min: 1024,
            buf_max: 16256,
            buf_unit: 128,
        };
        assert!(i40e.check(8160, 32, 2176).is_ok());
        assert_eq!(i40e.check(64, 5, 2048), Err(ConfigError::Consumers));
    }
}
