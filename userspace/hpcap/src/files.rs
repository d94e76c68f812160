// SPDX-License-Identifier: MIT
//! Capture files: detection, zero-copy reading (memory-mapped), and
//! writers for classic pcap (ns and µs), plain pcapng, HPCAP RAW and the
//! pieces of native hpcap stream files (4 KiB header, ISB trailer, padded
//! partial blocks). All record encoding is the shared core's.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use hpcap_core::block::header_at;
use hpcap_core::capfile::{Packets, ReadError};
use hpcap_core::format::StreamFormat;
use hpcap_core::pcapng::{
    self, write_file_header_with, write_idb_with, write_isb, write_pad_at, write_shb_with,
    BlockHeader, EpbOptions, InterfaceInfo, IsbInfo, SectionInfo, FILE_HEADER_LEN,
};
use hpcap_core::raw::{self, parse_raw, write_raw_pad};
use memmap2::Mmap;

use crate::{Error, Result};

/// What a capture file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FileKind {
    /// Native hpcap stream file: 4 KiB SHB+IDB header, then whole stream
    /// blocks of `block_size` bytes, each opened by a block header record.
    HpcapPcapng {
        /// Stream block size, from the first block header.
        block_size: u64,
    },
    /// Any other pcapng file.
    Pcapng,
    /// Classic pcap.
    Pcap {
        /// Nanosecond timestamps.
        nanos: bool,
    },
    /// HPCAP RAW records (no file header).
    Raw {
        /// Stream block size, if the records carry hpcap block headers.
        block_size: Option<u64>,
    },
}

impl FileKind {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::HpcapPcapng { .. } => "hpcap-pcapng",
            Self::Pcapng => "pcapng",
            Self::Pcap { nanos: true } => "pcap-ns",
            Self::Pcap { nanos: false } => "pcap-us",
            Self::Raw { .. } => "raw",
        }
    }
}

/// A capture file mapped into memory.
#[derive(Debug)]
pub struct CaptureFile {
    path: PathBuf,
    map: Option<Mmap>,
    kind: FileKind,
}

/// Detects the kind of capture `data` (`raw_hint`: the name says RAW).
pub fn detect(data: &[u8], raw_hint: bool) -> Option<FileKind> {
    let m = u32::from_le_bytes(data.get(..4)?.try_into().ok()?);
    use hpcap_core::capfile::{PCAP_MAGIC_NS, PCAP_MAGIC_US};
    match m {
        PCAP_MAGIC_US => return Some(FileKind::Pcap { nanos: false }),
        PCAP_MAGIC_NS => return Some(FileKind::Pcap { nanos: true }),
        x if x.swap_bytes() == PCAP_MAGIC_US => return Some(FileKind::Pcap { nanos: false }),
        x if x.swap_bytes() == PCAP_MAGIC_NS => return Some(FileKind::Pcap { nanos: true }),
        pcapng::SHB_TYPE => {
            return Some(
                match header_at(data, FILE_HEADER_LEN, StreamFormat::Pcapng) {
                    Some(h) => FileKind::HpcapPcapng {
                        block_size: u64::from(h.block_len),
                    },
                    None => FileKind::Pcapng,
                },
            )
        }
        _ => {}
    }
    let raw_ok = parse_raw(data, 0).is_ok();
    if raw_hint || raw_ok {
        // Only RAW files written by early versions have block headers.
        let block_size = header_at(data, 0, StreamFormat::Raw).map(|h| u64::from(h.block_len));
        return (raw_hint || raw_ok).then_some(FileKind::Raw { block_size });
    }
    None
}

impl CaptureFile {
    /// Maps `path` and detects its kind (`.raw` files are HPCAP RAW).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let f =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        let map = if len == 0 {
            None
        } else {
            // SAFETY: read-only private mapping; a file truncated while
            // mapped would fault, which our tools accept (they read files
            // that are complete or being appended to, never shrunk).
            Some(
                unsafe { Mmap::map(&f) }
                    .map_err(|e| Error::io(format!("mapping {}", path.display()), e))?,
            )
        };
        let raw_hint = path.extension().is_some_and(|e| e == "raw");
        let data: &[u8] = map.as_deref().unwrap_or(&[]);
        let kind = detect(data, raw_hint).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: not a pcap, pcapng or HPCAP RAW file{}",
                path.display(),
                if data.is_empty() { " (empty)" } else { "" }
            ))
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            kind,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's bytes.
    pub fn data(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// Its kind.
    pub fn kind(&self) -> FileKind {
        self.kind
    }

    /// Its packets, in file order.
    pub fn packets(&self) -> std::result::Result<Packets<'_>, ReadError> {
        match self.kind {
            FileKind::Raw { .. } => Ok(Packets::new_raw(self.data())),
            _ => Packets::new(self.data()),
        }
    }
}

