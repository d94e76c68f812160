// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Hot-path benchmark of the capture writer.
//!
//! A simulated NIC owns an RX ring of 4096 descriptors over prefilled
//! 2048-byte packet buffers. It is an instantaneous NIC: when the token
//! holder writes the tail register, the descriptors handed over become
//! ready at once, with frame lengths from the size pattern. One or two
//! writer threads run the real core code per packet: descriptor check,
//! timestamp (TSC), block-aware reservation, EPB header write, frame copy,
//! then ordered publication and in-order tail return. A blocking listener
//! thread consumes whole blocks. The memcpy baseline copies the same frames
//! (same sizes, same destination buffer) back to back with no descriptors,
//! format or atomics, in the same run.
//!
//! Usage:
//!   cargo bench -p hpcap-core --bench hotpath [-- --json] [-- --quick]
//!   hotpath callgrind <packets>   # 64 B, one writer, no reader, no timing
//!
//! The EPB and block-header writes are local minimal versions (type,
//! lengths, ids, timestamp, caplen/origlen, zero padding) so the figures
//! do not depend on the formats API that is still moving.

use hpcap_core::listener::{ListenerTable, Mode, Readiness};
use hpcap_core::pcapng::{
    self, epb_len, BlockHeader, EpbHeader, EpbOptions, BLOCK_HEADER_LEN, BLOCK_HEADER_TYPE,
    EPB_DATA_OFFSET,
};
use hpcap_core::publish::{spin_wait, Geometry, Placement, PublishState, Span};
use hpcap_core::segment::RingLayout;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RING: u32 = 4096;
const SLOT: usize = 2048;
const BLOCK: u64 = 4 << 20;
const BUFFER: u64 = 64 << 20;
/// Local-use block opening every stream block (sequence, offset).
const HDR_TYPE: u32 = BLOCK_HEADER_TYPE;
const HDR_LEN: u64 = BLOCK_HEADER_LEN as u64;
/// EPB: type, len, interface, ts high, ts low, caplen, origlen; trailer 4.
/// Records reserved per batch.
const BATCH: usize = 32;

/// The capture buffer, written concurrently at disjoint reserved spans.
struct Shared {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: writers only touch spans the publication protocol reserved for
// them alone; the reader only reads published bytes of its own blocks.
unsafe impl Sync for Shared {}
// SAFETY: as above; the allocation outlives every thread (joined first).
unsafe impl Send for Shared {}

impl Shared {
    fn new(len: usize) -> (Self, Vec<u8>) {
        let mut v = vec![0u8; len];
        (
            Self {
                ptr: v.as_mut_ptr(),
                len,
            },
            v,
        )
    }

    /// Mutable view of `[pos, pos + len)`.
    ///
    /// # Safety
    /// The range is inside the buffer and reserved for the caller alone.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn span_mut(&self, pos: u64, len: u64) -> &mut [u8] {
        debug_assert!((pos + len) as usize <= self.len);
        // SAFETY: in bounds and exclusively reserved (caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(pos as usize), len as usize) }
    }

    fn read_u32(&self, pos: u64) -> u32 {
        let mut b = [0u8; 4];
        // SAFETY: in bounds; the caller only reads published bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(pos as usize), b.as_mut_ptr(), 4) };
        u32::from_le_bytes(b)
    }
}

/// Simulated NIC: descriptor lengths (0 = not ready) over packet buffers.
struct Nic {
    lens: Vec<AtomicU32>,
    data: Vec<u8>,
    sizes: Vec<u32>,
    /// Tail count the NIC has seen; written only by the token holder.
    tail: AtomicU64,
}

impl Nic {
    fn new(sizes: &[u32]) -> Self {
        let data = (0..RING as usize * SLOT).map(|i| (i * 7) as u8).collect();
        Self {
            lens: (0..RING).map(|_| AtomicU32::new(0)).collect(),
            data,
            sizes: sizes.to_vec(),
            tail: AtomicU64::new(0),
        }
    }

