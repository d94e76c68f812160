// SPDX-License-Identifier: MIT
//! The directory sink: file naming, O_DIRECT writes, rotation, retention,
//! valid closing (ISB), disk-full handling.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use hpcap::core::abi::{self, Info};
use hpcap::core::pcapng::{IsbInfo, FILE_HEADER_LEN};
use hpcap::core::stats::CaptureStats;
use hpcap::files::{finalize_block_header, isb_trailer, pad_block_tail, stream_file_header};
use hpcap::util::Utc;

/// What a block holds, for naming, rotation and counting.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BlockMeta {
    pub(crate) packets: u64,
    pub(crate) first_ts: Option<u64>,
    pub(crate) last_ts: u64,
}

/// Rotation and retention settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RotateCfg {
    pub(crate) size: Option<u64>,
    pub(crate) seconds: Option<u64>,
    pub(crate) max_files: Option<usize>,
    pub(crate) min_free: Option<f64>,
}

/// What retention deleted so far (the summary's `retention`).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Deleted {
    /// Files deleted (data files; their indexes go with them).
    pub(crate) files: u64,
    /// Their size in bytes.
    pub(crate) bytes: u64,
    /// Packets of the deleted files this hpcapdd wrote itself.
    pub(crate) packets: u64,
    /// Deleted files this hpcapdd did not write (left by an earlier run):
    /// their packets are not in `packets`.
    pub(crate) unknown_files: u64,
}

/// A file this run completed: what it holds, for the `--files-json` line
/// of its deletion.
#[derive(Debug, Clone, Copy)]
struct Written {
    packets: u64,
    blocks: u64,
}

/// What went wrong with the storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No space left (ENOSPC, EDQUOT).
    DiskFull,
    /// The storage failed: an I/O error (EIO), a file system gone
    /// read-only (EROFS), a device gone (ENXIO, ENODEV), a corrupted file
    /// system (EUCLEAN).
    Storage,
}

impl Failure {
    /// The kind of failure an OS error means for the capture directory,
    /// if it is one of those.
    pub(crate) fn of(e: &std::io::Error) -> Option<Self> {
        match e.raw_os_error()? {
            libc::ENOSPC | libc::EDQUOT => Some(Self::DiskFull),
            libc::EIO | libc::EROFS | libc::ENXIO | libc::ENODEV | libc::EUCLEAN => {
                Some(Self::Storage)
            }
            _ => None,
        }
    }

    /// How the failure is named in messages (the exit summary's words).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::DiskFull => "disk full",
            Self::Storage => "storage failed",
        }
    }
}

/// The capture directory cannot take more data. The current file (if any)
/// was cut back to its last complete block and is still open: the caller
/// counts what it could not store and then closes it with
/// [`DirSink::close_failed`].
#[derive(Debug)]
pub(crate) struct StorageFailed {
    pub(crate) kind: Failure,
    msg: String,
}

impl StorageFailed {
    /// A failure of `kind` while doing `what` (the message reads
    /// "disk full writing X: ...").
    fn new(kind: Failure, what: std::fmt::Arguments<'_>) -> Self {
        Self {
            kind,
            msg: format!("{} {what}", kind.label()),
        }
    }
}

impl std::fmt::Display for StorageFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for StorageFailed {}

/// How the last file was left.
#[derive(Debug, Clone)]
pub(crate) struct LastFile {
    /// Where it is (the hidden name if it could not be renamed).
    pub(crate) path: PathBuf,
    /// It ends with an Interface Statistics Block.
    pub(crate) isb: bool,
    /// Renamed to its final name.
    pub(crate) renamed: bool,
}

/// A page-aligned heap buffer (O_DIRECT needs aligned memory).
struct Aligned {
    ptr: *mut u8,
    len: usize,
}

impl Aligned {
    fn new(len: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(len.max(4096), 4096).expect("layout");
        // SAFETY: non-zero size layout.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory");
        Self { ptr, len }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: allocated with at least `len` bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }

    fn as_ref(&self) -> &[u8] {
        // SAFETY: allocated with at least `len` bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Aligned {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len.max(4096), 4096).expect("layout");
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) };
    }
}

