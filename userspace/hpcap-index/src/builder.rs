// SPDX-License-Identifier: MIT
//! Building an index: packets go in (record offset, timestamp, frame), an
//! encoded `.hpidx` comes out.
//!
//! The per-packet path is kept to array look-ups and sequential appends:
//! every key gets a dense id ([`KeyIds`]: direct tables for ether types,
//! VLANs, protocols and ports, small hash maps only for addresses), a
//! per-id "last page seen" array drops repeats within a page, and the ids
//! of each page are appended to one vector. [`Builder::finish`] then turns
//! those page groups into per-key page lists with one counting sort (pages
//! stay ascending), so no per-key vector is ever grown while packets flow.

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

/// A key's dense id and 1 + the last page that recorded it (0: none), side
/// by side so that one cache line answers both.
#[derive(Debug, Clone, Copy)]
struct Slot {
    id: u32,
    last: u32,
}

/// No id yet in a direct table.
const EMPTY: Slot = Slot {
    id: u32::MAX,
    last: 0,
};

/// Dense key ids, and per key the last page that recorded it.
#[derive(Debug)]
struct KeyIds {
    /// Ether type -> slot.
    ether: Vec<Slot>,
    /// VLAN ID (0..4095, 4096: any) -> slot.
    vlan: Vec<Slot>,
    /// IP protocol -> slot.
    proto: Vec<Slot>,
    /// Port -> slot.
    port: Vec<Slot>,
    ip4: HashMap<u32, Slot>,
    inner4: HashMap<u32, Slot>,
    ip6: HashMap<u128, Slot>,
    inner6: HashMap<u128, Slot>,
    /// id -> key.
    keys: Vec<Key>,
}

impl KeyIds {
    fn new() -> Self {
        Self {
            ether: vec![EMPTY; 1 << 16],
            vlan: vec![EMPTY; 4097],
            proto: vec![EMPTY; 256],
            port: vec![EMPTY; 1 << 16],
            ip4: HashMap::new(),
            inner4: HashMap::new(),
            ip6: HashMap::new(),
            inner6: HashMap::new(),
            keys: Vec::new(),
        }
    }

    #[inline]
    fn fresh(keys: &mut Vec<Key>, k: Key) -> Slot {
        keys.push(k);
        Slot {
            id: keys.len() as u32 - 1,
            last: 0,
        }
    }

    /// The slot of `k`; new keys get ids in order of appearance.
    #[inline]
    fn slot(&mut self, k: Key) -> &mut Slot {
        let keys = &mut self.keys;
        let slot = match k {
            Key::EtherType(v) => &mut self.ether[usize::from(v)],
            Key::Vlan(v) => &mut self.vlan[usize::from(v & 0xFFF)],
            Key::VlanAny => &mut self.vlan[4096],
            Key::Proto(p) => &mut self.proto[usize::from(p)],
            Key::Port(p) => &mut self.port[usize::from(p)],
            Key::Ip4(a) => {
                return self
                    .ip4
                    .entry(u32::from_ne_bytes(a))
                    .or_insert_with(|| Self::fresh(keys, k))
            }
            Key::InnerIp4(a) => {
                return self
                    .inner4
                    .entry(u32::from_ne_bytes(a))
                    .or_insert_with(|| Self::fresh(keys, k))
            }
            Key::Ip6(a) => {
                return self
                    .ip6
                    .entry(u128::from_ne_bytes(a))
                    .or_insert_with(|| Self::fresh(keys, k))
            }
            Key::InnerIp6(a) => {
                return self
                    .inner6
                    .entry(u128::from_ne_bytes(a))
                    .or_insert_with(|| Self::fresh(keys, k))
            }
        };
        if slot.id == u32::MAX {
            *slot = Self::fresh(keys, k);
        }
        slot
    }
}

