// SPDX-License-Identifier: MIT
//! Reading an index, and reading the pages of a data file it points at.

use std::borrow::Cow;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use fst::{IntoStreamer, Streamer};
use hpcap_core::capfile::{Packets, ReadError, ReadState};
use memmap2::Mmap;
use roaring::RoaringBitmap;
use xorf::Filter;

use crate::builder::{decode_contexts, decode_filter, decode_posting, key_hash, posting_len};
use crate::dissect::Key;
use crate::format::{codec, section, BlockEntry, Header, BLOCK_ENTRY_LEN, NO_RECORD, SINGLE_PAGE};

/// An index file, mapped.
#[derive(Debug)]
pub struct Index {
    path: PathBuf,
    map: Mmap,
    /// Its header.
    pub header: Header,
    filter: Option<xorf::Xor8>,
    /// The page directory, decoded (only when it is stored compressed).
    dir: OnceLock<Vec<u16>>,
    /// The read states, decoded on first use.
    ctx: OnceLock<Vec<(u64, ReadState)>>,
}

/// The index path of a data file: `NAME.pcapng` -> `NAME.hpidx`.
pub fn index_path(data: &Path) -> PathBuf {
    data.with_extension("hpidx")
}

impl Index {
    /// Maps and checks `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut ix = Self::map_header(path, true)?;
        ix.load()?;
        Ok(ix)
    }

    /// Maps `path` and reads only its header (one page when cold), for a
    /// caller that may decide from the header alone (its time range) that
    /// the file is not needed; [`Self::load`] then makes it usable.
    pub fn open_header(path: &Path) -> Result<Self> {
        Self::map_header(path, false)
    }

    /// Maps and checks the header of `path`, asking for the whole head of
    /// the index at once when `head` is set.
    fn map_header(path: &Path, head: bool) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: read-only mapping of an index file; index files are
        // written under a temporary name and renamed, never modified.
        let map =
            unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
        // Faults read only the pages touched: the kernel's read-around
        // (read_ahead_kb, often megabytes) would read most of the index for
        // the few pages of its postings a query needs. What is needed is
        // asked for explicitly below (`want`).
        let _ = map.advise(memmap2::Advice::Random);
        // The header and, in an index of a file up to a few GB, every
        // section before the postings: one read instead of the header's
        // and then the sections'.
        if head {
            let _ = map.advise_range(memmap2::Advice::WillNeed, 0, map.len().min(HEAD_AHEAD));
        }
        let header = Header::decode(&map).with_context(|| path.display().to_string())?;
        for s in &header.sections {
            if s.offset
                .checked_add(s.len)
                .is_none_or(|e| e > map.len() as u64)
            {
                bail!(
                    "{}: truncated (section {} past the end)",
                    path.display(),
                    s.id
                );
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            header,
            filter: None,
            dir: OnceLock::new(),
            ctx: OnceLock::new(),
        })
    }

    /// Asks for the sections an index lookup needs and decodes the
    /// filter (done by [`Self::open`]; after [`Self::open_header`], before
    /// any lookup).
    pub fn load(&mut self) -> Result<()> {
        let ix = self;
        let _ = ix
            .map
            .advise_range(memmap2::Advice::WillNeed, 0, ix.map.len().min(HEAD_AHEAD));
        // Every section but the postings (block table, page directory,
        // read states, filter, key map: a few hundred KiB), in the
        // background and at once rather than a fault at a time.
        for s in &ix.header.sections {
            if s.id != section::POSTINGS {
                ix.want(s.offset, s.len);
            }
        }
        ix.filter = decode_filter(&ix.section(section::FILTER)?);
        Ok(())
    }

    /// Asks the kernel to read `len` bytes of the index from `off` in the
    /// background (advice: failures are ignored).
    fn want(&self, off: u64, len: u64) {
        let end = off.saturating_add(len).min(self.map.len() as u64);
        if end > off {
            let _ = self.map.advise_range(
                memmap2::Advice::WillNeed,
                off as usize,
                (end - off) as usize,
            );
        }
    }

    /// Makes the posting at byte `at` of the map resident with one read:
    /// its first [`POSTING_AHEAD`] bytes, then the rest once its length is
    /// known.
    fn want_posting(&self, at: usize, end: usize) {
        self.want(at as u64, POSTING_AHEAD);
        if let Some(n) = crate::builder::posting_bytes(&self.map[at..end.min(at + 32)]) {
            if n > POSTING_AHEAD {
                self.want(at as u64, n);
            }
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the index file.
    pub fn size(&self) -> u64 {
        self.map.len() as u64
    }

    fn section(&self, id: u32) -> Result<Cow<'_, [u8]>> {
        let Some(s) = self.header.section(id) else {
            return Ok(Cow::Borrowed(&[]));
        };
        let raw = &self.map[s.offset as usize..(s.offset + s.len) as usize];
        match s.codec {
            codec::NONE => Ok(Cow::Borrowed(raw)),
            codec::ZSTD => Ok(Cow::Owned(
                zstd::bulk::decompress(raw, s.raw_len as usize)
                    .with_context(|| format!("{}: section {}", self.path.display(), id))?,
            )),
            c => bail!("{}: unknown codec {c}", self.path.display()),
        }
    }

    /// The block table.
    pub fn blocks(&self) -> Result<Vec<BlockEntry>> {
        let b = self.section(section::BLOCKS)?;
        Ok(b.chunks_exact(BLOCK_ENTRY_LEN)
            .filter_map(BlockEntry::decode)
            .collect())
    }

    /// The page directory.
    pub fn pagedir(&self) -> Result<Vec<u16>> {
        let b = self.section(section::PAGEDIR)?;
        Ok(b.chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    /// The offset in page `p` of the first packet record starting there
    /// ([`NO_RECORD`]: none; `None`: beyond the directory). Reads only that
    /// entry of a plainly stored directory (decodes a compressed one once).
    pub fn page_offset(&self, p: u32) -> Result<Option<u16>> {
        let p = p as usize;
        match self.header.section(section::PAGEDIR) {
            Some(s) if s.codec == codec::NONE => {
                let at = p.checked_mul(2).filter(|a| a + 2 <= s.len as usize);
                Ok(at.map(|a| {
                    let o = s.offset as usize + a;
                    u16::from_le_bytes([self.map[o], self.map[o + 1]])
                }))
            }
            _ => {
                if self.dir.get().is_none() {
                    let d = self.pagedir()?;
                    let _ = self.dir.set(d);
                }
                Ok(self.dir.get().and_then(|d| d.get(p).copied()))
            }
        }
    }

    /// Asks the kernel to read the page directory and the read states in
    /// the background (before the pages of a query are read, so that their
    /// directory entries do not cost one synchronous read each).
    pub fn prefetch_pagedir(&self) {
        for id in [section::PAGEDIR, section::CONTEXTS] {
            if let Some(s) = self.header.section(id) {
                let _ = self.map.advise_range(
                    memmap2::Advice::WillNeed,
                    s.offset as usize,
                    s.len as usize,
                );
            }
        }
    }

    /// Read states and where they start.
    pub fn contexts(&self) -> Result<Vec<(u64, ReadState)>> {
        Ok(self.contexts_ref()?.to_vec())
    }

    fn contexts_ref(&self) -> Result<&[(u64, ReadState)]> {
        if self.ctx.get().is_none() {
            let b = self.section(section::CONTEXTS)?;
            let c = decode_contexts(&b)
                .ok_or_else(|| anyhow!("{}: contexts damaged", self.path.display()))?;
            let _ = self.ctx.set(c);
        }
        Ok(self.ctx.get().map(|c| c.as_slice()).unwrap_or(&[]))
    }

    /// The read state in force at file offset `at`.
    pub fn state_at(&self, at: u64) -> Result<ReadState> {
        let c = self.contexts_ref()?;
        c.iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .or(c.first())
            .map(|c| c.1)
            .ok_or_else(|| anyhow!("{}: index has no read state", self.path.display()))
    }

    /// The key map.
    pub fn keys(&self) -> Result<fst::Map<&[u8]>> {
        let s = self.header.section(section::KEYS);
        let raw: &[u8] = match s {
            Some(s) => &self.map[s.offset as usize..(s.offset + s.len) as usize],
            None => &[],
        };
        if raw.is_empty() {
            return fst::Map::new(EMPTY_FST.as_slice()).map_err(|e| anyhow!("{e}"));
        }
        fst::Map::new(raw).map_err(|e| anyhow!("{}: key map: {e}", self.path.display()))
    }

    fn posting(&self, v: u64) -> Result<RoaringBitmap> {
        if v & SINGLE_PAGE != 0 {
            let mut b = RoaringBitmap::new();
            b.insert((v >> 1) as u32);
            return Ok(b);
        }
        let s = self
            .header
            .section(section::POSTINGS)
            .ok_or_else(|| anyhow!("no postings"))?;
        let off = v >> 1;
        if off >= s.len {
            bail!("{}: posting out of range", self.path.display());
        }
        let at = (s.offset + off) as usize;
        let end = (s.offset + s.len) as usize;
        self.want_posting(at, end);
        decode_posting(&self.map[at..end])
            .ok_or_else(|| anyhow!("{}: posting damaged", self.path.display()))
    }

    /// May the file hold `key`? (The filter: no false negatives, under 0.4%
    /// false positives.)
    pub fn may_contain(&self, key: &Key) -> bool {
        match &self.filter {
            Some(f) => f.contains(&key_hash(&key.to_bytes())),
            None => false,
        }
    }

    /// On how many pages `key` occurs, from the key map and the first bytes
    /// of its posting (a dense key stored as a bitmap counts as every page).
    pub fn key_pages(&self, key: &Key) -> Result<u64> {
        if !self.may_contain(key) {
            return Ok(0);
        }
        let Some(v) = self.keys()?.get(key.to_bytes()) else {
            return Ok(0);
        };
        if v & SINGLE_PAGE != 0 {
            return Ok(1);
        }
        let s = self
            .header
            .section(section::POSTINGS)
            .ok_or_else(|| anyhow!("no postings"))?;
        let off = v >> 1;
        if off >= s.len {
            bail!("{}: posting out of range", self.path.display());
        }
        let at = (s.offset + off) as usize;
        let end = ((s.offset + s.len) as usize).min(at + 16);
        self.want(at as u64, POSTING_AHEAD);
        Ok(posting_len(&self.map[at..end]).unwrap_or(u64::from(self.header.pages)))
    }

    /// Pages where a packet record with `key` starts.
    pub fn lookup(&self, key: &Key) -> Result<RoaringBitmap> {
        if !self.may_contain(key) {
            return Ok(RoaringBitmap::new());
        }
        match self.keys()?.get(key.to_bytes()) {
            Some(v) => self.posting(v),
            None => Ok(RoaringBitmap::new()),
        }
    }

    /// Pages of every key in `lo..=hi` (encoded keys of one kind).
    pub fn lookup_range(&self, lo: &[u8], hi: &[u8]) -> Result<RoaringBitmap> {
        let m = self.keys()?;
        let mut s = m.range().ge(lo).le(hi).into_stream();
        let mut out = RoaringBitmap::new();
        while let Some((_, v)) = s.next() {
            out |= self.posting(v)?;
        }
        Ok(out)
    }

    /// Every key and its pages (tests, `hpcap-index --dump`).
    pub fn all_keys(&self) -> Result<Vec<(Key, RoaringBitmap)>> {
        let m = self.keys()?;
        let mut s = m.stream();
        let mut out = Vec::new();
        while let Some((k, v)) = s.next() {
            let key = Key::decode(k).ok_or_else(|| anyhow!("bad key {k:?}"))?;
            out.push((key, self.posting(v)?));
        }
        Ok(out)
    }

    /// Pages where some packet record starts.
    pub fn all_pages(&self) -> Result<RoaringBitmap> {
        Ok(RoaringBitmap::from_sorted_iter(
            self.pagedir()?
                .iter()
                .enumerate()
                .filter(|(_, v)| **v != NO_RECORD)
                .map(|(i, _)| i as u32),
        )
        .expect("sorted"))
    }

    /// Pages of the blocks that may hold packets with `lo <= ts < hi`.
    pub fn time_pages(&self, lo: u64, hi: u64) -> Result<RoaringBitmap> {
        let mut out = RoaringBitmap::new();
        for b in self.blocks()? {
            if b.max_ts >= lo && b.min_ts < hi {
                out.insert_range(b.first_page..=b.last_page);
            }
        }
        Ok(out)
    }

    /// Checks that `data` still holds what this index describes: at least
    /// `data_len` bytes, the same last covered page.
    pub fn check_data(&self, data: &File) -> Result<()> {
        let len = data.metadata().context("stat")?.len();
        let want = self.header.data_len;
        if len < want {
            bail!(
                "{}: the data file has {len} bytes, the index covers {want}",
                self.path.display()
            );
        }
        let n = want.min(4096) as usize;
        let mut tail = vec![0u8; n];
        data.read_exact_at(&mut tail, want - n as u64)
            .context("reading the data file")?;
        if crate::format::tail_hash(&tail) != self.header.tail_hash {
            bail!(
                "{}: the data file does not match its index (it changed after indexing)",
                self.path.display()
            );
        }
        Ok(())
    }
}

/// Bytes from the start of an index read at open, before the header says
/// where the sections are.
const HEAD_AHEAD: usize = 512 << 10;

/// Bytes of a posting read at once before its length is known (a page
/// set of a few thousand pages; one read costs about the same for 4 KiB).
const POSTING_AHEAD: u64 = 64 << 10;

static EMPTY_FST: std::sync::LazyLock<Vec<u8>> =
    std::sync::LazyLock::new(|| fst::MapBuilder::memory().into_inner().expect("empty fst"));

/// A packet read from a data file (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedPacket {
    /// Timestamp (ns).
    pub ts_ns: u64,
    /// Wire length.
    pub orig_len: u32,
    /// Captured bytes.
    pub data: Vec<u8>,
    /// File offset of its record.
    pub record: u64,
}

/// Pages one read covers at most (a run is split beyond this, so a broad
/// query never holds more than this much of a file in memory).
pub const MAX_RUN_PAGES: u32 = 2048;

/// Consecutive page ranges covering `pages`, joining ranges less than
/// `gap` pages apart (one read instead of two seeks), each at most
/// [`MAX_RUN_PAGES`] long.
pub fn runs(pages: &RoaringBitmap, gap: u32) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for p in pages {
        match out.last_mut() {
            Some((first, last))
                if p <= last.saturating_add(gap.max(1)) && p - *first < MAX_RUN_PAGES =>
            {
                *last = p
            }
            _ => out.push((p, p)),
        }
    }
    out
}

