// SPDX-License-Identifier: GPL-2.0

//! `/dev/hpcapN`: one character device per captured port, the ABI of
//! `include/hpcap.h`.
//!
//! Every open file may be one listener. The file operations are hand-built
//! because the 7.3 `MiscDevice` abstraction has no `poll` hook; this is the
//! only place that deals with raw `file_operations`, and everything it does
//! goes through [`OpenFile`], which holds the device's [`Shared`] state
//! alive for as long as the file is open, so an unbind under an open file
//! is safe.
//!
//! # Permissions
//!
//! - Read access: open, a lossy listener, `read`, `mmap`, `poll`,
//!   `HPCAP_IOC_INFO`/`STATS`/`WAIT`. A read-only consumer can never hold
//!   the producer back.
//! - A blocking listener needs the file opened for writing (the node's write
//!   permission) or `CAP_NET_ADMIN`.
//! - A named listener (`HPCAP_IOC_ATTACH_NAMED`) is blocking: the same.
//! - `CAP_NET_ADMIN`: `SET_CONFIG`, `SET_FILTER`, `KILL_LISTENER`; only
//!   such files may use the last [`RESERVED_SLOTS`] listener slots, so
//!   unprivileged readers cannot lock an administrator out.
//!
//! # Concurrency
//!
//! A file's listener calls (attach, detach, read, wait, poll) run under the
//! file's own lock, and only those calls free the file's listener slot, so
//! a call holding the lock uses its listener id knowing the slot is still
//! the file's. Calls release the lock while they sleep and check the id
//! again afterwards (the core's ids carry the slot's generation, so a stale
//! one fails instead of touching a later owner's cursor). A kill sticks to
//! the file: every later call sees the end of the stream.
//!
//! # Named listeners
//!
//! `release` of a file whose listener was not detached explicitly
//! abandons it (`ListenerTable::abandon`): a named one lingers with its
//! cursor until its deadline (monotonic clock), an unnamed one is freed.
//! The lingering slot belongs to no file any more: an attach by name from
//! another file takes it over (a new id under that file's lock), a kill
//! frees it, and the service thread frees it when its deadline passes.

use crate::capture::{
    Filter,
    Shared, //
};
use crate::hpcap_core::{
    abi,
    bpf::SockFilter,
    config::{
        self,
        Stream, //
    },
    format::StreamFormat,
    listener::{
        ListenerError,
        ListenerId,
        Mode,
        Name,
        ReadCheck,
        Readiness, //
    },
    pcapng::FILE_HEADER_LEN,
    session::{
        self,
        Sleeper,
        Slept,
        WaitRequest, //
    }, //
};
use core::{
    cell::Cell,
    ffi::c_void,
    sync::atomic::{
        AtomicU32,
        AtomicU64,
        Ordering, //
    }, //
};
use kernel::{
    bindings,
    ffi::{
        c_char,
        c_int,
        c_long,
        c_uint,
        c_ulong, //
    },
    mm::virt::VmaNew,
    new_mutex,
    prelude::*,
    str::CString,
    sync::{
        poll::PollTable,
        Arc,
        CondVarTimeoutResult,
        Mutex,
        MutexGuard, //
    },
    time::msecs_to_jiffies,
    transmute::{
        AsBytes,
        FromBytes, //
    },
    types::Opaque,
    uaccess::{
        UserPtr,
        UserSlice, //
    }, //
};

unsafe extern "C" {
    /// `file->f_mode & FMODE_WRITE` (`helpers.c`; the flag is a macro with
    /// a sparse cast bindgen cannot read).
    fn hpcap_file_writable(file: *mut c_void) -> bool;
    /// `task_tgid_nr(current)` (`helpers.c`: a static inline in C).
    fn hpcap_current_tgid() -> c_int;
}

/// The calling process's id in the initial PID namespace (what
/// `hpcap_listener.pid` reports).
fn current_pid() -> u32 {
    // SAFETY: reads the current task's thread group id; no preconditions.
    let tgid = unsafe { hpcap_current_tgid() };
    u32::try_from(tgid).unwrap_or(0)
}

