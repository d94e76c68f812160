// SPDX-License-Identifier: MIT
//! Building an index: packets go in (record offset, timestamp, frame), an
//! encoded `.hpidx` comes out.
//!
//! Per key, the pages (4 KiB by default) where a packet record carrying the
//! key starts are collected in a roaring bitmap; each key is added once per
//! page (the entry remembers the last page it saw), so the cost per packet
//! is one hash-map probe per key. Pages only grow while a file is read in
//! order, so bitmaps are built by appending.

use anyhow::{bail, Context, Result};
use hashbrown::HashMap;
use hpcap_core::capfile::{Format, ReadState};
use roaring::RoaringBitmap;

use crate::dissect::{dissect, FlowInfo, Key};
use crate::flows::FlowTable;
use crate::format::{codec, section, BlockEntry, Header, Section, NO_RECORD, SINGLE_PAGE};

/// Default log2 page size: 4 KiB.
pub const PAGE_SHIFT: u32 = 12;
/// Size of the time "blocks" of files that have no stream blocks.
pub const CHUNK: u64 = 4 << 20;

/// How packet records are grouped into the block table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocking {
    /// hpcap stream file: blocks of `size` bytes from `first` on.
    Stream {
        /// Offset of the first block (after the file header).
        first: u64,
        /// Block size.
        size: u64,
    },
    /// Any other file: stretches of [`CHUNK`] bytes.
    Chunks,
}

#[derive(Debug, Default)]
struct Posting {
    /// Pages, ascending (the last one is the newest).
    pages: Vec<u32>,
}

/// Accumulates one file's index.
#[derive(Debug)]
pub struct Builder {
    page_shift: u32,
    blocking: Blocking,
    keys: HashMap<Key, Posting>,
    pagedir: Vec<u16>,
    blocks: Vec<BlockEntry>,
    contexts: Vec<(u64, ReadState)>,
    packets: u64,
    min_ts: u64,
    max_ts: u64,
    flows: Option<FlowTable>,
}

/// What [`Builder::finish`] made.
#[derive(Debug)]
pub struct Built {
    /// The encoded index.
    pub bytes: Vec<u8>,
    /// Its header.
    pub header: Header,
    /// The flow table, if flows were collected.
    pub flows: Option<FlowTable>,
}

impl Builder {
    /// A builder for a file grouped by `blocking`, with pages of
    /// `1 << page_shift` bytes; `flows`: also collect a flow table.
    pub fn new(blocking: Blocking, page_shift: u32, flows: bool) -> Self {
        Self {
            page_shift,
            blocking,
            keys: HashMap::new(),
            pagedir: Vec::new(),
            blocks: Vec::new(),
            contexts: Vec::new(),
            packets: 0,
            min_ts: u64::MAX,
            max_ts: 0,
            flows: flows.then(FlowTable::default),
        }
    }

    /// Packets added so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// From file offset `at` on, records are read with `state`.
    pub fn set_state(&mut self, at: u64, state: ReadState) {
        if self.contexts.last().map(|c| c.1) != Some(state) {
            self.contexts.push((at, state));
        }
    }

    fn block_start(&self, rec: u64) -> u64 {
        match self.blocking {
            Blocking::Stream { first, size } if rec >= first && size > 0 => {
                first + (rec - first) / size * size
            }
            Blocking::Stream { .. } => 0,
            Blocking::Chunks => rec / CHUNK * CHUNK,
        }
    }

    /// Adds the packet whose record spans file bytes `rec..rec_end`.
    /// Records must come in file order.
    pub fn add_packet(&mut self, rec: u64, rec_end: u64, ts: u64, orig_len: u32, frame: &[u8]) {
        let page = (rec >> self.page_shift) as u32;
        let in_page = (rec & ((1u64 << self.page_shift) - 1)) as u16;
        let p = page as usize;
        if self.pagedir.len() <= p {
            self.pagedir.resize(p + 1, NO_RECORD);
        }
        if self.pagedir[p] == NO_RECORD {
            self.pagedir[p] = in_page;
        }
        let bstart = self.block_start(rec);
        match self.blocks.last_mut() {
            Some(b) if b.start == bstart => {
                b.end = rec_end;
                b.min_ts = b.min_ts.min(ts);
                b.max_ts = b.max_ts.max(ts);
                b.packets += 1;
                b.last_page = page;
            }
            _ => self.blocks.push(BlockEntry {
                start: bstart,
                end: rec_end,
                min_ts: ts,
                max_ts: ts,
                packets: 1,
                first_page: page,
                last_page: page,
            }),
        }
        self.packets += 1;
        self.min_ts = self.min_ts.min(ts);
        self.max_ts = self.max_ts.max(ts);
        let keys = &mut self.keys;
        let flow: Option<FlowInfo> = dissect(frame, &mut |k| {
            let e = keys.entry(k).or_default();
            // Pages only grow (records come in file order); one entry per
            // page however many packets of the page carry the key.
            if e.pages.last() != Some(&page) {
                e.pages.push(page);
            }
        });
        if let Some(ft) = &mut self.flows {
            ft.add(flow.as_ref(), ts, orig_len, page);
        }
    }

