// SPDX-License-Identifier: MIT
//! The `.hpidx` file layout: a fixed header, a section table and sections.
//!
//! ```text
//! 0    8  magic "HPCAPIDX"
//! 8    4  version (1)
//! 12   4  page_shift (12: 4 KiB pages)
//! 16   8  data_len: bytes of the data file this index covers
//! 24   8  tail_hash: xxh64 of the covered data's last min(4096, data_len) bytes
//! 32   8  packets
//! 40   8  min_ts (ns)        48  8  max_ts (ns)
//! 56   4  pages (data_len rounded up to pages)
//! 60   4  keys
//! 64   4  sections
//! 68   4  flags (0)
//! 72   32 × sections: {id u32, codec u32, offset u64, len u64, raw_len u64}
//! ..   4  FNV-1a 32 over everything before it
//! ```
//!
//! Everything is little-endian. Sections follow the header in any order.

use anyhow::{bail, Result};

/// File magic.
pub const MAGIC: &[u8; 8] = b"HPCAPIDX";
/// Format version.
pub const VERSION: u32 = 1;
/// Bytes of the fixed part of the header.
pub const FIXED_LEN: usize = 72;
/// Bytes per section table entry.
pub const SECTION_LEN: usize = 32;

/// Section ids.
pub mod section {
    /// Block table: per block {start u64, end u64, min_ts u64, max_ts u64,
    /// packets u32, first_page u32, last_page u32, pad u32} (48 bytes).
    pub const BLOCKS: u32 = 1;
    /// Page directory: per page, u16 offset of the first packet record
    /// starting in it (0xFFFF: none).
    pub const PAGEDIR: u32 = 2;
    /// Read states ([`hpcap_core::capfile::ReadState`]) and the offsets from
    /// which each holds.
    pub const CONTEXTS: u32 = 3;
    /// Binary fuse filter over the hashes of every key.
    pub const FILTER: u32 = 4;
    /// fst map: key bytes -> posting locator ([`super::SINGLE_PAGE`]).
    pub const KEYS: u32 = 5;
    /// Page sets: a tag byte, then LEB128 count and page deltas (tag 0) or
    /// LEB128 length and a serialized roaring bitmap (tag 1).
    pub const POSTINGS: u32 = 6;
}

/// Section codecs.
pub mod codec {
    /// Stored as is.
    pub const NONE: u32 = 0;
    /// zstd frame.
    pub const ZSTD: u32 = 1;
}

/// Page directory value: no packet record starts in the page.
pub const NO_RECORD: u16 = 0xFFFF;

/// Posting locator bit 0: set, the key occurs in one page only, whose
/// number is the rest of the value (no posting stored); clear, the rest is
/// the posting's offset in the postings section.
pub const SINGLE_PAGE: u64 = 1;

/// One entry of the section table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// [`section`] id.
    pub id: u32,
    /// [`codec`].
    pub codec: u32,
    /// Byte offset in the index file.
    pub offset: u64,
    /// Stored length.
    pub len: u64,
    /// Length after decoding.
    pub raw_len: u64,
}

/// The index header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Header {
    /// log2 of the page size.
    pub page_shift: u32,
    /// Bytes of the data file covered.
    pub data_len: u64,
    /// xxh64 of the covered data's last `min(4096, data_len)` bytes.
    pub tail_hash: u64,
    /// Packets indexed.
    pub packets: u64,
    /// Smallest timestamp (ns; 0 without packets).
    pub min_ts: u64,
    /// Largest timestamp.
    pub max_ts: u64,
    /// Pages of the data file.
    pub pages: u32,
    /// Distinct keys.
    pub keys: u32,
    /// The section table.
    pub sections: Vec<Section>,
}

/// FNV-1a, 32 bits.
pub fn fnv1a32(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// xxh64 (seed 0) of the last `min(4096, len)` bytes of `covered`.
pub fn tail_hash(covered_tail: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, covered_tail)
}

impl Header {
    /// Length of the encoded header.
    pub fn encoded_len(sections: usize) -> usize {
        FIXED_LEN + sections * SECTION_LEN + 4
    }

