// SPDX-License-Identifier: MIT
//! The shared-memory software source: file layout and the producer/listener
//! glue around the core's protocol.
//!
//! `hpcap-sim` creates a file (normally under `/dev/shm`) laid out as:
//!
//! ```text
//! offset 0          Control (CONTROL_LEN = 64 KiB, page aligned)
//!   0   magic "HPCAPSIM", version u32, control_len u32
//!   16  abi::Info (144 B): geometry, format, name; fixed after creation
//!   160 state, wake (futex word), producer pid, snaplen, filter seqlock
//!       word, filter length (u32 atomics), start time (u64)
//!   ... counters: AtomicU64s in abi::Counters order; NIC counter validity
//!   ... per-listener pids (16)
//!   ... PublishState (core::publish, 64-byte aligned)
//!   ... ListenerTable (core::listener, 64-byte aligned)
//!   ... BPF filter: 4096 × AtomicU64 (one sock_filter each)
//! offset CONTROL_LEN  data buffer (buffer_size bytes)
//! ```
//!
//! Every shared field is an atomic or is written once before the file is
//! renamed into place (the simulator builds it under a temporary name), and
//! the core's `PublishState` and `ListenerTable` are `#[repr(C)]`, contain no
//! pointers, and are valid as all-zero memory, so they work at any address
//! in any process. Readers map the control area read-write (they write their
//! cursor) and the data read-only, twice back to back like the device.
//!
//! Waiting: a listener registers its target with
//! [`PublishState::prepare_wait`] and sleeps on the `wake` futex word (with a
//! timeout of at most [`WAIT_SLICE`], so a lost wake-up or a dead producer
//! costs at most that much latency); the producer bumps `wake` and calls
//! `FUTEX_WAKE` when the core reports a wake-up is due, at end of stream,
//! and after a kill.
//!
//! Listeners whose process died: a software source has no kernel to tell
//! it that a listener's owner is gone, so [`Control::reap`] (run by the
//! producer every 100 ms, and by an attach by name) does what the driver's
//! `release` does: a named listener lingers (deadlines on
//! `CLOCK_MONOTONIC`, [`crate::util::mono_ns`]), any other is detached, and
//! lingering listeners past their deadline are freed.
//!
//! End of stream: when its input is exhausted the producer closes the open
//! block (padding), publishes it and sets [`STATE_EOS`]. A listener whose
//! wait cannot be satisfied any more gets `WAIT_HUP`; so does one whose
//! producer process died without setting it.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use hpcap_core::abi::{self, Info, MAX_LISTENERS};
use hpcap_core::bpf::{SockFilter, MAX_INSNS};
use hpcap_core::config::{ConfigError, Stream};
use hpcap_core::format::StreamFormat;
use hpcap_core::listener::{Abandoned, ListenerTable};
use hpcap_core::publish::{Geometry, PublishState};
use hpcap_core::session::{Sleeper, Slept};
use hpcap_core::stats::{CaptureStats, NCOUNTERS};

use crate::{Error, Result};

/// Magic at offset 0 of a software source file.
pub const SHM_MAGIC: [u8; 8] = *b"HPCAPSIM";
/// Layout version of [`Control`] (3: listener slots carry names and
/// linger deadlines; 16 counters. 4: 18 counters; the listener table
/// counts the bytes of expired lingering listeners. 5: the publication
/// state's token word, wake word and each completion record on cache lines
/// of their own).
pub const SHM_VERSION: u32 = 5;
/// Size of the control area; the data buffer starts at this file offset.
pub const CONTROL_LEN: usize = 64 * 1024;
/// [`Control::state`]: the producer has started.
pub const STATE_RUNNING: u32 = 1 << 0;
/// [`Control::state`]: end of stream: everything is published, nothing more
/// will come.
pub const STATE_EOS: u32 = 1 << 1;
/// Longest single futex sleep of a waiting listener.
pub const WAIT_SLICE: Duration = Duration::from_millis(20);

