// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! pcapng block constants and writers for the native stream format.
//!
//! A pcapng block is `{type: u32, total_length: u32, body (padded to 4),
//! total_length: u32}`. hpcap writes host-endian (little-endian on every
//! supported platform) blocks; readers handle both byte orders.

/// Section Header Block type.
pub const SHB_TYPE: u32 = 0x0A0D_0D0A;
/// Byte-order magic inside the SHB.
pub const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// Interface Description Block type.
pub const IDB_TYPE: u32 = 0x0000_0001;
/// Simple Packet Block type.
pub const SPB_TYPE: u32 = 0x0000_0003;
/// Interface Statistics Block type.
pub const ISB_TYPE: u32 = 0x0000_0005;
/// Enhanced Packet Block type.
pub const EPB_TYPE: u32 = 0x0000_0006;
/// Local-use block hpcap uses to pad a block's tail; standard readers skip
/// blocks whose type has the top bit set.
pub const PAD_TYPE: u32 = 0x8000_0001;

/// Ethernet link type.
pub const LINKTYPE_ETHERNET: u16 = 1;

/// Option codes (pcapng spec, section 3.5 / 4.2).
pub mod opt {
    /// End of options.
    pub const END: u16 = 0;
    /// Interface name (IDB).
    pub const IF_NAME: u16 = 2;
    /// Interface description (IDB).
    pub const IF_DESCRIPTION: u16 = 3;
    /// Timestamp resolution (IDB): value 9 = nanoseconds.
    pub const IF_TSRESOL: u16 = 9;
}

/// Smallest possible block: type, length, trailing length.
pub const MIN_BLOCK_LEN: usize = 12;

/// Size of the file header every hpcap file starts with (SHB + IDB + padding).
pub const FILE_HEADER_LEN: usize = 4096;

/// Errors of the writers in this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteError {
    /// The destination is too small for what must be written.
    NoSpace,
    /// A string option is longer than a pcapng option can hold.
    OptionTooLong,
}

/// Rounds `n` up to a multiple of 4.
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

/// Writes little-endian fields into a byte slice.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
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

    fn u16(&mut self, v: u16) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    fn u32(&mut self, v: u32) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    fn u64(&mut self, v: u64) -> Result<(), WriteError> {
        self.bytes(&v.to_le_bytes())
    }

    /// One option: code, length, value padded to 4.
    fn option(&mut self, code: u16, value: &[u8]) -> Result<(), WriteError> {
        let len = u16::try_from(value.len()).map_err(|_| WriteError::OptionTooLong)?;
        self.u16(code)?;
        self.u16(len)?;
        self.bytes(value)?;
        self.zeros(pad4(value.len()) - value.len())
    }
}

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

/// Writes a Section Header Block (unknown section length) at the start of `buf`
/// and returns its length.
pub fn write_shb(buf: &mut [u8]) -> Result<usize, WriteError> {
    const LEN: u32 = 28;
    let mut c = Cursor::new(buf);
    c.u32(SHB_TYPE)?;
    c.u32(LEN)?;
    c.u32(BYTE_ORDER_MAGIC)?;
    c.u16(1)?; // major version
    c.u16(0)?; // minor version
    c.u64(u64::MAX)?; // section length: not specified
    c.u32(LEN)?;
    Ok(c.pos)
}

/// Writes an Ethernet Interface Description Block with nanosecond timestamps
/// at the start of `buf` and returns its length.
pub fn write_idb(buf: &mut [u8], info: &InterfaceInfo<'_>) -> Result<usize, WriteError> {
    let opts_len = 4 + 4 // if_tsresol (1 byte padded to 4)
        + 4 + pad4(info.name.len())
        + 4 + pad4(info.description.len())
        + 4; // opt_endofopt
    let total = 20 + opts_len;
    let total32 = u32::try_from(total).map_err(|_| WriteError::OptionTooLong)?;
    let mut c = Cursor::new(buf);
    c.u32(IDB_TYPE)?;
    c.u32(total32)?;
    c.u16(LINKTYPE_ETHERNET)?;
    c.u16(0)?; // reserved
    c.u32(info.snaplen)?;
    c.option(opt::IF_TSRESOL, &[9])?;
    c.option(opt::IF_NAME, info.name.as_bytes())?;
    c.option(opt::IF_DESCRIPTION, info.description.as_bytes())?;
    c.option(opt::END, &[])?;
    c.u32(total32)?;
    debug_assert_eq!(c.pos, total);
    Ok(c.pos)
}

/// Fills all of `buf` with one local-use padding block. `buf.len()` must be a
/// multiple of 4 and at least [`MIN_BLOCK_LEN`].
pub fn write_pad(buf: &mut [u8]) -> Result<(), WriteError> {
    let len = buf.len();
    if len < MIN_BLOCK_LEN || len % 4 != 0 {
        return Err(WriteError::NoSpace);
    }
    let len32 = u32::try_from(len).map_err(|_| WriteError::NoSpace)?;
    let mut c = Cursor::new(buf);
    c.u32(PAD_TYPE)?;
    c.u32(len32)?;
    c.zeros(len - MIN_BLOCK_LEN)?;
    c.u32(len32)
}

/// Writes the [`FILE_HEADER_LEN`]-byte header every hpcap file starts with:
/// SHB, IDB, then a padding block up to the end.
pub fn write_file_header(buf: &mut [u8], info: &InterfaceInfo<'_>) -> Result<usize, WriteError> {
    let buf = buf.get_mut(..FILE_HEADER_LEN).ok_or(WriteError::NoSpace)?;
    let shb = write_shb(buf)?;
    let idb = write_idb(&mut buf[shb..], info)?;
    let used = shb + idb;
    if FILE_HEADER_LEN - used < MIN_BLOCK_LEN {
        return Err(WriteError::OptionTooLong);
    }
    write_pad(&mut buf[used..])?;
    Ok(FILE_HEADER_LEN)
}