// SAFETY: `#[repr(C)]` structs of integers and integer arrays whose sizes are
// pinned in `core/src/abi.rs` to have no padding; every bit pattern is valid.
unsafe impl AsBytes for abi::Info {}
// SAFETY: as above.
unsafe impl AsBytes for abi::Stats {}
// SAFETY: as above.
unsafe impl AsBytes for abi::Attach {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Attach {}
// SAFETY: as above.
unsafe impl AsBytes for abi::AttachNamed {}
// SAFETY: as above.
unsafe impl FromBytes for abi::AttachNamed {}
// SAFETY: as above.
unsafe impl AsBytes for abi::Wait {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Wait {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Config {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Filter {}

/// Listener slots only `CAP_NET_ADMIN` files may take.
const RESERVED_SLOTS: usize = 4;
/// Longest accepted BPF program, as the core's verifier.
// CAST: 4096 fits u32.
const MAX_FILTER_INSNS: u32 = crate::hpcap_core::bpf::MAX_INSNS as u32;

/// A registered character device node for one captured port.
///
/// # Invariants
///
/// `misc` is registered with `misc_register` (with `name` as its name and
/// [`FOPS`] as its operations) from construction until drop.
#[pin_data(PinnedDrop)]
#[repr(C)]
pub(crate) struct CharDev {
    #[pin]
    misc: Opaque<bindings::miscdevice>,
    shared: Arc<Shared>,
    name: CString,
}

// SAFETY: `misc_deregister` may be called from any thread; the rest is `Arc`
// and an immutable string.
unsafe impl Send for CharDev {}
// SAFETY: no `&self` method mutates anything.
unsafe impl Sync for CharDev {}

impl CharDev {
    /// Registers a node named `name` (a `/` creates subdirectories under
    /// /dev) with mode 0600, serving `shared`.
    pub(crate) fn register(name: CString, shared: Arc<Shared>) -> impl PinInit<Self, Error> {
        try_pin_init!(&this in Self {
            shared,
            name,
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                // SAFETY: `this` is the pinned location being initialized; `name`
                // is initialized before `misc` (field order in this initializer)
                // and its heap buffer does not move.
                let name_ptr = unsafe { (*this.as_ptr()).name.as_char_ptr() };
                let mut m: bindings::miscdevice = pin_init::zeroed();
                // CAST: the C constant is 255, an `int` field.
                m.minor = bindings::MISC_DYNAMIC_MINOR as c_int;
                m.name = name_ptr;
                m.fops = &FOPS.0;
                m.mode = 0o600;
                // SAFETY: `slot` is valid for writing; the miscdevice is
                // deregistered in `drop` before the memory goes away (pinned).
                unsafe {
                    slot.write(m);
                    kernel::error::to_result(bindings::misc_register(slot))
                }
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for CharDev {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: registered by the type invariant.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// What a file's listener is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attachment {
    /// Not attached yet: the first `read`, `WAIT` or `poll` attaches it in
    /// this mode (blocking if the file may block, else lossy).
    Pending(Mode),
    /// Attached.
    Attached(ListenerId),
    /// Detached by `HPCAP_IOC_DETACH`; only `HPCAP_IOC_ATTACH` attaches it
    /// again.
    Detached,
    /// Killed by an administrator: for good.
    Killed,
}

/// Per-open-file state: at most one listener.
#[pin_data]
struct OpenFile {
    shared: Arc<Shared>,
    /// Opened for writing or by `CAP_NET_ADMIN`: may be a blocking listener.
    may_block: bool,
    /// Opened by `CAP_NET_ADMIN`.
    admin: bool,
    /// The file's listener; see the module documentation.
    #[pin]
    listener: Mutex<Attachment>,
    /// Bytes of the stream file header `read()` has returned, or
    /// [`HEADER_UNDECIDED`] before the first `read()`.
    header_done: AtomicU32,
    /// Bytes `poll` waits for (the last `HPCAP_IOC_WAIT` min_bytes).
    poll_threshold: AtomicU64,
}

/// [`OpenFile::header_done`] before the first `read()` decides it.
const HEADER_UNDECIDED: u32 = u32::MAX;

fn listener_err(e: ListenerError) -> Error {
    match e {
        ListenerError::Full => EBUSY,
        ListenerError::Killed => EPIPE,
        ListenerError::NotAttached | ListenerError::BeyondCommit => EINVAL,
        ListenerError::NameInUse => EEXIST,
    }
}

fn capable_net_admin() -> bool {
    // SAFETY: `capable` only inspects the current task's credentials.
    // CAST: the capability number (12) is an `int` in C.
    unsafe { bindings::capable(bindings::CAP_NET_ADMIN as c_int) }
}

fn require_admin() -> Result {
    if capable_net_admin() {
        Ok(())
    } else {
        Err(EPERM)
    }
}

/// Result of sleeping for data.
enum Woke {
    /// Something happened (data, kill, unbind): re-check.
    Event,
    Timeout,
    Signal,
}

/// Sleeps until `committed >= target`, a wake-up, a signal or `timeout_ms`.
fn wait_for(sh: &Shared, target: u64, timeout_ms: u64) -> Woke {
    let mut g = sh.wait_lock.lock();
    if sh.gone.load(Ordering::Acquire) || sh.publish.prepare_wait(target) {
        return Woke::Event;
    }
    // CAST: clamped to u32.
    let jiffies = msecs_to_jiffies(timeout_ms.min(u64::from(u32::MAX)) as u32);
    match sh.waitq.wait_interruptible_timeout(&mut g, jiffies) {
        CondVarTimeoutResult::Timeout => Woke::Timeout,
        CondVarTimeoutResult::Signal { .. } => Woke::Signal,
        CondVarTimeoutResult::Woken { .. } => Woke::Event,
    }
}

/// How `HPCAP_IOC_WAIT` sleeps: on the device's wait queue, with the
/// file's listener lock released meanwhile (so another thread of the
/// process can detach or read) and taken again before re-checking.
struct FileSleeper<'a> {
    shared: &'a Shared,
    lock: &'a Mutex<Attachment>,
    guard: Cell<Option<MutexGuard<'a, Attachment>>>,
}

impl Sleeper for FileSleeper<'_> {
    fn now_ns(&self) -> u64 {
        crate::kthread::now_ns()
    }

    fn ended(&self) -> bool {
        self.shared.gone.load(Ordering::Acquire)
    }

    fn sleep(&self, target: u64, max_ns: u64) -> Slept {
        drop(self.guard.take());
        let r = wait_for(self.shared, target, (max_ns / 1_000_000).max(1));
        self.guard.set(Some(self.lock.lock()));
        match r {
            Woke::Event => Slept::Woken,
            Woke::Timeout => Slept::TimedOut,
            Woke::Signal => Slept::Interrupted,
        }
    }
}

impl OpenFile {
    /// The file's listener id, attaching a pending one first; `None` if the
    /// file is detached or was killed. The caller holds the file's lock.
    fn listener(&self, a: &mut Attachment) -> Result<Option<ListenerId>> {
        match *a {
            Attachment::Attached(id) => Ok(Some(id)),
            Attachment::Pending(mode) => self.attach(a, mode).map(|(id, _)| Some(id)),
            Attachment::Detached | Attachment::Killed => Ok(None),
        }
    }

    /// Attaches the file as a `mode` listener (detaching it first if it
    /// was); returns its id and start offset.
    fn attach(&self, a: &mut Attachment, mode: Mode) -> Result<(ListenerId, u64)> {
        if *a == Attachment::Killed {
            return Err(EPIPE);
        }
        if mode == Mode::Blocking && !self.may_block {
            return Err(EPERM);
        }
        self.detach(a);
        let sh = &*self.shared;
        // Under `config`: the stream cannot switch while we attach (nor
        // afterwards while we stay attached), and attaches are serialised,
        // so the count of slots in use is exact.
        let at = {
            let _config = sh.config.lock();
            let in_use = sh.listeners.list().count();
            if !self.admin && in_use >= abi::MAX_LISTENERS - RESERVED_SLOTS {
                return Err(EBUSY);
            }
            let geo = sh.stream().geo;
            let at = sh.listeners.attach(mode, &sh.publish, &geo).map_err(listener_err)?;
            // `poll` waits for a whole block of the stream we attached to.
            self.poll_threshold.store(geo.block_size(), Ordering::Relaxed);
            at
        };
        if let Some(p) = sh.pids.get(at.id.slot()) {
            p.store(current_pid(), Ordering::Relaxed);
        }
        *a = Attachment::Attached(at.id);
        Ok((at.id, at.start))
    }

    /// Attaches the file as the named blocking listener `name` (detaching
    /// it first if it was), or takes over the lingering listener of that
    /// name; returns its id, its start offset and whether it resumed.
    fn attach_named(&self, a: &mut Attachment, name: &Name, linger_ms: u32) -> Result<(ListenerId, u64, bool)> {
        if *a == Attachment::Killed {
            return Err(EPIPE);
        }
        if !self.may_block {
            return Err(EPERM);
        }
        self.detach(a);
        let sh = &*self.shared;
        // Under `config`, as `attach`: no switch meanwhile, attaches are
        // serialised (so two files never race for one name), and the count
        // of slots in use is exact. A take-over needs no new slot.
        let at = {
            let _config = sh.config.lock();
            let in_use = sh.listeners.list().count();
            let may_claim = self.admin || in_use < abi::MAX_LISTENERS - RESERVED_SLOTS;
            let geo = sh.stream().geo;
            let linger_ns = u64::from(linger_ms) * 1_000_000;
            let at = sh
                .listeners
                .attach_named(name, linger_ns, crate::kthread::mono_ns(), may_claim, &sh.publish, &geo)
                .map_err(listener_err)?;
            self.poll_threshold.store(geo.block_size(), Ordering::Relaxed);
            at
        };
        if let Some(p) = sh.pids.get(at.id.slot()) {
            p.store(current_pid(), Ordering::Relaxed);
        }
        *a = Attachment::Attached(at.id);
        Ok((at.id, at.start, at.resumed))
    }

    /// The file is being released without an explicit detach: a named
    /// listener lingers, any other is freed.
    fn abandon(&self, a: &mut Attachment) {
        if let Attachment::Attached(id) = *a {
            let _ = self.shared.listeners.abandon(id, crate::kthread::mono_ns());
        }
        *a = Attachment::Detached;
    }

    /// Detaches the file's listener, if any; a kill found now sticks.
    fn detach(&self, a: &mut Attachment) {
        if let Attachment::Attached(id) = *a {
            let killed = self.shared.listeners.detach(id).unwrap_or(false);
            *a = if killed { Attachment::Killed } else { Attachment::Detached };
        } else if let Attachment::Pending(_) = *a {
            *a = Attachment::Detached;
        }
    }

    /// The listener was killed: free its slot, remember the kill.
    fn killed(&self, a: &mut Attachment) {
        self.detach(a);
        *a = Attachment::Killed;
    }

    fn read(&self, nonblock: bool, buf: UserPtr, count: usize) -> Result<usize> {
        let sh = &*self.shared;
        // A pcapng stream starts with the 4 KiB file header, so `dd` yields
        // a valid pcapng (the buffer itself holds only blocks); RAW has
        // none. Decided at the first read.
        let mut done = self.header_done.load(Ordering::Relaxed);
        if done == HEADER_UNDECIDED {
            done = if sh.stream().format == StreamFormat::Pcapng {
                0
            } else {
                // CAST: 4096.
                FILE_HEADER_LEN as u32
            };
            self.header_done.store(done, Ordering::Relaxed);
        }
        let done = usize::try_from(done)?;
        if done < FILE_HEADER_LEN {
            let mut hdr = KVec::from_elem(0u8, FILE_HEADER_LEN, GFP_KERNEL)?;
            sh.file_header(&mut hdr)?;
            let n = count.min(FILE_HEADER_LEN - done);
            let src = hdr.get(done..done + n).ok_or(EINVAL)?;
            UserSlice::new(buf, n).writer().write_slice(src)?;
            // CAST: at most FILE_HEADER_LEN.
            self.header_done.store((done + n) as u32, Ordering::Relaxed);
            return Ok(n);
        }
        let mut a = self.listener.lock();
        loop {
            let Some(id) = self.listener(&mut a)? else {
                return Ok(0);
            };
            // Attached: the stream layout is fixed until we detach.
            let geo = sh.stream().geo;
            match sh.listeners.ready(id, 1, &sh.publish, &geo) {
                Err(ListenerError::Killed) => {
                    self.killed(&mut a);
                    return Ok(0);
                }
                Err(e) => return Err(listener_err(e)),
                Ok(Readiness::Overrun(_)) => continue,
                Ok(Readiness::Ready { available }) => {
                    let (cursor, mode) = sh.listeners.cursor(id).map_err(listener_err)?;
                    let pos = geo.position(cursor);
                    let to_end = geo.buffer_size() - pos;
                    // CAST: at most `count`.
                    let n = (count as u64).min(available).min(to_end) as usize;
                    // CAST: buffer positions fit usize (the buffer does).
                    sh.buffer.copy_to_user(pos as usize, n, buf)?;
                    if mode == Mode::Lossy {
                        if let Ok(ReadCheck::Overrun(_)) = sh.listeners.check_read(id, &sh.publish, &geo) {
                            // What was copied may be torn; the cursor moved on.
                            return Err(EPIPE);
                        }
                    }
                    // CAST: `n` is at most `available`, a u64.
                    sh.listeners.ack(id, n as u64, &sh.publish).map_err(listener_err)?;
                    return Ok(n);
                }
                Ok(Readiness::Pending { target }) => {
                    if sh.gone.load(Ordering::Acquire) {
                        return Ok(0);
                    }
                    if nonblock {
                        return Err(EAGAIN);
                    }
                    drop(a);
                    let woke = wait_for(sh, target, 1000);
                    a = self.listener.lock();
                    if let Woke::Signal = woke {
                        return Err(ERESTARTSYS);
                    }
                }
            }
        }
    }

    fn info(&self) -> abi::Info {
        let sh = &*self.shared;
        let mut info = sh.info;
        info.abi_version = abi::ABI_VERSION;
        let st = sh.stream();
        info.format = st.format.abi();
        info.buffer_size = st.geo.buffer_size();
        info.block_size = st.geo.block_size();
        info.snaplen = sh.snaplen.load(Ordering::Relaxed);
        let (up, mbps) = sh.link();
        info.link_up = u32::from(up);
        info.link_mbps = mbps;
        info.promisc = sh.promisc();
        info.rx_desc_bytes = sh.rx_desc_bytes();
        session::fill_info(&mut info, &sh.listeners, &sh.publish);
        info
    }

    fn stats(&self) -> abi::Stats {
        let sh = &*self.shared;
        let mut s = abi::Stats::ZERO;
        (s.counters, s.nic_valid) = sh.counters();
        s.nic_resets = sh.nic_resets();
        s.uptime_ns = crate::kthread::now_ns().saturating_sub(sh.started_ns);
        s.self_id = match *self.listener.lock() {
            Attachment::Attached(id) => id.raw(),
            _ => u32::MAX,
        };
        let now = crate::kthread::mono_ns();
        session::fill_stats(&mut s, &sh.listeners, &sh.publish, &sh.stream().geo, now, |slot| {
            sh.pids.get(slot).map_or(0, |p| p.load(Ordering::Relaxed))
        });
        s
    }

    fn wait(&self, w: &mut abi::Wait) -> Result {
        let sh = &*self.shared;
        if w.reserved != 0 || w.flags != 0 {
            return Err(EINVAL);
        }
        let mut a = self.listener.lock();
        let Some(id) = self.listener(&mut a)? else {
            // Killed before: the stream ended for this file.
            if *a == Attachment::Killed {
                *w = abi::Wait {
                    flags: abi::WAIT_HUP,
                    ..*w
                };
                return Ok(());
            }
            return Err(EINVAL);
        };
        if w.min_bytes != 0 {
            self.poll_threshold.store(w.min_bytes, Ordering::Relaxed);
        }
        let req = WaitRequest {
            ack: w.ack_bytes,
            min_bytes: w.min_bytes,
            timeout_ns: w.timeout_ns,
        };
        let geo = sh.stream().geo;
        let sleeper = FileSleeper {
            shared: sh,
            lock: &self.listener,
            guard: Cell::new(Some(a)),
        };
        let out = session::wait(&sh.listeners, &sh.publish, &geo, id, &req, &sleeper);
        let mut a = match sleeper.guard.into_inner() {
            Some(g) => g,
            None => self.listener.lock(),
        };
        let out = out.map_err(listener_err)?;
        if out.flags & abi::WAIT_HUP != 0 && !sh.gone.load(Ordering::Acquire) {
            // Hung up while the device is there: the listener was killed.
            if matches!(sh.listeners.cursor(id), Err(ListenerError::Killed)) {
                self.killed(&mut a);
            }
        }
        w.read_offset = out.read_offset;
        w.available = out.available;
        w.lost_bytes = out.lost_bytes;
        w.lost_blocks = out.lost_blocks;
        w.flags = out.flags;
        Ok(())
    }

    fn set_config(&self, c: &abi::Config) -> Result {
        let sh = &*self.shared;
        let known = abi::CONFIG_SNAPLEN | abi::CONFIG_FORMAT | abi::CONFIG_BLOCK_SIZE;
        if c.set & !known != 0 || c.reserved != 0 {
            return Err(EINVAL);
        }
        if c.set & abi::CONFIG_SNAPLEN != 0 {
            config::snaplen(c.snaplen).map_err(|_| EINVAL)?;
        }
        // Format and block size: validated first (EINVAL), then switched
        // only while no listener is attached (EBUSY otherwise). Under
        // `config` from reading the current stream to switching, so
        // concurrent requests cannot undo each other's fields.
        let guard = sh.config.lock();
        let cur = sh.stream();
        let format = if c.set & abi::CONFIG_FORMAT != 0 {
            StreamFormat::try_from(c.format).map_err(|_| EINVAL)?
        } else {
            cur.format
        };
        let block = if c.set & abi::CONFIG_BLOCK_SIZE != 0 { c.block_size } else { cur.geo.block_size() };
        if (format, block) != (cur.format, cur.geo.block_size()) {
            let new = Stream::new(format, cur.geo.buffer_size(), block).map_err(|_| EINVAL)?;
            sh.switch_stream(&guard, new)?;
        }
        drop(guard);
        if c.set & abi::CONFIG_SNAPLEN != 0 {
            sh.snaplen.store(c.snaplen, Ordering::Relaxed);
        }
        Ok(())
    }

    fn set_filter(&self, f: &abi::Filter) -> Result {
        if f.reserved != 0 || f.len > MAX_FILTER_INSNS {
            return Err(EINVAL);
        }
        let sh = &*self.shared;
        if f.len == 0 {
            *sh.filter.lock() = None;
            return Ok(());
        }
        let count = usize::try_from(f.len)?;
        let bytes = count * 8;
        let mut raw = KVec::from_elem(0u8, bytes, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(usize::try_from(f.insns).map_err(|_| EFAULT)?), bytes)
            .reader()
            .read_slice(&mut raw)?;
        let mut insns = KVec::with_capacity(count, GFP_KERNEL)?;
        for c in raw.chunks_exact(8) {
            insns.push(
                SockFilter {
                    code: u16::from_ne_bytes([c[0], c[1]]),
                    jt: c[2],
                    jf: c[3],
                    k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
                },
                GFP_KERNEL,
            )?;
        }
        // Verified once, here; the capture threads run it as is.
        let filter: Filter = Filter::new(insns).map_err(|_| EINVAL)?;
        *sh.filter.lock() = Some(Arc::new(filter, GFP_KERNEL)?);
        Ok(())
    }

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        let sh = &*self.shared;
        let user = |size: usize| UserSlice::new(UserPtr::from_addr(arg), size);
        match cmd {
            abi::IOC_INFO => user(size_of::<abi::Info>()).writer().write(&self.info())?,
            abi::IOC_STATS => user(size_of::<abi::Stats>()).writer().write(&self.stats())?,
            abi::IOC_ATTACH => {
                let (mut r, mut w) = user(size_of::<abi::Attach>()).reader_writer();
                let mut at: abi::Attach = r.read()?;
                let mode = match (at.mode, at.flags) {
                    (abi::MODE_BLOCKING, 0) => Mode::Blocking,
                    (abi::MODE_LOSSY, 0) => Mode::Lossy,
                    _ => return Err(EINVAL),
                };
                let mut a = self.listener.lock();
                at.start_offset = self.attach(&mut a, mode)?.1;
                drop(a);
                w.write(&at)?;
            }
            abi::IOC_ATTACH_NAMED => {
                // A named listener is blocking: the permission check comes
                // before touching user memory.
                if !self.may_block {
                    return Err(EPERM);
                }
                let (mut r, mut w) = user(size_of::<abi::AttachNamed>()).reader_writer();
                let mut at: abi::AttachNamed = r.read()?;
                if at.mode != abi::MODE_BLOCKING || at.flags != 0 || at.reserved != 0 || at.linger_ms > abi::LINGER_MAX_MS {
                    return Err(EINVAL);
                }
                let name = Name::from_field(&at.name).ok_or(EINVAL)?;
                let linger_ms = if at.linger_ms == 0 { abi::LINGER_DEFAULT_MS } else { at.linger_ms };
                let mut a = self.listener.lock();
                let (_, start, resumed) = self.attach_named(&mut a, &name, linger_ms)?;
                drop(a);
                at.start_offset = start;
                at.result = if resumed { abi::ATTACH_RESUMED } else { 0 };
                w.write(&at)?;
            }
            abi::IOC_DETACH => {
                let mut a = self.listener.lock();
                self.detach(&mut a);
                // A kill found while detaching still ends this file's
                // stream, but detaching itself succeeded.
            }
            abi::IOC_WAIT => {
                let (mut r, mut w) = user(size_of::<abi::Wait>()).reader_writer();
                let mut wt: abi::Wait = r.read()?;
                self.wait(&mut wt)?;
                w.write(&wt)?;
            }
            abi::IOC_SET_CONFIG => {
                // The permission check comes before touching user memory.
                require_admin()?;
                self.set_config(&user(size_of::<abi::Config>()).reader().read()?)?
            }
            abi::IOC_SET_FILTER => {
                require_admin()?;
                self.set_filter(&user(size_of::<abi::Filter>()).reader().read()?)?
            }
            abi::IOC_KILL_LISTENER => {
                require_admin()?;
                let id: u32 = user(4).reader().read()?;
                sh.listeners
                    .kill(ListenerId::from_raw(id), sh.publish.committed())
                    .map_err(listener_err)?;
                sh.wake_all();
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    fn poll(&self) -> u32 {
        let sh = &*self.shared;
        let mut a = self.listener.lock();
        let id = match self.listener(&mut a) {
            Ok(Some(id)) => id,
            // Detached, killed, or no slot to attach: nothing will come.
            Ok(None) | Err(_) => return bindings::POLLHUP,
        };
        let threshold = self.poll_threshold.load(Ordering::Relaxed);
        match sh.listeners.ready(id, threshold, &sh.publish, &sh.stream().geo) {
            Ok(Readiness::Ready { .. }) | Ok(Readiness::Overrun(_)) => bindings::POLLIN | bindings::POLLRDNORM,
            Ok(Readiness::Pending { target }) => {
                if sh.gone.load(Ordering::Acquire) {
                    bindings::POLLHUP
                } else if sh.publish.prepare_wait(target) {
                    bindings::POLLIN | bindings::POLLRDNORM
                } else {
                    0
                }
            }
            Err(ListenerError::Killed) => {
                self.killed(&mut a);
                bindings::POLLHUP
            }
            Err(_) => bindings::POLLHUP,
        }
    }
}

// ---------------------------------------------------------------------------
// Raw file operations: each converts its pointers once and calls `OpenFile`.

/// # Safety
///
/// `file` must be a file of an hpcap node between `open` and `release`.
unsafe fn open_file<'a>(file: *mut bindings::file) -> &'a OpenFile {
    // SAFETY: `open` stored a leaked `Pin<KBox<OpenFile>>` in
    // `private_data`; `release` reclaims it only after every other
    // operation ended.
    unsafe { &*(*file).private_data.cast::<OpenFile>() }
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_open(inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: valid pointers for a file being opened.
    let ret = unsafe { bindings::generic_file_open(inode, file) };
    if ret != 0 {
        return ret;
    }
    // SAFETY: `misc_open` set `private_data` to our `miscdevice`, which is
    // the `misc` field of a `CharDev` that stays registered (and alive)
    // during this call (misc_open holds the misc lock).
    let chardev = unsafe {
        let misc = (*file).private_data.cast::<Opaque<bindings::miscdevice>>();
        &*kernel::container_of!(misc, CharDev, misc)
    };
    let sh = chardev.shared.clone();
    if sh.gone.load(Ordering::Acquire) {
        return ENODEV.to_errno();
    }
    // SAFETY: `file` is the file being opened.
    let writable = unsafe { hpcap_file_writable(file.cast()) };
    let admin = capable_net_admin();
    let can_block = writable || admin;
    let first = Attachment::Pending(if can_block { Mode::Blocking } else { Mode::Lossy });
    // Nothing here waits for a device lock: open runs under the global
    // misc-device mutex. The listener attaches at the file's first use.
    let of = match KBox::pin_init(
        pin_init!(OpenFile {
            shared: sh,
            may_block: can_block,
            admin,
            listener <- new_mutex!(first),
            header_done: AtomicU32::new(HEADER_UNDECIDED),
            poll_threshold: AtomicU64::new(0),
        }),
        GFP_KERNEL,
    ) {
        Ok(b) => b,
        Err(e) => return e.to_errno(),
    };
    // SAFETY: we own `private_data` during open; the box is reclaimed in
    // `release` with the same type, and it is never moved out of (pinned).
    unsafe { (*file).private_data = KBox::into_raw(Pin::into_inner_unchecked(of)).cast() };
    0
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release owns the private data; no other operation runs. It
    // was leaked from a pinned box in `open`, and is dropped in place.
    let of = unsafe { Pin::new_unchecked(KBox::from_raw((*file).private_data.cast::<OpenFile>())) };
    let mut a = of.listener.lock();
    // Closed without HPCAP_IOC_DETACH: a named listener lingers for a
    // successor, any other is freed.
    of.abandon(&mut a);
    drop(a);
    // A blocking listener that left frees room: nothing to wake, the
    // producer re-reads the limit every batch.
    0
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_read(
    file: *mut bindings::file,
    buf: *mut c_char,
    count: usize,
    _ppos: *mut bindings::loff_t,
) -> isize {
    // SAFETY: called between open and release.
    let of = unsafe { open_file(file) };
    // No `File` reference is made here: another thread may be in `read` on
    // the same file at the same time, an `fdget_pos` without the position
    // lock (character devices have no FMODE_ATOMIC_POS), which `File` and
    // `LocalFile` rule out. Only the flags word is needed.
    // SAFETY: `file` is valid for the call; `f_flags` is a plain word that
    // fcntl(F_SETFL) may change concurrently, which the C read paths also
    // read without a lock; a volatile read is READ_ONCE.
    let flags = unsafe { core::ptr::addr_of!((*file).f_flags).read_volatile() };
    let nonblock = flags & kernel::fs::file::flags::O_NONBLOCK != 0;
    match of.read(nonblock, UserPtr::from_ptr(buf.cast::<c_void>()), count) {
        // CAST: at most `count`, which the VFS caps at MAX_RW_COUNT.
        Ok(n) => n as isize,
        // CAST: a small negative errno.
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_mmap(file: *mut bindings::file, vma: *mut bindings::vm_area_struct) -> c_int {
    // SAFETY: called between open and release.
    let of = unsafe { open_file(file) };
    // SAFETY: the VMA is under initial setup during ->mmap.
    let vma = unsafe { VmaNew::from_raw(vma) };
    match of.shared.buffer.mmap(vma) {
        Ok(()) => 0,
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: called between open and release.
    let of = unsafe { open_file(file) };
    match of.ioctl(cmd, arg) {
        // CAST: small values (0) and small negative errnos.
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_poll(file: *mut bindings::file, table: *mut bindings::poll_table) -> c_uint {
    // SAFETY: called between open and release.
    let of = unsafe { open_file(file) };
    // SAFETY: `table` is the poll table of this poll call (may be null,
    // which `poll_wait` accepts).
    let pt = unsafe { PollTable::from_raw(table) };
    // SAFETY: `file` is valid for the call (its refcount is held by the
    // poll machinery). `File` also asks that no `fdget_pos` without the
    // position lock be active on the file: that cannot be promised here,
    // since another thread may be in `read` (character devices have no
    // FMODE_ATOMIC_POS, so their `fdget_pos` never locks). The rule exists
    // so Rust code may use the file position through `&File`; this
    // reference is only handed to `poll_wait` to queue on the wait queue,
    // never touches the position (hpcap's `llseek` is `noop_llseek` and
    // `read` ignores it), and is dropped before returning, as in the
    // in-tree binder driver's poll.
    let f = unsafe { kernel::fs::File::from_raw_file(file) };
    // Register before checking, so a publication after the check wakes us.
    pt.register_wait(f, &of.shared.waitq);
    of.poll()
}

/// The file operations of every hpcap node.
struct Fops(bindings::file_operations);

// SAFETY: the table is immutable and only read by the VFS.
unsafe impl Sync for Fops {}

static FOPS: Fops = Fops(bindings::file_operations {
    owner: kernel::module::this_module::<crate::HpcapModule>().as_ptr(),
    open: Some(hpcap_open),
    release: Some(hpcap_release),
    read: Some(hpcap_read),
    mmap: Some(hpcap_mmap),
    unlocked_ioctl: Some(hpcap_ioctl),
    compat_ioctl: Some(hpcap_ioctl),
    poll: Some(hpcap_poll),
    llseek: Some(bindings::noop_llseek),
    // SAFETY: all-zero is a valid `file_operations` (no operation).
    ..unsafe { core::mem::zeroed() }
});
