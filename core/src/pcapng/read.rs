// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The pcapng reader (userspace only: the kernel module writes pcapng and
//! never parses it).

use super::*;

/// Why a block cannot be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The data ends inside the block starting at `offset`.
    Truncated {
        /// Byte offset of the block.
        offset: usize,
    },
    /// The block at `offset` has an impossible length or layout.
    BadBlock {
        /// Byte offset of the block.
        offset: usize,
    },
}

/// Reads integers in a section's byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endian {
    /// Big-endian section.
    pub big: bool,
}

impl Endian {
    /// Little-endian.
    pub const LE: Self = Self { big: false };
    /// Big-endian.
    pub const BE: Self = Self { big: true };

    /// `u16` at `b[at..]`.
    pub fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    /// `u32` at `b[at..]`.
    pub fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    /// `u64` at `b[at..]`.
    pub fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big {
            u64::from_be_bytes(a)
        } else {
            u64::from_le_bytes(a)
        })
    }

    /// pcapng timestamp (high word, low word) at `b[at..]`.
    pub fn ts(self, b: &[u8], at: usize) -> Option<u64> {
        Some((u64::from(self.u32(b, at)?) << 32) | u64::from(self.u32(b, at.checked_add(4)?)?))
    }
}

/// One option of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// Option code.
    pub code: u16,
    /// Value, without padding.
    pub value: &'a [u8],
    endian: Endian,
}

impl Opt<'_> {
    /// The value as a `u32`, if it is 4 bytes long.
    pub fn as_u32(&self) -> Option<u32> {
        (self.value.len() == 4).then(|| self.endian.u32(self.value, 0))?
    }

    /// The value as a `u64`, if it is 8 bytes long.
    pub fn as_u64(&self) -> Option<u64> {
        (self.value.len() == 8).then(|| self.endian.u64(self.value, 0))?
    }

    /// The value as a pcapng timestamp (two words, high first).
    pub fn as_ts(&self) -> Option<u64> {
        (self.value.len() == 8).then(|| self.endian.ts(self.value, 0))?
    }
}

/// Iterator over a block's options. Stops at the end-of-options marker, at
/// the end of the data, or at the first malformed option (see [`Options::is_valid`]).
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    data: &'a [u8],
    pos: usize,
    endian: Endian,
}

impl<'a> Options<'a> {
    /// Options encoded in `data` in the given byte order.
    pub fn new(data: &'a [u8], endian: Endian) -> Self {
        Self {
            data,
            pos: 0,
            endian,
        }
    }

    /// First option with `code`.
    pub fn get(self, code: u16) -> Option<Opt<'a>> {
        let mut it = self;
        it.find(|o| o.code == code)
    }

    /// Whether every option is well formed up to the end marker or the end
    /// of the data.
    pub fn is_valid(self) -> bool {
        let mut it = self;
        while it.next().is_some() {}
        it.pos >= it.data.len()
    }
}

impl<'a> Iterator for Options<'a> {
    type Item = Opt<'a>;

    fn next(&mut self) -> Option<Opt<'a>> {
        let code = self.endian.u16(self.data, self.pos)?;
        let len = usize::from(self.endian.u16(self.data, self.pos + 2)?);
        if code == opt::END {
            self.pos = self.data.len();
            return None;
        }
        let start = self.pos + 4;
        let value = self.data.get(start..start + len)?;
        self.pos = start + pad4(len);
        Some(Opt {
            code,
            value,
            endian: self.endian,
        })
    }
}

/// Section Header Block view.
#[derive(Debug, Clone, Copy)]
pub struct Shb<'a> {
    /// Byte order of the section.
    pub endian: Endian,
    /// Major version (1).
    pub major: u16,
    /// Minor version (0).
    pub minor: u16,
    /// Section length, `u64::MAX` (-1) when unknown.
    pub section_len: u64,
    /// Options.
    pub options: Options<'a>,
}

impl<'a> Shb<'a> {
    /// `shb_hardware`.
    pub fn hardware(&self) -> Option<&'a [u8]> {
        self.options.get(opt::SHB_HARDWARE).map(|o| o.value)
    }
    /// `shb_os`.
    pub fn os(&self) -> Option<&'a [u8]> {
        self.options.get(opt::SHB_OS).map(|o| o.value)
    }
    /// `shb_userappl`.
    pub fn userappl(&self) -> Option<&'a [u8]> {
        self.options.get(opt::SHB_USERAPPL).map(|o| o.value)
    }
}