/// Statistics of page reads.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadStats {
    /// pread calls.
    pub reads: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Packets parsed.
    pub parsed: u64,
}

/// Reads the packets whose records start in pages `first..=last` of `data`
/// (described by `ix`), calling `f` for each; `f` returns `false` to stop.
/// Returns whether it ran to the end.
pub fn read_run(
    data: &File,
    ix: &Index,
    first: u32,
    last: u32,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(OwnedPacket) -> bool,
) -> Result<bool> {
    read_run_from(data, ix, first, last, None, stats, f)
}

/// [`read_run`] with the run's bytes already read: `pre` is `(offset,
/// bytes)` of the data file, used when it covers what the run needs (else,
/// and for a record spilling past it, `data` is read).
pub fn read_run_from(
    data: &File,
    ix: &Index,
    first: u32,
    last: u32,
    pre: Option<(u64, &[u8])>,
    stats: &mut ReadStats,
    f: &mut dyn FnMut(OwnedPacket) -> bool,
) -> Result<bool> {
    let data_len = ix.header.data_len;
    let ps = 1u64 << ix.header.page_shift;
    // The first page of the run with a record start.
    let mut p0 = None;
    for p in first..=last {
        match ix.page_offset(p)? {
            None => break,
            Some(NO_RECORD) => {}
            Some(off) => {
                p0 = Some((p, off));
                break;
            }
        }
    }
    let Some((p0, off0)) = p0 else {
        return Ok(true);
    };
    let start = u64::from(p0) * ps + u64::from(off0);
    let end_pages = (u64::from(last) + 1) * ps;
    let stop = end_pages.min(data_len);
    let ctx = ix.state_at(start)?;
    // Read the run plus a little for a record that spills over its end.
    let mut want = (stop - start + 2048).min(data_len - start);
    let mut buf: Cow<'_, [u8]> = match pre {
        Some((at, b)) if at <= start && at + b.len() as u64 >= start + want => {
            stats.reads += 1;
            stats.bytes += b.len() as u64;
            let from = (start - at) as usize;
            Cow::Borrowed(&b[from..from + want as usize])
        }
        _ => {
            let mut v = vec![0u8; want as usize];
            data.read_exact_at(&mut v, start).context("reading pages")?;
            stats.reads += 1;
            stats.bytes += want;
            Cow::Owned(v)
        }
    };
    let mut pos = 0usize;
    loop {
        let mut it = Packets::resume(&buf, pos, &ctx);
        loop {
            match it.next() {
                None => return Ok(true),
                Some(Ok(p)) => {
                    let rec = start + it.record_offset() as u64;
                    if rec >= stop {
                        return Ok(true);
                    }
                    stats.parsed += 1;
                    let keep_going = f(OwnedPacket {
                        ts_ns: p.ts_ns,
                        orig_len: p.orig_len,
                        data: p.data.to_vec(),
                        record: rec,
                    });
                    pos = it.offset();
                    if !keep_going {
                        return Ok(false);
                    }
                }
                Some(Err(ReadError::Truncated { offset })) if start + (offset as u64) < stop => {
                    // A record crosses the end of what was read: read more.
                    if start + want >= data_len {
                        bail!("data file truncated at {}", start + offset as u64);
                    }
                    let more = (64u64 << 10).min(data_len - start - want);
                    let buf = buf.to_mut();
                    let old = buf.len();
                    buf.resize(old + more as usize, 0);
                    data.read_exact_at(&mut buf[old..], start + want)
                        .context("reading pages")?;
                    stats.reads += 1;
                    stats.bytes += more;
                    want += more;
                    pos = offset;
                    break;
                }
                Some(Err(ReadError::Truncated { .. })) => return Ok(true),
                Some(Err(e)) => bail!("malformed record at {}: {e:?}", start + pos as u64),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_join_close_pages_and_split_long_ones() {
        let b: RoaringBitmap = [1u32, 2, 5, 20, 21].into_iter().collect();
        assert_eq!(runs(&b, 4), vec![(1, 5), (20, 21)]);
        assert_eq!(runs(&b, 1), vec![(1, 2), (5, 5), (20, 21)]);
        let mut long = RoaringBitmap::new();
        long.insert_range(0..5000);
        assert_eq!(runs(&long, 8), vec![(0, 2047), (2048, 4095), (4096, 4999)]);
    }
}