/// Output formats of [`PacketWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutFormat {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// Classic pcap, microsecond timestamps.
    PcapUs,
    /// Plain pcapng (SHB, IDB with ns resolution, EPBs; no local blocks).
    Pcapng,
    /// HPCAP RAW records.
    Raw,
}

/// Writes packets into a capture file of an [`OutFormat`].
#[derive(Debug)]
pub struct PacketWriter<W: Write> {
    out: W,
    fmt: OutFormat,
    buf: Vec<u8>,
    packets: u64,
    bytes: u64,
    first_ts: Option<u64>,
    last_ts: u64,
}

/// The SHB strings hpcap tools write.
pub fn section_info() -> SectionInfo<'static> {
    SectionInfo {
        hardware: "",
        os: "Linux",
        userappl: concat!("hpcap-rs ", env!("CARGO_PKG_VERSION")),
    }
}

impl<W: Write> PacketWriter<W> {
    /// Starts a file: writes the format's header. `ifname` names the
    /// pcapng interface.
    pub fn new(mut out: W, fmt: OutFormat, snaplen: u32, ifname: &str) -> Result<Self> {
        let mut buf = vec![0u8; 4096];
        let n = match fmt {
            OutFormat::Pcap | OutFormat::PcapUs => {
                raw::write_pcap_header(&mut buf, 0, fmt == OutFormat::Pcap, snaplen)
                    .map_err(|e| Error::Invalid(format!("pcap header: {e:?}")))?
            }
            OutFormat::Pcapng => {
                let s = write_shb_with(&mut buf, 0, &section_info())
                    .map_err(|e| Error::Invalid(format!("SHB: {e:?}")))?;
                let info = InterfaceInfo {
                    snaplen,
                    name: ifname,
                    description: "",
                };
                s + write_idb_with(&mut buf, s, &info, "")
                    .map_err(|e| Error::Invalid(format!("IDB: {e:?}")))?
            }
            OutFormat::Raw => 0,
        };
        out.write_all(&buf[..n])
            .map_err(|e| Error::io("writing the file header", e))?;
        Ok(Self {
            out,
            fmt,
            buf,
            packets: 0,
            bytes: 0,
            first_ts: None,
            last_ts: 0,
        })
    }

    /// Appends one packet.
    pub fn write(&mut self, ts_ns: u64, orig_len: u32, data: &[u8]) -> Result<()> {
        let need = data.len() + 64;
        if self.buf.len() < need {
            self.buf.resize(need, 0);
        }
        let r = match self.fmt {
            OutFormat::Pcap | OutFormat::PcapUs => raw::write_pcap_record(
                &mut self.buf,
                0,
                self.fmt == OutFormat::Pcap,
                ts_ns,
                orig_len,
                data,
            ),
            OutFormat::Pcapng => pcapng::write_epb(
                &mut self.buf,
                0,
                0,
                ts_ns,
                orig_len,
                data,
                &EpbOptions::NONE,
            ),
            OutFormat::Raw => raw::write_raw(&mut self.buf, 0, ts_ns, orig_len, data),
        };
        let n = r.map_err(|e| {
            Error::Invalid(format!(
                "packet of {} B at {ts_ns} ns cannot be written in this format: {e:?}",
                data.len()
            ))
        })?;
        self.out
            .write_all(&self.buf[..n])
            .map_err(|e| Error::io("writing a packet", e))?;
        self.packets += 1;
        self.bytes += data.len() as u64;
        self.first_ts.get_or_insert(ts_ns);
        self.last_ts = ts_ns;
        Ok(())
    }

    /// Packets and captured bytes written so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }

    /// Ends the file: for pcapng, an ISB with `isb`'s counters (if given)
    /// and the time range; then flushes. Returns the writer.
    pub fn finish(mut self, isb: Option<IsbInfo>) -> Result<W> {
        if self.fmt == OutFormat::Pcapng {
            if let Some(mut i) = isb {
                i.start_ns = i.start_ns.or(self.first_ts);
                i.end_ns = i.end_ns.or(self.first_ts.map(|_| self.last_ts));
                let n = write_isb(&mut self.buf, 0, &i)
                    .map_err(|e| Error::Invalid(format!("ISB: {e:?}")))?;
                self.out
                    .write_all(&self.buf[..n])
                    .map_err(|e| Error::io("writing the ISB", e))?;
            }
        }
        self.out.flush().map_err(|e| Error::io("flushing", e))?;
        Ok(self.out)
    }
}