/// Interface Description Block view.
#[derive(Debug, Clone, Copy)]
pub struct Idb<'a> {
    /// Link type.
    pub linktype: u16,
    /// Snapshot length (0 = unlimited).
    pub snaplen: u32,
    /// Options.
    pub options: Options<'a>,
}

impl<'a> Idb<'a> {
    /// `if_tsresol`, 6 (microseconds) when absent as the spec says.
    pub fn tsresol(&self) -> u8 {
        match self.options.get(opt::IF_TSRESOL) {
            Some(Opt { value: [v], .. }) => *v,
            _ => 6,
        }
    }
    /// `if_name`.
    pub fn name(&self) -> Option<&'a [u8]> {
        self.options.get(opt::IF_NAME).map(|o| o.value)
    }
    /// `if_description`.
    pub fn description(&self) -> Option<&'a [u8]> {
        self.options.get(opt::IF_DESCRIPTION).map(|o| o.value)
    }
    /// `if_hardware`.
    pub fn hardware(&self) -> Option<&'a [u8]> {
        self.options.get(opt::IF_HARDWARE).map(|o| o.value)
    }
}

/// Enhanced Packet Block view.
#[derive(Debug, Clone, Copy)]
pub struct Epb<'a> {
    /// Interface id.
    pub interface: u32,
    /// Timestamp in units of the interface's `if_tsresol`.
    pub ts: u64,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// Captured bytes (`data.len()` is caplen).
    pub data: &'a [u8],
    /// Options.
    pub options: Options<'a>,
}

impl Epb<'_> {
    /// `epb_flags`.
    pub fn flags(&self) -> Option<u32> {
        self.options.get(opt::EPB_FLAGS)?.as_u32()
    }
    /// `epb_dropcount`.
    pub fn dropcount(&self) -> Option<u64> {
        self.options.get(opt::EPB_DROPCOUNT)?.as_u64()
    }
    /// `epb_queue`.
    pub fn queue(&self) -> Option<u32> {
        self.options.get(opt::EPB_QUEUE)?.as_u32()
    }
}

/// Interface Statistics Block view.
#[derive(Debug, Clone, Copy)]
pub struct Isb<'a> {
    /// Interface id.
    pub interface: u32,
    /// Timestamp in units of the interface's `if_tsresol`.
    pub ts: u64,
    /// Options.
    pub options: Options<'a>,
}

impl Isb<'_> {
    /// Decodes the options into an [`IsbInfo`] (timestamps left in the
    /// interface's units).
    pub fn info(&self) -> IsbInfo {
        let u = |c| self.options.get(c).and_then(|o| o.as_u64());
        let t = |c| self.options.get(c).and_then(|o| o.as_ts());
        IsbInfo {
            interface: self.interface,
            ts_ns: self.ts,
            start_ns: t(opt::ISB_STARTTIME),
            end_ns: t(opt::ISB_ENDTIME),
            ifrecv: u(opt::ISB_IFRECV),
            ifdrop: u(opt::ISB_IFDROP),
            filteraccept: u(opt::ISB_FILTERACCEPT),
            osdrop: u(opt::ISB_OSDROP),
            usrdeliv: u(opt::ISB_USRDELIV),
        }
    }
}

