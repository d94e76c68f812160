// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Block layout of stored streams: validation, indexing and
//! resynchronisation.
//!
//! The stream is an endless sequence of bytes addressed by u64 offsets, cut
//! into blocks of `2^shift` bytes (64 KiB..256 MiB, default 4 MiB). Block
//! rule: a block starts with a block header record (pcapng: local block
//! [`BLOCK_HEADER_TYPE`]; RAW streams have none), then whole records, then
//! padding up to the end. A padding record needs 12 bytes, so the gap after
//! any record is either 0 or at least 12. Together with pcapng records being
//! multiples of 4, every block is a complete sequence of pcapng blocks, so a
//! file made of a file header and any run of blocks is valid pcapng at every
//! block boundary.
//!
//! Records are placed by the one placement engine, `publish::Batch::place`
//! (used through `engine`); this file only reads what was written:
//! [`check_block`] validates a stored block, [`BlockIndex`] walks stored data
//! block by block and resynchronises on block headers after garbage.

use super::config::{MAX_BLOCK_SHIFT, MIN_BLOCK_SHIFT};
use super::format::{StreamFormat, MIN_PAD};
use super::pcapng::{parse_block, Block, BlockHeader, Endian, BH_FLAG_FINAL, BLOCK_HEADER_TYPE};
use super::raw::{parse_raw, RawRecord};

/// log2 of the default block size (4 MiB).
pub const DEFAULT_BLOCK_SHIFT: u32 = 22;

/// Invalid geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Block size not a power of two in 64 KiB..=256 MiB.
    BadBlockSize,
    /// Buffer size zero or not a multiple of the block size, or not
    /// addressable on this machine.
    BadBufferSize,
}

/// Geometry of a stored stream: block size, format, and the size of the
/// ring buffer it was written through (for dumps of a ring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    shift: u32,
    buffer_len: u64,
    format: StreamFormat,
}

impl Layout {
    /// Blocks of `block_len` bytes in a buffer of `buffer_len` bytes.
    pub const fn new(
        block_len: u64,
        buffer_len: u64,
        format: StreamFormat,
    ) -> Result<Self, LayoutError> {
        if !block_len.is_power_of_two() {
            return Err(LayoutError::BadBlockSize);
        }
        let shift = block_len.trailing_zeros();
        if shift < MIN_BLOCK_SHIFT || shift > MAX_BLOCK_SHIFT {
            return Err(LayoutError::BadBlockSize);
        }
        if buffer_len == 0 || buffer_len & (block_len - 1) != 0 || buffer_len > usize::MAX as u64 {
            return Err(LayoutError::BadBufferSize);
        }
        Ok(Self {
            shift,
            buffer_len,
            format,
        })
    }

    /// Block size in bytes.
    pub const fn block_len(&self) -> u64 {
        1 << self.shift
    }

    /// log2 of the block size.
    pub const fn block_shift(&self) -> u32 {
        self.shift
    }

    /// Ring buffer size in bytes.
    pub const fn buffer_len(&self) -> u64 {
        self.buffer_len
    }

    /// Record format.
    pub const fn format(&self) -> StreamFormat {
        self.format
    }

    /// Start of the block holding stream offset `off`.
    pub const fn block_start(&self, off: u64) -> u64 {
        off & !(self.block_len() - 1)
    }

    /// Sequence number of the block holding `off`.
    pub const fn block_seq(&self, off: u64) -> u64 {
        off >> self.shift
    }

    /// Position of `off` within its block.
    pub const fn offset_in_block(&self, off: u64) -> u64 {
        off & (self.block_len() - 1)
    }

    /// Index into the ring buffer of stream offset `off`.
    pub const fn buffer_index(&self, off: u64) -> usize {
        // buffer_len is non-zero and fits usize (checked in new), so the
        // remainder does too; checked_rem keeps a panic path out.
        match off.checked_rem(self.buffer_len) {
            Some(i) => i as usize,
            None => 0,
        }
    }