struct OpenFile {
    file: File,
    hidden: PathBuf,
    final_path: PathBuf,
    /// Bytes written and known good (header + whole blocks).
    size: u64,
    first_ts: u64,
    last_ts: u64,
    packets: u64,
    blocks: u64,
    /// Time-rotation boundary (ns), if rotating by time.
    boundary: Option<u64>,
    /// Size before the last block (to undo it).
    prev_size: u64,
    /// Packets of the last block (to undo it).
    last_packets: u64,
}

pub(crate) struct DirSink {
    dir: PathBuf,
    ifname: String,
    snaplen: u32,
    description: String,
    raw: bool,
    block_size: u64,
    cfg: RotateCfg,
    direct: bool,
    warned_direct: bool,
    bounce: Option<Aligned>,
    cur: Option<OpenFile>,
    files_done: u64,
    usrdeliv: u64,
    /// The source's latest counters, for the statistics block of files
    /// closed by rotation.
    counters: Option<(CaptureStats, u32)>,
    /// Frames hpcapdd itself could not store (counted as dropped by the
    /// operating system in statistics blocks).
    not_stored: u64,
    /// The file closed last.
    last: Option<LastFile>,
    /// Files completed (renamed) since the last [`DirSink::take_closed`].
    closed: Vec<PathBuf>,
    /// Files this run completed that still exist, by path (with retention
    /// only).
    written: HashMap<PathBuf, Written>,
    /// What retention deleted.
    deleted: Deleted,
    /// `--files-json`: one JSON line per file completed or deleted.
    files_log: Option<File>,
}