    /// Tail register write: descriptors up to `reg` become ready at once.
    fn write_tail(&self, reg: u32) {
        let ring = u64::from(RING);
        let old = self.tail.load(Ordering::Relaxed);
        let delta = (u64::from(reg) + ring - old % ring) % ring;
        // Incremental indices: no division per descriptor.
        let mut slot = (old % ring) as usize;
        let mut size = (old % self.sizes.len() as u64) as usize;
        for _ in 0..delta {
            self.lens[slot].store(self.sizes[size], Ordering::Release);
            slot = if slot + 1 == RING as usize {
                0
            } else {
                slot + 1
            };
            size = if size + 1 == self.sizes.len() {
                0
            } else {
                size + 1
            };
        }
        self.tail.store(old + delta, Ordering::Relaxed);
    }

    fn frame(&self, slot: u32, len: u32) -> &[u8] {
        let at = slot as usize * SLOT;
        &self.data[at..at + len as usize]
    }
}

struct Device {
    publ: PublishState,
    listeners: ListenerTable,
    geo: Geometry,
    layout: RingLayout,
    nic: Nic,
    buf: Shared,
    processed: AtomicU64,
    drops: AtomicU64,
    target: u64,
}

#[inline(always)]
fn timestamp() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC has no preconditions on x86_64.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::_rdtsc()
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Writes padding, block header and EPB for one placed record, with the
/// same core writers the driver uses.
fn write_record(d: &Device, p: &Placement, slot: u32, len: u32, ts: u64) {
    let buf = &d.buf;
    if let Some(Span { pos, len: plen, .. }) = p.pad {
        // SAFETY: reserved for us by `place`.
        let b = unsafe { buf.span_mut(pos, plen) };
        pcapng::write_pad_at(b, 0, plen as usize).expect("pad fits its span");
    }
    if let Some(Span {
        pos,
        offset,
        len: hlen,
    }) = p.header
    {
        let h = BlockHeader {
            block_len: BLOCK as u32,
            seq: offset / BLOCK,
            offset,
            first_ts_ns: ts,
            ..BlockHeader::default()
        };
        // SAFETY: reserved for us by `place`.
        let b = unsafe { buf.span_mut(pos, hlen) };
        pcapng::write_block_header(b, 0, &h).expect("header fits its span");
    }
    let r = p.record;
    // SAFETY: reserved for us by `place`.
    let b = unsafe { buf.span_mut(r.pos, r.len) };
    let hdr = EpbHeader {
        interface: 0,
        ts_ns: ts,
        caplen: len,
        orig_len: len,
    };
    pcapng::write_epb_frame(b, 0, &hdr, &EpbOptions::NONE).expect("EPB fits its span");
    b[EPB_DATA_OFFSET..EPB_DATA_OFFSET + len as usize].copy_from_slice(d.nic.frame(slot, len));
}