    /// Whether a record of `len` bytes fits in a fresh block after the header
    /// without leaving a gap of 1..=11 bytes.
    pub const fn fits_fresh_block(&self, len: u64) -> bool {
        let room = self.block_len() - self.format.block_header_len();
        len == room || (len <= room && room - len >= MIN_PAD)
    }

    /// Largest record any block can hold.
    pub const fn max_record_len(&self) -> u64 {
        self.block_len() - self.format.block_header_len()
    }
}

// ---------------------------------------------------------------------------
// Validation and indexing

/// Why a stored block is not well formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The data is not exactly one block long.
    BadLength,
    /// The block does not start with a valid block header record.
    NoHeader,
    /// The record at this offset within the block is malformed or crosses
    /// the block's end.
    BadRecord {
        /// Offset within the block.
        at: usize,
    },
    /// A header field disagrees with the block (size, format, counts,
    /// timestamps, or the expected stream offset).
    HeaderMismatch,
}

/// What a validated block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// The block header, if the format has one.
    pub header: Option<BlockHeader>,
    /// Records (not header, not padding).
    pub records: u32,
    /// Packets among them (EPB/SPB, or RAW packets).
    pub packets: u32,
    /// Bytes from the block start to the start of the tail padding.
    pub used: u64,
}

/// Validates one stored block `data` (exactly one block long) of `layout`'s
/// format, written little-endian. A pcapng block must open with a block
/// header; a RAW block may (files written by early versions carried one in
/// a padding record). With a final header (rewritten by `hpcapdd` when it
/// stores the block), its counts and timestamps must match the records;
/// with `expect_offset`, the header's stream offset must equal it.
pub fn check_block(
    data: &[u8],
    layout: &Layout,
    expect_offset: Option<u64>,
) -> Result<BlockInfo, BlockError> {
    if data.len() as u64 != layout.block_len() {
        return Err(BlockError::BadLength);
    }
    let fmt = layout.format;
    let mut pos = 0usize;
    let mut header = None;
    let found = header_at(data, 0, fmt);
    if fmt == StreamFormat::Pcapng && found.is_none() {
        return Err(BlockError::NoHeader);
    }
    if let Some(h) = found {
        if u64::from(h.block_len) != layout.block_len()
            || h.format != fmt.block_header_code()
            || h.seq != layout.block_seq(h.offset)
            || layout.offset_in_block(h.offset) != 0
            || expect_offset.is_some_and(|o| o != h.offset)
        {
            return Err(BlockError::HeaderMismatch);
        }
        header = Some(h);
        pos = header_len(fmt);
    }
    let (mut records, mut packets) = (0u32, 0u32);
    let (mut first_ts, mut last_ts) = (None, 0u64);
    let mut pad_start = None;
    while pos < data.len() {
        let at = pos;
        let bad = BlockError::BadRecord { at };
        let (is_pad, ts, is_packet, len) = match fmt {
            StreamFormat::Pcapng => {
                let (b, len) = parse_block(data, pos, Endian { big: false }).map_err(|_| bad)?;
                match b {
                    Block::Pad => (true, None, false, len),
                    Block::Epb(e) => (false, Some(e.ts), true, len),
                    Block::Isb(i) => (false, Some(i.ts), false, len),
                    Block::Spb { .. } => (false, None, true, len),
                    Block::Header(_) | Block::Shb(_) => return Err(bad),
                    _ => (false, None, false, len),
                }
            }
            StreamFormat::Raw => match parse_raw(data, pos).map_err(|_| bad)? {
                (RawRecord::Padding { .. }, len) => (true, None, false, len),
                (RawRecord::Packet(p), len) => (false, Some(p.ts_ns()), true, len),
            },
        };
        if is_pad {
            pad_start.get_or_insert(at);
        } else {
            if pad_start.is_some() {
                // A record after padding: padding only ever closes a block.
                return Err(bad);
            }
            records = records.saturating_add(1);
            packets = packets.saturating_add(u32::from(is_packet));
            if let Some(ts) = ts {
                first_ts.get_or_insert(ts);
                last_ts = ts;
            }
        }
        pos = pos.checked_add(len).ok_or(bad)?;
    }
    if let Some(h) = &header {
        if h.flags & BH_FLAG_FINAL != 0
            && (h.records != records
                || first_ts.is_some_and(|t| t != h.first_ts_ns)
                || (first_ts.is_some() && last_ts != h.last_ts_ns))
        {
            return Err(BlockError::HeaderMismatch);
        }
    }
    Ok(BlockInfo {
        header,
        records,
        packets,
        used: pad_start.unwrap_or(data.len()) as u64,
    })
}

