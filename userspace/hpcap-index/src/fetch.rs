// SPDX-License-Identifier: MIT
//! Many scattered reads at once: the page runs of a query are queued on an
//! io_uring and the kernel keeps up to [`DEPTH`] of them in flight, instead
//! of one system call (and one wait) per run.
//!
//! A cold query for one host reads thousands of small ranges spread over
//! gigabytes; the disk serves them fastest when it sees many at a time.
//! Reads go to files opened with `O_DIRECT` where the file system allows
//! it ([`open_direct`]): no page-cache allocation, no read-ahead, no copy.
//! Where io_uring is not available (an old kernel, a container whose
//! seccomp profile forbids it) [`Fetcher::new`] returns `None` and callers
//! read as before (`posix_fadvise(WILLNEED)` and `pread`).

use std::alloc::{alloc, dealloc, Layout};
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Deref;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};

use io_uring::{opcode, types, IoUring};

/// Reads in flight at most (and the submission queue's size).
pub const DEPTH: u32 = 128;

/// Buffers of started reads not yet dropped by their reader, at most
/// (beyond this, queued reads wait for the reader, except the one it
/// waits for): bounds the memory, and lets buffers be reused rather than
/// fresh memory faulted in for every read of a large query.
const MAX_BUFS: usize = 2 * DEPTH as usize;

/// Alignment of offsets, lengths and buffers (what `O_DIRECT` needs on
/// every common file system and device).
pub const ALIGN: u64 = 4096;

/// Buffers of reads already taken, kept for the next reads: a query reads
/// thousands of runs, and fresh memory costs a page fault and a cleared
/// page per 4 KiB (more than the read itself); with reuse, about as many
/// buffers exist as reads are in flight.
#[derive(Default)]
struct Pool {
    /// Free buffers' addresses by size class (`ALIGN << class` bytes).
    free: Mutex<Vec<Vec<usize>>>,
    /// Buffers handed out and not yet returned.
    out: std::sync::atomic::AtomicUsize,
}

impl Pool {
    fn layout(class: usize) -> Layout {
        Layout::from_size_align((ALIGN as usize) << class, ALIGN as usize).expect("valid layout")
    }

    /// A buffer of at least `len` bytes.
    fn get(self: &Arc<Self>, len: usize) -> io::Result<AlignedBuf> {
        let pages = len.max(1).div_ceil(ALIGN as usize);
        let class = pages.next_power_of_two().trailing_zeros() as usize;
        let reused = {
            let mut f = self.free.lock().unwrap_or_else(|e| e.into_inner());
            f.get_mut(class).and_then(|v| v.pop())
        };
        let addr = match reused {
            Some(a) => a,
            None => {
                // SAFETY: the layout has a non-zero size.
                let p = unsafe { alloc(Self::layout(class)) };
                if p.is_null() {
                    return Err(io::Error::from_raw_os_error(libc::ENOMEM));
                }
                p as usize
            }
        };
        self.out.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(AlignedBuf {
            pool: Arc::clone(self),
            // SAFETY: non-null: from a successful allocation.
            ptr: unsafe { NonNull::new_unchecked(addr as *mut u8) },
            class,
            len: 0,
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let f = self.free.get_mut().unwrap_or_else(|e| e.into_inner());
        for (class, v) in f.iter().enumerate() {
            for &a in v {
                // SAFETY: allocated in `get` with this class's layout and
                // no longer used by any buffer (it is in the free list).
                unsafe { dealloc(a as *mut u8, Self::layout(class)) }
            }
        }
    }
}

/// The bytes of one read, aligned to [`ALIGN`], holding `len` valid bytes.
///
/// # Invariants
/// `ptr` is an allocation of `Pool::layout(class)` owned by this buffer
/// (returned to `pool` on drop); its first `len` bytes were written by a
/// read.
pub struct AlignedBuf {
    pool: Arc<Pool>,
    ptr: NonNull<u8>,
    class: usize,
    len: usize,
}

// SAFETY: the buffer is owned memory, like a Vec.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads it.
unsafe impl Sync for AlignedBuf {}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: by the invariants, `len` bytes of this buffer's own
        // allocation, written by the read.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let mut f = self.pool.free.lock().unwrap_or_else(|e| e.into_inner());
        if f.len() <= self.class {
            f.resize_with(self.class + 1, Vec::new);
        }
        f[self.class].push(self.ptr.as_ptr() as usize);
        self.pool
            .out
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Opens `path` for reading with `O_DIRECT`, or without it where the file
/// system refuses it. Returns the file and whether it is direct.
pub fn open_direct(path: &Path) -> io::Result<(File, bool)> {
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((File::open(path)?, false)),
        Err(e) => Err(e),
    }
}

/// A read queued with [`Fetcher::read`]; [`Fetcher::take`] returns its bytes.
#[derive(Debug)]
pub struct Ticket(usize);

enum State {
    /// Queued, not yet given to the kernel.
    Queued,
    /// In the kernel.
    InFlight,
    /// Completed with this result (bytes read, or -errno).
    Done(i32),
}

struct Slot {
    file: Arc<File>,
    off: u64,
    /// Bytes to read (a multiple of [`ALIGN`]).
    len: usize,
    /// Given when the read starts.
    buf: Option<AlignedBuf>,
    state: State,
}

/// What a [`Fetcher`] did, for `--stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FetchStats {
    /// Reads started.
    pub started: u64,
    /// Times a reader waited for the kernel.
    pub waits: u64,
    /// Of those, times the read waited for had not been started yet (all
    /// buffers held by reads completed ahead of the reader, or the ring
    /// full of other reads).
    pub waits_unstarted: u64,
    /// Sum over waits of the reads in flight (mean queue depth seen by a
    /// waiting reader = this / `waits`).
    pub in_flight_sum: u64,
    /// Most reads in flight at once.
    pub max_in_flight: u32,
}

