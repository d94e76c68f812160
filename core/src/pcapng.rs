// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! pcapng blocks of the native stream format: writers and a typed reader.
//!
//! A pcapng block is `{type: u32, total_length: u32, body (padded to 4),
//! total_length: u32}`. hpcap always writes little-endian (the SHB's
//! byte-order magic tells readers so, whatever the host); the reader accepts
//! both byte orders, as a section may come from any tool.
//!
//! The writers are meant for the kernel's per-packet path: they write into a
//! caller's `&mut [u8]` at an offset, never allocate, and report the number
//! of bytes written. [`write_epb_plain`] writes everything of an Enhanced
//! Packet Block except the frame, so the driver copies each frame exactly
//! once, straight from the DMA buffer into the stream.

/// Section Header Block type.
pub const SHB_TYPE: u32 = 0x0A0D_0D0A;
/// Byte-order magic inside the SHB.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Interface Description Block type.
pub const IDB_TYPE: u32 = 0x0000_0001;
#[cfg_attr(hpcap_kernel, allow(dead_code))]
/// Simple Packet Block type.
pub const SPB_TYPE: u32 = 0x0000_0003;
#[cfg_attr(hpcap_kernel, allow(dead_code))]
/// Interface Statistics Block type.
pub const ISB_TYPE: u32 = 0x0000_0005;
/// Enhanced Packet Block type.
pub const EPB_TYPE: u32 = 0x0000_0006;
/// Local-use block hpcap uses to pad a block's tail; standard readers skip
/// blocks whose type has the top bit set.
pub const PAD_TYPE: u32 = 0x8000_0001;
/// Local-use block that opens every stream block (see [`BlockHeader`]).
pub const BLOCK_HEADER_TYPE: u32 = 0x8000_0002;

/// Ethernet link type.
pub const LINKTYPE_ETHERNET: u16 = 1;

#[cfg_attr(hpcap_kernel, allow(dead_code))]
/// Option codes (pcapng spec, section 3.5 and the per-block option lists).
pub mod opt {
    /// End of options.
    pub const END: u16 = 0;
    /// `shb_hardware`: hardware of the capturing machine (SHB).
    pub const SHB_HARDWARE: u16 = 2;
    /// `shb_os`: operating system of the capturing machine (SHB).
    pub const SHB_OS: u16 = 3;
    /// `shb_userappl`: application that wrote the section (SHB).
    pub const SHB_USERAPPL: u16 = 4;
    /// Interface name (IDB).
    pub const IF_NAME: u16 = 2;
    /// Interface description (IDB).
    pub const IF_DESCRIPTION: u16 = 3;
    /// Timestamp resolution (IDB): value 9 = nanoseconds.
    pub const IF_TSRESOL: u16 = 9;
    /// `if_hardware`: NIC model / driver (IDB).
    pub const IF_HARDWARE: u16 = 15;
    /// `epb_flags`: direction, reception type, FCS length, link errors (EPB).
    pub const EPB_FLAGS: u16 = 2;
    /// `epb_dropcount`: frames lost between this packet and the previous one (EPB).
    pub const EPB_DROPCOUNT: u16 = 4;
    /// `epb_queue`: receive queue the frame came from (EPB).
    pub const EPB_QUEUE: u16 = 6;
    /// `isb_starttime` (ISB), a timestamp in EPB format.
    pub const ISB_STARTTIME: u16 = 2;
    /// `isb_endtime` (ISB), a timestamp in EPB format.
    pub const ISB_ENDTIME: u16 = 3;
    /// `isb_ifrecv`: frames received by the interface (ISB).
    pub const ISB_IFRECV: u16 = 4;
    /// `isb_ifdrop`: frames the interface dropped (ISB).
    pub const ISB_IFDROP: u16 = 5;
    /// `isb_filteraccept`: frames the filter accepted (ISB).
    pub const ISB_FILTERACCEPT: u16 = 6;
    /// `isb_osdrop`: frames the capture software dropped (ISB).
    pub const ISB_OSDROP: u16 = 7;
    /// `isb_usrdeliv`: frames delivered to the user (ISB).
    pub const ISB_USRDELIV: u16 = 8;
}

/// Smallest possible block: type, length, trailing length.
pub const MIN_BLOCK_LEN: usize = 12;

/// Size of the file header every hpcap file starts with (SHB + IDB + padding).
pub const FILE_HEADER_LEN: usize = 4096;

/// Bytes of an EPB before the frame: type, length, interface, ts hi/lo,
/// caplen, origlen. The frame goes at this offset from the block's start.
pub const EPB_DATA_OFFSET: usize = 28;

/// Length of the [`BlockHeader`] record (a [`BLOCK_HEADER_TYPE`] block).
pub const BLOCK_HEADER_LEN: usize = MIN_BLOCK_LEN + BLOCK_HEADER_BODY_LEN;

/// Length of the encoded [`BlockHeader`] payload, shared with the RAW format.
pub const BLOCK_HEADER_BODY_LEN: usize = 64;

/// `"HPBH"` in stream order: tells a block header payload from random bytes
/// when resynchronising.
pub const BLOCK_HEADER_MAGIC: u32 = u32::from_le_bytes(*b"HPBH");

/// Version of the [`BlockHeader`] payload layout.
pub const BLOCK_HEADER_VERSION: u16 = 1;

/// Errors of the writers in this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The destination is too small for what must be written.
    NoSpace,
    /// A string option is longer than a pcapng option can hold.
    OptionTooLong,
    /// A length or field value the format cannot represent.
    BadValue,
}