    /// Encodes the header.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(Self::encoded_len(self.sections.len()));
        b.extend_from_slice(MAGIC);
        b.extend_from_slice(&VERSION.to_le_bytes());
        b.extend_from_slice(&self.page_shift.to_le_bytes());
        for v in [
            self.data_len,
            self.tail_hash,
            self.packets,
            self.min_ts,
            self.max_ts,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.pages, self.keys, self.sections.len() as u32, 0] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for s in &self.sections {
            b.extend_from_slice(&s.id.to_le_bytes());
            b.extend_from_slice(&s.codec.to_le_bytes());
            b.extend_from_slice(&s.offset.to_le_bytes());
            b.extend_from_slice(&s.len.to_le_bytes());
            b.extend_from_slice(&s.raw_len.to_le_bytes());
        }
        let c = fnv1a32(&b);
        b.extend_from_slice(&c.to_le_bytes());
        b
    }

    /// Decodes and checks a header at the start of `b`.
    pub fn decode(b: &[u8]) -> Result<Self> {
        let u32at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        let u64at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        if b.len() < FIXED_LEN + 4 || &b[..8] != MAGIC {
            bail!("not an hpcap index (bad magic)");
        }
        let version = u32at(8).unwrap_or(0);
        if version != VERSION {
            bail!("index version {version} is not supported (this tool reads {VERSION})");
        }
        let n = u32at(64).unwrap_or(0) as usize;
        if n > 64 {
            bail!("index header damaged (sections)");
        }
        let end = FIXED_LEN + n * SECTION_LEN;
        let Some(check) = u32at(end) else {
            bail!("index header truncated");
        };
        if check != fnv1a32(&b[..end]) {
            bail!("index header damaged (check value)");
        }
        let mut sections = Vec::with_capacity(n);
        for i in 0..n {
            let at = FIXED_LEN + i * SECTION_LEN;
            sections.push(Section {
                id: u32at(at).unwrap_or(0),
                codec: u32at(at + 4).unwrap_or(0),
                offset: u64at(at + 8).unwrap_or(0),
                len: u64at(at + 16).unwrap_or(0),
                raw_len: u64at(at + 24).unwrap_or(0),
            });
        }
        Ok(Self {
            page_shift: u32at(12).unwrap_or(0),
            data_len: u64at(16).unwrap_or(0),
            tail_hash: u64at(24).unwrap_or(0),
            packets: u64at(32).unwrap_or(0),
            min_ts: u64at(40).unwrap_or(0),
            max_ts: u64at(48).unwrap_or(0),
            pages: u32at(56).unwrap_or(0),
            keys: u32at(60).unwrap_or(0),
            sections,
        })
    }

    /// The section with `id`.
    pub fn section(&self, id: u32) -> Option<&Section> {
        self.sections.iter().find(|s| s.id == id)
    }
}

/// One entry of the block table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockEntry {
    /// File offset of the block (hpcap stream block, or a 4 MiB stretch of
    /// other files).
    pub start: u64,
    /// End of its last packet record.
    pub end: u64,
    /// Smallest timestamp.
    pub min_ts: u64,
    /// Largest timestamp.
    pub max_ts: u64,
    /// Packets.
    pub packets: u32,
    /// Page of its first packet record.
    pub first_page: u32,
    /// Page of its last packet record.
    pub last_page: u32,
}

/// Bytes of an encoded [`BlockEntry`].
pub const BLOCK_ENTRY_LEN: usize = 48;

impl BlockEntry {
    /// Appends the entry's encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.start, self.end, self.min_ts, self.max_ts] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.packets, self.first_page, self.last_page, 0] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes an entry.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let u64at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let u32at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        Some(Self {
            start: u64at(0)?,
            end: u64at(8)?,
            min_ts: u64at(16)?,
            max_ts: u64at(24)?,
            packets: u32at(32)?,
            first_page: u32at(36)?,
            last_page: u32at(40)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_roundtrip_and_damage() {
        let h = Header {
            page_shift: 12,
            data_len: 123456,
            tail_hash: 99,
            packets: 7,
            min_ts: 1,
            max_ts: 2,
            pages: 31,
            keys: 4,
            sections: vec![Section {
                id: section::KEYS,
                codec: codec::NONE,
                offset: 200,
                len: 10,
                raw_len: 10,
            }],
        };
        let mut b = h.encode();
        assert_eq!(Header::decode(&b).unwrap(), h);
        b[20] ^= 1;
        assert!(Header::decode(&b).is_err());
        assert!(Header::decode(b"HPCAPIDX").is_err());
    }
}