/// The control area at the start of a software source file.
#[repr(C)]
pub struct Control {
    /// [`SHM_MAGIC`].
    pub magic: [u8; 8],
    /// [`SHM_VERSION`].
    pub version: u32,
    /// [`CONTROL_LEN`]: file offset of the data buffer.
    pub control_len: u32,
    /// What the source is; fixed after creation (`commit` and `listeners`
    /// are filled in by readers from the live state).
    pub info: Info,
    /// `STATE_*` bits.
    pub state: AtomicU32,
    /// Futex word bumped on every wake-up.
    pub wake: AtomicU32,
    /// Process id of the producer.
    pub producer_pid: AtomicU32,
    /// Snapshot length in force (0 = whole frames); `hpcapctl` may change it.
    pub snaplen: AtomicU32,
    /// Filter seqlock: odd while a writer updates the filter.
    pub filter_seq: AtomicU32,
    /// Instructions of the filter in force (0 = none).
    pub filter_len: AtomicU32,
    /// When the producer started, ns since the Unix epoch.
    pub start_ns: AtomicU64,
    /// Capture counters in `abi::Counters` field order.
    pub counters: [AtomicU64; NCOUNTERS],
    /// Which NIC counters the producer's software NIC provides
    /// (`stats::NIC_*` bits).
    pub nic_valid: AtomicU32,
    /// Process id of each listener slot's owner (0 = unknown).
    pub listener_pid: [AtomicU32; MAX_LISTENERS],
    /// The core's publication state.
    pub publish: PublishState,
    /// The core's listener table.
    pub listeners: ListenerTable,
    /// The BPF filter, one `sock_filter` per word (code | jt << 16 |
    /// jf << 24 | k << 32).
    pub filter: [AtomicU64; MAX_INSNS],
}

const _: () = assert!(std::mem::size_of::<Control>() <= CONTROL_LEN);
const _: () = assert!(std::mem::align_of::<Control>() <= 4096);
const _: () = assert!(std::mem::offset_of!(Control, info) == 16);

fn pack_insn(i: &SockFilter) -> u64 {
    u64::from(i.code) | u64::from(i.jt) << 16 | u64::from(i.jf) << 24 | u64::from(i.k) << 32
}

fn unpack_insn(w: u64) -> SockFilter {
    SockFilter {
        code: w as u16,
        jt: (w >> 16) as u8,
        jf: (w >> 24) as u8,
        k: (w >> 32) as u32,
    }
}

impl Control {
    /// The stream geometry the core's protocol functions take.
    pub fn geometry(&self) -> Result<Geometry> {
        geometry_of(&self.info)
    }

    /// Counters as the ABI struct (`bytes_expired` is the listener
    /// table's own count, as in the driver).
    pub fn counters(&self) -> CaptureStats {
        let mut c = CaptureStats::from_array(std::array::from_fn(|i| {
            // Relaxed: statistics.
            self.counters[i].load(Ordering::Relaxed)
        }));
        c.bytes_expired = self.listeners.expired_bytes();
        c
    }

    /// Publishes the producer's counters.
    pub fn store_counters(&self, c: &CaptureStats) {
        for (slot, v) in self.counters.iter().zip(c.to_array()) {
            // Relaxed: statistics.
            slot.store(v, Ordering::Relaxed);
        }
    }

    /// Whether the stream has ended (end-of-stream flag, or the producer
    /// process is gone).
    pub fn ended(&self) -> bool {
        // Acquire: pairs with the Release fetch_or in `set_state`; the final
        // publication happens-before the flag.
        if self.state.load(Ordering::Acquire) & STATE_EOS != 0 {
            return true;
        }
        let pid = self.producer_pid.load(Ordering::Relaxed);
        pid != 0 && !pid_alive(pid)
    }

    /// Sets state bits and wakes every sleeper.
    pub fn set_state(&self, bits: u32) {
        // Release: see `ended`.
        self.state.fetch_or(bits, Ordering::Release);
        self.wake_all();
    }

    /// Wakes every listener sleeping on the futex word.
    pub fn wake_all(&self) {
        // Release: a woken sleeper that sees the new value sees what we
        // published before.
        self.wake.fetch_add(1, Ordering::Release);
        futex_wake(&self.wake);
    }

    /// Sleeps until the futex word changes from `seen` or `timeout` passes.
    pub fn sleep(&self, seen: u32, timeout: Duration) {
        futex_wait(&self.wake, seen, timeout.min(WAIT_SLICE));
    }