struct Inner {
    ring: IoUring,
    stats: FetchStats,
    pool: Arc<Pool>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    queued: VecDeque<usize>,
    in_flight: u32,
}

/// Queues reads on an io_uring; shared by the threads that plan a query.
pub struct Fetcher {
    inner: Mutex<Inner>,
}

impl Fetcher {
    /// A fetcher, or `None` where io_uring cannot be set up.
    pub fn new() -> Option<Self> {
        let ring = IoUring::new(DEPTH).ok()?;
        Some(Self {
            inner: Mutex::new(Inner {
                ring,
                stats: FetchStats::default(),
                pool: Arc::default(),
                slots: Vec::new(),
                free: Vec::new(),
                queued: VecDeque::new(),
                in_flight: 0,
            }),
        })
    }

    /// What this fetcher did so far.
    pub fn stats(&self) -> FetchStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a read of `len` bytes of `file` from `off`, widened to
    /// [`ALIGN`] on both ends (the bytes returned start at the aligned
    /// offset). Reads are started in the order they are queued.
    pub fn read(&self, file: &Arc<File>, off: u64, len: u64) -> Ticket {
        let mut t = self.read_all(file, &[(off, len)]);
        t.pop().expect("one read queued")
    }

    /// Queues reads of `file` (`(offset, length)` each, as [`Self::read`]),
    /// handing them to the kernel with one system call.
    pub fn read_all(&self, file: &Arc<File>, ranges: &[(u64, u64)]) -> Vec<Ticket> {
        let t = self.queue_all(file, ranges);
        self.start();
        t
    }

    /// Gives queued reads to the kernel (as many as it may have in flight).
    pub fn start(&self) {
        let mut g = self.lock();
        g.reap();
        g.pump();
    }

    /// Queues reads as [`Self::read_all`] does, without starting them:
    /// several files' reads can be queued in the order the reader will
    /// want them, then started with [`Self::start`]. (Reads complete in
    /// any order, but are started in queue order, and completed reads
    /// hold buffers until taken: a queue in the reader's order keeps the
    /// disk busy with what the reader needs next.)
    pub fn queue_all(&self, file: &Arc<File>, ranges: &[(u64, u64)]) -> Vec<Ticket> {
        let slots: Vec<Slot> = ranges
            .iter()
            .map(|&(off, len)| {
                let start = off / ALIGN * ALIGN;
                let end = (off + len).next_multiple_of(ALIGN);
                Slot {
                    file: Arc::clone(file),
                    off: start,
                    len: (end - start) as usize,
                    buf: None,
                    state: State::Queued,
                }
            })
            .collect();
        let mut g = self.lock();
        let mut out = Vec::with_capacity(slots.len());
        for slot in slots {
            let id = match g.free.pop() {
                Some(i) => {
                    g.slots[i] = Some(slot);
                    i
                }
                None => {
                    g.slots.push(Some(slot));
                    g.slots.len() - 1
                }
            };
            g.queued.push_back(id);
            out.push(Ticket(id));
        }
        out
    }

    /// Waits for the read of `t` and returns the offset its bytes start
    /// at and the bytes (fewer than asked at the end of the file), or the
    /// error it failed with.
    pub fn take(&self, t: Ticket) -> io::Result<(u64, AlignedBuf)> {
        let mut g = self.lock();
        loop {
            let state = match g.slots.get(t.0).and_then(|s| s.as_ref()) {
                Some(s) => match s.state {
                    State::Done(r) => Some(r),
                    _ => None,
                },
                None => return Err(io::Error::other("unknown read ticket")),
            };
            if let Some(r) = state {
                let s = g.slots[t.0].take().expect("checked above");
                g.free.push(t.0);
                if r < 0 {
                    return Err(io::Error::from_raw_os_error(-r));
                }
                let mut buf = s
                    .buf
                    .ok_or_else(|| io::Error::other("read without a buffer"))?;
                buf.len = (r as usize).min(s.len);
                // Keep the disk busy: refill the ring once a quarter of
                // it can be refilled at once (each submission notifies the
                // device: one notification per read costs more than the
                // read on a virtual disk).
                g.reap();
                if g.room() >= DEPTH as usize / 4 {
                    g.pump();
                }
                return Ok((s.off, buf));
            }
            // The read waited for goes first, whatever the buffer count.
            let waiting = matches!(g.slots[t.0].as_ref().map(|s| &s.state), Some(State::Queued));
            if waiting {
                if let Some(i) = g.queued.iter().position(|&q| q == t.0) {
                    g.queued.remove(i);
                    g.queued.push_front(t.0);
                }
            }
            g.pump_with(waiting);
            if g.in_flight == 0 {
                return Err(io::Error::other("read never submitted"));
            }
            g.stats.waits += 1;
            g.stats.waits_unstarted += u64::from(waiting);
            g.stats.in_flight_sum += u64::from(g.in_flight);
            // Wake up for half of what is in flight rather than for each
            // read: on a busy machine every wake-up waits for a CPU, and
            // the reads still queued are handed over as these complete.
            let n = g.in_flight.div_ceil(2) as usize;
            g.ring.submit_and_wait(n)?;
            g.reap();
        }
    }
}