    /// Encodes the index of a data file of `data_len` bytes whose last
    /// `min(4096, data_len)` bytes are `tail`.
    pub fn finish(self, data_len: u64, tail: &[u8]) -> Result<Built> {
        let ps = 1u64 << self.page_shift;
        let pages = data_len.div_ceil(ps);
        if pages > u64::from(u32::MAX) {
            bail!("data file too large for 32-bit page numbers");
        }
        let mut pagedir = self.pagedir;
        if pagedir.len() as u64 > pages {
            bail!("packets beyond the data length {data_len}");
        }
        pagedir.resize(pages as usize, NO_RECORD);

        // Keys in byte order, posting locators, fst.
        let mut entries: Vec<(Vec<u8>, RoaringBitmap)> = self
            .keys
            .into_iter()
            .map(|(k, p)| {
                let bm = RoaringBitmap::from_sorted_iter(p.pages).expect("ascending pages");
                (k.to_bytes(), bm)
            })
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut postings = Vec::new();
        let mut fstb = fst::MapBuilder::memory();
        let mut hashes = Vec::with_capacity(entries.len());
        for (k, mut bm) in entries.iter_mut().map(|(k, b)| (k, std::mem::take(b))) {
            hashes.push(key_hash(k));
            let v = if bm.len() == 1 {
                (u64::from(bm.min().unwrap_or(0)) << 1) | SINGLE_PAGE
            } else {
                let off = postings.len() as u64;
                encode_posting(&mut bm, &mut postings)?;
                off << 1
            };
            fstb.insert(k, v).context("building the key map")?;
        }
        let keys_fst = fstb.into_inner().context("building the key map")?;
        hashes.sort_unstable();
        hashes.dedup();
        let filter = encode_filter(&hashes);

        let mut blocks = Vec::with_capacity(self.blocks.len() * 48);
        for b in &self.blocks {
            b.encode(&mut blocks);
        }
        let mut dir = Vec::with_capacity(pagedir.len() * 2);
        for v in &pagedir {
            dir.extend_from_slice(&v.to_le_bytes());
        }
        let mut ctx = Vec::new();
        ctx.extend_from_slice(&(self.contexts.len() as u32).to_le_bytes());
        for (at, st) in &self.contexts {
            ctx.extend_from_slice(&at.to_le_bytes());
            encode_state(st, &mut ctx);
        }

        let parts: Vec<(u32, u32, Vec<u8>, u64)> = vec![
            zpart(section::BLOCKS, &blocks)?,
            zpart(section::PAGEDIR, &dir)?,
            zpart(section::CONTEXTS, &ctx)?,
            (
                section::FILTER,
                codec::NONE,
                filter.clone(),
                filter.len() as u64,
            ),
            (
                section::KEYS,
                codec::NONE,
                keys_fst.clone(),
                keys_fst.len() as u64,
            ),
            (
                section::POSTINGS,
                codec::NONE,
                postings.clone(),
                postings.len() as u64,
            ),
        ];
        let mut off = Header::encoded_len(parts.len()) as u64;
        let mut sections = Vec::new();
        for (id, c, data, raw_len) in &parts {
            sections.push(Section {
                id: *id,
                codec: *c,
                offset: off,
                len: data.len() as u64,
                raw_len: *raw_len,
            });
            off += data.len() as u64;
        }
        let header = Header {
            page_shift: self.page_shift,
            data_len,
            tail_hash: crate::format::tail_hash(tail),
            packets: self.packets,
            min_ts: if self.packets == 0 { 0 } else { self.min_ts },
            max_ts: self.max_ts,
            pages: pages as u32,
            keys: entries.len() as u32,
            sections,
        };
        let mut bytes = header.encode();
        for (_, _, data, _) in &parts {
            bytes.extend_from_slice(data);
        }
        Ok(Built {
            bytes,
            header,
            flows: self.flows,
        })
    }
}