/// The 4 KiB header of a native stream file: SHB, IDB (ns), padding.
pub fn stream_file_header(snaplen: u32, ifname: &str, description: &str) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; FILE_HEADER_LEN];
    let info = InterfaceInfo {
        snaplen,
        name: ifname,
        description,
    };
    write_file_header_with(&mut buf, &section_info(), &info, "")
        .map_err(|e| Error::Invalid(format!("file header: {e:?}")))?;
    Ok(buf)
}

/// An ISB followed by a padding block, `len` bytes in all (a multiple of
/// 4 KiB keeps O_DIRECT files aligned).
pub fn isb_trailer(isb: &IsbInfo, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let n = write_isb(&mut buf, 0, isb).map_err(|e| Error::Invalid(format!("ISB: {e:?}")))?;
    write_pad_at(&mut buf, n, len - n).map_err(|e| Error::Invalid(format!("padding: {e:?}")))?;
    Ok(buf)
}

/// Fills `block[used..]` with padding records of the stream format
/// (`abi::FORMAT_*`), turning a published block prefix into a whole block.
pub fn pad_block_tail(block: &mut [u8], used: usize, format: u32) -> Result<()> {
    let len = block.len() - used;
    if len == 0 {
        return Ok(());
    }
    let r = if format == hpcap_core::abi::FORMAT_PCAPNG {
        write_pad_at(block, used, len)
    } else {
        write_raw_pad(block, used, len)
    };
    r.map(|_| ())
        .map_err(|e| Error::Invalid(format!("padding {len} B at {used}: {e:?}")))
}

/// Rewrites the block header at the start of `block` (if any) marked as
/// flushed and final, with counts and timestamps matching `records`,
/// `first_ts`, `last_ts`.
pub fn finalize_block_header(
    block: &mut [u8],
    format: u32,
    records: u32,
    first_ts: Option<u64>,
    last_ts: u64,
) -> Result<()> {
    let Some(mut h): Option<BlockHeader> = crate::stream::block_header(block, format) else {
        return Ok(());
    };
    h.records = records;
    if let Some(f) = first_ts {
        h.first_ts_ns = f;
        h.last_ts_ns = last_ts;
    }
    h.flags |= pcapng::BH_FLAG_FINAL | pcapng::BH_FLAG_FLUSHED;
    let r = if format == hpcap_core::abi::FORMAT_PCAPNG {
        pcapng::write_block_header(block, 0, &h)
    } else {
        raw::write_raw_block_header(block, 0, &h)
    };
    r.map(|_| ())
        .map_err(|e| Error::Invalid(format!("block header: {e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_roundtrip_through_the_core_reader() {
        for fmt in [
            OutFormat::Pcap,
            OutFormat::PcapUs,
            OutFormat::Pcapng,
            OutFormat::Raw,
        ] {
            let mut w = PacketWriter::new(Vec::new(), fmt, 0, "x").unwrap();
            w.write(1_700_000_000_123_456_789, 70, &[1u8; 60]).unwrap();
            w.write(1_700_000_001_000_000_000, 61, &[2u8; 61]).unwrap();
            let out = w.finish(Some(IsbInfo::default())).unwrap();
            let kind = detect(&out, fmt == OutFormat::Raw).unwrap();
            let pk: Vec<_> = match kind {
                FileKind::Raw { .. } => Packets::new_raw(&out).collect(),
                _ => Packets::new(&out).unwrap().collect(),
            };
            assert_eq!(pk.len(), 2, "{fmt:?}");
            let p0 = pk[0].unwrap();
            assert_eq!(p0.orig_len, 70);
            let want = if fmt == OutFormat::PcapUs {
                1_700_000_000_123_456_000
            } else {
                1_700_000_000_123_456_789
            };
            assert_eq!(p0.ts_ns, want, "{fmt:?}");
            assert_eq!(pk[1].unwrap().data, &[2u8; 61][..]);
        }
    }

    #[test]
    fn trailer_and_padding() {
        let t = isb_trailer(&IsbInfo::default(), 4096).unwrap();
        let blocks: Vec<_> = pcapng::Blocks::new(&t).collect();
        assert_eq!(blocks.len(), 2);
        let mut b = vec![0xEEu8; 1024];
        pad_block_tail(&mut b, 100, hpcap_core::abi::FORMAT_RAW).unwrap();
        assert!(parse_raw(&b, 100).is_ok());
    }
}