/// Rounds `n` up to a multiple of 4.
#[inline]
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes little-endian fields into a byte slice.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over exactly `len` bytes of `buf` at `at`, so that a block
    /// either fits completely or nothing is written.
    fn region(buf: &'a mut [u8], at: usize, len: usize) -> Result<Self, WriteError> {
        let end = at.checked_add(len).ok_or(WriteError::NoSpace)?;
        let buf = buf.get_mut(at..end).ok_or(WriteError::NoSpace)?;
        Ok(Self { buf, pos: 0 })
    }

    fn bytes(&mut self, b: &[u8]) -> Result<(), WriteError> {
        let end = self.pos.checked_add(b.len()).ok_or(WriteError::NoSpace)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WriteError::NoSpace)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }

    fn zeros(&mut self, n: usize) -> Result<(), WriteError> {
        let end = self.pos.checked_add(n).ok_or(WriteError::NoSpace)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(WriteError::NoSpace)?
            .fill(0);
        self.pos = end;
        Ok(())
    }

    #[cfg(not(hpcap_kernel))]
    fn skip(&mut self, n: usize) -> Result<(), WriteError> {
        let end = self.pos.checked_add(n).ok_or(WriteError::NoSpace)?;
        if end > self.buf.len() {
            return Err(WriteError::NoSpace);
        }
        self.pos = end;
        Ok(())
    }

    fn u16(&mut self, v: u16) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    #[cfg(not(hpcap_kernel))]
    /// A pcapng timestamp: high word first, each word in section order.
    fn ts(&mut self, v: u64) -> Result<(), WriteError> {
        self.u32((v >> 32) as u32)?;
        self.u32(v as u32)
    }

    /// One option: code, length, value padded to 4.
    fn option(&mut self, code: u16, value: &[u8]) -> Result<(), WriteError> {
        let len = u16::try_from(value.len()).map_err(|_| WriteError::OptionTooLong)?;
        self.u16(code)?;
        self.u16(len)?;
        self.bytes(value)?;
        self.zeros(pad4(value.len()) - value.len())
    }

    /// A string option, left out when empty (an empty option says nothing).
    fn str_option(&mut self, code: u16, value: &str) -> Result<(), WriteError> {
        if value.is_empty() {
            Ok(())
        } else {
            self.option(code, value.as_bytes())
        }
    }
}

/// Encoded size of a string option (0 when the string is empty and left out).
const fn str_opt_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        4 + pad4(s.len())
    }
}

fn len32(n: usize) -> Result<u32, WriteError> {
    u32::try_from(n).map_err(|_| WriteError::BadValue)
}

// ---------------------------------------------------------------------------
// Section Header Block

/// What the Section Header Block says about the capturing machine.
/// Empty strings are left out.
#[derive(Debug, Clone, Copy, Default)]
pub struct SectionInfo<'a> {
    /// `shb_hardware`, e.g. the CPU model.
    pub hardware: &'a str,
    /// `shb_os`, e.g. `Linux 7.3.4`.
    pub os: &'a str,
    /// `shb_userappl`, e.g. `hpcap-rs 0.1.0`.
    pub userappl: &'a str,
}

impl SectionInfo<'_> {
    /// A section that says nothing about its origin.
    pub const EMPTY: SectionInfo<'static> = SectionInfo {
        hardware: "",
        os: "",
        userappl: "",
    };
}

/// Exact length of the SHB [`write_shb_with`] writes for `info`.
pub const fn shb_len(info: &SectionInfo<'_>) -> usize {
    let opts = str_opt_len(info.hardware) + str_opt_len(info.os) + str_opt_len(info.userappl);
    28 + if opts == 0 { 0 } else { opts + 4 }
}

#[cfg(not(hpcap_kernel))]
/// Writes a Section Header Block (unknown section length) at the start of `buf`
/// and returns its length.
pub fn write_shb(buf: &mut [u8]) -> Result<usize, WriteError> {
    write_shb_with(buf, 0, &SectionInfo::EMPTY)
}

/// Writes a Section Header Block with `info`'s options at `buf[at..]` and
/// returns its length.
pub fn write_shb_with(
    buf: &mut [u8],
    at: usize,
    info: &SectionInfo<'_>,
) -> Result<usize, WriteError> {
    let total = shb_len(info);
    let total32 = len32(total)?;
    let mut c = Cursor::region(buf, at, total)?;
    c.u32(SHB_TYPE)?;
    c.u32(total32)?;
    c.u32(BYTE_ORDER_MAGIC)?;
    c.u16(1)?; // major version
    c.u16(0)?; // minor version
    c.u64(u64::MAX)?; // section length: unknown, the stream is open-ended
    if total > 28 {
        c.str_option(opt::SHB_HARDWARE, info.hardware)?;
        c.str_option(opt::SHB_OS, info.os)?;
        c.str_option(opt::SHB_USERAPPL, info.userappl)?;
        c.option(opt::END, &[])?;
    }
    c.u32(total32)?;
    Ok(c.pos)
}

// ---------------------------------------------------------------------------
// Interface Description Block

/// What the Interface Description Block says about the captured port.
#[derive(Debug, Clone, Copy)]
pub struct InterfaceInfo<'a> {
    /// Snapshot length (0 = unlimited).
    pub snaplen: u32,
    /// `if_name`, e.g. `hpcap0`.
    pub name: &'a str,
    /// `if_description`, e.g. the PCI address and NIC model.
    pub description: &'a str,
}

/// Exact length of the IDB [`write_idb_with`] writes.
pub const fn idb_len(info: &InterfaceInfo<'_>, hardware: &str) -> usize {
    20 + 8 // fixed part + if_tsresol (1 byte padded to 4)
        + str_opt_len(info.name)
        + str_opt_len(info.description)
        + str_opt_len(hardware)
        + 4 // opt_endofopt
}

