// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Block layout of the stream: fixed-size blocks, records never straddling a
//! block, a header record opening each block, padding closing it.
//!
//! The stream is an endless sequence of bytes addressed by u64 offsets. It
//! is cut into blocks of `2^shift` bytes (64 KiB..256 MiB, default 4 MiB).
//! The ring buffer holds any whole number of blocks, so a block (and hence
//! every record) is contiguous in the buffer; offsets never wrap in practice
//! (2^64 bytes is 58 years at 10 GB/s) and buffer positions are `offset %
//! buffer_len`.
//!
//! Block rule: a block starts with a block header record (pcapng local block
//! [`BLOCK_HEADER_TYPE`], or in RAW mode optionally a padding record carrying
//! the same payload), then whole records, then padding up to the end. A
//! padding record needs 12 bytes, so the gap after any record is kept either
//! 0 or at least 12: a record that would leave 1..=11 bytes moves to the next
//! block. Together with pcapng records being multiples of 4, every block is a
//! complete sequence of pcapng blocks, so a file made of a file header and
//! any run of blocks is valid pcapng at every block boundary.
//!
//! [`BlockWriter`] is the single-threaded producer (driver fast path with one
//! writer, userspace simulator); [`Layout::place`] is the pure arithmetic
//! for producers that serialise reservation themselves. [`check_block`] and
//! [`BlockIndex`] validate, index and resynchronise stored streams.

use super::pcapng::{
    parse_block, write_block_header, write_pad_at, Block, BlockHeader, Endian, WriteError,
    BH_FLAG_FINAL, BH_FLAG_FLUSHED, BH_FORMAT_PCAPNG, BH_FORMAT_RAW, BLOCK_HEADER_LEN,
    BLOCK_HEADER_TYPE, MIN_BLOCK_LEN,
};
use super::raw::{
    parse_raw, write_raw_block_header, write_raw_pad, RawRecord, RAW_BLOCK_HEADER_LEN,
    RAW_HEADER_LEN,
};

/// log2 of the smallest block size (64 KiB).
pub const MIN_BLOCK_SHIFT: u32 = 16;
/// log2 of the largest block size (256 MiB).
pub const MAX_BLOCK_SHIFT: u32 = 28;
/// log2 of the default block size (4 MiB).
pub const DEFAULT_BLOCK_SHIFT: u32 = 22;
/// Smallest gap a padding record can fill (both formats).
pub const MIN_GAP: u64 = 12;

const _: () = assert!(MIN_BLOCK_LEN as u64 == MIN_GAP && RAW_HEADER_LEN as u64 == MIN_GAP);

/// Record format of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFormat {
    /// pcapng blocks (native): every record a multiple of 4 bytes.
    Pcapng,
    /// HPCAP RAW records. `block_headers` puts a header-carrying padding
    /// record at each block start; off by default for tools that predate
    /// hpcap-rs (they skip it, but some stop at the first padding).
    Raw {
        /// Whether each block starts with a block header record.
        block_headers: bool,
    },
}

impl StreamFormat {
    /// Length of the record that opens each block (0 if none).
    pub const fn header_len(self) -> u64 {
        match self {
            Self::Pcapng => BLOCK_HEADER_LEN as u64,
            Self::Raw {
                block_headers: true,
            } => RAW_BLOCK_HEADER_LEN as u64,
            Self::Raw {
                block_headers: false,
            } => 0,
        }
    }

    /// Every record length must be a multiple of this.
    pub const fn align(self) -> u64 {
        match self {
            Self::Pcapng => 4,
            Self::Raw { .. } => 1,
        }
    }

    /// [`BlockHeader::format`] code.
    pub const fn code(self) -> u16 {
        match self {
            Self::Pcapng => BH_FORMAT_PCAPNG,
            Self::Raw { .. } => BH_FORMAT_RAW,
        }
    }
}