impl Inner {
    /// Gives queued reads to the kernel while fewer than [`DEPTH`] are in
    /// flight (so the completion queue, twice as large, cannot overflow).
    fn pump(&mut self) {
        self.pump_with(false)
    }

    /// Reads that could be started now (ring space and buffers).
    fn room(&self) -> usize {
        let bufs =
            MAX_BUFS.saturating_sub(self.pool.out.load(std::sync::atomic::Ordering::Relaxed));
        ((DEPTH - self.in_flight) as usize)
            .min(bufs)
            .min(self.queued.len())
    }

    /// [`Self::pump`], giving the first queued read a buffer beyond
    /// [`MAX_BUFS`] if `first` is set.
    fn pump_with(&mut self, mut first: bool) {
        let mut pushed = false;
        while self.in_flight < DEPTH
            && (std::mem::take(&mut first)
                || self.pool.out.load(std::sync::atomic::Ordering::Relaxed) < MAX_BUFS)
        {
            let Some(&id) = self.queued.front() else {
                break;
            };
            let s = self.slots[id].as_mut().expect("queued slot exists");
            let buf = match self.pool.get(s.len) {
                Ok(b) => b,
                Err(e) => {
                    s.state = State::Done(-e.raw_os_error().unwrap_or(libc::ENOMEM));
                    self.queued.pop_front();
                    continue;
                }
            };
            let ptr = buf.ptr.as_ptr();
            s.buf = Some(buf);
            let e = opcode::Read::new(types::Fd(s.file.as_raw_fd()), ptr, s.len as u32)
                .offset(s.off)
                .build()
                .user_data(id as u64);
            // SAFETY: the buffer and the file stay alive in the slot until
            // the completion is reaped (the slot is only freed after
            // `Done`, and `Drop` waits for everything in flight).
            if unsafe { self.ring.submission().push(&e) }.is_err() {
                break;
            }
            s.state = State::InFlight;
            self.queued.pop_front();
            self.in_flight += 1;
            self.stats.started += 1;
            self.stats.max_in_flight = self.stats.max_in_flight.max(self.in_flight);
            pushed = true;
        }
        if pushed {
            // Failure to submit leaves the entries queued in the ring;
            // the next submit_and_wait retries.
            let _ = self.ring.submit();
        }
    }

    /// Records every completion available.
    fn reap(&mut self) {
        let done: Vec<(usize, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data() as usize, c.result()))
            .collect();
        for (id, r) in done {
            if let Some(Some(s)) = self.slots.get_mut(id) {
                s.state = State::Done(r);
                self.in_flight -= 1;
            }
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // The kernel may still write into buffers of reads in flight:
        // wait for them before the buffers are freed.
        let g = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        while g.in_flight > 0 {
            if g.ring.submit_and_wait(1).is_err() {
                // Cannot wait: leak the buffers rather than free memory
                // the kernel may write.
                std::mem::forget(std::mem::take(&mut g.slots));
                return;
            }
            g.reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_scattered_ranges_in_any_order() {
        let dir = std::env::temp_dir().join(format!("hpcap-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("data");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        std::fs::File::create(&p).unwrap().write_all(&data).unwrap();
        let Some(fx) = Fetcher::new() else {
            eprintln!("skipped: io_uring is not available here");
            return;
        };
        let (f, _) = open_direct(&p).unwrap();
        let f = Arc::new(f);
        // More reads than DEPTH, unaligned, one past the end of the file.
        let mut want = Vec::new();
        for i in 0..400u64 {
            let off = (i * 7919 * 13) % 2_990_000;
            want.push((off, 5000 + i % 3000, fx.read(&f, off, 5000 + i % 3000)));
        }
        let tail = fx.read(&f, 2_999_000, 10_000);
        for (off, len, t) in want.into_iter().rev() {
            let (at, buf) = fx.take(t).unwrap();
            assert!(at <= off && at % ALIGN == 0);
            let s = (off - at) as usize;
            assert!(buf.len() >= s + len as usize);
            assert_eq!(
                &buf[s..s + len as usize],
                &data[off as usize..(off + len) as usize]
            );
        }
        let (at, buf) = fx.take(tail).unwrap();
        assert_eq!(at as usize + buf.len(), data.len(), "short read at the end");
        assert_eq!(&buf[..], &data[at as usize..]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