#[cfg(not(hpcap_kernel))]
/// Writes an Ethernet Interface Description Block with nanosecond timestamps
/// at the start of `buf` and returns its length.
pub fn write_idb(buf: &mut [u8], info: &InterfaceInfo<'_>) -> Result<usize, WriteError> {
    write_idb_with(buf, 0, info, "")
}

/// Like [`write_idb`], at `buf[at..]`, with an `if_hardware` string (left
/// out when empty).
pub fn write_idb_with(
    buf: &mut [u8],
    at: usize,
    info: &InterfaceInfo<'_>,
    hardware: &str,
) -> Result<usize, WriteError> {
    let total = idb_len(info, hardware);
    let total32 = len32(total)?;
    let mut c = Cursor::region(buf, at, total)?;
    c.u32(IDB_TYPE)?;
    c.u32(total32)?;
    c.u16(LINKTYPE_ETHERNET)?;
    c.u16(0)?; // reserved
    c.u32(info.snaplen)?;
    c.option(opt::IF_TSRESOL, &[9])?;
    c.str_option(opt::IF_NAME, info.name)?;
    c.str_option(opt::IF_DESCRIPTION, info.description)?;
    c.str_option(opt::IF_HARDWARE, hardware)?;
    c.option(opt::END, &[])?;
    c.u32(total32)?;
    Ok(c.pos)
}

// ---------------------------------------------------------------------------
// Padding and the file header

#[cfg(not(hpcap_kernel))]
/// Fills all of `buf` with one local-use padding block. `buf.len()` must be a
/// multiple of 4 and at least [`MIN_BLOCK_LEN`].
pub fn write_pad(buf: &mut [u8]) -> Result<(), WriteError> {
    let len = buf.len();
    write_pad_at(buf, 0, len).map(|_| ())
}

/// Writes a local-use padding block of exactly `len` bytes at `buf[at..]`.
/// `len` must be a multiple of 4 and at least [`MIN_BLOCK_LEN`]. The body is
/// zeroed: readers skip it, but stale bytes from an earlier lap of the ring
/// would otherwise end up in files (and make them non-reproducible).
pub fn write_pad_at(buf: &mut [u8], at: usize, len: usize) -> Result<usize, WriteError> {
    if len < MIN_BLOCK_LEN || len % 4 != 0 {
        return Err(WriteError::BadValue);
    }
    let len32 = len32(len)?;
    let mut c = Cursor::region(buf, at, len)?;
    c.u32(PAD_TYPE)?;
    c.u32(len32)?;
    c.zeros(len - MIN_BLOCK_LEN)?;
    c.u32(len32)?;
    Ok(len)
}

/// Writes the [`FILE_HEADER_LEN`]-byte header every hpcap file starts with:
/// SHB, IDB, then a padding block up to the end.
pub fn write_file_header(buf: &mut [u8], info: &InterfaceInfo<'_>) -> Result<usize, WriteError> {
    write_file_header_with(buf, &SectionInfo::EMPTY, info, "")
}

/// [`write_file_header`] with SHB strings and an `if_hardware` string.
pub fn write_file_header_with(
    buf: &mut [u8],
    section: &SectionInfo<'_>,
    info: &InterfaceInfo<'_>,
    hardware: &str,
) -> Result<usize, WriteError> {
    let buf = buf.get_mut(..FILE_HEADER_LEN).ok_or(WriteError::NoSpace)?;
    let shb = write_shb_with(buf, 0, section)?;
    let idb = write_idb_with(buf, shb, info, hardware)?;
    let used = shb + idb;
    if FILE_HEADER_LEN - used < MIN_BLOCK_LEN {
        return Err(WriteError::OptionTooLong);
    }
    write_pad_at(buf, used, FILE_HEADER_LEN - used)?;
    Ok(FILE_HEADER_LEN)
}

// ---------------------------------------------------------------------------
// Enhanced Packet Block

/// Optional EPB options. Each one present costs its encoded size (see
/// [`EpbOptions::len`]); none present costs nothing (no end-of-options).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpbOptions {
    /// `epb_flags`.
    pub flags: Option<u32>,
    /// `epb_dropcount`.
    pub dropcount: Option<u64>,
    /// `epb_queue`.
    pub queue: Option<u32>,
}

impl EpbOptions {
    /// No options: the smallest, fastest EPB.
    pub const NONE: Self = Self {
        flags: None,
        dropcount: None,
        queue: None,
    };

    /// Encoded size of these options, including the end-of-options marker.
    #[inline]
    pub const fn len(&self) -> usize {
        let mut n = 0;
        if self.flags.is_some() {
            n += 8;
        }
        if self.dropcount.is_some() {
            n += 12;
        }
        if self.queue.is_some() {
            n += 8;
        }
        if n == 0 {
            0
        } else {
            n + 4
        }
    }

    /// Whether no option is present.
    #[cfg(not(hpcap_kernel))]
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fixed fields of an Enhanced Packet Block.
#[cfg(not(hpcap_kernel))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpbHeader {
    /// Interface id (index of the IDB in the section).
    pub interface: u32,
    /// Timestamp in nanoseconds since the Unix epoch (`if_tsresol` = 9).
    pub ts_ns: u64,
    /// Captured length: bytes of frame stored.
    pub caplen: u32,
    /// Length of the frame on the wire.
    pub orig_len: u32,
}

