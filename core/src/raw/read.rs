// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The RAW reader and the pcap writer and converters (userspace only: the
//! kernel module writes RAW records and never parses them).

use super::*;

// ---------------------------------------------------------------------------
// Reader

/// Why RAW data cannot be read (further).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawError {
    /// The data ends inside the record starting at `offset`.
    Truncated {
        /// Byte offset of the record.
        offset: usize,
    },
    /// The record at `offset` is impossible: `nsec` of a second or more, a
    /// packet with `caplen > len`, or padding with `caplen != len`.
    BadRecord {
        /// Byte offset of the record.
        offset: usize,
    },
}

/// A RAW packet, borrowed from the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// Seconds.
    pub sec: u32,
    /// Nanoseconds.
    pub nsec: u32,
    /// Length on the wire.
    pub orig_len: u16,
    /// Captured bytes.
    pub data: &'a [u8],
}

impl RawPacket<'_> {
    /// Timestamp in nanoseconds.
    pub fn ts_ns(&self) -> u64 {
        u64::from(self.sec) * NS_PER_SEC + u64::from(self.nsec)
    }
}

/// One RAW record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawRecord<'a> {
    /// A captured frame.
    Packet(RawPacket<'a>),
    /// Padding of `len` bytes (header included); `header` is set when the
    /// filler is a valid hpcap [`BlockHeader`].
    Padding {
        /// Total length of the padding record.
        len: usize,
        /// Block header carried in the filler, if any.
        header: Option<BlockHeader>,
    },
}

/// Parses the RAW record at `data[at..]`; returns it and its length.
pub fn parse_raw(data: &[u8], at: usize) -> Result<(RawRecord<'_>, usize), RawError> {
    let hdr = RawHeader::decode(data, at).ok_or(RawError::Truncated { offset: at })?;
    let start = at + RAW_HEADER_LEN; // decode checked at + 12
    let body = data
        .get(start..start + usize::from(hdr.caplen))
        .ok_or(RawError::Truncated { offset: at })?;
    let len = hdr.record_len();
    if hdr.is_padding() {
        if hdr.caplen != hdr.len {
            return Err(RawError::BadRecord { offset: at });
        }
        let header = if body.len() == BLOCK_HEADER_BODY_LEN {
            BlockHeader::decode(body, false)
        } else {
            None
        };
        return Ok((RawRecord::Padding { len, header }, len));
    }
    if u64::from(hdr.nsec) >= NS_PER_SEC || hdr.caplen > hdr.len {
        return Err(RawError::BadRecord { offset: at });
    }
    Ok((
        RawRecord::Packet(RawPacket {
            sec: hdr.sec,
            nsec: hdr.nsec,
            orig_len: hdr.len,
            data: body,
        }),
        len,
    ))
}

/// Iterator over the records of RAW data, yielding `(offset, record)`; it
/// ends after the first error.
#[derive(Debug, Clone)]
pub struct RawRecords<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RawRecords<'a> {
    /// Records of `data`, from its first byte.
    pub fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            pos: 0,
            failed: false,
        }
    }

    /// Offset of the next record.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for RawRecords<'a> {
    type Item = Result<(usize, RawRecord<'a>), RawError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        match parse_raw(self.data, self.pos) {
            Ok((r, len)) => {
                let at = self.pos;
                self.pos += len;
                Some(Ok((at, r)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Converters (record by record, into caller buffers)

/// Classic pcap file header length.
pub const PCAP_HEADER_LEN: usize = 24;
/// Classic pcap record header length.
pub const PCAP_RECORD_HEADER_LEN: usize = 16;

/// Writes a little-endian classic pcap file header (Ethernet) at `buf[at..]`:
/// magic `0xA1B23C4D` when `nanos`, `0xA1B2C3D4` otherwise.
pub fn write_pcap_header(
    buf: &mut [u8],
    at: usize,
    nanos: bool,
    snaplen: u32,
) -> Result<usize, WriteError> {
    let magic: u32 = if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 };
    let mut h = [0u8; PCAP_HEADER_LEN];
    h[0..4].copy_from_slice(&magic.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone and sigfigs stay 0
    h[16..20].copy_from_slice(&(if snaplen == 0 { 262_144 } else { snaplen }).to_le_bytes());
    h[20..24].copy_from_slice(&u32::from(LINKTYPE_ETHERNET).to_le_bytes());
    let end = at.checked_add(PCAP_HEADER_LEN).ok_or(WriteError::NoSpace)?;
    buf.get_mut(at..end)
        .ok_or(WriteError::NoSpace)?
        .copy_from_slice(&h);
    Ok(PCAP_HEADER_LEN)
}

/// Writes a classic pcap record (16-byte header + `data`) at `buf[at..]`,
/// with nanosecond or (truncated) microsecond fraction. Returns its length.
pub fn write_pcap_record(
    buf: &mut [u8],
    at: usize,
    nanos: bool,
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
) -> Result<usize, WriteError> {
    let sec = u32::try_from(ts_ns / NS_PER_SEC).map_err(|_| WriteError::BadValue)?;
    let ns = (ts_ns % NS_PER_SEC) as u32;
    let frac = if nanos { ns } else { ns / 1000 };
    let caplen = u32::try_from(data.len()).map_err(|_| WriteError::BadValue)?;
    let total = PCAP_RECORD_HEADER_LEN
        .checked_add(data.len())
        .ok_or(WriteError::NoSpace)?;
    let end = at.checked_add(total).ok_or(WriteError::NoSpace)?;
    let region = buf.get_mut(at..end).ok_or(WriteError::NoSpace)?;
    let (head, tail) = region
        .split_at_mut_checked(PCAP_RECORD_HEADER_LEN)
        .ok_or(WriteError::NoSpace)?;
    head[0..4].copy_from_slice(&sec.to_le_bytes());
    head[4..8].copy_from_slice(&frac.to_le_bytes());
    head[8..12].copy_from_slice(&caplen.to_le_bytes());
    head[12..16].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
    tail.copy_from_slice(data);
    Ok(total)
}

/// RAW packet to an EPB (interface `interface`, ns timestamps) at `buf[at..]`.
pub fn raw_to_epb(
    p: &RawPacket<'_>,
    buf: &mut [u8],
    at: usize,
    interface: u32,
) -> Result<usize, WriteError> {
    write_epb(
        buf,
        at,
        interface,
        p.ts_ns(),
        u32::from(p.orig_len),
        p.data,
        &EpbOptions::NONE,
    )
}

/// RAW packet to a classic pcap record at `buf[at..]`.
pub fn raw_to_pcap(
    p: &RawPacket<'_>,
    buf: &mut [u8],
    at: usize,
    nanos: bool,
) -> Result<usize, WriteError> {
    write_pcap_record(buf, at, nanos, p.ts_ns(), u32::from(p.orig_len), p.data)
}

/// Any packet (e.g. a `capfile::Packet` from pcap or pcapng) to a RAW record
/// at `buf[at..]`; frames longer than [`RAW_MAX_CAPLEN`] are an error.
pub fn packet_to_raw(
    ts_ns: u64,
    orig_len: u32,
    data: &[u8],
    buf: &mut [u8],
    at: usize,
) -> Result<usize, WriteError> {
    write_raw(buf, at, ts_ns, orig_len, data)
}