    /// Treats listeners whose process died as the kernel treats a closed
    /// file (named ones linger, others are detached), then frees lingering
    /// listeners whose deadline has passed. `now` is
    /// [`crate::util::mono_ns`]. Returns true if a listener went away or
    /// started lingering (a producer waiting for room should re-check).
    pub fn reap(&self, now: u64) -> bool {
        let mut changed = false;
        for l in self.listeners.list() {
            if l.lingering.is_some() {
                continue;
            }
            // Relaxed: informational, written at attach.
            let pid = self.listener_pid[l.id.slot()].load(Ordering::Relaxed);
            if pid != 0 && !pid_alive(pid) {
                match self.listeners.abandon(l.id, now) {
                    Ok(Abandoned::Freed { .. }) => {
                        self.listener_pid[l.id.slot()].store(0, Ordering::Relaxed);
                        changed = true;
                    }
                    Ok(Abandoned::Lingering { .. }) => changed = true,
                    Err(_) => {}
                }
            }
        }
        changed |= self.listeners.expire(now, self.publish.committed()) > 0;
        changed
    }

    /// Replaces the BPF filter (empty = none). Readers pick it up on their
    /// next batch.
    pub fn set_filter(&self, insns: &[SockFilter]) -> Result<()> {
        if insns.len() > MAX_INSNS {
            return Err(Error::Invalid(format!(
                "filter has {} instructions, at most {MAX_INSNS} allowed",
                insns.len()
            )));
        }
        // Take the seqlock: even -> odd.
        loop {
            // Relaxed: the CAS below decides.
            let s = self.filter_seq.load(Ordering::Relaxed);
            if s.is_multiple_of(2)
                && self
                    .filter_seq
                    // Acquire: later writes stay after taking the lock.
                    .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break;
            }
            std::thread::yield_now();
        }
        for (w, i) in self.filter.iter().zip(insns) {
            // Relaxed: ordered by the seqlock.
            w.store(pack_insn(i), Ordering::Relaxed);
        }
        // CAST: at most MAX_INSNS (checked above).
        self.filter_len.store(insns.len() as u32, Ordering::Relaxed);
        // Release: publishes the words before the even sequence number.
        self.filter_seq.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// The filter's sequence number (changes on every update).
    pub fn filter_version(&self) -> u32 {
        // Acquire: pairs with the Release in `set_filter`.
        self.filter_seq.load(Ordering::Acquire)
    }

    /// A consistent copy of the filter and its version.
    pub fn filter(&self) -> (Vec<SockFilter>, u32) {
        loop {
            let s1 = self.filter_version();
            if !s1.is_multiple_of(2) {
                std::thread::yield_now();
                continue;
            }
            // Relaxed: validated by the sequence re-check.
            let n = (self.filter_len.load(Ordering::Relaxed) as usize).min(MAX_INSNS);
            let v: Vec<SockFilter> = self.filter[..n]
                .iter()
                // Relaxed: validated by the sequence re-check.
                .map(|w| unpack_insn(w.load(Ordering::Relaxed)))
                .collect();
            std::sync::atomic::fence(Ordering::Acquire);
            // Relaxed: after the Acquire fence.
            if self.filter_seq.load(Ordering::Relaxed) == s1 {
                return (v, s1);
            }
        }
    }
}

/// The stream (format and geometry) of a source described by `info`.
pub fn stream_of(info: &Info) -> Result<Stream> {
    let bad = |e: ConfigError| {
        Error::Invalid(format!(
            "bad stream: format {}, buffer {} B, block {} B: {}",
            info.format,
            info.buffer_size,
            info.block_size,
            e.explain()
        ))
    };
    let format = StreamFormat::try_from(info.format).map_err(|_| bad(ConfigError::Format))?;
    Stream::new(format, info.buffer_size, info.block_size).map_err(bad)
}

/// The core geometry of a source described by `info`.
pub fn geometry_of(info: &Info) -> Result<Geometry> {
    stream_of(info).map(|s| s.geo)
}

/// How a listener of a software source sleeps: on the control area's futex
/// word, registered with the core's wake-up protocol.
pub struct ShmSleeper<'a> {
    /// The source's control area.
    pub control: &'a Control,
}

impl Sleeper for ShmSleeper<'_> {
    fn now_ns(&self) -> u64 {
        crate::util::now_ns()
    }

    fn ended(&self) -> bool {
        self.control.ended()
    }

    fn sleep(&self, target: u64, max_ns: u64) -> Slept {
        // Read the futex word before registering, so a wake-up in between
        // changes it and the futex wait returns at once.
        // Acquire: pairs with the Release bump in `wake_all`.
        let seen = self.control.wake.load(Ordering::Acquire);
        if self.control.publish.prepare_wait(target) {
            return Slept::Woken;
        }
        self.control.sleep(seen, Duration::from_nanos(max_ns));
        Slept::Woken
    }
}

