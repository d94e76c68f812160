// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Zero-copy packet iterator over a whole capture file held in memory:
//! classic pcap (microsecond or nanosecond, either byte order), pcapng
//! (any byte order per section, per-interface `if_tsresol`) and, on request,
//! HPCAP RAW.
//!
//! Used wherever a tool needs "the frames in this file": the traffic injector,
//! converters, checkers and tests. Blocks that carry no packet (statistics,
//! local-use padding, unknown types) are skipped.

use super::pcapng::{EPB_TYPE, IDB_TYPE, SHB_TYPE, SPB_TYPE};

/// Classic pcap magic, microsecond timestamps (as read in the writer's order).
pub const PCAP_MAGIC_US: u32 = 0xA1B2_C3D4;
/// Classic pcap magic, nanosecond timestamps.
pub const PCAP_MAGIC_NS: u32 = 0xA1B2_3C4D;

/// Interfaces per pcapng section whose timestamp resolution is tracked.
pub const MAX_INTERFACES: usize = 64;

/// Why a capture file cannot be read (further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadError {
    /// The file starts with neither a pcap magic nor a pcapng SHB.
    UnknownFormat,
    /// The file ends inside a header or record that starts at `offset`.
    Truncated {
        /// Byte offset of the incomplete header or record.
        offset: usize,
    },
    /// A pcapng block at `offset` has an impossible length or layout.
    BadBlock {
        /// Byte offset of the block.
        offset: usize,
    },
    /// A packet refers to an interface the section did not describe, or one
    /// beyond [`MAX_INTERFACES`].
    BadInterface {
        /// Byte offset of the block.
        offset: usize,
    },
}

/// Container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic pcap.
    Pcap {
        /// Timestamps are in nanoseconds (magic `0xA1B23C4D`).
        nanos: bool,
        /// The file was written big-endian.
        big_endian: bool,
        /// Link type from the file header.
        linktype: u32,
    },
    /// pcapng.
    Pcapng,
    /// HPCAP RAW records (no magic: only [`Packets::new_raw`] selects it).
    Raw,
}

/// One packet, borrowed from the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Timestamp in nanoseconds since the Unix epoch (0 when the format has none).
    pub ts_ns: u64,
    /// Length of the frame on the wire.
    pub orig_len: u32,
    /// Captured bytes (`data.len()` is the capture length).
    pub data: &'a [u8],
    /// pcapng interface id (0 for classic pcap).
    pub interface: u32,
}

#[derive(Debug, Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    const LE: Self = Self { big: false };

    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at + 2)?.try_into().ok()?;
        Some(if self.big {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
        Some(if self.big {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }
}

/// Converts a timestamp in units of `tsresol` (pcapng `if_tsresol` encoding:
/// top bit clear = 10^-v s, set = 2^-v s) into nanoseconds, saturating.
///
/// Only u64 arithmetic with checked operations: the kernel provides no 128-bit
/// division helpers to modules, and objtool does not know that
/// `panic_const_div_by_zero` never returns, so neither may appear here.
pub fn ts_to_ns(ts: u64, tsresol: u8) -> u64 {
    const NS_PER_S: u64 = 1_000_000_000;
    let v = u32::from(tsresol & 0x7F);
    if tsresol & 0x80 == 0 {
        if v <= 9 {
            10u64
                .checked_pow(9 - v)
                .and_then(|m| ts.checked_mul(m))
                .unwrap_or(u64::MAX)
        } else {
            // A divisor beyond u64 means the value rounds down to 0 ns.
            10u64
                .checked_pow(v - 9)
                .and_then(|d| ts.checked_div(d))
                .unwrap_or(0)
        }
    } else {
        // Whole seconds, then the fraction scaled by 1e9 / 2^v. The fraction
        // is first cut to 34 bits so that multiplying by 1e9 (< 2^30) fits.
        let secs = ts.checked_shr(v).unwrap_or(0);
        let frac = ts & 1u64.checked_shl(v).map_or(u64::MAX, |one| one - 1);
        let cut = v.saturating_sub(34);
        let frac_ns = (frac.checked_shr(cut).unwrap_or(0) * NS_PER_S) >> (v - cut);
        secs.checked_mul(NS_PER_S)
            .and_then(|s| s.checked_add(frac_ns))
            .unwrap_or(u64::MAX)
    }
}

/// Everything a [`Packets`] iteration knows about the file besides its
/// position: enough to resume reading at any record boundary of the same
/// file ([`Packets::resume`]). A packet index stores it wherever it changes
/// (pcapng SHB and IDB blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// Container format.
    pub format: Format,
    /// Byte order of the current pcapng section (or pcap file).
    pub big_endian: bool,
    /// pcapng: `if_tsresol` of each interface of the current section.
    pub tsresol: [u8; MAX_INTERFACES],
    /// pcapng: `snaplen` of interface 0 (for Simple Packet Blocks).
    pub snaplen0: u32,
    /// pcapng: interfaces described so far in the current section.
    pub interfaces: usize,
}

/// Iterator over the packets of a capture file.
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    data: &'a [u8],
    pos: usize,
    /// Start of the record of the packet returned last.
    last: usize,
    /// Bumped by every SHB and IDB (the [`ReadState`] may have changed).
    changes: u32,
    format: Format,
    endian: Endian,
    /// pcapng: `if_tsresol` of each interface of the current section.
    tsresol: [u8; MAX_INTERFACES],
    /// pcapng: `snaplen` of interface 0 (for Simple Packet Blocks).
    snaplen0: u32,
    interfaces: usize,
    failed: bool,
}

