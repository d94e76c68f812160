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

use std::alloc::{alloc_zeroed, dealloc, Layout};
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

/// Alignment of offsets, lengths and buffers (what `O_DIRECT` needs on
/// every common file system and device).
pub const ALIGN: u64 = 4096;

/// A heap buffer aligned to [`ALIGN`], holding `len` valid bytes.
///
/// # Invariants
/// `ptr` points to an allocation of `layout` (size ≥ `len`, align
/// [`ALIGN`]) owned by this value.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    layout: Layout,
    len: usize,
}

// SAFETY: the buffer is plain owned memory, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads it.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `cap` bytes (rounded up to [`ALIGN`]).
    fn zeroed(cap: usize) -> Self {
        let size = cap.max(1).next_multiple_of(ALIGN as usize);
        let layout = Layout::from_size_align(size, ALIGN as usize).expect("valid layout");
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Self {
            ptr,
            layout,
            len: 0,
        }
    }

    /// Capacity in bytes.
    fn capacity(&self) -> usize {
        self.layout.size()
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: by the invariants, `len` bytes (≤ the allocation's size)
        // are initialised (the buffer is zeroed at allocation).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
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
    buf: AlignedBuf,
    state: State,
}

struct Inner {
    ring: IoUring,
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
                slots: Vec::new(),
                free: Vec::new(),
                queued: VecDeque::new(),
                in_flight: 0,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a read of `len` bytes of `file` from `off`, widened to
    /// [`ALIGN`] on both ends (the bytes returned start at the aligned
    /// offset). Reads are started in the order they are queued.
    pub fn read(&self, file: &Arc<File>, off: u64, len: u64) -> Ticket {
        let start = off / ALIGN * ALIGN;
        let end = (off + len).next_multiple_of(ALIGN);
        let slot = Slot {
            file: Arc::clone(file),
            off: start,
            buf: AlignedBuf::zeroed((end - start) as usize),
            state: State::Queued,
        };
        let mut g = self.lock();
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
        g.reap();
        g.pump();
        Ticket(id)
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
                let mut s = g.slots[t.0].take().expect("checked above");
                g.free.push(t.0);
                if r < 0 {
                    return Err(io::Error::from_raw_os_error(-r));
                }
                s.buf.len = (r as usize).min(s.buf.capacity());
                return Ok((s.off, s.buf));
            }
            g.pump();
            if g.in_flight == 0 {
                return Err(io::Error::other("read never submitted"));
            }
            g.ring.submit_and_wait(1)?;
            g.reap();
        }
    }
}

impl Inner {
    /// Gives queued reads to the kernel while fewer than [`DEPTH`] are in
    /// flight (so the completion queue, twice as large, cannot overflow).
    fn pump(&mut self) {
        let mut pushed = false;
        while self.in_flight < DEPTH {
            let Some(&id) = self.queued.front() else {
                break;
            };
            let s = self.slots[id].as_mut().expect("queued slot exists");
            let len = s.buf.capacity() as u32;
            let e = opcode::Read::new(types::Fd(s.file.as_raw_fd()), s.buf.ptr.as_ptr(), len)
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