/// Exact total length of an EPB with `caplen` frame bytes and `opts`.
#[inline]
pub const fn epb_len(caplen: usize, opts: &EpbOptions) -> usize {
    32 + pad4(caplen) + opts.len()
}

/// The capture hot path's EPB: interface 0, no options, written at the
/// start of `rec` except for the frame bytes, which the caller copies to
/// `rec[EPB_DATA_OFFSET..][..caplen]` afterwards (not before: the frame's
/// last word is zeroed here, whole, so that the padding after the frame is
/// zero without a variable-length fill). One bounds check, whole words.
/// Returns the block's length, `epb_len(caplen, &EpbOptions::NONE)`.
#[inline]
pub fn write_epb_plain(
    rec: &mut [u8],
    ts_ns: u64,
    caplen: u32,
    orig_len: u32,
) -> Result<usize, WriteError> {
    let data_end = EPB_DATA_OFFSET + pad4(caplen as usize);
    let total = data_end + 4;
    // The same length as `epb_len(caplen, &EpbOptions::NONE)`.
    let total32 = len32(total)?;
    if rec.len() < total {
        return Err(WriteError::NoSpace);
    }
    let (head, _) = rec
        .split_first_chunk_mut::<EPB_DATA_OFFSET>()
        .ok_or(WriteError::NoSpace)?;
    let words = [
        EPB_TYPE,
        total32,
        0,
        (ts_ns >> 32) as u32,
        ts_ns as u32,
        caplen,
        orig_len,
    ];
    for (k, w) in words.into_iter().enumerate() {
        head[k * 4..k * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    if caplen % 4 != 0 {
        if let Some(w) = rec.get_mut(data_end - 4..data_end) {
            w.copy_from_slice(&[0; 4]);
        }
    }
    if let Some(t) = rec.get_mut(data_end..total) {
        t.copy_from_slice(&total32.to_le_bytes());
    }
    Ok(total)
}

/// Writes an EPB at `buf[at..]` except for the frame bytes, which the caller
/// copies to `buf[at + EPB_DATA_OFFSET ..][..hdr.caplen]` afterwards (not
/// before: the up to 3 padding bytes after the frame are zeroed here, and
/// without options that may clear the frame's last bytes too). Returns the block's
/// total length, [`epb_len`]`(hdr.caplen, opts)`. Nothing is written when
/// the block does not fit. (The capture path uses [`write_epb_plain`].)
#[cfg(not(hpcap_kernel))]
pub fn write_epb_frame(
    buf: &mut [u8],
    at: usize,
    hdr: &EpbHeader,
    opts: &EpbOptions,
) -> Result<usize, WriteError> {
    let caplen = hdr.caplen as usize;
    let total = epb_len(caplen, opts);
    let total32 = len32(total)?;
    let end = at.checked_add(total).ok_or(WriteError::NoSpace)?;
    let region = buf.get_mut(at..end).ok_or(WriteError::NoSpace)?;
    let words = [
        EPB_TYPE,
        total32,
        hdr.interface,
        (hdr.ts_ns >> 32) as u32,
        hdr.ts_ns as u32,
        hdr.caplen,
        hdr.orig_len,
    ];
    for (d, w) in region.chunks_exact_mut(4).zip(words) {
        d.copy_from_slice(&w.to_le_bytes());
    }
    if opts.is_empty() {
        // The per-packet hot path: one bounds check above, whole words
        // below. The frame's last word is zeroed whole (one store instead
        // of a variable-length fill): the frame bytes the caller copies
        // afterwards overwrite its front, the padding stays zero.
        let data_end = EPB_DATA_OFFSET + pad4(caplen);
        if caplen % 4 != 0 {
            if let Some(w) = region.get_mut(data_end - 4..data_end) {
                w.copy_from_slice(&[0; 4]);
            }
        }
        if let Some(t) = region.get_mut(data_end..) {
            t.copy_from_slice(&total32.to_le_bytes());
        }
        return Ok(total);
    }
    let rest = region
        .get_mut(EPB_DATA_OFFSET..)
        .ok_or(WriteError::NoSpace)?;
    let mut c = Cursor { buf: rest, pos: 0 };
    c.skip(caplen)?;
    c.zeros(pad4(caplen) - caplen)?;
    if !opts.is_empty() {
        if let Some(f) = opts.flags {
            c.option(opt::EPB_FLAGS, &f.to_le_bytes())?;
        }
        if let Some(d) = opts.dropcount {
            c.option(opt::EPB_DROPCOUNT, &d.to_le_bytes())?;
        }
        if let Some(q) = opts.queue {
            c.option(opt::EPB_QUEUE, &q.to_le_bytes())?;
        }
        c.option(opt::END, &[])?;
    }
    c.u32(total32)?;
    Ok(total)
}

#[cfg(not(hpcap_kernel))]
/// Writes a complete EPB holding `data` (caplen = `data.len()`) at `buf[at..]`
/// and returns its length. `orig_len` below `data.len()` is raised to it.
pub fn write_epb(
    buf: &mut [u8],
    at: usize,
    interface: u32,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
    opts: &EpbOptions,
) -> Result<usize, WriteError> {
    let caplen = u32::try_from(data.len()).map_err(|_| WriteError::BadValue)?;
    let hdr = EpbHeader {
        interface,
        ts_ns,
        caplen,
        orig_len: orig_len.max(caplen),
    };
    let n = write_epb_frame(buf, at, &hdr, opts)?;
    let start = at + EPB_DATA_OFFSET; // cannot overflow: write_epb_frame checked at + n
    buf.get_mut(start..start + data.len())
        .ok_or(WriteError::NoSpace)?
        .copy_from_slice(data);
    Ok(n)
}

// ---------------------------------------------------------------------------
// Interface Statistics Block

#[cfg(not(hpcap_kernel))]
/// Contents of an Interface Statistics Block; absent counters are left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IsbInfo {
    /// Interface id.
    pub interface: u32,
    /// When these statistics were taken, ns since the Unix epoch.
    pub ts_ns: u64,
    /// `isb_starttime` (ns).
    pub start_ns: Option<u64>,
    /// `isb_endtime` (ns).
    pub end_ns: Option<u64>,
    /// `isb_ifrecv`.
    pub ifrecv: Option<u64>,
    /// `isb_ifdrop`.
    pub ifdrop: Option<u64>,
    /// `isb_filteraccept`.
    pub filteraccept: Option<u64>,
    /// `isb_osdrop`.
    pub osdrop: Option<u64>,
    /// `isb_usrdeliv`.
    pub usrdeliv: Option<u64>,
}

#[cfg(not(hpcap_kernel))]
impl IsbInfo {
    fn counters(&self) -> [(u16, Option<u64>); 7] {
        [
            (opt::ISB_STARTTIME, self.start_ns),
            (opt::ISB_ENDTIME, self.end_ns),
            (opt::ISB_IFRECV, self.ifrecv),
            (opt::ISB_IFDROP, self.ifdrop),
            (opt::ISB_FILTERACCEPT, self.filteraccept),
            (opt::ISB_OSDROP, self.osdrop),
            (opt::ISB_USRDELIV, self.usrdeliv),
        ]
    }
}

#[cfg(not(hpcap_kernel))]
/// Exact length of the ISB [`write_isb`] writes for `info`.
pub fn isb_len(info: &IsbInfo) -> usize {
    let n = info.counters().iter().filter(|(_, v)| v.is_some()).count();
    24 + if n == 0 { 0 } else { n * 12 + 4 }
}

#[cfg(not(hpcap_kernel))]
/// Writes an Interface Statistics Block at `buf[at..]`, returns its length.
pub fn write_isb(buf: &mut [u8], at: usize, info: &IsbInfo) -> Result<usize, WriteError> {
    let total = isb_len(info);
    let total32 = len32(total)?;
    let mut c = Cursor::region(buf, at, total)?;
    c.u32(ISB_TYPE)?;
    c.u32(total32)?;
    c.u32(info.interface)?;
    c.ts(info.ts_ns)?;
    if total > 24 {
        for (code, v) in info.counters() {
            let Some(v) = v else { continue };
            c.u16(code)?;
            c.u16(8)?;
            if code == opt::ISB_STARTTIME || code == opt::ISB_ENDTIME {
                c.ts(v)?;
            } else {
                c.u64(v)?;
            }
        }
        c.option(opt::END, &[])?;
    }
    c.u32(total32)?;
    Ok(c.pos)
}

// ---------------------------------------------------------------------------
// Block header record

#[cfg_attr(hpcap_kernel, allow(dead_code))]
/// [`BlockHeader::flags`]: the header is final (written when the block was
/// closed); an open block's counts and last timestamp are provisional.
pub const BH_FLAG_FINAL: u32 = 1 << 0;
#[cfg_attr(hpcap_kernel, allow(dead_code))]
/// [`BlockHeader::flags`]: the block was closed early (flush or stop), so its
/// tail is padding rather than a record that did not fit.
pub const BH_FLAG_FLUSHED: u32 = 1 << 1;

/// [`BlockHeader::format`]: the block holds pcapng blocks.
pub const BH_FORMAT_PCAPNG: u16 = 0;
/// [`BlockHeader::format`]: the block holds HPCAP RAW records.
pub const BH_FORMAT_RAW: u16 = 1;

/// The record at the start of every stream block, for indexing and
/// resynchronisation. Standard tools skip it (local-use type).
///
/// Payload layout ([`BLOCK_HEADER_BODY_LEN`] bytes, section byte order):
/// `magic u32 "HPBH", version u16, format u16, block_len u32, records u32,
/// seq u64, offset u64, first_ts u64, last_ts u64, drops u64, flags u32,
/// check u32` where `check` is FNV-1a over the 60 bytes before it, so a
/// resync scan can tell a real header from packet bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockHeader {
    /// Format of the records in the block ([`BH_FORMAT_PCAPNG`], [`BH_FORMAT_RAW`]).
    pub format: u16,
    /// Size of the stream block in bytes.
    pub block_len: u32,
    /// Records in the block, not counting this header and padding.
    pub records: u32,
    /// Block sequence number: the stream offset divided by the block size.
    pub seq: u64,
    /// Stream offset of the block's first byte.
    pub offset: u64,
    /// Timestamp of the first record (ns), 0 if none.
    pub first_ts_ns: u64,
    /// Timestamp of the last record (ns), 0 if none.
    pub last_ts_ns: u64,
    /// Frames dropped since the previous block was closed.
    pub drops: u64,
    /// `BH_FLAG_*` bits.
    pub flags: u32,
}