/// Invalid geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// Block size not a power of two in 64 KiB..=256 MiB.
    BadBlockSize,
    /// Buffer size zero or not a multiple of the block size, or not
    /// addressable on this machine.
    BadBufferSize,
    /// A start offset that is not at a block boundary.
    Unaligned,
}

/// Why a record cannot be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// Length 0 or not a multiple of the format's alignment.
    BadLength,
    /// Longer than any block can hold after its header.
    TooLarge,
    /// It would pass the caller's limit (unread data of a blocking listener).
    NoSpace,
    /// The position breaks the block rule (a gap of 1..=11 bytes): a bug.
    BadPosition,
    /// The buffer refused a region, or a writer failed: a configuration bug.
    Buffer,
}

impl From<WriteError> for ReserveError {
    fn from(_: WriteError) -> Self {
        Self::Buffer
    }
}

/// Geometry of a stream and its ring buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    shift: u32,
    buffer_len: u64,
    format: StreamFormat,
}

/// Where one record goes: the arithmetic of a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Bytes of padding from the current position to close the current
    /// block (0: the record fits in it, or no block is open).
    pub pad_len: u64,
    /// Stream offset of a new block whose header must be written there,
    /// if the record opens one.
    pub opens_block: Option<u64>,
    /// Stream offset of the record.
    pub record: u64,
    /// Stream offset just past the record: the new position.
    pub end: u64,
}

impl Placement {
    /// Whether the record ends exactly at a block boundary, closing its block.
    pub fn fills_block(&self, layout: &Layout) -> bool {
        layout.offset_in_block(self.end) == 0
    }
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
        // remainder does too; checked_rem keeps a panic path out of the module.
        match off.checked_rem(self.buffer_len) {
            Some(i) => i as usize,
            None => 0,
        }
    }

    /// Whether a record of `len` bytes fits in a fresh block after the header
    /// without leaving a gap of 1..=11 bytes.
    pub const fn fits_fresh_block(&self, len: u64) -> bool {
        let room = self.block_len() - self.format.header_len();
        len == room || (len <= room && room - len >= MIN_GAP)
    }

    /// Largest record any block can hold.
    pub const fn max_record_len(&self) -> u64 {
        self.block_len() - self.format.header_len()
    }

    /// Where a record of `len` bytes goes when the stream ends at `pos`.
    pub const fn place(&self, pos: u64, len: u64) -> Result<Placement, ReserveError> {
        let align = self.format.align();
        if len == 0
            || super::arith::rem_u64(len, align) != 0
            || super::arith::rem_u64(pos, align) != 0
        {
            return Err(ReserveError::BadLength);
        }
        if !self.fits_fresh_block(len) {
            return Err(ReserveError::TooLarge);
        }
        let in_blk = self.offset_in_block(pos);
        let mut pad_len = 0;
        let mut start = pos;
        if in_blk != 0 {
            let rem = self.block_len() - in_blk;
            if rem < MIN_GAP {
                return Err(ReserveError::BadPosition);
            }
            if len == rem || (len < rem && rem - len >= MIN_GAP) {
                return match pos.checked_add(len) {
                    Some(end) => Ok(Placement {
                        pad_len: 0,
                        opens_block: None,
                        record: pos,
                        end,
                    }),
                    None => Err(ReserveError::NoSpace),
                };
            }
            pad_len = rem;
            start = match pos.checked_add(rem) {
                Some(s) => s,
                None => return Err(ReserveError::NoSpace),
            };
        }
        let record = match start.checked_add(self.format.header_len()) {
            Some(r) => r,
            None => return Err(ReserveError::NoSpace),
        };
        match record.checked_add(len) {
            Some(end) => Ok(Placement {
                pad_len,
                opens_block: Some(start),
                record,
                end,
            }),
            None => Err(ReserveError::NoSpace),
        }
    }
}

/// The ring buffer as the block writer sees it: a region never crosses the
/// buffer's end, because blocks do not.
pub trait StreamBuf {
    /// The `len` bytes at buffer index `index`, or `None` if out of range.
    fn region(&mut self, index: usize, len: usize) -> Option<&mut [u8]>;
}

