// SPDX-License-Identifier: MIT
//! `hpcap-check`: validates capture files (hpcap stream files block by
//! block with the core's `check_block`, other pcapng, pcap and RAW files
//! record by record), reports what they hold, and repairs truncated tails.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Parser;
use hpcap::core::abi;
use hpcap::core::block::{check_block, Layout};
use hpcap::core::format::StreamFormat;
use hpcap::core::pcapng::{parse_block, Block, Blocks, Endian, IsbInfo, FILE_HEADER_LEN};
use hpcap::core::raw::{RawRecord, RawRecords};
use hpcap::files::{finalize_block_header, isb_trailer, pad_block_tail, CaptureFile, FileKind};
use hpcap::util::Utc;
use serde::Serialize;

/// Validate capture files; repair truncated ones.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Checks each FILE: hpcap stream files (.pcapng from hpcapdd) block by block \
(structure, block headers against their contents, block sequence, timestamp order, the closing \
statistics block), other pcapng and classic pcap files and HPCAP RAW (.raw) files record by \
record. Reports packets, bytes, time range, and drops recorded in Interface Statistics Blocks \
and block headers.",
    after_help = "\
REPAIR: --repair rewrites a file whose tail is truncated or garbled (e.g. after a crash or
power loss) in place: complete blocks and records are kept; in an hpcap stream file the
complete records of a cut last block are kept and the block is padded and closed, then a
statistics block is appended. Anything after the first damaged byte is dropped. An empty
unfinished file (.NAME.pcapng or .NAME.raw of 0 bytes: hpcapdd stopped between creating
and writing it) is removed.

EXIT STATUS: 0 if every file is valid (or was repaired), 1 if some file is invalid or
unreadable, 2 on bad usage.

