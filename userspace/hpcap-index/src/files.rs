// SPDX-License-Identifier: MIT
//! Indexing files that exist (any pcapng, classic pcap, HPCAP RAW, hpcap
//! stream files) and writing index sidecars crash-safely.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hpcap::files::{CaptureFile, FileKind};
use hpcap_core::capfile::{Packets, ReadError};
use hpcap_core::pcapng::FILE_HEADER_LEN;

use crate::builder::{Blocking, Builder, Built};

/// An index built from a data file.
#[derive(Debug)]
pub struct FileIndex {
    /// The index.
    pub built: Built,
    /// Bytes of the data file it covers (less than the file when its end is
    /// damaged or still being written).
    pub covered: u64,
    /// The data file's size.
    pub file_len: u64,
    /// Why the index stops before the end of the file, if it does.
    pub stopped: Option<String>,
}

/// How a file's records are grouped into the block table.
pub fn blocking_of(kind: FileKind) -> Blocking {
    match kind {
        FileKind::HpcapPcapng { block_size } => Blocking::Stream {
            first: FILE_HEADER_LEN as u64,
            size: block_size,
        },
        FileKind::Raw {
            block_size: Some(bs),
        } => Blocking::Stream { first: 0, size: bs },
        _ => Blocking::Chunks,
    }
}

/// Indexes the data file at `path` with pages of `1 << page_shift` bytes.
pub fn index_file(path: &Path, page_shift: u32, flows: bool) -> Result<FileIndex> {
    let cf = CaptureFile::open(path)?;
    let data = cf.data();
    advise_sequential(data);
    let mut b = Builder::new(blocking_of(cf.kind()), page_shift, flows);
    b.reserve(data.len() as u64);
    let mut it = match cf.kind() {
        FileKind::Raw { .. } => Packets::new_raw(data),
        _ => Packets::new(data).map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?,
    };
    let mut changes = None;
    let mut covered = data.len() as u64;
    let mut stopped = None;
    loop {
        match it.next() {
            None => break,
            Some(Ok(p)) => {
                let rec = it.record_offset() as u64;
                if changes != Some(it.state_changes()) {
                    changes = Some(it.state_changes());
                    b.set_state(rec, it.state());
                }
                b.add_packet(rec, it.offset() as u64, p.ts_ns, p.orig_len, p.data);
            }
            Some(Err(e)) => {
                let at = match e {
                    ReadError::Truncated { offset }
                    | ReadError::BadBlock { offset }
                    | ReadError::BadInterface { offset } => offset,
                    ReadError::UnknownFormat => 0,
                };
                covered = at as u64;
                stopped = Some(format!("{e:?} at byte {at}: indexed up to there"));
                break;
            }
        }
    }
    let tail = &data[covered.saturating_sub(4096) as usize..covered as usize];
    let built = b.finish(covered, tail)?;
    Ok(FileIndex {
        built,
        covered,
        file_len: data.len() as u64,
        stopped,
    })
}

/// Tells the kernel that `data` (a file mapping) is read once, front to
/// back: larger read-ahead, fewer page faults when the file is not cached
/// (hpcapdd's files were written with O_DIRECT and are read back cold).
fn advise_sequential(data: &[u8]) {
    let page = 4096usize;
    let addr = data.as_ptr() as usize;
    if data.is_empty() || !addr.is_multiple_of(page) {
        return;
    }
    // SAFETY: advice only, on the page-aligned start of a live mapping of
    // `data.len()` bytes; it does not change the contents.
    unsafe { libc::madvise(addr as *mut libc::c_void, data.len(), libc::MADV_SEQUENTIAL) };
}

/// Writes `bytes` to `path` crash-safely: as the hidden `.NAME` beside it,
/// synced, renamed into place, directory synced. A crash leaves either no
/// file or the complete one at `path` (and perhaps a hidden leftover).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Is `p` a capture data file by its name (`.pcapng`, `.pcap`, `.raw`)?
pub fn is_data_name(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e == "pcapng" || e == "pcap" || e == "raw")
}

/// Data files under `root` (a file or a directory tree), sorted by path;
/// hidden files (being written) are included only with `hidden`. The
/// `flows/` tree is skipped.
pub fn data_files(root: &Path, hidden: bool) -> Result<Vec<PathBuf>> {
    let md = std::fs::metadata(root).with_context(|| format!("{}", root.display()))?;
    if md.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for e in rd {
            let e = e.with_context(|| format!("reading {}", d.display()))?;
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            let ft = e.file_type()?;
            if ft.is_dir() {
                if name != "flows" && !name.starts_with('.') {
                    stack.push(p);
                }
            } else if ft.is_file() && is_data_name(&p) && (hidden || !name.starts_with('.')) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