fn fnv1a32(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

impl BlockHeader {
    /// Encodes the payload (little-endian) into `out`.
    pub fn encode(&self, out: &mut [u8; BLOCK_HEADER_BODY_LEN]) {
        let mut f = [0u8; BLOCK_HEADER_BODY_LEN];
        f[0..4].copy_from_slice(&BLOCK_HEADER_MAGIC.to_le_bytes());
        f[4..6].copy_from_slice(&BLOCK_HEADER_VERSION.to_le_bytes());
        f[6..8].copy_from_slice(&self.format.to_le_bytes());
        f[8..12].copy_from_slice(&self.block_len.to_le_bytes());
        f[12..16].copy_from_slice(&self.records.to_le_bytes());
        f[16..24].copy_from_slice(&self.seq.to_le_bytes());
        f[24..32].copy_from_slice(&self.offset.to_le_bytes());
        f[32..40].copy_from_slice(&self.first_ts_ns.to_le_bytes());
        f[40..48].copy_from_slice(&self.last_ts_ns.to_le_bytes());
        f[48..56].copy_from_slice(&self.drops.to_le_bytes());
        f[56..60].copy_from_slice(&self.flags.to_le_bytes());
        let check = fnv1a32(&f[..60]);
        f[60..64].copy_from_slice(&check.to_le_bytes());
        *out = f;
    }

    /// Decodes a payload in the given byte order; `None` unless magic,
    /// version and check all match.
    #[cfg(not(hpcap_kernel))]
    pub fn decode(body: &[u8], big_endian: bool) -> Option<Self> {
        let e = Endian { big: big_endian };
        let body = body.get(..BLOCK_HEADER_BODY_LEN)?;
        if e.u32(body, 0)? != BLOCK_HEADER_MAGIC || e.u16(body, 4)? != BLOCK_HEADER_VERSION {
            return None;
        }
        if e.u32(body, 60)? != fnv1a32(body.get(..60)?) {
            return None;
        }
        Some(Self {
            format: e.u16(body, 6)?,
            block_len: e.u32(body, 8)?,
            records: e.u32(body, 12)?,
            seq: e.u64(body, 16)?,
            offset: e.u64(body, 24)?,
            first_ts_ns: e.u64(body, 32)?,
            last_ts_ns: e.u64(body, 40)?,
            drops: e.u64(body, 48)?,
            flags: e.u32(body, 56)?,
        })
    }
}

/// Writes a block header record ([`BLOCK_HEADER_LEN`] bytes) at `buf[at..]`.
pub fn write_block_header(buf: &mut [u8], at: usize, h: &BlockHeader) -> Result<usize, WriteError> {
    let mut body = [0u8; BLOCK_HEADER_BODY_LEN];
    h.encode(&mut body);
    let mut c = Cursor::region(buf, at, BLOCK_HEADER_LEN)?;
    c.u32(BLOCK_HEADER_TYPE)?;
    c.u32(BLOCK_HEADER_LEN as u32)?;
    c.bytes(&body)?;
    c.u32(BLOCK_HEADER_LEN as u32)?;
    Ok(c.pos)
}

#[cfg(not(hpcap_kernel))]
mod read;
#[cfg(not(hpcap_kernel))]
pub use read::*;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    fn one(buf: &[u8]) -> (Block<'_>, usize) {
        parse_block(buf, 0, Endian::LE).unwrap()
    }

    #[test]
    fn shb_roundtrip_with_and_without_options() {
        let mut buf = [0xEEu8; 256];
        assert_eq!(write_shb(&mut buf).unwrap(), 28);
        let (Block::Shb(s), 28) = one(&buf) else {
            panic!()
        };
        assert_eq!((s.major, s.minor, s.section_len), (1, 0, u64::MAX));
        assert_eq!(s.userappl(), None);
        let info = SectionInfo {
            hardware: "x86_64",
            os: "Linux 7.3",
            userappl: "hpcap-rs",
        };
        let n = write_shb_with(&mut buf, 4, &info).unwrap();
        assert_eq!(n, shb_len(&info));
        let (Block::Shb(s), m) = parse_block(&buf, 4, Endian::BE).unwrap() else {
            panic!()
        };
        assert_eq!(m, n);
        assert!(!s.endian.big);
        assert_eq!(s.hardware(), Some(&b"x86_64"[..]));
        assert_eq!(s.os(), Some(&b"Linux 7.3"[..]));
        assert_eq!(s.userappl(), Some(&b"hpcap-rs"[..]));
        assert!(s.options.is_valid());
    }

    #[test]
    fn idb_roundtrip() {
        let mut buf = [0u8; 256];
        let info = InterfaceInfo {
            snaplen: 9018,
            name: "hpcap0",
            description: "0000:01:00.0 XL710",
        };
        let n = write_idb_with(&mut buf, 0, &info, "Intel XL710 / hpcap-rs").unwrap();
        assert_eq!(n, idb_len(&info, "Intel XL710 / hpcap-rs"));
        let (Block::Idb(i), m) = one(&buf) else {
            panic!()
        };
        assert_eq!(m, n);
        assert_eq!((i.linktype, i.snaplen, i.tsresol()), (1, 9018, 9));
        assert_eq!(i.name(), Some(&b"hpcap0"[..]));
        assert_eq!(i.description(), Some(&b"0000:01:00.0 XL710"[..]));
        assert_eq!(i.hardware(), Some(&b"Intel XL710 / hpcap-rs"[..]));
        // The old entry point still writes the same block minus if_hardware.
        let k = write_idb(&mut buf, &info).unwrap();
        assert_eq!(k, idb_len(&info, ""));
    }

    #[test]
    fn file_header_is_4k_of_shb_idb_pad() {
        let mut buf = vec![0x55u8; FILE_HEADER_LEN + 8];
        let info = InterfaceInfo {
            snaplen: 0,
            name: "hpcap0",
            description: "d",
        };
        let s = SectionInfo {
            hardware: "h",
            os: "o",
            userappl: "u",
        };
        assert_eq!(
            write_file_header_with(&mut buf, &s, &info, "hw").unwrap(),
            4096
        );
        let kinds: Vec<_> = Blocks::new(&buf[..FILE_HEADER_LEN])
            .map(|r| match r.unwrap().1 {
                Block::Shb(_) => 'S',
                Block::Idb(_) => 'I',
                Block::Pad => 'P',
                _ => '?',
            })
            .collect();
        assert_eq!(kinds, ['S', 'I', 'P']);
        assert_eq!(buf[FILE_HEADER_LEN], 0x55, "nothing written past 4 KiB");
    }

    #[test]
    fn epb_option_combinations() {
        let frame: Vec<u8> = (0..61u8).collect();
        for mask in 0..8 {
            let opts = EpbOptions {
                flags: (mask & 1 != 0).then_some(0x0000_0001),
                dropcount: (mask & 2 != 0).then_some(1 << 40),
                queue: (mask & 4 != 0).then_some(3),
            };
            let mut buf = vec![0xAAu8; 512];
            let n = write_epb(
                &mut buf,
                8,
                2,
                1_700_000_000_123_456_789,
                1514,
                &frame,
                &opts,
            )
            .unwrap();
            assert_eq!(n, epb_len(61, &opts));
            assert_eq!(
                buf[8 + EPB_DATA_OFFSET + 61..8 + EPB_DATA_OFFSET + 64],
                [0, 0, 0]
            );
            let (Block::Epb(e), m) = parse_block(&buf, 8, Endian::LE).unwrap() else {
                panic!()
            };
            assert_eq!(m, n);
            assert_eq!(
                (e.interface, e.ts, e.orig_len, e.data),
                (2, 1_700_000_000_123_456_789, 1514, &frame[..])
            );
            assert_eq!(
                (e.flags(), e.dropcount(), e.queue()),
                (opts.flags, opts.dropcount, opts.queue)
            );
            assert!(e.options.is_valid());
        }
    }

    #[test]
    fn epb_frame_writer_leaves_data_to_caller_and_never_writes_partially() {
        let mut buf = [0x11u8; 100];
        let hdr = EpbHeader {
            interface: 0,
            ts_ns: 5,
            caplen: 64,
            orig_len: 64,
        };
        assert_eq!(
            write_epb_frame(&mut buf, 8, &hdr, &EpbOptions::NONE),
            Err(WriteError::NoSpace)
        );
        assert_eq!(buf, [0x11u8; 100]);
        assert_eq!(
            write_epb_frame(&mut buf, 4, &hdr, &EpbOptions::NONE),
            Ok(96)
        );
        assert!(buf[4 + EPB_DATA_OFFSET..4 + EPB_DATA_OFFSET + 64]
            .iter()
            .all(|b| *b == 0x11));
    }

    #[test]
    fn isb_roundtrip_and_ts_word_order() {
        let info = IsbInfo {
            interface: 0,
            ts_ns: 0x0000_0001_0000_0002,
            start_ns: Some(0x0000_0003_0000_0004),
            end_ns: Some(7),
            ifrecv: Some(1000),
            ifdrop: Some(5),
            filteraccept: None,
            osdrop: Some(9),
            usrdeliv: None,
        };
        let mut buf = [0u8; 128];
        let n = write_isb(&mut buf, 0, &info).unwrap();
        assert_eq!(n, isb_len(&info));
        // isb_starttime is two words, high first (not a little-endian u64).
        assert_eq!(&buf[20..32], &[2, 0, 8, 0, 3, 0, 0, 0, 4, 0, 0, 0]);
        let (Block::Isb(i), _) = one(&buf) else {
            panic!()
        };
        assert_eq!(i.info(), info);
        let empty = IsbInfo::default();
        assert_eq!(write_isb(&mut buf, 0, &empty).unwrap(), 24);
    }

    #[test]
    fn pad_and_block_header_roundtrip() {
        let mut buf = [0xFFu8; 128];
        assert_eq!(write_pad_at(&mut buf, 4, 12).unwrap(), 12);
        assert!(matches!(
            parse_block(&buf, 4, Endian::LE),
            Ok((Block::Pad, 12))
        ));
        assert_eq!(write_pad_at(&mut buf, 0, 10), Err(WriteError::BadValue));
        assert_eq!(write_pad_at(&mut buf, 0, 14), Err(WriteError::BadValue));
        let h = BlockHeader {
            format: BH_FORMAT_PCAPNG,
            block_len: 1 << 22,
            records: 77,
            seq: 1 << 40,
            offset: 1 << 62,
            first_ts_ns: 1,
            last_ts_ns: 2,
            drops: 3,
            flags: BH_FLAG_FINAL,
        };
        assert_eq!(
            write_block_header(&mut buf, 0, &h).unwrap(),
            BLOCK_HEADER_LEN
        );
        assert!(matches!(one(&buf), (Block::Header(g), BLOCK_HEADER_LEN) if g == h));
        buf[30] ^= 1; // inside the payload: the check no longer matches
        assert!(matches!(
            one(&buf),
            (
                Block::Other {
                    btype: BLOCK_HEADER_TYPE,
                    ..
                },
                _
            )
        ));
    }

    /// A big-endian section built by hand, as another tool would write it.
    #[test]
    fn big_endian_section() {
        let mut f: Vec<u8> = Vec::new();
        let blk = |f: &mut Vec<u8>, t: u32, body: &[u8]| {
            let len = (12 + body.len()) as u32;
            f.extend_from_slice(&t.to_be_bytes());
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(body);
            f.extend_from_slice(&len.to_be_bytes());
        };
        let mut shb = Vec::new();
        shb.extend_from_slice(&BYTE_ORDER_MAGIC.to_be_bytes());
        shb.extend_from_slice(&1u16.to_be_bytes());
        shb.extend_from_slice(&0u16.to_be_bytes());
        shb.extend_from_slice(&u64::MAX.to_be_bytes());
        blk(&mut f, SHB_TYPE, &shb);
        let mut idb = Vec::new();
        idb.extend_from_slice(&1u16.to_be_bytes());
        idb.extend_from_slice(&0u16.to_be_bytes());
        idb.extend_from_slice(&65535u32.to_be_bytes());
        idb.extend_from_slice(&9u16.to_be_bytes());
        idb.extend_from_slice(&1u16.to_be_bytes());
        idb.extend_from_slice(&[9, 0, 0, 0]);
        blk(&mut f, IDB_TYPE, &idb);
        let mut epb = Vec::new();
        for v in [0u32, 1, 2, 3, 60] {
            epb.extend_from_slice(&v.to_be_bytes());
        }
        epb.extend_from_slice(&[7, 7, 7, 0]);
        epb.extend_from_slice(&EPB_FLAGS_BE);
        blk(&mut f, EPB_TYPE, &epb);
        let mut isb = Vec::new();
        for v in [0u32, 0, 9] {
            isb.extend_from_slice(&v.to_be_bytes());
        }
        isb.extend_from_slice(&4u16.to_be_bytes());
        isb.extend_from_slice(&8u16.to_be_bytes());
        isb.extend_from_slice(&42u64.to_be_bytes());
        blk(&mut f, ISB_TYPE, &isb);
        let all: Vec<_> = Blocks::new(&f).map(|r| r.unwrap().1).collect();
        assert!(matches!(all[0], Block::Shb(s) if s.endian.big));
        assert!(matches!(all[1], Block::Idb(i) if i.tsresol() == 9 && i.snaplen == 65535));
        let Block::Epb(e) = all[2] else { panic!() };
        assert_eq!(
            (e.ts, e.data, e.orig_len, e.flags()),
            ((1 << 32) | 2, &[7u8, 7, 7][..], 60, Some(0x10))
        );
        let Block::Isb(i) = all[3] else { panic!() };
        assert_eq!((i.ts, i.info().ifrecv), (9, Some(42)));
    }
    const EPB_FLAGS_BE: [u8; 12] = [0, 2, 0, 4, 0, 0, 0, 0x10, 0, 0, 0, 0];

    proptest! {
        #[test]
        fn epb_roundtrip(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            ts in any::<u64>(), ifid in any::<u32>(), extra in 0u32..100,
            flags in any::<Option<u32>>(), dropcount in any::<Option<u64>>(), queue in any::<Option<u32>>(),
        ) {
            let opts = EpbOptions { flags, dropcount, queue };
            let mut buf = vec![0u8; epb_len(data.len(), &opts)];
            let orig = data.len() as u32 + extra;
            prop_assert_eq!(write_epb(&mut buf, 0, ifid, ts, orig, &data, &opts), Ok(buf.len()));
            let (b, n) = one(&buf);
            prop_assert_eq!(n, buf.len());
            let Block::Epb(e) = b else { panic!() };
            prop_assert_eq!((e.interface, e.ts, e.orig_len, e.data), (ifid, ts, orig, &data[..]));
            prop_assert_eq!((e.flags(), e.dropcount(), e.queue()), (flags, dropcount, queue));
        }

        #[test]
        fn isb_roundtrip(
            ts in any::<u64>(), c in proptest::array::uniform7(any::<Option<u64>>()),
        ) {
            let info = IsbInfo { interface: 1, ts_ns: ts, start_ns: c[0], end_ns: c[1], ifrecv: c[2],
                ifdrop: c[3], filteraccept: c[4], osdrop: c[5], usrdeliv: c[6] };
            let mut buf = vec![0u8; isb_len(&info)];
            prop_assert_eq!(write_isb(&mut buf, 0, &info), Ok(buf.len()));
            let (Block::Isb(i), _) = one(&buf) else { panic!() };
            prop_assert_eq!(i.info(), info);
        }

        #[test]
        fn strings_roundtrip(a in ".{0,40}", b in ".{0,40}", c in ".{0,40}", snap in any::<u32>()) {
            let mut buf = vec![0u8; 1024];
            let s = SectionInfo { hardware: &a, os: &b, userappl: &c };
            let n = write_shb_with(&mut buf, 0, &s).unwrap();
            prop_assert_eq!(n, shb_len(&s));
            let (Block::Shb(shb), _) = one(&buf) else { panic!() };
            fn opt(x: &str) -> Option<&[u8]> {
                (!x.is_empty()).then_some(x.as_bytes())
            }
            prop_assert_eq!((shb.hardware(), shb.os(), shb.userappl()), (opt(&a), opt(&b), opt(&c)));
            let i = InterfaceInfo { snaplen: snap, name: &a, description: &b };
            let n = write_idb_with(&mut buf, 0, &i, &c).unwrap();
            prop_assert_eq!(n, idb_len(&i, &c));
            let (Block::Idb(idb), _) = one(&buf) else { panic!() };
            prop_assert_eq!((idb.snaplen, idb.name(), idb.description(), idb.hardware()), (snap, opt(&a), opt(&b), opt(&c)));
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512), big in any::<bool>()) {
            for (_, b) in Blocks::with_endian(&data, Endian { big }).flatten() {
                {
                    match b {
                        Block::Epb(e) => { let _ = (e.flags(), e.dropcount(), e.queue()); }
                        Block::Isb(i) => { let _ = i.info(); }
                        Block::Idb(i) => { let _ = (i.tsresol(), i.name()); }
                        Block::Shb(s) => { let _ = s.options.is_valid(); }
                        _ => {}
                    }
                }
            }
        }
    }
}