EXAMPLES:
  hpcap-check /data/2024-05-01/13/*.pcapng
  hpcap-check --json capture.pcapng | jq .packets
  hpcap-check --repair /data/2024-05-01/13/.20240501-130500.000000000-hpcap0.pcapng"
)]
struct Args {
    /// Repair files with a truncated or damaged tail (in place).
    #[arg(long)]
    repair: bool,
    /// Print one JSON object per file.
    #[arg(long)]
    json: bool,
    /// Files to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    file: PathBuf,
    format: String,
    valid: bool,
    error: Option<String>,
    /// Byte offset up to which the file is valid.
    valid_bytes: u64,
    size: u64,
    packets: u64,
    bytes: u64,
    first_ts: Option<String>,
    last_ts: Option<String>,
    blocks: u64,
    block_seq_gaps: u64,
    block_drops: u64,
    isb_ifdrop: Option<u64>,
    isb_osdrop: Option<u64>,
    isb_ifrecv: Option<u64>,
    timestamps_ordered: bool,
    repaired: bool,
    #[serde(skip)]
    first_ns: Option<u64>,
    #[serde(skip)]
    last_ns: u64,
    #[serde(skip)]
    block_size: u64,
}

impl Report {
    fn packet(&mut self, ts: u64, caplen: usize) {
        self.packets += 1;
        self.bytes += caplen as u64;
        if self.packets > 1 && ts < self.last_ns {
            self.timestamps_ordered = false;
        }
        self.first_ns.get_or_insert(ts);
        self.last_ns = ts;
    }

    fn isb(&mut self, i: IsbInfo) {
        self.isb_ifdrop = i.ifdrop.or(self.isb_ifdrop);
        self.isb_osdrop = i.osdrop.or(self.isb_osdrop);
        self.isb_ifrecv = i.ifrecv.or(self.isb_ifrecv);
    }

    fn fail(&mut self, at: u64, why: String) {
        self.valid = false;
        self.valid_bytes = at;
        self.error = Some(why);
    }
}

/// hpcap stream file: header, whole blocks, then an ISB trailer.
fn check_stream(data: &[u8], bs: u64, r: &mut Report) {
    r.block_size = bs;
    let layout = match Layout::new(bs, bs, StreamFormat::Pcapng) {
        Ok(l) => l,
        Err(e) => {
            return r.fail(
                FILE_HEADER_LEN as u64,
                format!("bad block size {bs}: {e:?}"),
            )
        }
    };
    // The header: SHB, IDB with ns resolution, padding.
    let mut tsresol_ok = false;
    for b in Blocks::new(&data[..FILE_HEADER_LEN.min(data.len())]) {
        match b {
            Ok((_, Block::Idb(i))) => tsresol_ok = i.tsresol() == 9,
            Ok(_) => {}
            Err(e) => return r.fail(0, format!("bad file header: {e:?}")),
        }
    }
    if !tsresol_ok {
        return r.fail(0, "file header has no nanosecond IDB".into());
    }
    let mut at = FILE_HEADER_LEN;
    let mut prev_seq: Option<u64> = None;
    let bsz = bs as usize;
    while at + bsz <= data.len() {
        let blk = &data[at..at + bsz];
        // A block starts with a block header; anything else ends the blocks.
        if hpcap::stream::block_header(blk, abi::FORMAT_PCAPNG).is_none() {
            break;
        }
        match check_block(blk, &layout, None) {
            Ok(info) => {
                let h = info.header.expect("pcapng blocks have headers");
                if let Some(p) = prev_seq {
                    if h.seq <= p {
                        return r.fail(
                            at as u64,
                            format!("block sequence goes back ({} after {p})", h.seq),
                        );
                    }
                    if h.seq != p + 1 {
                        r.block_seq_gaps += 1;
                    }
                }
                prev_seq = Some(h.seq);
                r.block_drops += h.drops;
                r.blocks += 1;
                for b in Blocks::new(blk) {
                    match b {
                        Ok((_, Block::Epb(e))) => r.packet(e.ts, e.data.len()),
                        Ok((_, Block::Isb(i))) => r.isb(i.info()),
                        _ => {}
                    }
                }
            }
            Err(e) => return r.fail(at as u64, format!("block at {at}: {e:?}")),
        }
        at += bsz;
    }
    r.valid_bytes = at as u64;
    // The tail: ISB (+ padding) or nothing.
    let mut tail = Blocks::new(&data[at..]);
    let mut saw_isb = false;
    for b in tail.by_ref() {
        match b {
            Ok((_, Block::Isb(i))) => {
                r.isb(i.info());
                saw_isb = true;
            }
            Ok((_, Block::Pad)) | Ok((_, Block::Other { .. })) => {}
            Ok((off, Block::Header(_))) => {
                return r.fail(
                    (at + off) as u64,
                    format!(
                        "truncated block at {} ({} of {bs} bytes)",
                        at + off,
                        data.len() - at - off
                    ),
                )
            }
            Ok((off, _)) => {
                return r.fail(
                    (at + off) as u64,
                    "unexpected block after the stream blocks".into(),
                )
            }
            Err(e) => {
                return r.fail(
                    at as u64 + tail.offset() as u64,
                    format!("damaged tail: {e:?}"),
                )
            }
        }
    }
    r.valid_bytes = data.len() as u64;
    if !saw_isb && data.len() > FILE_HEADER_LEN {
        // Valid pcapng, but not closed by hpcapdd (still being written, or
        // cut exactly at a block boundary).
        r.error = Some("no closing statistics block (file not closed)".into());
    }
}

fn check_generic(f: &CaptureFile, r: &mut Report) {
    let data = f.data();
    match f.kind() {
        FileKind::Pcapng => {
            let mut it = Blocks::new(data);
            for b in it.by_ref() {
                match b {
                    Ok((_, Block::Epb(e))) => r.packet(e.ts, e.data.len()),
                    Ok((_, Block::Isb(i))) => r.isb(i.info()),
                    Ok(_) => {}
                    Err(e) => {
                        let at = it.offset() as u64;
                        return r.fail(at, format!("at byte {at}: {e:?}"));
                    }
                }
            }
            // Timestamps in interface units: use the core reader for ns.
            r.packets = 0;
            r.bytes = 0;
            r.first_ns = None;
            if let Ok(p) = f.packets() {
                for pk in p.flatten() {
                    r.packet(pk.ts_ns, pk.data.len());
                }
            }
            r.valid_bytes = data.len() as u64;
        }
        FileKind::Pcap { .. } => {
            let mut it = match f.packets() {
                Ok(it) => it,
                Err(e) => return r.fail(0, format!("{e:?}")),
            };
            loop {
                let at = it.offset() as u64;
                match it.next() {
                    Some(Ok(p)) => r.packet(p.ts_ns, p.data.len()),
                    Some(Err(e)) => return r.fail(at, format!("at byte {at}: {e:?}")),
                    None => break,
                }
            }
            r.valid_bytes = data.len() as u64;
        }
        FileKind::Raw { block_size } => {
            r.block_size = block_size.unwrap_or(0);
            let mut it = RawRecords::new(data);
            for rec in it.by_ref() {
                match rec {
                    Ok((_, RawRecord::Packet(p))) => r.packet(p.ts_ns(), p.data.len()),
                    Ok((
                        _,
                        RawRecord::Padding {
                            header: Some(h), ..
                        },
                    )) => {
                        r.blocks += 1;
                        r.block_drops += h.drops;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let at = it.offset() as u64;
                        return r.fail(at, format!("at byte {at}: {e:?}"));
                    }
                }
            }
            r.valid_bytes = data.len() as u64;
        }
        FileKind::HpcapPcapng { .. } => unreachable!("handled by check_stream"),
    }
}

fn check(path: &Path) -> Report {
    let mut r = Report {
        file: path.to_path_buf(),
        valid: true,
        timestamps_ordered: true,
        ..Report::default()
    };
    let f = match CaptureFile::open(path) {
        Ok(f) => f,
        Err(e) => {
            r.valid = false;
            r.format = "unknown".into();
            r.error = Some(e.to_string());
            return r;
        }
    };
    r.size = f.data().len() as u64;
    r.format = f.kind().name().into();
    match f.kind() {
        FileKind::HpcapPcapng { block_size } => check_stream(f.data(), block_size, &mut r),
        _ => check_generic(&f, &mut r),
    }
    r.first_ts = r.first_ns.map(|t| Utc::from_ns(t).rfc3339());
    r.last_ts = r.first_ns.map(|_| Utc::from_ns(r.last_ns).rfc3339());
    r
}

/// Cuts the file at its last valid byte; for hpcap stream files salvages
/// the complete records of a cut block and closes the file with an ISB.
fn repair(path: &Path, r: &Report) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let good = r.valid_bytes as usize;
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("opening {} for repair", path.display()))?;
    if r.format == "hpcap-pcapng" && good >= FILE_HEADER_LEN {
        let bs = r.block_size as usize;
        let rest = &data[good..];
        let mut tail = Vec::new();
        if hpcap::stream::block_header(rest, abi::FORMAT_PCAPNG).is_some() {
            // Keep the complete records of the cut block.
            let lim = &rest[..rest.len().min(bs)];
            let (mut n, mut first, mut last) = (0u32, None, 0u64);
            let mut used = 0;
            while let Ok((blk, len)) = parse_block(lim, used, Endian::LE) {
                match blk {
                    Block::Header(_) if used != 0 => break,
                    Block::Pad => break,
                    Block::Epb(e) => {
                        n += 1;
                        first.get_or_insert(e.ts);
                        last = e.ts;
                    }
                    _ => {}
                }
                used += len;
            }
            if n > 0 {
                let mut blk = vec![0u8; bs];
                blk[..used].copy_from_slice(&rest[..used]);
                pad_block_tail(&mut blk, used, abi::FORMAT_PCAPNG)?;
                finalize_block_header(&mut blk, abi::FORMAT_PCAPNG, n, first, last)?;
                tail.extend_from_slice(&blk);
            }
        }
        let isb = IsbInfo {
            ts_ns: r.last_ns,
            start_ns: r.first_ns,
            end_ns: r.first_ns.map(|_| r.last_ns),
            ..IsbInfo::default()
        };
        tail.extend_from_slice(&isb_trailer(&isb, 4096)?);
        f.set_len(good as u64)?;
        f.seek(SeekFrom::Start(good as u64))?;
        f.write_all(&tail)?;
    } else {
        f.set_len(good as u64)
            .with_context(|| format!("truncating {}", path.display()))?;
    }
    f.sync_all()?;
    Ok(())
}

/// An empty file named like one hpcapdd is writing (`.NAME.pcapng`,
/// `.NAME.raw`): it stopped between creating and writing it.
fn is_empty_unfinished(p: &Path) -> bool {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
    name.is_some_and(|n| n.starts_with('.') && (n.ends_with(".pcapng") || n.ends_with(".raw")))
        && std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.len() == 0)
}

fn print(r: &Report, json: bool) {
    if json {
        println!("{}", serde_json::to_string(r).unwrap_or_default());
        return;
    }
    let status = match (&r.error, r.valid) {
        (_, false) => "INVALID",
        (Some(_), true) => "valid (not closed)",
        (None, true) => "valid",
    };
    println!(
        "{}: {status}{}  format {}  {} packets  {} bytes  {} .. {}  blocks {} (seq gaps {})  drops: blocks {} isb-if {} isb-os {}{}",
        r.file.display(),
        if r.repaired { " (repaired)" } else { "" },
        r.format,
        r.packets,
        r.bytes,
        r.first_ts.as_deref().unwrap_or("-"),
        r.last_ts.as_deref().unwrap_or("-"),
        r.blocks,
        r.block_seq_gaps,
        r.block_drops,
        r.isb_ifdrop.map_or("-".into(), |v| v.to_string()),
        r.isb_osdrop.map_or("-".into(), |v| v.to_string()),
        if r.timestamps_ordered { "" } else { "  TIMESTAMPS OUT OF ORDER" }
    );
    if let (Some(e), false) = (&r.error, r.valid) {
        println!(
            "  error: {e} (valid up to byte {} of {})",
            r.valid_bytes, r.size
        );
    }
}

fn main() {
    let args = Args::parse();
    let mut bad = false;
    for p in &args.files {
        if args.repair && is_empty_unfinished(p) {
            // hpcapdd stopped between creating the file and writing to it.
            match std::fs::remove_file(p) {
                Ok(()) => println!(
                    "{}: removed (an empty unfinished file: hpcapdd stopped before writing to it)",
                    p.display()
                ),
                Err(e) => {
                    eprintln!("hpcap-check: {}: cannot remove it: {e}", p.display());
                    bad = true;
                }
            }
            continue;
        }
        let mut r = check(p);
        if !r.valid && args.repair && r.size > 0 && r.format != "unknown" {
            match repair(p, &r) {
                Ok(()) => {
                    let mut again = check(p);
                    again.repaired = true;
                    if !again.valid {
                        eprintln!("hpcap-check: {}: still invalid after repair", p.display());
                    }
                    r = again;
                }
                Err(e) => eprintln!("hpcap-check: {}: repair failed: {e:#}", p.display()),
            }
        }
        bad |= !r.valid;
        print(&r, args.json);
    }
    std::process::exit(i32::from(bad));
}