impl<'a> Packets<'a> {
    /// Recognises the format of `data` and positions at its first packet.
    pub fn new(data: &'a [u8]) -> Result<Self, ReadError> {
        let magic_le = Endian::LE.u32(data, 0).ok_or(ReadError::UnknownFormat)?;
        let mut it = Self {
            data,
            pos: 0,
            last: 0,
            changes: 0,
            format: Format::Pcapng,
            endian: Endian { big: false },
            tsresol: [6; MAX_INTERFACES],
            snaplen0: 0,
            interfaces: 0,
            failed: false,
        };
        match magic_le {
            PCAP_MAGIC_US | PCAP_MAGIC_NS => it.pcap_header(magic_le == PCAP_MAGIC_NS, false)?,
            m if m.swap_bytes() == PCAP_MAGIC_US || m.swap_bytes() == PCAP_MAGIC_NS => {
                it.pcap_header(m.swap_bytes() == PCAP_MAGIC_NS, true)?
            }
            SHB_TYPE => {}
            _ => return Err(ReadError::UnknownFormat),
        }
        Ok(it)
    }

    /// Reads `data` as HPCAP RAW records (which have no magic to detect).
    /// Padding records are skipped; a malformed record ends the iteration
    /// with [`ReadError::BadBlock`] or [`ReadError::Truncated`].
    pub fn new_raw(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            last: 0,
            changes: 0,
            format: Format::Raw,
            endian: Endian { big: false },
            tsresol: [9; MAX_INTERFACES],
            snaplen0: 0,
            interfaces: 0,
            failed: false,
        }
    }

    fn next_raw(&mut self) -> Option<Result<Packet<'a>, ReadError>> {
        use super::raw::{parse_raw, RawError, RawRecord};
        while self.pos < self.data.len() {
            match parse_raw(self.data, self.pos) {
                Ok((RawRecord::Packet(p), len)) => {
                    self.last = self.pos;
                    self.pos += len;
                    return Some(Ok(Packet {
                        ts_ns: p.ts_ns(),
                        orig_len: u32::from(p.orig_len),
                        data: p.data,
                        interface: 0,
                    }));
                }
                Ok((RawRecord::Padding { .. }, len)) => self.pos += len,
                Err(RawError::Truncated { offset }) => {
                    return Some(Err(ReadError::Truncated { offset }))
                }
                Err(RawError::BadRecord { offset }) => {
                    return Some(Err(ReadError::BadBlock { offset }))
                }
            }
        }
        None
    }

    fn pcap_header(&mut self, nanos: bool, big: bool) -> Result<(), ReadError> {
        self.endian = Endian { big };
        if self.data.len() < 24 {
            return Err(ReadError::Truncated { offset: 0 });
        }
        let linktype = self
            .endian
            .u32(self.data, 20)
            .ok_or(ReadError::Truncated { offset: 0 })?;
        self.format = Format::Pcap {
            nanos,
            big_endian: big,
            linktype,
        };
        self.pos = 24;
        Ok(())
    }

    /// The file's container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Byte offset of the next record or block to be read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Byte offset of the record (pcap record, pcapng EPB/SPB, RAW record)
    /// of the packet returned last.
    pub fn record_offset(&self) -> usize {
        self.last
    }

    /// A counter bumped by every SHB and IDB read: when it changes, so may
    /// [`Self::state`].
    pub fn state_changes(&self) -> u32 {
        self.changes
    }

    /// What the iteration knows about the file (see [`ReadState`]).
    pub fn state(&self) -> ReadState {
        ReadState {
            format: self.format,
            big_endian: self.endian.big,
            tsresol: self.tsresol,
            snaplen0: self.snaplen0,
            interfaces: self.interfaces,
        }
    }

    /// Reads `data` from byte `pos` on, a record boundary of a file whose
    /// [`ReadState`] at that point is `state` (as saved from an earlier
    /// iteration over the same file; `data` may be a window of it).
    pub fn resume(data: &'a [u8], pos: usize, state: &ReadState) -> Self {
        Self {
            data,
            pos,
            last: pos,
            changes: 0,
            format: state.format,
            endian: Endian {
                big: state.big_endian,
            },
            tsresol: state.tsresol,
            snaplen0: state.snaplen0,
            interfaces: state.interfaces.min(MAX_INTERFACES),
            failed: false,
        }
    }

    fn next_pcap(&mut self, nanos: bool) -> Option<Result<Packet<'a>, ReadError>> {
        let at = self.pos;
        if at == self.data.len() {
            return None;
        }
        let e = self.endian;
        let hdr = (|| {
            Some((
                e.u32(self.data, at)?,
                e.u32(self.data, at + 4)?,
                e.u32(self.data, at + 8)?,
                e.u32(self.data, at + 12)?,
            ))
        })();
        let Some((sec, frac, incl, orig)) = hdr else {
            return Some(Err(ReadError::Truncated { offset: at }));
        };
        let start = at + 16;
        let Some(data) = start
            .checked_add(incl as usize)
            .and_then(|end| self.data.get(start..end))
        else {
            return Some(Err(ReadError::Truncated { offset: at }));
        };
        self.last = at;
        self.pos = start + data.len();
        let frac_ns = if nanos {
            u64::from(frac)
        } else {
            u64::from(frac) * 1000
        };
        Some(Ok(Packet {
            ts_ns: u64::from(sec) * 1_000_000_000 + frac_ns,
            orig_len: orig,
            data,
            interface: 0,
        }))
    }

    /// Parses the options of an IDB body for `if_tsresol`.
    fn idb_tsresol(&self, body: &[u8]) -> u8 {
        let mut at = 8; // linktype, reserved, snaplen
        while let (Some(code), Some(len)) =
            (self.endian.u16(body, at), self.endian.u16(body, at + 2))
        {
            let len = usize::from(len);
            if code == super::pcapng::opt::END {
                break;
            }
            if code == super::pcapng::opt::IF_TSRESOL && len == 1 {
                if let Some(v) = body.get(at + 4) {
                    return *v;
                }
            }
            at += 4 + super::pcapng::pad4(len);
        }
        6
    }

    fn next_pcapng(&mut self) -> Option<Result<Packet<'a>, ReadError>> {
        loop {
            let at = self.pos;
            if at == self.data.len() {
                return None;
            }
            let Some(raw_type) = Endian::LE.u32(self.data, at) else {
                return Some(Err(ReadError::Truncated { offset: at }));
            };
            if raw_type == SHB_TYPE {
                // A new section: its byte-order magic fixes the endianness.
                match Endian::LE.u32(self.data, at + 8) {
                    Some(0x1A2B_3C4D) => self.endian = Endian { big: false },
                    Some(0x4D3C_2B1A) => self.endian = Endian { big: true },
                    Some(_) => return Some(Err(ReadError::BadBlock { offset: at })),
                    None => return Some(Err(ReadError::Truncated { offset: at })),
                }
                self.interfaces = 0;
                self.changes = self.changes.wrapping_add(1);
            }
            let e = self.endian;
            let (Some(btype), Some(len)) = (e.u32(self.data, at), e.u32(self.data, at + 4)) else {
                return Some(Err(ReadError::Truncated { offset: at }));
            };
            let len = len as usize;
            if len < 12 || len % 4 != 0 {
                return Some(Err(ReadError::BadBlock { offset: at }));
            }
            let Some(block) = at.checked_add(len).and_then(|end| self.data.get(at..end)) else {
                return Some(Err(ReadError::Truncated { offset: at }));
            };
            if e.u32(block, len - 4) != Some(len as u32) {
                return Some(Err(ReadError::BadBlock { offset: at }));
            }
            self.pos = at + len;
            let body = &block[8..len - 4];
            match btype {
                IDB_TYPE => {
                    if self.interfaces >= MAX_INTERFACES || body.len() < 8 {
                        return Some(Err(ReadError::BadInterface { offset: at }));
                    }
                    if self.interfaces == 0 {
                        self.snaplen0 = e.u32(body, 4).unwrap_or(0);
                    }
                    self.tsresol[self.interfaces] = self.idb_tsresol(body);
                    self.interfaces += 1;
                    self.changes = self.changes.wrapping_add(1);
                }
                EPB_TYPE => {
                    let hdr = (|| {
                        Some((
                            e.u32(body, 0)?,
                            e.u32(body, 4)?,
                            e.u32(body, 8)?,
                            e.u32(body, 12)?,
                            e.u32(body, 16)?,
                        ))
                    })();
                    let Some((ifid, ts_hi, ts_lo, caplen, orig)) = hdr else {
                        return Some(Err(ReadError::BadBlock { offset: at }));
                    };
                    if ifid as usize >= self.interfaces {
                        return Some(Err(ReadError::BadInterface { offset: at }));
                    }
                    let Some(data) = body.get(20..20 + caplen as usize) else {
                        return Some(Err(ReadError::BadBlock { offset: at }));
                    };
                    let ts = (u64::from(ts_hi) << 32) | u64::from(ts_lo);
                    self.last = at;
                    return Some(Ok(Packet {
                        ts_ns: ts_to_ns(ts, self.tsresol[ifid as usize]),
                        orig_len: orig,
                        data,
                        interface: ifid,
                    }));
                }
                SPB_TYPE => {
                    if self.interfaces == 0 {
                        return Some(Err(ReadError::BadInterface { offset: at }));
                    }
                    let Some(orig) = e.u32(body, 0) else {
                        return Some(Err(ReadError::BadBlock { offset: at }));
                    };
                    let mut caplen = orig as usize;
                    if self.snaplen0 != 0 {
                        caplen = caplen.min(self.snaplen0 as usize);
                    }
                    let Some(data) = body.get(4..4 + caplen) else {
                        return Some(Err(ReadError::BadBlock { offset: at }));
                    };
                    self.last = at;
                    return Some(Ok(Packet {
                        ts_ns: 0,
                        orig_len: orig,
                        data,
                        interface: 0,
                    }));
                }
                _ => {} // SHB, ISB, local-use padding, anything else: no packet
            }
        }
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Result<Packet<'a>, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = match self.format {
            Format::Pcap { nanos, .. } => self.next_pcap(nanos),
            Format::Pcapng => self.next_pcapng(),
            Format::Raw => self.next_raw(),
        };
        if matches!(r, Some(Err(_))) {
            self.failed = true;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::super::pcapng::{write_file_header, InterfaceInfo, EPB_TYPE};
    use super::*;

    fn pcap_file(nanos: bool, big: bool, frames: &[(u32, u32, &[u8])]) -> ([u8; 4096], usize) {
        let mut out = [0u8; 4096];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            out[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        let w = |v: u32| {
            if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        put(&w(if nanos { PCAP_MAGIC_NS } else { PCAP_MAGIC_US }));
        put(&(if big {
            2u16.to_be_bytes()
        } else {
            2u16.to_le_bytes()
        }));
        put(&(if big {
            4u16.to_be_bytes()
        } else {
            4u16.to_le_bytes()
        }));
        put(&[0; 8]);
        put(&w(65535));
        put(&w(1));
        for (sec, frac, data) in frames {
            put(&w(*sec));
            put(&w(*frac));
            put(&w(data.len() as u32));
            put(&w(data.len() as u32 + 4));
            put(data);
        }
        (out, n)
    }

    #[test]
    fn classic_pcap_all_magics() {
        for nanos in [false, true] {
            for big in [false, true] {
                let (buf, n) = pcap_file(nanos, big, &[(10, 5, b"abc"), (11, 7, b"hello")]);
                let mut it = Packets::new(&buf[..n]).unwrap();
                assert_eq!(
                    it.format(),
                    Format::Pcap {
                        nanos,
                        big_endian: big,
                        linktype: 1
                    }
                );
                let p = it.next().unwrap().unwrap();
                let mul = if nanos { 1 } else { 1000 };
                assert_eq!(p.ts_ns, 10_000_000_000 + 5 * mul);
                assert_eq!((p.data, p.orig_len), (&b"abc"[..], 7));
                let p = it.next().unwrap().unwrap();
                assert_eq!(p.data, b"hello");
                assert!(it.next().is_none());
            }
        }
    }

    #[test]
    fn truncated_pcap_record_is_an_error_once() {
        let (buf, n) = pcap_file(false, false, &[(1, 2, b"abcdef")]);
        let mut it = Packets::new(&buf[..n - 1]).unwrap();
        assert_eq!(it.next(), Some(Err(ReadError::Truncated { offset: 24 })));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn pcapng_header_then_epb() {
        let mut buf = [0u8; 8192];
        let info = InterfaceInfo {
            snaplen: 0,
            name: "hpcap0",
            description: "test",
        };
        let mut n = write_file_header(&mut buf, &info).unwrap();
        let frame = [0xABu8; 61];
        let ts: u64 = 1_700_000_000_123_456_789;
        let blen = 32 + super::super::pcapng::pad4(frame.len());
        for v in [
            EPB_TYPE,
            blen as u32,
            0,
            (ts >> 32) as u32,
            ts as u32,
            61,
            64,
        ] {
            buf[n..n + 4].copy_from_slice(&v.to_le_bytes());
            n += 4;
        }
        buf[n..n + 61].copy_from_slice(&frame);
        n += 64;
        buf[n..n + 4].copy_from_slice(&(blen as u32).to_le_bytes());
        n += 4;
        let hdr = n - blen;
        let mut it = Packets::new(&buf[..n]).unwrap();
        let p = it.next().unwrap().unwrap();
        assert_eq!((p.ts_ns, p.orig_len, p.data), (ts, 64, &frame[..]));
        assert_eq!(it.record_offset(), hdr);
        assert_eq!(it.state_changes(), 2, "one SHB, one IDB");
        let again = Packets::resume(&buf[..n], hdr, &it.state()).next();
        assert_eq!(again, Some(Ok(p)));
        assert!(it.next().is_none());
    }

    #[test]
    fn tsresol_conversions() {
        assert_eq!(ts_to_ns(5, 6), 5_000);
        assert_eq!(ts_to_ns(5, 9), 5);
        assert_eq!(ts_to_ns(5_000, 12), 5);
        assert_eq!(ts_to_ns(1 << 30, 0x80 | 30), 1_000_000_000);
        assert_eq!(ts_to_ns(u64::MAX, 0), u64::MAX);
        assert_eq!(ts_to_ns(3 << 40 | 1 << 39, 0x80 | 40), 3_500_000_000);
        assert_eq!(ts_to_ns(u64::MAX, 0x80 | 100), 0);
        assert_eq!(ts_to_ns(123, 40), 0);
    }

    #[test]
    fn resume_at_a_record_offset_reads_the_same_packets() {
        let (buf, n) = pcap_file(true, true, &[(1, 2, b"ab"), (3, 4, b"cde"), (5, 6, b"f")]);
        let mut it = Packets::new(&buf[..n]).unwrap();
        it.next().unwrap().unwrap();
        let p2 = it.next().unwrap().unwrap();
        let at = it.record_offset();
        assert_eq!(at, 24 + 16 + 2);
        let st = it.state();
        let mut rest = Packets::resume(&buf[..n], at, &st);
        assert_eq!(rest.next(), Some(Ok(p2)));
        let p3 = rest.next().unwrap().unwrap();
        assert_eq!(p3.data, b"f");
        assert!(rest.next().is_none());
        // A window starting at the record.
        let mut w = Packets::resume(&buf[at..n], 0, &st);
        assert_eq!(w.next(), Some(Ok(p2)));
        assert_eq!(w.next(), Some(Ok(p3)));
        assert!(w.next().is_none());
    }

    #[test]
    fn garbage_is_unknown_format() {
        assert_eq!(Packets::new(b"nope").unwrap_err(), ReadError::UnknownFormat);
        assert_eq!(Packets::new(b"").unwrap_err(), ReadError::UnknownFormat);
    }
}