fn pwrite_all(f: &File, data: &[u8], mut off: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: writing from a valid slice to our file.
        let n = unsafe {
            libc::pwrite(
                f.as_raw_fd(),
                rest.as_ptr().cast(),
                rest.len(),
                off as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        done += n as usize;
        off += n as u64;
    }
    Ok(())
}

impl DirSink {
    pub(crate) fn new(dir: &Path, info: &Info, cfg: RotateCfg, direct: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        if cfg.rotate_seconds_zero() {
            anyhow::bail!("--rotate-seconds must be at least 1");
        }
        let name = String::from_utf8_lossy(abi::get_cstr(&info.name)).into_owned();
        let bus = String::from_utf8_lossy(abi::get_cstr(&info.bus_addr)).into_owned();
        Ok(Self {
            dir: dir.to_path_buf(),
            ifname: if name.is_empty() {
                "hpcap".into()
            } else {
                name
            },
            snaplen: info.snaplen,
            description: bus,
            raw: info.format != abi::FORMAT_PCAPNG,
            block_size: info.block_size,
            cfg,
            direct,
            warned_direct: false,
            bounce: None,
            cur: None,
            files_done: 0,
            usrdeliv: 0,
            counters: None,
            not_stored: 0,
            last: None,
            closed: Vec::new(),
            written: HashMap::new(),
            deleted: Deleted::default(),
            files_log: None,
        })
    }

    /// `--files-json`: appends one JSON line to `log` for every file
    /// completed (`"event": "closed"`) and every file retention deletes
    /// (`"event": "deleted"`), with its packets and bytes.
    pub(crate) fn set_files_log(&mut self, log: File) {
        self.files_log = Some(log);
    }

    /// What retention deleted so far.
    pub(crate) fn deleted(&self) -> Deleted {
        self.deleted
    }

    /// Writes one `--files-json` line (no-op without the option).
    fn log_file(&mut self, v: serde_json::Value) -> Result<()> {
        if let Some(f) = &mut self.files_log {
            writeln!(f, "{v}").context("writing --files-json")?;
        }
        Ok(())
    }

    /// Records a file completed under its final name: counted, and logged.
    fn completed(&mut self, path: &Path, packets: u64, blocks: u64, isb: bool) -> Result<()> {
        self.closed.push(path.to_path_buf());
        self.files_done += 1;
        // Kept only for retention, which deletes what it holds: the map is
        // bounded by the files on the disk.
        if self.cfg.max_files.is_some() || self.cfg.min_free.is_some() {
            self.written
                .insert(path.to_path_buf(), Written { packets, blocks });
        }
        let bytes = std::fs::metadata(path).map(|m| m.len()).ok();
        self.log_file(serde_json::json!({
            "event": "closed",
            "time_ns": hpcap::util::now_ns(),
            "path": path.display().to_string(),
            "packets": packets,
            "blocks": blocks,
            "bytes": bytes,
            "isb": isb,
        }))
    }

    /// Records the source's counters for the next statistics block.
    /// `nic_valid` says which NIC counters are real (`stats::NIC_*`).
    pub(crate) fn set_counters(&mut self, c: CaptureStats, nic_valid: u32) {
        self.counters = Some((c, nic_valid));
    }

    pub(crate) fn files_done(&self) -> u64 {
        self.files_done
    }

    /// Frames hpcapdd could not store, for the statistics blocks.
    pub(crate) fn set_not_stored(&mut self, n: u64) {
        self.not_stored = n;
    }

    /// The file closed last and how it was left.
    pub(crate) fn last_file(&self) -> Option<&LastFile> {
        self.last.as_ref()
    }

    /// Paths of the files completed since the last call (for the indexer):
    /// every file that was renamed to its final name, whether closed by
    /// rotation, at the end, or after a storage failure. A file left
    /// hidden is not complete; `hpcap-check --repair` or the next
    /// hpcapdd's orphan recovery finishes it, and `hpcap-index DIR`
    /// indexes it then.
    pub(crate) fn take_closed(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.closed)
    }

    fn names(&self, first_ts: u64) -> (PathBuf, PathBuf, String) {
        let u = Utc::from_ns(first_ts);
        let sub = self
            .dir
            .join(format!("{:04}-{:02}-{:02}", u.year, u.month, u.day))
            .join(format!("{:02}", u.hour));
        let base = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}.{:09}-{}",
            u.year, u.month, u.day, u.hour, u.minute, u.second, u.nanos, self.ifname
        );
        let ext = if self.raw { "raw" } else { "pcapng" };
        let mut n = 0;
        loop {
            let file = if n == 0 {
                format!("{base}.{ext}")
            } else {
                format!("{base}-{n}.{ext}")
            };
            let fin = sub.join(&file);
            let hid = sub.join(format!(".{file}"));
            if !fin.exists() && !hid.exists() {
                return (sub, hid, fin.to_string_lossy().into_owned());
            }
            n += 1;
        }
    }

    fn open(&mut self, first_ts: u64) -> Result<()> {
        self.retention(true)?;
        let (sub, hidden, fin) = self.names(first_ts);
        if let Err(e) = std::fs::create_dir_all(&sub) {
            return Err(self.failed_to_open(&sub, e));
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true).mode(0o644);
        let file = if self.direct {
            match opts.clone().custom_flags(libc::O_DIRECT).open(&hidden) {
                Ok(f) => f,
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    if !self.warned_direct {
                        eprintln!(
                            "hpcapdd: warning: {} does not support O_DIRECT; writing through the page cache",
                            sub.display()
                        );
                        self.warned_direct = true;
                    }
                    self.direct = false;
                    let _ = std::fs::remove_file(&hidden);
                    match opts.open(&hidden) {
                        Ok(f) => f,
                        Err(e) => return Err(self.failed_to_open(&hidden, e)),
                    }
                }
                Err(e) => return Err(self.failed_to_open(&hidden, e)),
            }
        } else {
            match opts.open(&hidden) {
                Ok(f) => f,
                Err(e) => return Err(self.failed_to_open(&hidden, e)),
            }
        };
        // Held while the file is written, so that an hpcapdd starting
        // meanwhile knows it is not an orphan (see recover.rs); released
        // when the file is closed. Best effort: without locks (some network
        // file systems) two hpcapdd must not share a directory.
        // SAFETY: flock on our own descriptor.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let boundary = self
            .cfg
            .seconds
            .map(|s| (first_ts / 1_000_000_000 / s + 1) * s * 1_000_000_000);
        let mut f = OpenFile {
            file,
            hidden,
            final_path: PathBuf::from(fin),
            size: 0,
            first_ts,
            last_ts: first_ts,
            packets: 0,
            blocks: 0,
            boundary,
            prev_size: 0,
            last_packets: 0,
        };
        if !self.raw {
            let hdr = stream_file_header(self.snaplen, &self.ifname, &self.description)?;
            let mut a = Aligned::new(FILE_HEADER_LEN);
            a.as_mut().copy_from_slice(&hdr);
            if let Err(e) = pwrite_all(&f.file, a.as_ref(), 0) {
                let _ = std::fs::remove_file(&f.hidden);
                return Err(self.failed_to_open(&f.hidden, e));
            }
            f.size = FILE_HEADER_LEN as u64;
        }
        self.cur = Some(f);
        Ok(())
    }

    /// A new file could not be created or started: a storage failure (no
    /// file is open, every earlier file is complete) or another error.
    fn failed_to_open(&self, path: &Path, e: std::io::Error) -> anyhow::Error {
        match Failure::of(&e) {
            Some(kind) => anyhow!(StorageFailed::new(
                kind,
                format_args!(
                    "creating {}: {e}; every earlier file is complete",
                    path.display()
                ),
            )),
            None => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        }
    }

    /// Writes `data` (a whole block, or a padded one) at the end of the
    /// current file, O_DIRECT from `data` when possible, else through an
    /// aligned bounce buffer.
    fn append(&mut self, data: &[u8]) -> Result<()> {
        let f = self.cur.as_ref().expect("open file");
        let aligned = (data.as_ptr() as usize).is_multiple_of(4096);
        let r = if aligned || !self.direct {
            pwrite_all(&f.file, data, f.size)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::EINVAL))
        };
        let r = match r {
            Err(e)
                if self.direct
                    && matches!(e.raw_os_error(), Some(libc::EFAULT) | Some(libc::EINVAL)) =>
            {
                // Mappings some drivers export cannot be DMA sources; copy.
                let b = self.bounce.get_or_insert_with(|| Aligned::new(data.len()));
                if b.len != data.len() {
                    *b = Aligned::new(data.len());
                }
                b.as_mut().copy_from_slice(data);
                pwrite_all(&f.file, b.as_ref(), f.size)
            }
            r => r,
        };
        match r {
            Ok(()) => {
                let f = self.cur.as_mut().expect("open file");
                f.prev_size = f.size;
                f.size += data.len() as u64;
                Ok(())
            }
            Err(e) if Failure::of(&e).is_some() => {
                let kind = Failure::of(&e).expect("checked");
                let f = self.cur.as_ref().expect("open file");
                // Cut the file back to its last complete block (the failed
                // write may have left part of the block); it stays open
                // until the caller has counted what it could not store.
                let _ = f.file.set_len(f.size);
                Err(anyhow!(StorageFailed::new(
                    kind,
                    format_args!("writing {}: {e}", f.hidden.display()),
                )))
            }
            Err(e) => {
                let p = self.cur.as_ref().map(|f| f.hidden.display().to_string());
                Err(e).with_context(|| format!("writing {}", p.unwrap_or_default()))
            }
        }
    }

    /// After a storage failure: ends the current file as validly as the
    /// storage still allows (statistics block, sync, rename, each tried)
    /// and says how it was left.
    pub(crate) fn close_failed(&mut self, counters: &(CaptureStats, u32)) -> String {
        // Only the file closed here carries the final statistics: not one
        // closed earlier by rotation (when the next file could not be
        // created, none does).
        self.last = None;
        let Some(f) = self.cur.take() else {
            return "no file was open (every earlier file is complete; none has the final statistics)"
                .into();
        };
        if f.blocks == 0 {
            // Nothing stored in it. A pcapng file that can still take its
            // statistics block is kept: no packets, but the count of those
            // not stored. Otherwise (RAW, or no room) an empty or
            // header-only file helps nobody: remove it if the storage
            // still lets us.
            if !self.raw {
                let _ = f.file.set_len(f.size);
                let kept = self
                    .isb_for(&f, Some(counters), (0, 0))
                    .ok()
                    .is_some_and(|t| {
                        let mut a = Aligned::new(4096);
                        a.as_mut().copy_from_slice(&t);
                        pwrite_all(&f.file, a.as_ref(), f.size).is_ok()
                    })
                    && f.file.sync_all().is_ok()
                    && std::fs::rename(&f.hidden, &f.final_path).is_ok();
                if kept {
                    // Best effort: the storage just failed.
                    let _ = self.completed(&f.final_path, 0, 0, true);
                    self.last = Some(LastFile {
                        path: f.final_path.clone(),
                        isb: true,
                        renamed: true,
                    });
                    return format!(
                        "{} closed validly with no packets, only the statistics block",
                        f.final_path.display()
                    );
                }
            }
            return match std::fs::remove_file(&f.hidden) {
                Ok(()) => format!("{} removed (it held no block)", f.hidden.display()),
                Err(e) => format!(
                    "{} holds no block and could not be removed ({e}); remove it, or run \
                     hpcap-check --repair on it, once the file system works",
                    f.hidden.display()
                ),
            };
        }
        let _ = f.file.set_len(f.size);
        let isb = !self.raw
            && self
                .isb_for(&f, Some(counters), (0, 0))
                .ok()
                .is_some_and(|t| {
                    let mut a = Aligned::new(4096);
                    a.as_mut().copy_from_slice(&t);
                    pwrite_all(&f.file, a.as_ref(), f.size).is_ok()
                });
        if !isb {
            let _ = f.file.set_len(f.size);
        }
        let synced = f.file.sync_all().is_ok();
        let renamed = synced && std::fs::rename(&f.hidden, &f.final_path).is_ok();
        let (path, how) = if renamed {
            // Best effort: the storage just failed.
            let _ = self.completed(&f.final_path, f.packets, f.blocks, isb);
            (
                f.final_path.clone(),
                format!(
                    "{} closed validly with {} packets in {} blocks{}",
                    f.final_path.display(),
                    f.packets,
                    f.blocks,
                    if isb || self.raw {
                        ""
                    } else {
                        " (no statistics block: no room left for it)"
                    }
                ),
            )
        } else {
            (
                f.hidden.clone(),
                format!(
                    "{} left unfinished ({}) with {} packets in {} blocks: \
                     finish it with hpcap-check --repair once the file system works",
                    f.hidden.display(),
                    if synced {
                        "cannot rename it"
                    } else {
                        "cannot sync it"
                    },
                    f.packets,
                    f.blocks
                ),
            )
        };
        self.last = Some(LastFile { path, isb, renamed });
        how
    }

    /// The closing statistics block of file `f`.
    fn isb_for(
        &self,
        f: &OpenFile,
        counters: Option<&(CaptureStats, u32)>,
        losses: (u64, u64),
    ) -> Result<Vec<u8>> {
        let mut isb = IsbInfo {
            ts_ns: f.last_ts,
            start_ns: Some(f.first_ts),
            end_ns: Some(f.last_ts),
            usrdeliv: Some(self.usrdeliv),
            ..IsbInfo::default()
        };
        if let Some((c, nic_valid)) = counters.or(self.counters.as_ref()) {
            // Without the NIC's missed counter, ifrecv and ifdrop are
            // unknown and left out rather than written as 0.
            let (ifrecv, ifdrop, osdrop, accept) = c.isb_counters(*nic_valid);
            isb.ifrecv = ifrecv;
            isb.ifdrop = ifdrop;
            // Dropped by the capture system: by the source, and by
            // hpcapdd when it could not store published frames.
            isb.osdrop = Some(osdrop + self.not_stored);
            isb.filteraccept = Some(accept);
        } else {
            isb.osdrop = Some(losses.1 + self.not_stored);
        }
        Ok(isb_trailer(&isb, 4096)?)
    }

    fn rotate_due(&self, m: &BlockMeta, len: u64) -> bool {
        let Some(f) = &self.cur else { return false };
        if f.blocks == 0 {
            return false;
        }
        if let Some(max) = self.cfg.size {
            if f.size + len > max {
                return true;
            }
        }
        if let (Some(b), Some(ts)) = (f.boundary, m.first_ts) {
            if ts >= b {
                return true;
            }
        }
        false
    }

    pub(crate) fn write_block(&mut self, data: &[u8], m: &BlockMeta) -> Result<()> {
        if self.rotate_due(m, data.len() as u64) {
            self.finish_file(None, (0, 0))?;
        }
        if self.cur.is_none() {
            self.open(m.first_ts.unwrap_or_else(hpcap::util::now_ns))?;
        }
        self.append(data)?;
        let f = self.cur.as_mut().expect("open file");
        f.blocks += 1;
        f.packets += m.packets;
        f.last_packets = m.packets;
        if m.first_ts.is_some() {
            f.last_ts = f.last_ts.max(m.last_ts);
        }
        self.usrdeliv += m.packets;
        Ok(())
    }

    /// Writes the published prefix of an unfinished block as a whole,
    /// padded block with a final header.
    pub(crate) fn write_partial(&mut self, data: &[u8], m: &BlockMeta) -> Result<()> {
        let bs = self.block_size as usize;
        let mut a = Aligned::new(bs);
        let buf = a.as_mut();
        buf[..data.len()].copy_from_slice(data);
        if data.len() < bs {
            let format = if self.raw {
                abi::FORMAT_RAW
            } else {
                abi::FORMAT_PCAPNG
            };
            pad_block_tail(buf, data.len(), format)?;
            finalize_block_header(buf, format, m.packets as u32, m.first_ts, m.last_ts)?;
        }
        // `a` is page aligned: written directly.
        self.write_block(a.as_ref(), m)
    }

    /// Takes back the last block (a lossy listener learned it was
    /// overwritten while being written).
    pub(crate) fn undo_last_block(&mut self) -> Result<()> {
        if let Some(f) = &mut self.cur {
            if f.size > f.prev_size {
                f.file
                    .set_len(f.prev_size)
                    .with_context(|| format!("truncating {}", f.hidden.display()))?;
                f.size = f.prev_size;
                f.blocks -= 1;
                f.packets -= f.last_packets;
                self.usrdeliv -= f.last_packets;
                f.last_packets = 0;
            }
        }
        Ok(())
    }

    /// No whole block for a while: close the file if its time period is
    /// over on the wall clock and its timestamps follow the wall clock
    /// (live capture), so files appear on time on a quiet link.
    ///
    /// `next_ts` is the first timestamp in the block still being filled.
    /// While that block holds frames of this file's period, the file stays
    /// open for it (else the block would open a second file for the same
    /// period), but not longer than a quarter period past its end: a slow
    /// link may take that long to fill a block.
    pub(crate) fn idle(&mut self, now: u64, next_ts: Option<u64>) -> Result<()> {
        let due = self.cur.as_ref().is_some_and(|f| {
            let (Some(s), Some(b)) = (self.cfg.seconds, f.boundary) else {
                return false;
            };
            let period = s * 1_000_000_000;
            let live = f.last_ts + period > now && f.last_ts <= now + 1_000_000_000;
            let awaited = next_ts.is_some_and(|t| t < b) && now < b + period / 4;
            f.blocks > 0 && live && now >= b && !awaited
        });
        if due {
            self.finish_file(None, (0, 0))?;
        }
        Ok(())
    }

    fn finish_file(
        &mut self,
        counters: Option<&(CaptureStats, u32)>,
        losses: (u64, u64),
    ) -> Result<()> {
        let Some(f) = self.cur.take() else {
            return Ok(());
        };
        let mut isb = false;
        if !self.raw {
            let t = self.isb_for(&f, counters, losses)?;
            let mut a = Aligned::new(4096);
            a.as_mut().copy_from_slice(&t);
            if let Err(e) = pwrite_all(&f.file, a.as_ref(), f.size) {
                // Valid without it: the file ends at a block boundary.
                let what = format!("writing the statistics block of {}", f.hidden.display());
                self.cur = Some(f);
                return Err(failed_closing(e, &what));
            }
            isb = true;
        }
        if let Err(e) = f.file.sync_all() {
            let what = format!("syncing {}", f.hidden.display());
            self.cur = Some(f);
            return Err(failed_closing(e, &what));
        }
        if let Err(e) = std::fs::rename(&f.hidden, &f.final_path) {
            let what = format!(
                "renaming {} to {}",
                f.hidden.display(),
                f.final_path.display()
            );
            self.cur = Some(f);
            return Err(failed_closing(e, &what));
        }
        self.completed(&f.final_path, f.packets, f.blocks, isb)?;
        self.last = Some(LastFile {
            path: f.final_path.clone(),
            isb,
            renamed: true,
        });
        self.retention(false)?;
        Ok(())
    }

    /// Closes the current file (end of capture) with the source's counters.
    pub(crate) fn close(
        &mut self,
        counters: &(CaptureStats, u32),
        losses: (u64, u64),
    ) -> Result<()> {
        self.finish_file(Some(counters), losses)
    }

    /// Complete files under the directory, oldest first.
    fn complete_files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let ext = if self.raw { "raw" } else { "pcapng" };
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    if name != "flows" {
                        stack.push(p);
                    }
                } else if p.extension().is_some_and(|x| x == ext) {
                    out.push(p);
                }
            }
        }
        // Names are UTC timestamps under date/hour directories: path order
        // is time order.
        out.sort();
        out
    }

    fn free_pct(&self) -> Option<f64> {
        let c = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes()).ok()?;
        // SAFETY: statvfs on a NUL-terminated path into a zeroed struct.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 || s.f_blocks == 0 {
            return None;
        }
        Some(s.f_bavail as f64 / s.f_blocks as f64 * 100.0)
    }

    /// Deletes the oldest complete files beyond `--max-files`, and while
    /// free space is below `--min-free` (`opening`: a new file is about to
    /// be created, so leave room for it in the count).
    fn retention(&mut self, opening: bool) -> Result<()> {
        if self.cfg.max_files.is_none() && self.cfg.min_free.is_none() {
            return Ok(());
        }
        let mut files = self.complete_files();
        if let Some(max) = self.cfg.max_files {
            let keep = if opening { max.saturating_sub(1) } else { max };
            while files.len() > keep {
                let p = files.remove(0);
                let why = format!("--max-files {max}");
                self.delete(&p, "max-files", &why)?;
            }
        }
        if let Some(min) = self.cfg.min_free {
            while let Some(free) = self.free_pct().filter(|f| *f < min) {
                if files.is_empty() {
                    break;
                }
                let p = files.remove(0);
                let why = format!("--min-free {min}%: {free:.1}% free");
                self.delete(&p, "min-free", &why)?;
            }
        }
        Ok(())
    }

    /// Retention deletes complete file `p` (`reason`: which option, `why`:
    /// its setting and state, for the message): counted, logged to
    /// `--files-json` and reported on stderr with its packets.
    fn delete(&mut self, p: &Path, reason: &str, why: &str) -> Result<()> {
        let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        remove_data_file(p)?;
        remove_empty_parents(p, &self.dir);
        let w = self.written.remove(p);
        self.deleted.files += 1;
        self.deleted.bytes += bytes;
        match w {
            Some(w) => self.deleted.packets += w.packets,
            None => self.deleted.unknown_files += 1,
        }
        eprintln!(
            "hpcapdd: retention ({why}): deleted {} ({}, {bytes} bytes)",
            p.display(),
            w.map_or_else(
                || "not written by this run: packets not counted".to_string(),
                |w| format!("{} packets", w.packets)
            ),
        );
        self.log_file(serde_json::json!({
            "event": "deleted",
            "time_ns": hpcap::util::now_ns(),
            "path": p.display().to_string(),
            "reason": reason,
            "packets": w.map(|w| w.packets),
            "blocks": w.map(|w| w.blocks),
            "bytes": bytes,
        }))
    }
}

/// Closing the current file failed (`what` it was doing): a storage
/// failure leaves the file open for [`DirSink::close_failed`] (after the
/// caller counted what it could not store); other errors are plain errors.
fn failed_closing(e: std::io::Error, what: &str) -> anyhow::Error {
    match Failure::of(&e) {
        Some(kind) => anyhow!(StorageFailed::new(kind, format_args!("{what}: {e}"))),
        None => anyhow::Error::new(e).context(what.to_string()),
    }
}

/// Deletes a data file and its index (the index first: an index never
/// outlives its data, even if we die in between).
fn remove_data_file(p: &Path) -> Result<()> {
    let ix = p.with_extension("hpidx");
    match std::fs::remove_file(&ix) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", ix.display())),
    }
    std::fs::remove_file(p).with_context(|| format!("removing {}", p.display()))
}

fn remove_empty_parents(p: &Path, top: &Path) {
    let mut d = p.parent();
    while let Some(dir) = d {
        if dir == top || std::fs::remove_dir(dir).is_err() {
            break;
        }
        d = dir.parent();
    }
}

impl RotateCfg {
    fn rotate_seconds_zero(&self) -> bool {
        self.seconds == Some(0)
    }
}
