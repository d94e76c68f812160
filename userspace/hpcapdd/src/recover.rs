// SPDX-License-Identifier: MIT
//! Files a killed `hpcapdd` left behind, and the blocks a resumed named
//! listener delivers again.
//!
//! While `hpcapdd` writes a file it is named `.NAME` (hidden) and holds an
//! exclusive `flock` on it; a complete file is renamed to `NAME`. A process
//! killed mid-file leaves the hidden file unlocked: a pcapng header, whole
//! blocks, and maybe part of the block it was writing (or the statistics
//! block it was appending). [`recover`] finishes every such orphan under
//! the output directory: it cuts the file after its last complete block
//! that checks out (`check_block`), appends a statistics block (pcapng), and
//! renames it as a normal file. The part of a block it cuts was never
//! acknowledged (hpcapdd acknowledges a block only after writing it whole),
//! so a resumed listener delivers it again.
//!
//! Blocks written whole but not yet acknowledged when the predecessor died
//! are delivered again too. The driver keeps them byte for byte (a blocking
//! listener's unacknowledged bytes are never overwritten), so [`ResumeSkip`]
//! recognises them by content: the first blocks after a take-over that are
//! identical to the last blocks of the newest stored file of the interface
//! are skipped rather than stored twice. Content identity is the test for both formats: in pcapng
//! every block opens with a header carrying its stream offset, so equal
//! bytes mean the same stream block; RAW blocks have no header, and equal
//! bytes mean the same records with the same timestamps at the same places.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use hpcap::core::block::{check_block, header_at, Layout};
use hpcap::core::format::StreamFormat;
use hpcap::core::pcapng::{Block, Blocks, IsbInfo, FILE_HEADER_LEN};
use hpcap::core::stats::CaptureStats;
use hpcap::files::isb_trailer;

/// A hidden file of zero bytes younger than this may be one a live
/// `hpcapdd` has just created and not yet locked: left alone.
const FRESH_EMPTY: Duration = Duration::from_secs(60);

/// How many trailing blocks of a recovered file a resumed listener may
/// find again (hpcapdd acknowledges each block before writing the next, so
/// at most one is ever written and not acknowledged).
const MAX_TAIL_BLOCKS: u64 = 8;

/// What the current source is, for orphans of the same interface.
pub(crate) struct Ctx<'a> {
    /// Interface name in file names (`hpcapN`, a software source's name).
    pub(crate) ifname: &'a str,
    /// The stream's block size (RAW files carry none of their own).
    pub(crate) block_size: u64,
    /// The source's counters and which NIC counters are real, for the
    /// statistics block of recovered files of this interface.
    pub(crate) counters: Option<(CaptureStats, u32)>,
}

/// A finished orphan.
#[derive(Debug, Clone)]
pub(crate) struct Recovered {
    /// Its new (complete) name.
    pub(crate) path: PathBuf,
    /// File offset of its first block (4096 for pcapng, 0 for RAW).
    pub(crate) data_start: u64,
    /// Whole blocks kept.
    pub(crate) blocks: u64,
    /// Their size.
    pub(crate) block_size: u64,
    /// Bytes cut after the last complete block (part of a block, an old
    /// statistics block).
    pub(crate) cut: u64,
    /// Timestamps of its first and last packet.
    pub(crate) first_ts: Option<u64>,
    pub(crate) last_ts: Option<u64>,
}

/// What happened to one hidden file.
#[derive(Debug)]
pub(crate) enum Orphan {
    /// Finished and renamed.
    Recovered(Recovered),
    /// Held no complete block: removed.
    Removed { hidden: PathBuf, why: &'static str },
    /// Locked by a running `hpcapdd` (or possibly just created by one).
    Busy(PathBuf),
    /// Not recognisably hpcapdd's, or damaged before its first block: left
    /// as it is.
    Skipped { hidden: PathBuf, why: String },
}

impl Orphan {
    /// A line for the log.
    pub(crate) fn describe(&self) -> String {
        match self {
            Orphan::Recovered(r) => format!(
                "finished {}: {} complete block(s) of {} B kept{}{}",
                r.path.display(),
                r.blocks,
                r.block_size,
                if r.cut > 0 {
                    format!(
                        ", {} B after them cut (an unfinished block or trailer)",
                        r.cut
                    )
                } else {
                    String::new()
                },
                if r.data_start > 0 {
                    ", statistics block appended"
                } else {
                    ""
                }
            ),
            Orphan::Removed { hidden, why } => format!("removed {}: {why}", hidden.display()),
            Orphan::Busy(p) => format!("left {}: another hpcapdd is writing it", p.display()),
            Orphan::Skipped { hidden, why } => format!("left {}: {why}", hidden.display()),
        }
    }

