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
        // buffer_len fits usize (checked in new), so the remainder does too.
        (off % self.buffer_len) as usize
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
        if len == 0 || !len.is_multiple_of(align) || !pos.is_multiple_of(align) {
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
        let record = start + self.format.header_len();
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