/// Whether process `pid` exists and has not exited (a zombie, dead but
/// not yet waited for by its parent, counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    // CAST: pids fit in pid_t.
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        return false;
    }
    // /proc/PID/stat: "pid (comm) S ...", comm may contain anything but
    // the state follows the last ')'.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => !matches!(
            st.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X')
        ),
        // No /proc (or another PID namespace): trust kill().
        Err(_) => true,
    }
}

fn futex_wait(word: &AtomicU32, seen: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: FUTEX_WAIT on a valid, aligned u32 in shared memory; the
    // kernel only reads it. Errors (EAGAIN, ETIMEDOUT, EINTR) all mean
    // "re-check", which every caller does.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            seen,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

fn futex_wake(word: &AtomicU32) {
    // SAFETY: FUTEX_WAKE on a valid, aligned u32; wakes all sleepers.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// A mapping of `size` bytes of a file (or device) at `offset`, twice back
/// to back, so `[base, base + 2 * size)` shows the buffer contiguously
/// across its end.
#[derive(Debug)]
pub struct DoubleMap {
    base: NonNull<u8>,
    size: usize,
}

// SAFETY: the mapping is plain shared memory; synchronisation of its
// contents is the protocol's business (atomics in the control area).
unsafe impl Send for DoubleMap {}
// SAFETY: as above.
unsafe impl Sync for DoubleMap {}

impl DoubleMap {
    /// Maps `size` bytes of `file` at `offset` twice, back to back.
    /// `writable` maps them read-write (the producer).
    pub fn new(file: &File, offset: u64, size: usize, writable: bool) -> Result<Self> {
        let total = size
            .checked_mul(2)
            .ok_or_else(|| Error::Invalid("buffer too large".into()))?;
        // SAFETY: an anonymous PROT_NONE reservation; no memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os("reserving address space for the buffer"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        for half in 0..2 {
            // SAFETY: MAP_FIXED inside our own reservation replaces only it.
            let p = unsafe {
                libc::mmap(
                    base.cast::<u8>().add(half * size).cast(),
                    size,
                    prot,
                    // POPULATE: fault the pages in now, not in the
                    // producer's hot path or under O_DIRECT writes.
                    libc::MAP_SHARED | libc::MAP_FIXED | libc::MAP_POPULATE,
                    file.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                let e = Error::last_os("mapping the buffer");
                // SAFETY: unmapping our own reservation.
                unsafe { libc::munmap(base, total) };
                return Err(e);
            }
        }
        Ok(Self {
            base: NonNull::new(base.cast())
                .ok_or_else(|| Error::Invalid("mmap gave NULL".into()))?,
            size,
        })
    }

    /// Maps a device that maps itself twice: `mmap(NULL, 2 * size,
    /// PROT_READ, MAP_SHARED, fd, 0)` as `include/hpcap.h` specifies.
    pub fn device(file: &File, size: usize) -> Result<Self> {
        let total = size
            .checked_mul(2)
            .ok_or_else(|| Error::Invalid("buffer too large".into()))?;
        // SAFETY: a shared read-only mapping of the device; the driver
        // provides both halves.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(Error::last_os("mapping the device buffer"));
        }
        Ok(Self {
            base: NonNull::new(base.cast())
                .ok_or_else(|| Error::Invalid("mmap gave NULL".into()))?,
            size,
        })
    }

    /// Buffer size (one half).
    pub fn size(&self) -> usize {
        self.size
    }

    /// Pointer to buffer position 0.
    pub fn as_ptr(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// `len` bytes (at most the buffer size) from buffer position `pos`.
    ///
    /// The bytes are shared memory another process may write: the caller
    /// relies on the listener protocol (published, not yet acknowledged by
    /// a blocking listener, or validated afterwards by a lossy one).
    pub fn slice(&self, pos: usize, len: usize) -> &[u8] {
        assert!(pos < self.size && len <= self.size, "outside the buffer");
        // SAFETY: pos + len <= 2 * size: inside the double mapping.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(pos), len) }
    }

    /// The buffer as one mutable slice of `size` bytes (producer only).
    ///
    /// # Safety
    ///
    /// The mapping must be writable and the caller must only write ranges
    /// the publication protocol reserved for it.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn buffer_mut(&self) -> &mut [u8] {
        // SAFETY: the first half is `size` mapped bytes; exclusivity of the
        // written ranges is the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.size) }
    }
}

impl hpcap_core::engine::StreamMemory for DoubleMap {
    unsafe fn span_mut(&self, pos: u64, len: u64) -> Option<&mut [u8]> {
        let pos = usize::try_from(pos).ok()?;
        let len = usize::try_from(len).ok()?;
        if pos.checked_add(len)? > 2 * self.size {
            return None;
        }
        // SAFETY: inside the double mapping; the mapping is writable for
        // the producer (the only caller of the engine); exclusivity of the
        // range is the caller's contract.
        Some(unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(pos), len) })
    }

    fn raw(&self) -> (*mut u8, u64) {
        // The first of the two views; the engine's spans never wrap.
        (self.base.as_ptr(), self.size as u64)
    }
}