    /// For `--stats-json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Orphan::Recovered(r) => serde_json::json!({
                "action": "finished", "path": r.path, "blocks": r.blocks,
                "block_size": r.block_size, "cut_bytes": r.cut,
                "first_ts_ns": r.first_ts, "last_ts_ns": r.last_ts,
            }),
            Orphan::Removed { hidden, why } => {
                serde_json::json!({"action": "removed", "path": hidden, "why": why})
            }
            Orphan::Busy(p) => serde_json::json!({"action": "busy", "path": p}),
            Orphan::Skipped { hidden, why } => {
                serde_json::json!({"action": "left", "path": hidden, "why": why})
            }
        }
    }
}

/// An hpcapdd file name `YYYYMMDD-HHMMSS.NNNNNNNNN-IFACE[-N].EXT`: its
/// interface part (`IFACE[-N]`) and whether it is RAW.
fn parse_name(name: &str) -> Option<(&str, bool)> {
    let (stem, raw) = if let Some(s) = name.strip_suffix(".pcapng") {
        (s, false)
    } else {
        (name.strip_suffix(".raw")?, true)
    };
    let b = stem.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = digits(0..8)
        && b.get(8) == Some(&b'-')
        && digits(9..15)
        && b.get(15) == Some(&b'.')
        && digits(16..25)
        && b.get(25) == Some(&b'-')
        && b.len() > 26;
    ok.then(|| (&stem[26..], raw))
}

/// Whether `iface` (from a file name, maybe with a `-N` suffix) is `ours`.
fn same_interface(iface: &str, ours: &str) -> bool {
    iface == ours
        || iface
            .strip_prefix(ours)
            .and_then(|r| r.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// Hidden hpcapdd files under `dir` (not in hidden directories), sorted.
fn hidden_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if !name.starts_with('.') {
                    stack.push(e.path());
                }
            } else if ft.is_file() {
                if let Some(rest) = name.strip_prefix('.') {
                    if parse_name(rest).is_some() {
                        out.push(e.path());
                    }
                }
            }
        }
    }
    out.sort();
    out
}

/// Finishes every orphaned hidden file under `dir`; returns what was done
/// to each. Errors are I/O errors on files that are being finished.
pub(crate) fn recover(dir: &Path, ctx: &Ctx<'_>) -> Result<Vec<Orphan>> {
    let mut out = Vec::new();
    for hidden in hidden_files(dir) {
        out.push(finish(&hidden, ctx).with_context(|| format!("finishing {}", hidden.display()))?);
    }
    Ok(out)
}

fn pread(f: &File, len: u64, off: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize];
    f.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

/// The complete name of hidden file `hidden` (the first free one).
fn final_name(hidden: &Path) -> PathBuf {
    let name = hidden
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_prefix('.').unwrap_or(&name).to_string();
    let dir = hidden.parent().unwrap_or(Path::new("."));
    let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
    let mut n = 0;
    loop {
        let cand = if n == 0 {
            dir.join(&name)
        } else {
            dir.join(format!("{stem}-{n}.{ext}"))
        };
        if !cand.exists() {
            return cand;
        }
        n += 1;
    }
}