/// One writer thread: the per-packet hot path.
fn writer(d: &Device, me: u32) {
    let layout = &d.layout;
    let (start, end) = (layout.segment_start(me), layout.segment_end(me));
    let mut i = start;
    let mut lap = 0u64;
    let mut work: [(Placement, u32, u32, u64); BATCH] = [(
        Placement {
            pad: None,
            header: None,
            record: Span {
                offset: 0,
                pos: 0,
                len: 0,
            },
        },
        0,
        0,
        0,
    ); BATCH];
    loop {
        if let Some(reg) = d.publ.tail_update(me, layout) {
            d.nic.write_tail(reg);
        }
        let limit = d.listeners.reserve_limit(d.publ.committed(), &d.geo);
        let mut batch = match d.publ.begin_batch(me, limit) {
            Ok(b) => b,
            Err(_) => {
                spin_wait();
                continue;
            }
        };
        let (mut n, mut taken, mut drops) = (0, 0u64, 0u64);
        while taken < BATCH as u64 && i < end {
            // Acquire: pairs with the NIC's Release "DMA complete".
            let len = d.nic.lens[i as usize].load(Ordering::Acquire);
            if len == 0 {
                break;
            }
            let ts = timestamp();
            let rec = epb_len(len as usize, &EpbOptions::NONE) as u64;
            match batch.place(&d.geo, rec) {
                Some(p) => {
                    work[n] = (p, i, len, ts);
                    n += 1;
                }
                None => {
                    drops += 1;
                    d.nic.lens[i as usize].store(0, Ordering::Relaxed);
                }
            }
            i += 1;
            taken += 1;
        }
        if taken == 0 {
            spin_wait();
            continue;
        }
        let desc_end = lap * u64::from(RING) + u64::from(i);
        let ticket = d.publ.finish_batch(batch, desc_end);
        let seg_done = i == end;
        if seg_done {
            if let Some(reg) = d.publ.tail_update(me, layout) {
                d.nic.write_tail(reg);
            }
            d.publ.pass_token(me, layout.next_segment(me));
            i = start;
            // Slot `i` of this writer's `lap`-th pass is descriptor
            // `lap * RING + i` in the monotonic count `released` uses.
            lap += 1;
        }
        for (p, slot, len, ts) in &work[..n] {
            write_record(d, p, *slot, *len, *ts);
            d.nic.lens[*slot as usize].store(0, Ordering::Relaxed);
        }
        d.publ.complete(ticket);
        if drops != 0 {
            d.drops.fetch_add(drops, Ordering::Relaxed);
        }
        let total = d.processed.fetch_add(taken, Ordering::Relaxed) + taken;
        if seg_done && total >= d.target {
            return;
        }
    }
}