impl StreamBuf for [u8] {
    fn region(&mut self, index: usize, len: usize) -> Option<&mut [u8]> {
        self.get_mut(index..index.checked_add(len)?)
    }
}

/// A reserved record: where the caller writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Stream offset.
    pub offset: u64,
    /// Index into the ring buffer.
    pub index: usize,
}

/// Single-threaded producer of a block-structured stream. Writes padding and
/// block headers itself; the caller writes each record into its [`Slot`]
/// (e.g. with `pcapng::write_epb_frame` plus one copy of the frame).
///
/// Block headers are written when a block opens (provisional: first
/// timestamp known, counts not) and rewritten when it closes, with
/// [`BH_FLAG_FINAL`]. A block closes when a record fills it exactly, when a
/// record moves on to the next block, or on [`BlockWriter::finish_block`].
/// All of this happens inside the call that reserves, so a caller that
/// publishes only after writing its record never exposes a block whose
/// header is not final.
#[derive(Debug, Clone)]
pub struct BlockWriter {
    layout: Layout,
    pos: u64,
    cur: BlockHeader,
    drops: u64,
}

impl BlockWriter {
    /// A writer whose stream starts (or resumes) at block boundary `start`.
    pub fn new(layout: Layout, start: u64) -> Result<Self, LayoutError> {
        if layout.offset_in_block(start) != 0 {
            return Err(LayoutError::Unaligned);
        }
        Ok(Self {
            layout,
            pos: start,
            cur: BlockHeader::default(),
            drops: 0,
        })
    }

    /// The geometry.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Stream offset of the end of the last reservation.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Counts `n` frames lost before reaching the stream; reported in the
    /// header of the block open when it closes (or the next one).
    pub fn note_drops(&mut self, n: u64) {
        self.drops = self.drops.saturating_add(n);
    }

    /// Header of the open block as it stands (provisional).
    pub fn current_header(&self) -> Option<&BlockHeader> {
        (self.layout.offset_in_block(self.pos) != 0).then_some(&self.cur)
    }

    fn write_header<B: StreamBuf + ?Sized>(
        &self,
        buf: &mut B,
        h: &BlockHeader,
    ) -> Result<(), ReserveError> {
        let hlen = self.layout.format.header_len();
        if hlen == 0 {
            return Ok(());
        }
        let r = buf
            .region(self.layout.buffer_index(h.offset), hlen as usize)
            .ok_or(ReserveError::Buffer)?;
        match self.layout.format {
            StreamFormat::Pcapng => write_block_header(r, 0, h)?,
            StreamFormat::Raw { .. } => write_raw_block_header(r, 0, h)?,
        };
        Ok(())
    }

    fn write_pad<B: StreamBuf + ?Sized>(
        &self,
        buf: &mut B,
        at: u64,
        len: u64,
    ) -> Result<(), ReserveError> {
        if len == 0 {
            return Ok(());
        }
        let len = usize::try_from(len).map_err(|_| ReserveError::Buffer)?;
        let r = buf
            .region(self.layout.buffer_index(at), len)
            .ok_or(ReserveError::Buffer)?;
        match self.layout.format {
            StreamFormat::Pcapng => write_pad_at(r, 0, len)?,
            StreamFormat::Raw { .. } => write_raw_pad(r, 0, len)?,
        };
        Ok(())
    }

    fn close<B: StreamBuf + ?Sized>(
        &mut self,
        buf: &mut B,
        flags: u32,
    ) -> Result<(), ReserveError> {
        self.cur.drops = self.drops;
        self.cur.flags |= BH_FLAG_FINAL | flags;
        let h = self.cur;
        self.write_header(buf, &h)?;
        self.drops = 0;
        Ok(())
    }