fn finish(hidden: &Path, ctx: &Ctx<'_>) -> Result<Orphan> {
    let name = hidden
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let Some((iface, raw)) = parse_name(name.strip_prefix('.').unwrap_or(&name)) else {
        return Ok(Orphan::Skipped {
            hidden: hidden.into(),
            why: "not an hpcapdd file name".into(),
        });
    };
    let f = match OpenOptions::new().read(true).write(true).open(hidden) {
        Ok(f) => f,
        // Finished or removed by someone else meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Orphan::Busy(hidden.into()));
        }
        Err(e) => return Err(e).context("opening"),
    };
    // SAFETY: flock on our own descriptor.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Ok(Orphan::Busy(hidden.into()));
    }
    let meta = f.metadata().context("stat")?;
    let len = meta.len();
    if len == 0 {
        // A live hpcapdd creates its file, then locks it: a fresh empty
        // file may be one it has not locked yet.
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_none_or(|age| age < FRESH_EMPTY);
        if fresh {
            return Ok(Orphan::Busy(hidden.into()));
        }
        std::fs::remove_file(hidden).context("removing")?;
        return Ok(Orphan::Removed {
            hidden: hidden.into(),
            why: "empty",
        });
    }
    let (data_start, block_size, format) = if raw {
        if !same_interface(iface, ctx.ifname) {
            return Ok(Orphan::Skipped {
                hidden: hidden.into(),
                why: format!(
                    "a RAW file of interface {iface} (its block size is known only for {})",
                    ctx.ifname
                ),
            });
        }
        (0, ctx.block_size, StreamFormat::Raw)
    } else {
        let hl = FILE_HEADER_LEN as u64;
        if len < hl {
            std::fs::remove_file(hidden).context("removing")?;
            return Ok(Orphan::Removed {
                hidden: hidden.into(),
                why: "its file header was never completed",
            });
        }
        let head = pread(&f, hl.min(len), 0).context("reading the file header")?;
        let header_ok = Blocks::new(&head).all(|b| b.is_ok())
            && matches!(Blocks::new(&head).next(), Some(Ok((_, Block::Shb(_)))));
        if !header_ok {
            return Ok(Orphan::Skipped {
                hidden: hidden.into(),
                why: "its first 4096 bytes are not an hpcap pcapng file header".into(),
            });
        }
        let first = pread(&f, (len - hl).min(4096), hl).context("reading the first block")?;
        match header_at(&first, 0, StreamFormat::Pcapng) {
            Some(h) => (hl, u64::from(h.block_len), StreamFormat::Pcapng),
            None => {
                // Killed before its first block was written whole.
                std::fs::remove_file(hidden).context("removing")?;
                return Ok(Orphan::Removed {
                    hidden: hidden.into(),
                    why: "no complete block",
                });
            }
        }
    };
    let Ok(layout) = Layout::new(block_size, block_size, format) else {
        return Ok(Orphan::Skipped {
            hidden: hidden.into(),
            why: format!("bad block size {block_size}"),
        });
    };
    // The last whole block that checks out; everything after it goes.
    let mut blocks = (len - data_start) / block_size;
    let mut last = None;
    while blocks > 0 {
        let b = pread(&f, block_size, data_start + (blocks - 1) * block_size)
            .context("reading a block")?;
        if check_block(&b, &layout, None).is_ok() {
            last = Some(b);
            break;
        }
        blocks -= 1;
    }
    let Some(last) = last else {
        std::fs::remove_file(hidden).context("removing")?;
        return Ok(Orphan::Removed {
            hidden: hidden.into(),
            why: "no complete block",
        });
    };
    let fmt_abi = format.abi();
    let last_ts = hpcap::StreamPackets::new(&last, fmt_abi)
        .last()
        .map(|p| p.ts_ns);
    let first_ts = if blocks == 1 {
        hpcap::StreamPackets::new(&last, fmt_abi)
            .next()
            .map(|p| p.ts_ns)
    } else {
        let b = pread(&f, block_size, data_start).context("reading the first block")?;
        hpcap::StreamPackets::new(&b, fmt_abi)
            .next()
            .map(|p| p.ts_ns)
    };
    let keep = data_start + blocks * block_size;
    f.set_len(keep).context("truncating")?;
    if format == StreamFormat::Pcapng {
        let mut isb = IsbInfo {
            ts_ns: hpcap::util::now_ns(),
            start_ns: first_ts,
            end_ns: last_ts,
            ..IsbInfo::default()
        };
        // The device's counters now (cumulative), as a closing hpcapdd
        // would write them: only for a file of this interface.
        if let (Some((c, nic_valid)), true) = (&ctx.counters, same_interface(iface, ctx.ifname)) {
            let (ifrecv, ifdrop, osdrop, accept) = c.isb_counters(*nic_valid);
            isb.ifrecv = ifrecv;
            isb.ifdrop = ifdrop;
            isb.osdrop = Some(osdrop);
            isb.filteraccept = Some(accept);
        }
        let t = isb_trailer(&isb, 4096)?;
        f.write_all_at(&t, keep)
            .context("appending the statistics block")?;
    }
    f.sync_all().context("syncing")?;
    let path = final_name(hidden);
    std::fs::rename(hidden, &path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(Orphan::Recovered(Recovered {
        path,
        data_start,
        blocks,
        block_size,
        cut: len - keep,
        first_ts,
        last_ts,
    }))
}

/// Where [`ResumeSkip`] is.
#[derive(Debug)]
enum SkipState {
    /// The first block after the take-over: is it one of the last blocks
    /// of a stored file?
    Searching,
    /// It was block `next - 1` of file `file`: the following stream blocks
    /// must be its following blocks.
    Following { file: usize, next: u64 },
    /// Past the stored blocks.
    Done,
}

/// A complete file of this interface that may hold the blocks a resumed
/// listener delivers again.
#[derive(Debug)]
struct Candidate {
    path: PathBuf,
    /// File offset of its first block.
    data_start: u64,
    /// Whole blocks in it.
    blocks: u64,
}