/// Appends a posting: `0, count, page deltas` as LEB128 varints when that
/// is smaller, else `1, length, serialized roaring bitmap` (dense keys).
pub fn encode_posting(bm: &mut RoaringBitmap, out: &mut Vec<u8>) -> Result<()> {
    let mut var = Vec::new();
    put_varint(&mut var, bm.len());
    let mut prev = 0u32;
    for (i, p) in bm.iter().enumerate() {
        put_varint(&mut var, u64::from(if i == 0 { p } else { p - prev }));
        prev = p;
    }
    bm.optimize();
    if var.len() <= bm.serialized_size() + 4 {
        out.push(0);
        out.extend_from_slice(&var);
    } else {
        out.push(1);
        put_varint(out, bm.serialized_size() as u64);
        bm.serialize_into(&mut *out)
            .context("serializing a posting")?;
    }
    Ok(())
}

/// Decodes a posting written by [`encode_posting`] at the start of `b`.
pub fn decode_posting(b: &[u8]) -> Option<RoaringBitmap> {
    let (&tag, rest) = b.split_first()?;
    let mut at = 0;
    match tag {
        0 => {
            let n = get_varint(rest, &mut at)?;
            let mut v = Vec::with_capacity(n.min(1 << 24) as usize);
            let mut p = 0u64;
            for i in 0..n {
                let d = get_varint(rest, &mut at)?;
                p = if i == 0 { d } else { p.checked_add(d)? };
                v.push(u32::try_from(p).ok()?);
            }
            RoaringBitmap::from_sorted_iter(v).ok()
        }
        1 => {
            let len = get_varint(rest, &mut at)? as usize;
            RoaringBitmap::deserialize_from(rest.get(at..at.checked_add(len)?)?).ok()
        }
        _ => None,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn zpart(id: u32, raw: &[u8]) -> Result<(u32, u32, Vec<u8>, u64)> {
    let z = zstd::bulk::compress(raw, 3).context("zstd")?;
    Ok((id, codec::ZSTD, z, raw.len() as u64))
}

/// Hash of a key's bytes for the file filter.
pub fn key_hash(k: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0x6870_6361_7069_6478, k)
}

fn encode_filter(hashes: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    if hashes.is_empty() {
        return out;
    }
    let f = xorf::Xor8::from(hashes);
    out.extend_from_slice(&f.seed.to_le_bytes());
    out.extend_from_slice(&(f.block_length as u64).to_le_bytes());
    out.extend_from_slice(&f.fingerprints);
    out
}

/// Decodes the filter section (None: empty file, no keys).
pub fn decode_filter(b: &[u8]) -> Option<xorf::Xor8> {
    let seed = u64::from_le_bytes(b.get(0..8)?.try_into().ok()?);
    let block_length = u64::from_le_bytes(b.get(8..16)?.try_into().ok()?) as usize;
    let fp = b.get(16..)?;
    if fp.len() != block_length * 3 {
        return None;
    }
    Some(xorf::Xor8 {
        seed,
        block_length,
        fingerprints: fp.into(),
    })
}

fn encode_state(st: &ReadState, out: &mut Vec<u8>) {
    let (kind, nanos, linktype) = match st.format {
        Format::Pcap {
            nanos, linktype, ..
        } => (0u8, nanos, linktype),
        Format::Pcapng => (1, false, 0),
        Format::Raw => (2, false, 0),
    };
    let n = st.interfaces.min(st.tsresol.len());
    out.extend_from_slice(&[kind, u8::from(nanos), u8::from(st.big_endian), n as u8]);
    out.extend_from_slice(&linktype.to_le_bytes());
    out.extend_from_slice(&st.snaplen0.to_le_bytes());
    out.extend_from_slice(&st.tsresol[..n]);
}

/// Decodes the contexts section.
pub fn decode_contexts(b: &[u8]) -> Option<Vec<(u64, ReadState)>> {
    let n = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let mut at = 4;
    let mut v = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let off = u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
        let h = b.get(at + 8..at + 20)?;
        let (kind, nanos, big, ni) = (h[0], h[1] != 0, h[2] != 0, usize::from(h[3]));
        let linktype = u32::from_le_bytes(h[4..8].try_into().ok()?);
        let snaplen0 = u32::from_le_bytes(h[8..12].try_into().ok()?);
        let ts = b.get(at + 20..at + 20 + ni)?;
        let mut tsresol = [6u8; hpcap_core::capfile::MAX_INTERFACES];
        tsresol.get_mut(..ni)?.copy_from_slice(ts);
        let format = match kind {
            0 => Format::Pcap {
                nanos,
                big_endian: big,
                linktype,
            },
            1 => Format::Pcapng,
            2 => Format::Raw,
            _ => return None,
        };
        v.push((
            off,
            ReadState {
                format,
                big_endian: big,
                tsresol,
                snaplen0,
                interfaces: ni,
            },
        ));
        at += 20 + ni;
    }
    Some(v)
}