    /// Reserves `len` bytes for a record with timestamp `ts_ns`, writing any
    /// padding and block headers that come first. Nothing past stream offset
    /// `limit` is touched (pass `u64::MAX` for no limit); on error nothing
    /// changed.
    pub fn reserve<B: StreamBuf + ?Sized>(
        &mut self,
        buf: &mut B,
        len: usize,
        ts_ns: u64,
        limit: u64,
    ) -> Result<Slot, ReserveError> {
        let p = self.layout.place(self.pos, len as u64)?;
        if p.end > limit {
            return Err(ReserveError::NoSpace);
        }
        if p.pad_len != 0 {
            self.write_pad(buf, self.pos, p.pad_len)?;
            self.close(buf, 0)?;
        }
        if let Some(start) = p.opens_block {
            self.cur = BlockHeader {
                format: self.layout.format.code(),
                block_len: self.layout.block_len() as u32, // <= 2^28
                records: 0,
                seq: self.layout.block_seq(start),
                offset: start,
                first_ts_ns: ts_ns,
                last_ts_ns: ts_ns,
                drops: 0,
                flags: 0,
            };
            let h = self.cur;
            self.write_header(buf, &h)?;
        }
        self.cur.records = self.cur.records.saturating_add(1);
        self.cur.last_ts_ns = ts_ns;
        self.pos = p.end;
        if p.fills_block(&self.layout) {
            self.close(buf, 0)?;
        }
        Ok(Slot {
            offset: p.record,
            index: self.layout.buffer_index(p.record),
        })
    }