/// A parsed block.
#[derive(Debug, Clone, Copy)]
pub enum Block<'a> {
    /// Section Header Block.
    Shb(Shb<'a>),
    /// Interface Description Block.
    Idb(Idb<'a>),
    /// Enhanced Packet Block.
    Epb(Epb<'a>),
    /// Simple Packet Block: original length and the bytes present (the
    /// reader cannot apply the interface's snaplen; `data` may hold padding).
    Spb {
        /// Original length.
        orig_len: u32,
        /// Body after the length field.
        data: &'a [u8],
    },
    /// Interface Statistics Block.
    Isb(Isb<'a>),
    /// hpcap padding block.
    Pad,
    /// hpcap block header record (a [`BLOCK_HEADER_TYPE`] block whose
    /// payload does not decode is returned as [`Block::Other`]).
    Header(BlockHeader),
    /// Any other block type.
    Other {
        /// Block type.
        btype: u32,
        /// Body (between the length fields).
        body: &'a [u8],
    },
}

/// Parses the block at `data[at..]` in byte order `endian` (an SHB sets its
/// own order: the returned [`Shb::endian`] applies to the following blocks).
/// Returns the block and its total length.
pub fn parse_block(
    data: &[u8],
    at: usize,
    endian: Endian,
) -> Result<(Block<'_>, usize), ParseError> {
    let trunc = ParseError::Truncated { offset: at };
    let bad = ParseError::BadBlock { offset: at };
    let raw_type = Endian::LE.u32(data, at).ok_or(trunc)?;
    let e = if raw_type == SHB_TYPE {
        match Endian::LE.u32(data, at.saturating_add(8)) {
            Some(BYTE_ORDER_MAGIC) => Endian::LE,
            Some(m) if m == BYTE_ORDER_MAGIC.swap_bytes() => Endian::BE,
            Some(_) => return Err(bad),
            None => return Err(trunc),
        }
    } else {
        endian
    };
    let btype = e.u32(data, at).ok_or(trunc)?;
    let len = e.u32(data, at.saturating_add(4)).ok_or(trunc)? as usize;
    if len < MIN_BLOCK_LEN || len % 4 != 0 {
        return Err(bad);
    }
    let block = at
        .checked_add(len)
        .and_then(|end| data.get(at..end))
        .ok_or(trunc)?;
    if e.u32(block, len - 4) != Some(len as u32) {
        return Err(bad);
    }
    let body = block.get(8..len - 4).ok_or(bad)?;
    let b = match btype {
        SHB_TYPE => Block::Shb(Shb {
            endian: e,
            major: e.u16(body, 4).ok_or(bad)?,
            minor: e.u16(body, 6).ok_or(bad)?,
            section_len: e.u64(body, 8).ok_or(bad)?,
            options: Options::new(body.get(16..).ok_or(bad)?, e),
        }),
        IDB_TYPE => Block::Idb(Idb {
            linktype: e.u16(body, 0).ok_or(bad)?,
            snaplen: e.u32(body, 4).ok_or(bad)?,
            options: Options::new(body.get(8..).ok_or(bad)?, e),
        }),
        EPB_TYPE => {
            let caplen = e.u32(body, 12).ok_or(bad)? as usize;
            let data = body
                .get(20..20usize.checked_add(caplen).ok_or(bad)?)
                .ok_or(bad)?;
            let opts = body.get(20 + pad4(caplen)..).unwrap_or(&[]);
            Block::Epb(Epb {
                interface: e.u32(body, 0).ok_or(bad)?,
                ts: e.ts(body, 4).ok_or(bad)?,
                orig_len: e.u32(body, 16).ok_or(bad)?,
                data,
                options: Options::new(opts, e),
            })
        }
        SPB_TYPE => Block::Spb {
            orig_len: e.u32(body, 0).ok_or(bad)?,
            data: body.get(4..).ok_or(bad)?,
        },
        ISB_TYPE => Block::Isb(Isb {
            interface: e.u32(body, 0).ok_or(bad)?,
            ts: e.ts(body, 4).ok_or(bad)?,
            options: Options::new(body.get(12..).ok_or(bad)?, e),
        }),
        PAD_TYPE => Block::Pad,
        BLOCK_HEADER_TYPE => match BlockHeader::decode(body, e.big) {
            Some(h) if body.len() == BLOCK_HEADER_BODY_LEN => Block::Header(h),
            _ => Block::Other { btype, body },
        },
        _ => Block::Other { btype, body },
    };
    Ok((b, len))
}

/// Iterator over the blocks of a pcapng byte stream: a whole file or a run
/// of stream blocks (which start without an SHB and are little-endian until
/// an SHB says otherwise). Yields `(offset, block)`; after an error it ends.
#[derive(Debug, Clone)]
pub struct Blocks<'a> {
    data: &'a [u8],
    pos: usize,
    endian: Endian,
    failed: bool,
}

impl<'a> Blocks<'a> {
    /// Blocks of `data`, little-endian until an SHB says otherwise.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_endian(data, Endian { big: false })
    }

    /// Blocks of `data` in byte order `endian` until an SHB says otherwise.
    pub fn with_endian(data: &'a [u8], endian: Endian) -> Self {
        Self {
            data,
            pos: 0,
            endian,
            failed: false,
        }
    }

    /// Offset of the next block.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Byte order in force.
    pub fn endian(&self) -> Endian {
        self.endian
    }
}

impl<'a> Iterator for Blocks<'a> {
    type Item = Result<(usize, Block<'a>), ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        match parse_block(self.data, self.pos, self.endian) {
            Ok((b, len)) => {
                let at = self.pos;
                if let Block::Shb(s) = &b {
                    self.endian = s.endian;
                }
                self.pos += len;
                Some(Ok((at, b)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