/// Skips the blocks a resumed listener delivers again that a file in the
/// output directory already holds (see the module documentation).
///
/// The blocks can only be in the newest files of this interface: the file
/// the predecessor was writing (finished by [`recover`] at this start, or
/// at an earlier start if a later hpcapdd died too before storing
/// anything).
#[derive(Debug)]
pub(crate) struct ResumeSkip {
    files: Vec<Candidate>,
    block_size: u64,
    state: SkipState,
    /// Blocks skipped.
    pub(crate) skipped: u64,
}

/// Newest complete files of this interface to look in.
const CANDIDATE_FILES: usize = 2;

impl ResumeSkip {
    /// For a listener that resumed with blocks of `block_size` bytes in
    /// format `format`: the newest complete files of interface `ifname`
    /// under `dir`.
    pub(crate) fn new(dir: &Path, ifname: &str, format: StreamFormat, block_size: u64) -> Self {
        let raw = format == StreamFormat::Raw;
        let mut all = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                let Ok(ft) = e.file_type() else { continue };
                if ft.is_dir() {
                    stack.push(e.path());
                } else if parse_name(&name)
                    .is_some_and(|(i, r)| r == raw && same_interface(i, ifname))
                {
                    all.push(e.path());
                }
            }
        }
        // Names are UTC timestamps under date/hour directories: path order
        // is time order.
        all.sort();
        let data_start = if raw { 0 } else { FILE_HEADER_LEN as u64 };
        let files = all
            .into_iter()
            .rev()
            .take(CANDIDATE_FILES)
            .filter_map(|path| {
                let len = std::fs::metadata(&path).ok()?.len();
                // The statistics trailer (4 KiB) is shorter than a block.
                let blocks = len.checked_sub(data_start)? / block_size;
                Some(Candidate {
                    path,
                    data_start,
                    blocks,
                })
            })
            .collect();
        Self {
            files,
            block_size,
            state: SkipState::Searching,
            skipped: 0,
        }
    }

    /// Whether block `idx` of candidate `file` equals `data` (the first
    /// 4 KiB compared first: a block header, or the first records).
    fn same(&self, file: usize, idx: u64, data: &[u8]) -> Result<bool> {
        let c = &self.files[file];
        let f = File::open(&c.path).with_context(|| format!("opening {}", c.path.display()))?;
        let at = c.data_start + idx * self.block_size;
        let head = self.block_size.min(4096);
        if pread(&f, head, at).with_context(|| format!("reading {}", c.path.display()))?
            != data[..head as usize]
        {
            return Ok(false);
        }
        Ok(pread(&f, self.block_size, at)
            .with_context(|| format!("reading {}", c.path.display()))?
            == data)
    }

    /// Whether `data`, the next whole block the resumed listener delivered,
    /// is already stored (then the caller skips it).
    pub(crate) fn already_stored(&mut self, data: &[u8]) -> Result<bool> {
        if data.len() as u64 != self.block_size {
            self.state = SkipState::Done;
        }
        match self.state {
            SkipState::Done => Ok(false),
            SkipState::Searching => {
                for i in 0..self.files.len() {
                    let n = self.files[i].blocks;
                    for idx in (n.saturating_sub(MAX_TAIL_BLOCKS)..n).rev() {
                        if self.same(i, idx, data)? {
                            self.state = SkipState::Following {
                                file: i,
                                next: idx + 1,
                            };
                            self.skipped += 1;
                            return Ok(true);
                        }
                    }
                }
                self.state = SkipState::Done;
                Ok(false)
            }
            SkipState::Following { file, next } => {
                let n = self.files[file].blocks;
                if next < n && self.same(file, next, data)? {
                    self.state = SkipState::Following {
                        file,
                        next: next + 1,
                    };
                    self.skipped += 1;
                    return Ok(true);
                }
                if next < n {
                    eprintln!(
                        "hpcapdd: warning: block {next} of {} differs from the stream block \
                         delivered in its place after the resume; storing the stream from here",
                        self.files[file].path.display()
                    );
                }
                self.state = SkipState::Done;
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert_eq!(
            parse_name("20240501-130500.000000001-hpcap0.pcapng"),
            Some(("hpcap0", false))
        );
        assert_eq!(
            parse_name("20240501-130500.000000001-sim0-2.raw"),
            Some(("sim0-2", true))
        );
        assert_eq!(parse_name("20240501-130500.000000001-.pcapng"), None);
        assert_eq!(parse_name("notes.pcapng"), None);
        assert_eq!(parse_name("20240501-130500.000000001-hpcap0.txt"), None);
        assert!(same_interface("sim0", "sim0"));
        assert!(same_interface("sim0-12", "sim0"));
        assert!(!same_interface("sim01", "sim0"));
        assert!(!same_interface("sim0-x", "sim0"));
    }
}