/// Blocking listener consuming whole blocks; checks each starts with the
/// block header.
fn reader(d: &Device, id: usize, stop: &AtomicBool) -> u64 {
    let mut blocks = 0;
    loop {
        match d.listeners.ready(id, BLOCK, &d.publ, &d.geo) {
            Ok(Readiness::Ready { available }) => {
                let (c, _) = d.listeners.cursor(id).unwrap_or((0, Mode::Blocking));
                for k in 0..available / BLOCK {
                    let at = d.geo.position(c + k * BLOCK);
                    assert_eq!(d.buf.read_u32(at), HDR_TYPE, "block without header");
                    blocks += 1;
                }
                let _ = d.listeners.ack(id, available / BLOCK * BLOCK, &d.publ);
            }
            _ => {
                if stop.load(Ordering::Relaxed) {
                    return blocks;
                }
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
}

struct Result {
    mpps: f64,
    gbps: f64,
    drops: u64,
}

fn run_capture(sizes: &[u32], writers: u32, packets: u64, with_reader: bool) -> Result {
    let (buf, _backing) = Shared::new(BUFFER as usize);
    let d = Arc::new(Device {
        publ: PublishState::new(),
        listeners: ListenerTable::new(),
        geo: Geometry::new(BUFFER, BLOCK, HDR_LEN, 12).expect("geometry"),
        layout: RingLayout::new(RING, writers, 32, 8).expect("layout"),
        nic: Nic::new(sizes),
        buf,
        processed: AtomicU64::new(0),
        drops: AtomicU64::new(0),
        target: packets,
    });
    let t0 = d.layout.initial_tail();
    d.publ.set_tail(t0);
    d.nic.write_tail(d.layout.tail_register(t0));
    let stop = Arc::new(AtomicBool::new(false));
    let rd = with_reader.then(|| {
        let id = d
            .listeners
            .attach(Mode::Blocking, &d.publ, &d.geo)
            .expect("attach")
            .id;
        let (d, stop) = (d.clone(), stop.clone());
        std::thread::spawn(move || reader(&d, id, &stop))
    });
    let start = Instant::now();
    let hs: Vec<_> = (0..writers)
        .map(|w| {
            let d = d.clone();
            std::thread::spawn(move || writer(&d, w))
        })
        .collect();
    for h in hs {
        h.join().expect("writer");
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = rd {
        h.join().expect("reader");
    }
    let n = d.processed.load(Ordering::Relaxed);
    let bytes: u64 = (0..n)
        .map(|k| u64::from(sizes[(k % sizes.len() as u64) as usize]))
        .sum();
    Result {
        mpps: n as f64 / secs / 1e6,
        gbps: bytes as f64 / secs / 1e9,
        drops: d.drops.load(Ordering::Relaxed),
    }
}

/// The same frames copied back to back, no format, no protocol.
fn run_memcpy(sizes: &[u32], packets: u64) -> Result {
    let nic = Nic::new(sizes);
    let mut dst = vec![0u8; BUFFER as usize];
    let mut pos = 0usize;
    let mut bytes = 0u64;
    let start = Instant::now();
    for k in 0..packets {
        let len = sizes[(k % sizes.len() as u64) as usize];
        if pos + len as usize > dst.len() {
            pos = 0;
        }
        let src = nic.frame((k % u64::from(RING)) as u32, len);
        dst[pos..pos + len as usize].copy_from_slice(src);
        pos += len as usize;
        bytes += u64::from(len);
    }
    std::hint::black_box(&dst);
    let secs = start.elapsed().as_secs_f64();
    Result {
        mpps: packets as f64 / secs / 1e6,
        gbps: bytes as f64 / secs / 1e9,
        drops: 0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("callgrind") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(200_000);
        let r = run_capture(&[64], 1, n, false);
        std::hint::black_box(r.mpps);
        return;
    }
    let json = args.iter().any(|a| a == "--json");
    let quick = args.iter().any(|a| a == "--quick");
    let imix: Vec<u32> = [64; 7].into_iter().chain([570; 4]).chain([1514]).collect();
    let cases: Vec<(&str, Vec<u32>)> = vec![
        ("64", vec![64]),
        ("128", vec![128]),
        ("512", vec![512]),
        ("1514", vec![1514]),
        ("imix 7:4:1", imix),
    ];
    // About 0.5 s of traffic per case at the memcpy rate (less with --quick).
    let volume: u64 = if quick { 200 << 20 } else { 2 << 30 };
    let mut rows = Vec::new();
    for (name, sizes) in &cases {
        let avg = sizes.iter().map(|&s| u64::from(s)).sum::<u64>() / sizes.len() as u64;
        let packets = (volume / avg).clamp(1 << 20, 30 << 20);
        let base = run_memcpy(sizes, packets);
        let one = run_capture(sizes, 1, packets, true);
        let two = run_capture(sizes, 2, packets, true);
        rows.push((name, base, one, two));
    }
    if json {
        let items: Vec<String> = rows
            .iter()
            .map(|(n, b, o, t)| {
                format!(
                    "{{\"size\":\"{n}\",\"memcpy_mpps\":{:.3},\"memcpy_gbps\":{:.3},\"w1_mpps\":{:.3},\"w1_gbps\":{:.3},\"w1_drops\":{},\"w2_mpps\":{:.3},\"w2_gbps\":{:.3},\"w2_drops\":{}}}",
                    b.mpps, b.gbps, o.mpps, o.gbps, o.drops, t.mpps, t.gbps, t.drops
                )
            })
            .collect();
        println!("[{}]", items.join(","));
        return;
    }
    println!(
        "{:<11} {:>14}   {:>22}   {:>22}",
        "frame (B)", "memcpy", "1 writer", "2 writers"
    );
    println!(
        "{:<11} {:>7} {:>6}   {:>7} {:>6} {:>7}   {:>7} {:>6} {:>7}",
        "", "Mpps", "GB/s", "Mpps", "GB/s", "ratio", "Mpps", "GB/s", "ratio"
    );
    for (n, b, o, t) in &rows {
        println!(
            "{:<11} {:>7.2} {:>6.2}   {:>7.2} {:>6.2} {:>7.2}   {:>7.2} {:>6.2} {:>7.2}{}",
            n,
            b.mpps,
            b.gbps,
            o.mpps,
            o.gbps,
            o.mpps / b.mpps,
            t.mpps,
            t.gbps,
            t.mpps / b.mpps,
            if o.drops + t.drops > 0 {
                format!("  (drops {}/{})", o.drops, t.drops)
            } else {
                String::new()
            }
        );
    }
    println!("GB/s counts frame bytes; ratio = capture Mpps / memcpy Mpps.");
}