/// Accumulates one file's index.
#[derive(Debug)]
pub struct Builder {
    page_shift: u32,
    blocking: Blocking,
    ids: KeyIds,
    /// Key ids, grouped by page (each id once per page).
    page_ids: Vec<u32>,
    /// (page, index in `page_ids` where its group starts), pages ascending.
    page_marks: Vec<(u32, u32)>,
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
            ids: KeyIds::new(),
            page_ids: Vec::new(),
            page_marks: Vec::new(),
            pagedir: Vec::new(),
            blocks: Vec::new(),
            contexts: Vec::new(),
            packets: 0,
            min_ts: u64::MAX,
            max_ts: 0,
            flows: flows.then(FlowTable::default),
        }
    }

    /// Reserves room for a data file of `data_len` bytes (address space
    /// only: untouched capacity costs no memory), so that the per-page key
    /// groups are not copied as they grow.
    pub fn reserve(&mut self, data_len: u64) {
        let pages = (data_len >> self.page_shift) as usize + 1;
        self.pagedir.reserve(pages);
        self.page_marks.reserve(pages);
        // Mixed traffic records some 30 keys per 4 KiB page.
        self.page_ids.reserve(pages.saturating_mul(48));
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
        if self.page_marks.last().is_none_or(|m| m.0 != page) {
            self.page_marks.push((page, self.page_ids.len() as u32));
        }
        let (ids, page_ids) = (&mut self.ids, &mut self.page_ids);
        // Pages only grow (records come in file order): a key goes into a
        // page's group once, however many of its packets carry it.
        let mark = page + 1;
        let flow: Option<FlowInfo> = dissect(frame, &mut |k| {
            let slot = ids.slot(k);
            if slot.last != mark {
                slot.last = mark;
                page_ids.push(slot.id);
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

        // Per key, its pages (ascending): a counting sort of the page groups.
        let nkeys = self.ids.keys.len();
        let mut start = vec![0u32; nkeys + 1];
        for &id in &self.page_ids {
            start[id as usize + 1] += 1;
        }
        for i in 0..nkeys {
            start[i + 1] += start[i];
        }
        let mut fill: Vec<u32> = start[..nkeys].to_vec();
        let mut sorted = vec![0u32; self.page_ids.len()];
        let ends = self
            .page_marks
            .iter()
            .skip(1)
            .map(|m| m.1)
            .chain(std::iter::once(self.page_ids.len() as u32));
        for (&(page, from), to) in self.page_marks.iter().zip(ends) {
            for &id in &self.page_ids[from as usize..to as usize] {
                let f = &mut fill[id as usize];
                sorted[*f as usize] = page;
                *f += 1;
            }
        }
        drop(fill);
        // Keys in byte order, posting locators, fst.
        let mut entries: Vec<(Vec<u8>, u32)> = self
            .ids
            .keys
            .iter()
            .enumerate()
            .map(|(id, k)| (k.to_bytes(), id as u32))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut postings = Vec::new();
        let mut fstb = fst::MapBuilder::memory();
        let mut hashes = Vec::with_capacity(entries.len());
        let mut scratch = Vec::new();
        for (k, id) in &entries {
            hashes.push(key_hash(k));
            let pages = &sorted[start[*id as usize] as usize..start[*id as usize + 1] as usize];
            let v = if pages.len() == 1 {
                (u64::from(pages[0]) << 1) | SINGLE_PAGE
            } else {
                let off = postings.len() as u64;
                encode_pages(pages, &mut postings, &mut scratch)?;
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

        let parts: Vec<(u32, u32, u64, Vec<u8>)> = vec![
            zpart(section::BLOCKS, &blocks)?,
            // Stored plainly so that a reader maps just the entries of the
            // pages it reads (2 bytes a page: 0.05% of the data).
            (section::PAGEDIR, codec::NONE, dir.len() as u64, dir),
            zpart(section::CONTEXTS, &ctx)?,
            (section::FILTER, codec::NONE, filter.len() as u64, filter),
            (section::KEYS, codec::NONE, keys_fst.len() as u64, keys_fst),
            (
                section::POSTINGS,
                codec::NONE,
                postings.len() as u64,
                postings,
            ),
        ];
        let mut off = Header::encoded_len(parts.len()) as u64;
        let mut sections = Vec::new();
        for (id, c, raw_len, data) in &parts {
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
        bytes.reserve(parts.iter().map(|p| p.3.len()).sum());
        for (_, _, _, data) in &parts {
            bytes.extend_from_slice(data);
        }
        Ok(Built {
            bytes,
            header,
            flows: self.flows,
        })
    }
}

/// Keys on fewer pages than this are always stored as varints (a roaring
/// bitmap only wins for long runs or dense sets).
const ROARING_MIN: usize = 16;

/// A lower bound of the serialized size of the (optimized) roaring bitmap
/// of `pages`: per 65536-page chunk, the smallest of an array (2 bytes a
/// page), a bitmap (8 KiB) and runs (4 bytes a run), plus 4 bytes of
/// descriptor. When even this is not smaller than the varints, the bitmap
/// is not built.
fn roaring_floor(pages: &[u32]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < pages.len() {
        let hi = pages[i] >> 16;
        let (mut n, mut runs) = (0usize, 0usize);
        let mut prev = None;
        while i < pages.len() && pages[i] >> 16 == hi {
            if prev.is_none_or(|q: u32| q + 1 != pages[i]) {
                runs += 1;
            }
            prev = Some(pages[i]);
            n += 1;
            i += 1;
        }
        total += 4 + (2 * n).min(8192).min(2 + 4 * runs);
    }
    total
}

/// Appends the posting of `pages` (ascending, distinct):
/// `0, count, page deltas` as LEB128 varints when that is smaller, else
/// `1, length, serialized roaring bitmap` (dense keys). The bitmap is only
/// built for keys on enough pages that it might be the smaller one.
pub fn encode_pages(pages: &[u32], out: &mut Vec<u8>, scratch: &mut Vec<u8>) -> Result<()> {
    scratch.clear();
    put_varint(scratch, pages.len() as u64);
    let mut prev = 0u32;
    for (i, &p) in pages.iter().enumerate() {
        put_varint(scratch, u64::from(if i == 0 { p } else { p - prev }));
        prev = p;
    }
    if pages.len() >= ROARING_MIN && roaring_floor(pages) + 4 < scratch.len() {
        let mut bm = RoaringBitmap::from_sorted_iter(pages.iter().copied())
            .map_err(|_| anyhow::anyhow!("pages not ascending"))?;
        bm.optimize();
        if scratch.len() > bm.serialized_size() + 4 {
            out.push(1);
            put_varint(out, bm.serialized_size() as u64);
            bm.serialize_into(&mut *out)
                .context("serializing a posting")?;
            return Ok(());
        }
    }
    out.push(0);
    out.extend_from_slice(scratch);
    Ok(())
}

/// The number of pages of a varint posting (tag 0) at the start of `b`;
/// `None` for a bitmap (tag 1: a dense key) or damage.
pub fn posting_len(b: &[u8]) -> Option<u64> {
    let (&tag, rest) = b.split_first()?;
    if tag != 0 {
        return None;
    }
    get_varint(rest, &mut 0)
}

/// Upper bound of the bytes of the posting at the start of `b`, from its
/// first bytes (a count of LEB128 deltas: at most 5 bytes each; a bitmap:
/// its stored length).
pub fn posting_bytes(b: &[u8]) -> Option<u64> {
    let (&tag, rest) = b.split_first()?;
    let mut at = 0;
    let n = get_varint(rest, &mut at)?;
    let body = match tag {
        0 => n.checked_mul(5)?,
        1 => n,
        _ => return None,
    };
    body.checked_add(1 + at as u64)
}

/// Decodes a posting written by [`encode_pages`] at the start of `b`.
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

fn zpart(id: u32, raw: &[u8]) -> Result<(u32, u32, u64, Vec<u8>)> {
    let z = zstd::bulk::compress(raw, 3).context("zstd")?;
    Ok((id, codec::ZSTD, raw.len() as u64, z))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posting_bytes_bounds_every_encoding() {
        let mut scratch = Vec::new();
        for pages in [
            vec![7u32],
            vec![1, 2, 3, 1000, 70000, 4_000_000],
            (0..5000).collect::<Vec<u32>>(),
            (0..100_000).step_by(3).collect(),
        ] {
            let mut out = Vec::new();
            encode_pages(&pages, &mut out, &mut scratch).unwrap();
            let n = posting_bytes(&out).unwrap();
            assert!(n >= out.len() as u64, "{n} < {}", out.len());
            // Decoding needs no more than that bound.
            let bm = decode_posting(&out[..(n as usize).min(out.len())]).unwrap();
            assert_eq!(bm.len(), pages.len() as u64);
        }
    }
}