impl Drop for DoubleMap {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new`/`device` mapped.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.size * 2) };
    }
}

/// A mapped software source file: its control area and data buffer.
#[derive(Debug)]
pub struct ShmSource {
    _file: File,
    control: NonNull<Control>,
    data: DoubleMap,
}

// SAFETY: Control is made of atomics and immutable fields.
unsafe impl Send for ShmSource {}
// SAFETY: as above.
unsafe impl Sync for ShmSource {}

fn map_control(file: &File) -> Result<NonNull<Control>> {
    // SAFETY: a shared read-write mapping of the control area of the file.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            CONTROL_LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::last_os("mapping the control area"));
    }
    NonNull::new(p.cast()).ok_or_else(|| Error::Invalid("mmap gave NULL".into()))
}

/// Parameters of a new software source.
#[derive(Debug, Clone)]
pub struct CreateParams {
    /// Buffer size, a multiple of the block size.
    pub buffer_size: u64,
    /// Block size, a power of two (64 KiB..256 MiB).
    pub block_size: u64,
    /// `abi::FORMAT_*`.
    pub format: u32,
    /// Initial snaplen (0 = whole frames).
    pub snaplen: u32,
    /// Interface name reported in `Info::name` (and used in file names).
    pub name: String,
}

impl ShmSource {
    /// Creates a software source file at `path` (replacing any previous
    /// one atomically: it is built under a temporary name and renamed).
    pub fn create(path: &Path, p: &CreateParams) -> Result<Self> {
        let format = StreamFormat::try_from(p.format)
            .map_err(|_| Error::Invalid(ConfigError::Format.explain().into()))?;
        Stream::new(format, p.buffer_size, p.block_size).map_err(|e| {
            Error::Invalid(format!(
                "bad geometry (block {} B, buffer {} B): {}; the buffer must be a whole number \
                 of blocks",
                p.block_size,
                p.buffer_size,
                e.explain()
            ))
        })?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp{}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            std::process::id()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .open(&tmp)
            .map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
        let total = CONTROL_LEN as u64 + p.buffer_size;
        file.set_len(total)
            .map_err(|e| Error::io(format!("sizing {} to {total} B", tmp.display()), e))?;
        // Allocate the memory now (tmpfs) so the producer never takes
        // allocation faults; where unsupported, pages come on first touch.
        // SAFETY: fallocate on our own file descriptor.
        unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, total as libc::off_t) };
        let control = map_control(&file)?;
        // SAFETY: fresh zeroed mapping, not shared with anyone yet; we are
        // the only writer of the fixed fields until the rename.
        unsafe {
            let c = control.as_ptr();
            (*c).magic = SHM_MAGIC;
            (*c).version = SHM_VERSION;
            (*c).control_len = CONTROL_LEN as u32;
            let mut info = Info::ZERO;
            info.abi_version = abi::ABI_VERSION;
            info.format = p.format;
            info.buffer_size = p.buffer_size;
            info.block_size = p.block_size;
            info.snaplen = p.snaplen;
            info.nic = abi::NIC_SOFT;
            info.consumers = 1;
            info.link_up = 1;
            abi::set_cstr(&mut info.name, p.name.as_bytes());
            abi::set_cstr(&mut info.bus_addr, path.to_string_lossy().as_bytes());
            (*c).info = info;
        }
        let data = DoubleMap::new(&file, CONTROL_LEN as u64, p.buffer_size as usize, true)?;
        let me = Self {
            _file: file,
            control,
            data,
        };
        let c = me.control();
        c.snaplen.store(p.snaplen, Ordering::Relaxed);
        c.producer_pid.store(std::process::id(), Ordering::Relaxed);
        c.start_ns.store(crate::util::now_ns(), Ordering::Relaxed);
        std::fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        Ok(me)
    }

    /// Opens an existing software source file; `writable_data` maps the
    /// buffer read-write (only the producer needs that).
    pub fn open(path: &Path, writable_data: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if len < CONTROL_LEN as u64 {
            return Err(Error::Invalid(format!(
                "{}: not an hpcap software source (too short)",
                path.display()
            )));
        }
        let control = map_control(&file)?;
        // SAFETY: the mapping holds at least CONTROL_LEN bytes; magic and
        // version are immutable after creation.
        let (magic, version, info) = unsafe {
            let c = control.as_ptr();
            ((*c).magic, (*c).version, (*c).info)
        };
        let bad = |why: String| {
            // SAFETY: unmapping the control area we just mapped.
            unsafe { libc::munmap(control.as_ptr().cast(), CONTROL_LEN) };
            Err(Error::Invalid(format!(
                "{}: not a usable hpcap software source: {why}",
                path.display()
            )))
        };
        if magic != SHM_MAGIC {
            return bad("bad magic".into());
        }
        if version != SHM_VERSION {
            return bad(format!("layout version {version}, expected {SHM_VERSION}"));
        }
        if geometry_of(&info).is_err() || len < CONTROL_LEN as u64 + info.buffer_size {
            return bad(format!(
                "bad geometry: buffer {} B, block {} B, file {len} B",
                info.buffer_size, info.block_size
            ));
        }
        let data = match DoubleMap::new(
            &file,
            CONTROL_LEN as u64,
            info.buffer_size as usize,
            writable_data,
        ) {
            Ok(d) => d,
            Err(e) => {
                // SAFETY: unmapping the control area we just mapped.
                unsafe { libc::munmap(control.as_ptr().cast(), CONTROL_LEN) };
                return Err(e);
            }
        };
        Ok(Self {
            _file: file,
            control,
            data,
        })
    }

    /// The control area.
    pub fn control(&self) -> &Control {
        // SAFETY: mapped for our lifetime; all mutable fields are atomics.
        unsafe { self.control.as_ref() }
    }

    /// The data buffer mapping.
    pub fn data(&self) -> &DoubleMap {
        &self.data
    }

    /// Live `Info`: the fixed part plus commit, listeners and snaplen.
    pub fn info(&self) -> Info {
        let c = self.control();
        let mut i = c.info;
        hpcap_core::session::fill_info(&mut i, &c.listeners, &c.publish);
        i.snaplen = c.snaplen.load(Ordering::Relaxed);
        i.link_up = u32::from(!c.ended());
        i
    }
}

impl Drop for ShmSource {
    fn drop(&mut self) {
        // SAFETY: unmapping the control area mapped in create/open.
        unsafe { libc::munmap(self.control.as_ptr().cast(), CONTROL_LEN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insn_packing_roundtrips() {
        let i = SockFilter {
            code: 0x15,
            jt: 3,
            jf: 250,
            k: 0xDEAD_BEEF,
        };
        assert_eq!(unpack_insn(pack_insn(&i)), i);
    }

    #[test]
    fn create_open_and_double_map() {
        let dir = std::env::temp_dir().join(format!("hpcap-shm-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("src");
        let p = CreateParams {
            buffer_size: 4 * 65536,
            block_size: 65536,
            format: abi::FORMAT_PCAPNG,
            snaplen: 0,
            name: "sim0".into(),
        };
        let prod = ShmSource::create(&path, &p).unwrap();
        // SAFETY: test: we are the only writer.
        let buf = unsafe { prod.data().buffer_mut() };
        buf[0] = 0xAA;
        buf[4 * 65536 - 1] = 0xBB;
        let cons = ShmSource::open(&path, false).unwrap();
        // The last byte and the first are contiguous through the second map.
        assert_eq!(cons.data().slice(4 * 65536 - 1, 2), &[0xBB, 0xAA]);
        assert_eq!(cons.info().block_size, 65536);
        assert_eq!(abi::get_cstr(&cons.info().name), b"sim0");
        cons.control()
            .set_filter(&[SockFilter::default(); 3])
            .unwrap();
        assert_eq!(prod.control().filter().0.len(), 3);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