    /// Closes the open block early (flush, stop): pads it to its end and
    /// finalises its header with [`BH_FLAG_FLUSHED`]. Returns the new
    /// position, a block boundary. No-op when no block is open.
    pub fn finish_block<B: StreamBuf + ?Sized>(
        &mut self,
        buf: &mut B,
        limit: u64,
    ) -> Result<u64, ReserveError> {
        let in_blk = self.layout.offset_in_block(self.pos);
        if in_blk == 0 {
            return Ok(self.pos);
        }
        let rem = self.layout.block_len() - in_blk;
        let end = self.pos.checked_add(rem).ok_or(ReserveError::NoSpace)?;
        if end > limit {
            return Err(ReserveError::NoSpace);
        }
        if rem < MIN_GAP {
            return Err(ReserveError::BadPosition);
        }
        self.write_pad(buf, self.pos, rem)?;
        self.close(buf, BH_FLAG_FLUSHED)?;
        self.pos = end;
        Ok(end)
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
/// format, written little-endian by [`BlockWriter`]. With a final header, its
/// counts and timestamps must match the records; with `expect_offset`, the
/// header's stream offset must equal it.
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
    if fmt.header_len() != 0 {
        let h = header_at(data, 0, fmt).ok_or(BlockError::NoHeader)?;
        if u64::from(h.block_len) != layout.block_len()
            || h.format != fmt.code()
            || h.seq != layout.block_seq(h.offset)
            || layout.offset_in_block(h.offset) != 0
            || expect_offset.is_some_and(|o| o != h.offset)
        {
            return Err(BlockError::HeaderMismatch);
        }
        header = Some(h);
        pos = fmt.header_len() as usize;
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
            StreamFormat::Raw { .. } => match parse_raw(data, pos).map_err(|_| bad)? {
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

/// The block header record at `data[at..]` in format `fmt`, if valid.
pub fn header_at(data: &[u8], at: usize, fmt: StreamFormat) -> Option<BlockHeader> {
    match fmt {
        StreamFormat::Pcapng => match parse_block(data, at, Endian { big: false }) {
            Ok((Block::Header(h), _)) => Some(h),
            _ => None,
        },
        StreamFormat::Raw { .. } => match parse_raw(data, at) {
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
        StreamFormat::Raw {
            block_headers: true,
        } => [0; 4],
        StreamFormat::Raw {
            block_headers: false,
        } => return None,
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
/// Needs a format with block headers.
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

#[cfg(test)]
mod tests {
    extern crate std;
    use super::super::pcapng::{
        epb_len, write_epb, write_file_header, write_isb, Blocks, EpbOptions, InterfaceInfo,
        IsbInfo, FILE_HEADER_LEN,
    };
    use super::super::raw::{raw_len, write_raw};
    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::vec;
    use std::vec::Vec;

    const FORMATS: [StreamFormat; 3] = [
        StreamFormat::Pcapng,
        StreamFormat::Raw {
            block_headers: true,
        },
        StreamFormat::Raw {
            block_headers: false,
        },
    ];

    fn record_len(fmt: StreamFormat, frame: usize) -> usize {
        match fmt {
            StreamFormat::Pcapng => epb_len(frame, &EpbOptions::NONE),
            StreamFormat::Raw { .. } => raw_len(frame),
        }
    }

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
        assert_eq!(BlockWriter::new(l, 4).unwrap_err(), LayoutError::Unaligned);
        assert_eq!(l.place(0, 2), Err(ReserveError::BadLength));
        assert_eq!(l.place(2, 4), Err(ReserveError::BadLength));
        assert_eq!(l.place(0, 0), Err(ReserveError::BadLength));
        assert_eq!(l.place(0, 1 << 16), Err(ReserveError::TooLarge));
        // A record that would leave 4 or 8 bytes in a fresh block fits nowhere.
        assert_eq!(l.place(0, (1 << 16) - 76 - 8), Err(ReserveError::TooLarge));
        assert!(l.place(0, (1 << 16) - 76).is_ok());
        assert!(l.place(0, (1 << 16) - 76 - 12).is_ok());
        // A position 8 bytes before a block end breaks the rule.
        assert_eq!(l.place((1 << 16) - 8, 64), Err(ReserveError::BadPosition));
    }

    /// The block rule, for one placement.
    fn assert_rule(l: &Layout, pos: u64, len: u64, p: &Placement) {
        let b = l.block_len();
        let gap_ok = |g: u64| g == 0 || g >= MIN_GAP;
        assert_eq!(
            l.block_start(p.record),
            l.block_start(p.end - 1),
            "straddles"
        );
        assert!(
            gap_ok((b - l.offset_in_block(p.end)) & (b - 1)),
            "gap after record"
        );
        assert_eq!(p.end, p.record + len);
        if p.pad_len != 0 {
            assert!(p.pad_len >= MIN_GAP);
            assert_eq!(
                l.offset_in_block(pos + p.pad_len),
                0,
                "pad closes the block"
            );
        }
        match p.opens_block {
            Some(s) => {
                assert_eq!(s, pos + p.pad_len);
                assert_eq!(l.offset_in_block(s), 0);
                assert_eq!(p.record, s + l.format().header_len());
            }
            None => {
                assert_eq!((p.pad_len, p.record), (0, pos));
                assert_ne!(l.offset_in_block(pos), 0);
            }
        }
    }

    /// Every record size of frames 60..=9018, every block size, both formats,
    /// at every interesting position before a block's end.
    #[test]
    fn placement_every_size_every_block_size() {
        let mut checked = 0u64;
        for shift in MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT {
            for fmt in FORMATS {
                let b = 1u64 << shift;
                let l = Layout::new(b, 3 * b, fmt).unwrap();
                let base = (1u64 << 45) + 7 * b; // far beyond 2^32
                let a = fmt.align();
                let h = fmt.header_len();
                let mut last = 0;
                for frame in 60..=9018usize {
                    let len = record_len(fmt, frame) as u64;
                    if len == last {
                        continue;
                    }
                    last = len;
                    let mut at = [
                        0,
                        h,
                        h + a * 3,
                        b - 12,
                        b - 16,
                        b - 24,
                        b - len,
                        b - len - 12,
                    ]
                    .to_vec();
                    for d in (0..=24).step_by(a as usize) {
                        at.push(b - len - d);
                        at.push(b - len + d);
                    }
                    for in_blk in at {
                        let valid = in_blk < b
                            && in_blk % a == 0
                            && (in_blk == 0 || (in_blk >= h && b - in_blk >= MIN_GAP));
                        if !valid {
                            continue;
                        }
                        let pos = base + in_blk;
                        let p = l.place(pos, len).unwrap();
                        assert_rule(&l, pos, len, &p);
                        // Whatever follows still has a valid position.
                        l.place(p.end, len).unwrap();
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 1_000_000, "{checked}");
    }

    /// Streams frames through a real ring, validating every block as it
    /// completes and comparing each packet with what was written.
    fn stream(fmt: StreamFormat, shift: u32, start: u64, frames: &[usize]) -> u64 {
        let b = 1u64 << shift;
        let l = Layout::new(b, 3 * b, fmt).unwrap();
        let mut ring = vec![0u8; (3 * b) as usize];
        let mut w = BlockWriter::new(l, start).unwrap();
        let mut expect: VecDeque<(usize, u64, u8)> = VecDeque::new();
        let mut checked_to = start;
        let (mut drops_in, mut drops_out, mut blocks) = (0u64, 0u64, 0u64);
        let mut check_done = |ring: &[u8], upto: u64, expect: &mut VecDeque<(usize, u64, u8)>| {
            while checked_to + b <= upto {
                let i = l.buffer_index(checked_to);
                let blk = &ring[i..i + b as usize];
                let info = check_block(blk, &l, Some(checked_to)).unwrap();
                if let Some(h) = info.header {
                    assert_ne!(h.flags & BH_FLAG_FINAL, 0);
                    drops_out += h.drops;
                }
                let mut n = 0;
                let mut pkt = |data: &[u8], ts: u64| {
                    let (len, t, fill) = expect.pop_front().unwrap();
                    assert_eq!((data.len(), ts), (len, t));
                    assert!(data.iter().all(|x| *x == fill));
                    n += 1;
                };
                match fmt {
                    StreamFormat::Pcapng => {
                        for r in Blocks::new(blk) {
                            if let (_, Block::Epb(e)) = r.unwrap() {
                                pkt(e.data, e.ts);
                            }
                        }
                    }
                    StreamFormat::Raw { .. } => {
                        for r in super::super::raw::RawRecords::new(blk) {
                            if let (_, RawRecord::Packet(p)) = r.unwrap() {
                                pkt(p.data, p.ts_ns());
                            }
                        }
                    }
                }
                assert_eq!(n, info.packets);
                checked_to += b;
                blocks += 1;
            }
        };
        for (i, &f) in frames.iter().enumerate() {
            let ts = 1_700_000_000_000_000_000 + i as u64 * 1000;
            let fill = (i % 251) as u8;
            let len = record_len(fmt, f);
            if i % 97 == 5 {
                w.note_drops(2);
                drops_in += 2;
            }
            let s = w.reserve(&mut ring[..], len, ts, u64::MAX).unwrap();
            assert_eq!(s.index, l.buffer_index(s.offset));
            let r = &mut ring[s.index..s.index + len];
            let data = vec![fill; f];
            let n = match fmt {
                StreamFormat::Pcapng => write_epb(r, 0, 0, ts, f as u32, &data, &EpbOptions::NONE),
                StreamFormat::Raw { .. } => write_raw(r, 0, ts, f as u32, &data),
            };
            assert_eq!(n, Ok(len));
            expect.push_back((f, ts, fill));
            check_done(&ring, w.position(), &mut expect);
        }
        let end = w.finish_block(&mut ring[..], u64::MAX).unwrap();
        assert_eq!(l.offset_in_block(end), 0);
        check_done(&ring, end, &mut expect);
        assert!(expect.is_empty());
        if fmt.header_len() != 0 {
            assert_eq!(drops_in, drops_out);
        }
        blocks
    }

    #[test]
    fn every_frame_size_through_small_blocks() {
        let sizes: Vec<usize> = (60..=9018).collect();
        let mut rev = sizes.clone();
        rev.reverse();
        for fmt in FORMATS {
            // Starts below 2^32 and crosses it; the ring is 3 blocks (not a
            // power of two).
            assert!(stream(fmt, 16, (1 << 32) - (5 << 16), &sizes) > 500);
            assert!(stream(fmt, 17, (1 << 40) + (9 << 17), &rev) > 250);
        }
    }

    #[test]
    fn default_block_size_mixed_sizes() {
        let mut sizes = Vec::new();
        let mut x = 12345u32;
        for _ in 0..6000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            sizes.push([60, 64, 128, 512, 1514, 9018][(x >> 16) as usize % 6] + (x as usize % 3));
        }
        for fmt in FORMATS {
            assert!(stream(fmt, DEFAULT_BLOCK_SHIFT, 0, &sizes) >= 2);
        }
    }

    /// Remembers only the regions the writer asked for, so 256 MiB blocks
    /// cost nothing; records themselves are never written.
    #[derive(Default)]
    struct Sparse(HashMap<usize, Vec<u8>>);

    impl StreamBuf for Sparse {
        fn region(&mut self, index: usize, len: usize) -> Option<&mut [u8]> {
            let v = self.0.entry(index).or_default();
            v.resize(len, 0xCC);
            Some(&mut v[..])
        }
    }

    /// Sampled sizes through every block size up to 256 MiB: a filler record
    /// brings the stream close to the block end, then the sample crosses it.
    #[test]
    fn sampled_sizes_every_block_size() {
        let samples = [
            60usize, 61, 63, 64, 65, 127, 128, 1514, 1518, 4093, 9000, 9017, 9018,
        ];
        for shift in MIN_BLOCK_SHIFT..=MAX_BLOCK_SHIFT {
            let b = 1u64 << shift;
            for fmt in FORMATS {
                let l = Layout::new(b, 2 * b, fmt).unwrap();
                for &f in &samples {
                    let len = record_len(fmt, f) as u64;
                    for gap in [0u64, 4, 8, 12, 16, 20, 24, len - 4, len, len + 4, len + 12] {
                        let filler = b - fmt.header_len() - len - gap;
                        if !l.fits_fresh_block(filler) || filler % fmt.align() != 0 {
                            continue;
                        }
                        let mut buf = Sparse::default();
                        let mut w = BlockWriter::new(l, 0).unwrap();
                        w.reserve(&mut buf, filler as usize, 1, u64::MAX).unwrap();
                        let mut pos = w.position();
                        for k in 0..3 {
                            let s = w.reserve(&mut buf, len as usize, 2 + k, u64::MAX).unwrap();
                            let p = l.place(pos, len).unwrap();
                            assert_rule(&l, pos, len, &p);
                            assert_eq!(s.offset, p.record);
                            if p.pad_len != 0 {
                                let pad = &buf.0[&l.buffer_index(pos)];
                                assert_eq!(pad.len() as u64, p.pad_len);
                                if fmt == StreamFormat::Pcapng {
                                    assert!(
                                        matches!(parse_block(pad, 0, Endian::LE), Ok((Block::Pad, n)) if n == pad.len())
                                    );
                                } else {
                                    let n: usize = super::super::raw::RawRecords::new(pad)
                                        .map(|r| match r.unwrap().1 {
                                            RawRecord::Padding { len, .. } => len,
                                            RawRecord::Packet(_) => panic!("not padding"),
                                        })
                                        .sum();
                                    assert_eq!(n, pad.len());
                                }
                            }
                            if let Some(start) = p.opens_block {
                                if fmt.header_len() != 0 {
                                    let hb = &buf.0[&l.buffer_index(start)];
                                    let h = header_at(hb, 0, fmt).unwrap();
                                    assert_eq!(
                                        (h.offset, h.seq, u64::from(h.block_len)),
                                        (start, 1, b)
                                    );
                                    // Block 0 got its final header when it closed.
                                    let h0 = header_at(&buf.0[&0], 0, fmt).unwrap();
                                    assert_eq!(
                                        (h0.records, h0.flags & BH_FLAG_FINAL),
                                        (1 + k as u32, BH_FLAG_FINAL)
                                    );
                                }
                            }
                            pos = w.position();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn limit_is_respected_and_failure_changes_nothing() {
        let l = Layout::new(1 << 16, 2 << 16, StreamFormat::Pcapng).unwrap();
        let mut ring = vec![0u8; 2 << 16];
        let mut w = BlockWriter::new(l, 0).unwrap();
        assert_eq!(
            w.reserve(&mut ring[..], 100, 1, 100),
            Err(ReserveError::NoSpace)
        );
        assert_eq!(w.position(), 0);
        assert!(ring.iter().all(|x| *x == 0));
        let s = w.reserve(&mut ring[..], 100, 1, 176).unwrap();
        assert_eq!((s.offset, w.position()), (76, 176));
        assert_eq!(
            w.finish_block(&mut ring[..], 1000),
            Err(ReserveError::NoSpace)
        );
        assert_eq!(w.finish_block(&mut ring[..], 1 << 16), Ok(1 << 16));
        assert_eq!(
            w.finish_block(&mut ring[..], 0),
            Ok(1 << 16),
            "no open block: no-op"
        );
        let h = header_at(&ring, 0, StreamFormat::Pcapng).unwrap();
        assert_eq!(h.flags, BH_FLAG_FINAL | BH_FLAG_FLUSHED);
        assert_eq!(
            w.reserve(&mut ring[..], 1 << 16, 1, u64::MAX),
            Err(ReserveError::TooLarge)
        );
    }

    /// A file: header, blocks with an ISB and a garbage insertion; the index
    /// finds every block and resynchronises after the garbage.
    #[test]
    fn index_and_resync() {
        let b = 1usize << 16;
        let l = Layout::new(b as u64, 8 * b as u64, StreamFormat::Pcapng).unwrap();
        let mut ring = vec![0u8; 8 * b];
        let mut w = BlockWriter::new(l, 0).unwrap();
        let mut i = 0u64;
        while w.position() < 5 * b as u64 + 100 {
            let f = 60 + (i as usize * 37) % 1455;
            let s = w
                .reserve(&mut ring[..], epb_len(f, &EpbOptions::NONE), i, u64::MAX)
                .unwrap();
            write_epb(
                &mut ring,
                s.index,
                0,
                i,
                f as u32,
                &vec![1; f],
                &EpbOptions::NONE,
            )
            .unwrap();
            i += 1;
            if i == 50 {
                let isb = IsbInfo {
                    ts_ns: i,
                    ifrecv: Some(49),
                    ..IsbInfo::default()
                };
                let s = w
                    .reserve(&mut ring[..], isb_len_of(&isb), i, u64::MAX)
                    .unwrap();
                write_isb(&mut ring, s.index, &isb).unwrap();
            }
        }
        w.finish_block(&mut ring[..], u64::MAX).unwrap();
        let mut file = vec![0u8; FILE_HEADER_LEN];
        let info = InterfaceInfo {
            snaplen: 0,
            name: "x",
            description: "y",
        };
        write_file_header(&mut file, &info).unwrap();
        file.extend_from_slice(&ring[..2 * b]);
        file.extend_from_slice(&[0x0A, 0x0D, 0x0D, 0x0A, 1, 2, 3]); // garbage, odd length
        file.extend_from_slice(&ring[2 * b..6 * b]);
        let corrupt = file.len() - 2 * b + 80; // first record's length
        file[corrupt] ^= 0xFF;
        file.extend_from_slice(&ring[..100]); // a torn block at the end
        let items: Vec<_> = BlockIndex::new(&file, l).collect();
        assert_eq!(
            items[0],
            IndexItem::Skipped {
                at: 0,
                len: FILE_HEADER_LEN
            }
        );
        let mut blocks = 0;
        let mut bad = 0;
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

    fn isb_len_of(i: &IsbInfo) -> usize {
        super::super::pcapng::isb_len(i)
    }
}