/// Bytes of the block header record of `fmt` as stored (RAW: the legacy
/// header-carrying padding record).
fn header_len(fmt: StreamFormat) -> usize {
    match fmt {
        StreamFormat::Pcapng => super::pcapng::BLOCK_HEADER_LEN,
        StreamFormat::Raw => super::raw::RAW_BLOCK_HEADER_LEN,
    }
}

/// The block header record at `data[at..]` in format `fmt`, if valid (for
/// RAW, only legacy files have one).
pub fn header_at(data: &[u8], at: usize, fmt: StreamFormat) -> Option<BlockHeader> {
    match fmt {
        StreamFormat::Pcapng => match parse_block(data, at, Endian { big: false }) {
            Ok((Block::Header(h), _)) => Some(h),
            _ => None,
        },
        StreamFormat::Raw => match parse_raw(data, at) {
            Ok((RawRecord::Padding { header, .. }, _)) => header,
            _ => None,
        },
    }
}

/// First valid block header at or after `from`: where a reader resumes
/// after garbage, a torn write or a lost stretch. Scans byte by byte, as
/// garbage need not be a multiple of 4 long.
pub fn find_header(data: &[u8], from: usize, fmt: StreamFormat) -> Option<(usize, BlockHeader)> {
    let first: [u8; 4] = match fmt {
        StreamFormat::Pcapng => BLOCK_HEADER_TYPE.to_le_bytes(),
        // A padding record starts with sec = 0.
        StreamFormat::Raw => [0; 4],
    };
    let mut at = from;
    while at < data.len() {
        let rest = data.get(at..)?;
        let skip = rest.windows(4).position(|w| w == first)?;
        at += skip;
        if let Some(h) = header_at(data, at, fmt) {
            return Some((at, h));
        }
        at += 1;
    }
    None
}

/// One item of a [`BlockIndex`] walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexItem {
    /// A whole block at byte offset `at` of the data.
    Block {
        /// Byte offset in the data.
        at: usize,
        /// Its header.
        header: BlockHeader,
        /// Validation result.
        check: Result<BlockInfo, BlockError>,
    },
    /// A block whose header is at `at` but whose end is missing (the file
    /// is still being written, or was cut).
    Partial {
        /// Byte offset in the data.
        at: usize,
        /// Its header.
        header: BlockHeader,
    },
    /// Bytes that are not part of any block (a file header, garbage).
    Skipped {
        /// Byte offset in the data.
        at: usize,
        /// Length.
        len: usize,
    },
}

/// Walks stored stream data (e.g. a file after any header, or a dump of the
/// ring) block by block, resynchronising on block headers after garbage.
/// Needs blocks with headers: pcapng, or legacy RAW files that have them.
#[derive(Debug, Clone)]
pub struct BlockIndex<'a> {
    data: &'a [u8],
    layout: Layout,
    pos: usize,
}

impl<'a> BlockIndex<'a> {
    /// Index of `data` for blocks of `layout`.
    pub fn new(data: &'a [u8], layout: Layout) -> Self {
        Self {
            data,
            layout,
            pos: 0,
        }
    }
}

impl Iterator for BlockIndex<'_> {
    type Item = IndexItem;

    fn next(&mut self) -> Option<IndexItem> {
        let at = self.pos;
        if at >= self.data.len() {
            return None;
        }
        let fmt = self.layout.format;
        let Some((hat, header)) = find_header(self.data, at, fmt) else {
            self.pos = self.data.len();
            return Some(IndexItem::Skipped {
                at,
                len: self.data.len() - at,
            });
        };
        if hat > at {
            self.pos = hat;
            return Some(IndexItem::Skipped { at, len: hat - at });
        }
        let blen = self.layout.block_len() as usize; // <= 2^28
        match self.data.get(at..at.saturating_add(blen)) {
            Some(block) => {
                let check = check_block(block, &self.layout, None);
                if check.is_ok() {
                    self.pos = at + blen;
                } else {
                    // Do not trust its length: resume at the next header.
                    self.pos = at + 1;
                    if let Some((next, _)) = find_header(self.data, at + 1, fmt) {
                        self.pos = next.min(at + blen);
                    }
                }
                Some(IndexItem::Block { at, header, check })
            }
            None => {
                self.pos = self.data.len();
                Some(IndexItem::Partial { at, header })
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::super::config::Stream;
    use super::super::engine::tests::{capture, frame, packets, Captured};
    use super::super::pcapng::{
        write_block_header, write_file_header, write_isb, write_pad_at, Blocks, InterfaceInfo,
        IsbInfo, FILE_HEADER_LEN,
    };
    use super::super::raw::{write_raw, write_raw_block_header, write_raw_pad};
    use super::*;
    use std::vec;
    use std::vec::Vec;

    #[test]
    fn layout_rules() {
        let f = StreamFormat::Pcapng;
        assert_eq!(
            Layout::new(1 << 15, 1 << 20, f),
            Err(LayoutError::BadBlockSize)
        );
        assert_eq!(
            Layout::new(1 << 29, 1 << 29, f),
            Err(LayoutError::BadBlockSize)
        );
        assert_eq!(
            Layout::new(3 << 16, 3 << 16, f),
            Err(LayoutError::BadBlockSize)
        );
        assert_eq!(Layout::new(1 << 16, 0, f), Err(LayoutError::BadBufferSize));
        assert_eq!(
            Layout::new(1 << 16, (1 << 16) + 4, f),
            Err(LayoutError::BadBufferSize)
        );
        let l = Layout::new(1 << 16, 3 << 16, f).unwrap();
        assert_eq!(
            l.buffer_index((1 << 40) + 5),
            (((1u64 << 40) + 5) % (3 << 16)) as usize
        );
        assert_eq!(l.block_seq((1 << 40) + 5), 1 << 24);
        assert!(l.fits_fresh_block((1 << 16) - 76));
        assert!(!l.fits_fresh_block((1 << 16) - 76 - 8));
        let r = Layout::new(1 << 16, 3 << 16, StreamFormat::Raw).unwrap();
        assert_eq!(r.max_record_len(), 1 << 16);
    }

    /// A file: header, blocks written by the engine, a block with an ISB,
    /// garbage and a corrupted block; the index finds every block and
    /// resynchronises after the garbage.
    #[test]
    fn index_and_resync() {
        let b = 1usize << 16;
        let s = Stream::new(StreamFormat::Pcapng, 8 * b as u64, b as u64).unwrap();
        let frames: Vec<_> = (0..340).map(|i| frame(i, 60 + (i * 37) % 1455)).collect();
        let Captured { stream, .. } = capture(s, 0, &frames);
        assert!(stream.len() >= 5 * b);
        let l = Layout::new(b as u64, 8 * b as u64, StreamFormat::Pcapng).unwrap();
        // One more block: header, an ISB, padding.
        let mut isb_block = vec![0u8; b];
        let h = BlockHeader {
            format: StreamFormat::Pcapng.block_header_code(),
            block_len: b as u32,
            records: 0,
            seq: 5,
            offset: 5 * b as u64,
            first_ts_ns: 1,
            last_ts_ns: 0,
            drops: 0,
            flags: 0,
        };
        let mut at = write_block_header(&mut isb_block, 0, &h).unwrap();
        let isb = IsbInfo {
            ts_ns: 9,
            ifrecv: Some(49),
            ..IsbInfo::default()
        };
        at += write_isb(&mut isb_block, at, &isb).unwrap();
        write_pad_at(&mut isb_block, at, b - at).unwrap();
        assert_eq!(
            check_block(&isb_block, &l, Some(5 * b as u64))
                .unwrap()
                .records,
            1
        );
        let mut file = vec![0u8; FILE_HEADER_LEN];
        let info = InterfaceInfo {
            snaplen: 0,
            name: "x",
            description: "y",
        };
        write_file_header(&mut file, &info).unwrap();
        file.extend_from_slice(&stream[..2 * b]);
        file.extend_from_slice(&[0x0A, 0x0D, 0x0D, 0x0A, 1, 2, 3]); // garbage, odd length
        file.extend_from_slice(&stream[2 * b..5 * b]);
        file.extend_from_slice(&isb_block);
        let corrupt = file.len() - 2 * b + 80; // a record's length field
        file[corrupt] ^= 0xFF;
        file.extend_from_slice(&stream[..100]); // a torn block at the end
        let items: Vec<_> = BlockIndex::new(&file, l).collect();
        assert_eq!(
            items[0],
            IndexItem::Skipped {
                at: 0,
                len: FILE_HEADER_LEN
            }
        );
        let (mut blocks, mut bad) = (0, 0);
        for it in &items[1..] {
            match it {
                IndexItem::Block { header, check, .. } => {
                    blocks += 1;
                    assert_eq!(header.block_len as usize, b);
                    if check.is_err() {
                        bad += 1;
                    }
                }
                IndexItem::Skipped { len, .. } => assert!(*len == 7 || *len < b),
                IndexItem::Partial { header, .. } => assert_eq!(header.seq, 0),
            }
        }
        assert_eq!((blocks, bad), (6, 1));
        assert!(matches!(items.last(), Some(IndexItem::Partial { .. })));
        // The file is valid pcapng up to every block boundary.
        for k in 0..=2 {
            let end = FILE_HEADER_LEN + k * b;
            assert!(Blocks::new(&file[..end]).all(|r| r.is_ok()));
        }
    }

    /// RAW blocks written by early versions open with a header-carrying
    /// padding record; they still validate and index.
    #[test]
    fn legacy_raw_blocks_with_headers() {
        let b = 1usize << 16;
        let l = Layout::new(b as u64, 2 * b as u64, StreamFormat::Raw).unwrap();
        let mut blk = vec![0u8; b];
        let h = BlockHeader {
            format: StreamFormat::Raw.block_header_code(),
            block_len: b as u32,
            records: 1,
            seq: 1,
            offset: b as u64,
            first_ts_ns: 7_000_000_001,
            last_ts_ns: 7_000_000_001,
            drops: 0,
            flags: BH_FLAG_FINAL,
        };
        let mut at = write_raw_block_header(&mut blk, 0, &h).unwrap();
        at += write_raw(&mut blk, at, 7_000_000_001, 60, &[1; 60]).unwrap();
        write_raw_pad(&mut blk, at, b - at).unwrap();
        let info = check_block(&blk, &l, Some(b as u64)).unwrap();
        assert_eq!((info.header, info.packets), (Some(h), 1));
        // A wrong count in a final header is caught.
        let mut h2 = h;
        h2.records = 2;
        write_raw_block_header(&mut blk, 0, &h2).unwrap();
        assert_eq!(check_block(&blk, &l, None), Err(BlockError::HeaderMismatch));
        let items: Vec<_> = BlockIndex::new(&blk, l).collect();
        assert!(matches!(items[0], IndexItem::Block { at: 0, .. }));
        // Today's RAW blocks have no header and validate as well.
        let s = Stream::new(StreamFormat::Raw, 2 * b as u64, b as u64).unwrap();
        let frames: Vec<_> = (0..10).map(|i| frame(i, 100)).collect();
        let c = capture(s, 0, &frames);
        assert_eq!(packets(&s, &c).len(), 10);
    }
}
