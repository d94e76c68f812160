// SPDX-License-Identifier: GPL-2.0

//! `/dev/hpcapN`: one character device per captured port, the ABI of
//! `include/hpcap.h`.
//!
//! Every open file is a listener. The file operations are hand-built because
//! the 7.3 `MiscDevice` abstraction has no `poll` hook; this is the only
//! place that deals with raw `file_operations`, and everything it does goes
//! through [`OpenFile`], which holds the device's [`Shared`] state alive for
//! as long as the file is open, so an unbind under an open file is safe.

use crate::capture::{
    Filter,
    Shared,
    Stream, //
};
use crate::hpcap_core::{
    abi,
    bpf::SockFilter,
    listener::{
        ListenerError,
        Mode,
        ReadCheck,
        Readiness, //
    },
    pcapng::FILE_HEADER_LEN, //
};
use core::{
    ffi::c_void,
    sync::atomic::{
        AtomicBool,
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
    fs::File,
    mm::virt::VmaNew,
    prelude::*,
    str::CString,
    sync::{
        poll::PollTable,
        Arc,
        CondVarTimeoutResult, //
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
unsafe impl AsBytes for abi::Wait {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Wait {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Config {}
// SAFETY: as above.
unsafe impl FromBytes for abi::Filter {}

/// No listener attached to the file.
const NO_ID: u32 = u32::MAX;
/// Longest accepted BPF program, as the core's verifier.
const MAX_FILTER_INSNS: u32 = 4096;

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

/// Per-open-file state: one listener.
struct OpenFile {
    shared: Arc<Shared>,
    /// Listener slot, or [`NO_ID`].
    id: AtomicU32,
    /// Bytes of the stream file header `read()` has returned, or
    /// [`HEADER_UNDECIDED`] before the first `read()`.
    header_done: AtomicU32,
    /// Bytes `poll` waits for (the last `HPCAP_IOC_WAIT` min_bytes).
    poll_threshold: AtomicU64,
    /// A `read` is in progress on this file.
    reading: AtomicBool,
}

impl OpenFile {
    fn id(&self) -> Result<usize> {
        match self.id.load(Ordering::Acquire) {
            NO_ID => Err(EINVAL),
            id => Ok(id as usize),
        }
    }

    fn attach(&self, mode: Mode) -> Result<u64> {
        let sh = &*self.shared;
        // Under `config`: the stream cannot switch while we attach, and
        // cannot switch afterwards while we stay attached.
        let a = {
            let _config = sh.config.lock();
            let geo = sh.stream().geo;
            let a = sh.listeners.attach(mode, &sh.publish, &geo).map_err(|_| EBUSY)?;
            // `poll` waits for a whole block of the stream we attached to.
            self.poll_threshold.store(geo.block_size(), Ordering::Relaxed);
            a
        };
        let pid = kernel::current!().pid();
        if let Some(p) = sh.pids.get(a.id) {
            p.store(pid as u32, Ordering::Relaxed);
        }
        self.id.store(a.id as u32, Ordering::Release);
        Ok(a.start)
    }

    fn detach(&self) {
        let id = self.id.swap(NO_ID, Ordering::AcqRel);
        if id != NO_ID {
            let _ = self.shared.listeners.detach(id as usize);
            // A blocking listener leaving frees space: nothing to wake, the
            // producer re-reads the limit every batch.
        }
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
    let jiffies = msecs_to_jiffies(timeout_ms.min(u64::from(u32::MAX)) as u32);
    match sh.waitq.wait_interruptible_timeout(&mut g, jiffies) {
        CondVarTimeoutResult::Timeout => Woke::Timeout,
        CondVarTimeoutResult::Signal { .. } => Woke::Signal,
        CondVarTimeoutResult::Woken { .. } => Woke::Event,
    }
}

fn listener_err(e: ListenerError) -> Error {
    match e {
        ListenerError::Full => EBUSY,
        ListenerError::Killed => EPIPE,
        ListenerError::NotAttached | ListenerError::BeyondCommit => EINVAL,
    }
}

fn require_admin() -> Result {
    // SAFETY: `capable` only inspects the current task's credentials.
    if unsafe { bindings::capable(bindings::CAP_NET_ADMIN as c_int) } {
        Ok(())
    } else {
        Err(EPERM)
    }
}

/// [`OpenFile::header_done`] before the first `read()` decides it.
const HEADER_UNDECIDED: u32 = u32::MAX;

impl OpenFile {
    fn read(&self, file: &File, buf: UserPtr, count: usize) -> Result<usize> {
        let sh = &*self.shared;
        // A pcapng stream starts with the 4 KiB file header, so `dd` yields
        // a valid pcapng (the buffer itself holds only blocks); RAW has
        // none. Decided at the first read, when the file is normally
        // attached and the format therefore fixed.
        let mut done = self.header_done.load(Ordering::Relaxed);
        if done == HEADER_UNDECIDED {
            done = if sh.stream().format == abi::FORMAT_PCAPNG {
                0
            } else {
                FILE_HEADER_LEN as u32
            };
            self.header_done.store(done, Ordering::Relaxed);
        }
        let done = done as usize;
        if done < FILE_HEADER_LEN {
            let mut hdr = KVec::from_elem(0u8, FILE_HEADER_LEN, GFP_KERNEL)?;
            sh.file_header(&mut hdr)?;
            let n = count.min(FILE_HEADER_LEN - done);
            let src = hdr.get(done..done + n).ok_or(EINVAL)?;
            UserSlice::new(buf, n).writer().write_slice(src)?;
            self.header_done.store((done + n) as u32, Ordering::Relaxed);
            return Ok(n);
        }
        let Ok(id) = self.id() else {
            return Ok(0);
        };
        // Attached: the stream layout is fixed until we detach.
        let geo = sh.stream().geo;
        loop {
            match sh.listeners.ready(id, 1, &sh.publish, &geo) {
                Err(ListenerError::Killed) => return Ok(0),
                Err(e) => return Err(listener_err(e)),
                Ok(Readiness::Overrun(_)) => continue,
                Ok(Readiness::Ready { available }) => {
                    let (cursor, mode) = sh.listeners.cursor(id).map_err(listener_err)?;
                    let pos = geo.position(cursor);
                    let to_end = geo.buffer_size() - pos;
                    let n = (count as u64).min(available).min(to_end) as usize;
                    // SAFETY: `[cursor, cursor + n)` is published; a lossy
                    // reader checks for an overrun right after copying.
                    let src = unsafe { sh.buffer.span(pos as usize, n) }.ok_or(EINVAL)?;
                    UserSlice::new(buf, n).writer().write_slice(src)?;
                    if mode == Mode::Lossy {
                        if let Ok(ReadCheck::Overrun(_)) = sh.listeners.check_read(id, &sh.publish, &geo) {
                            // What was copied may be torn; the cursor moved on.
                            return Err(EPIPE);
                        }
                    }
                    sh.listeners.ack(id, n as u64, &sh.publish).map_err(listener_err)?;
                    return Ok(n);
                }
                Ok(Readiness::Pending { target }) => {
                    if sh.gone.load(Ordering::Acquire) {
                        return Ok(0);
                    }
                    if file.flags() & kernel::fs::file::flags::O_NONBLOCK != 0 {
                        return Err(EAGAIN);
                    }
                    if let Woke::Signal = wait_for(sh, target, 1000) {
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
        info.format = st.format;
        info.buffer_size = st.geo.buffer_size();
        info.block_size = st.geo.block_size();
        info.snaplen = sh.snaplen.load(Ordering::Relaxed);
        info.link_up = sh.link_up.load(Ordering::Relaxed);
        info.link_mbps = sh.link_mbps.load(Ordering::Relaxed);
        info.listeners = (0..abi::MAX_LISTENERS)
            .filter(|&i| sh.listeners.cursor(i).is_ok())
            .count() as u32;
        info.commit = sh.publish.committed();
        info
    }

    fn stats(&self) -> abi::Stats {
        let sh = &*self.shared;
        let mut s = abi::Stats::ZERO;
        s.counters = sh.counters();
        let commit = sh.publish.committed();
        s.commit = commit;
        s.free_bytes = sh
            .listeners
            .reserve_limit(commit, &sh.stream().geo)
            .saturating_sub(sh.publish.reserved());
        s.uptime_ns = crate::kthread::now_ns().saturating_sub(sh.started_ns);
        s.self_id = self.id.load(Ordering::Relaxed);
        let mut n = 0;
        for i in 0..abi::MAX_LISTENERS {
            let Ok((cursor, mode)) = sh.listeners.cursor(i) else {
                continue;
            };
            let (lost, overruns) = sh.listeners.losses(i).unwrap_or((0, 0));
            if let Some(l) = s.listener.get_mut(n) {
                *l = abi::Listener {
                    id: i as u32,
                    mode: if mode == Mode::Lossy { abi::MODE_LOSSY } else { abi::MODE_BLOCKING },
                    pid: sh.pids.get(i).map_or(0, |p| p.load(Ordering::Relaxed)),
                    flags: 0,
                    cursor,
                    lag: commit.saturating_sub(cursor),
                    lost_bytes: lost,
                    lost_blocks: overruns,
                };
                n += 1;
            }
        }
        s.nlisteners = n as u32;
        s
    }

    fn wait(&self, w: &mut abi::Wait) -> Result {
        let sh = &*self.shared;
        if w.reserved != 0 || w.flags != 0 {
            return Err(EINVAL);
        }
        let id = self.id()?;
        if w.ack_bytes != 0 {
            match sh.listeners.ack(id, w.ack_bytes, &sh.publish) {
                Ok(_) => {}
                Err(ListenerError::Killed) => w.flags |= abi::WAIT_HUP,
                Err(e) => return Err(listener_err(e)),
            }
        }
        if w.min_bytes != 0 {
            self.poll_threshold.store(w.min_bytes, Ordering::Relaxed);
        }
        let deadline = crate::kthread::now_ns().saturating_add(w.timeout_ns);
        let geo = sh.stream().geo;
        while w.flags & abi::WAIT_HUP == 0 {
            match sh.listeners.ready(id, w.min_bytes.max(1), &sh.publish, &geo) {
                Err(ListenerError::Killed) => w.flags |= abi::WAIT_HUP,
                Err(e) => return Err(listener_err(e)),
                Ok(Readiness::Overrun(loss)) => {
                    w.flags |= abi::WAIT_OVERRUN;
                    w.lost_bytes = w.lost_bytes.saturating_add(loss.bytes);
                    w.lost_blocks = w.lost_blocks.saturating_add(loss.blocks);
                }
                Ok(Readiness::Ready { .. }) => break,
                Ok(Readiness::Pending { target }) => {
                    if w.min_bytes == 0 {
                        break;
                    }
                    if sh.gone.load(Ordering::Acquire) {
                        w.flags |= abi::WAIT_HUP;
                        break;
                    }
                    let left = deadline.saturating_sub(crate::kthread::now_ns());
                    if left == 0 {
                        w.flags |= abi::WAIT_TIMEOUT;
                        break;
                    }
                    // Sleep in slices so a long timeout still re-checks. A
                    // signal ends the wait like a timeout rather than with
                    // ERESTARTSYS: the ack is already applied and a restarted
                    // call would apply it twice.
                    let ms = (left / 1_000_000).clamp(1, 1000);
                    if let Woke::Signal = wait_for(sh, target, ms) {
                        w.flags |= abi::WAIT_TIMEOUT;
                        break;
                    }
                }
            }
        }
        match sh.listeners.cursor(id) {
            Ok((cursor, _)) => {
                w.read_offset = cursor;
                w.available = sh.publish.committed().saturating_sub(cursor);
            }
            // Killed (or detached): no cursor, nothing more to read.
            Err(_) => {
                w.flags |= abi::WAIT_HUP;
                w.available = 0;
            }
        }
        Ok(())
    }

    fn set_config(&self, c: &abi::Config) -> Result {
        require_admin()?;
        let sh = &*self.shared;
        let known = abi::CONFIG_SNAPLEN | abi::CONFIG_FORMAT | abi::CONFIG_BLOCK_SIZE;
        if c.set & !known != 0 || c.reserved != 0 {
            return Err(EINVAL);
        }
        // RAW records hold the capture length in 16 bits.
        if c.set & abi::CONFIG_SNAPLEN != 0 && c.snaplen != 0 && (c.snaplen < 14 || c.snaplen > 65535) {
            return Err(EINVAL);
        }
        // Format and block size: validated first (EINVAL), then switched
        // only while no listener is attached (EBUSY otherwise).
        // Under `config` from reading the current stream to switching, so
        // concurrent requests cannot undo each other's fields.
        let config = sh.config.lock();
        let cur = sh.stream();
        let format = if c.set & abi::CONFIG_FORMAT != 0 { c.format } else { cur.format };
        let block = if c.set & abi::CONFIG_BLOCK_SIZE != 0 { c.block_size } else { cur.geo.block_size() };
        if (format, block) != (cur.format, cur.geo.block_size()) {
            let new = Stream::new(format, cur.geo.buffer_size(), block)?;
            sh.switch_stream(&config, new)?;
        }
        drop(config);
        if c.set & abi::CONFIG_SNAPLEN != 0 {
            sh.snaplen.store(c.snaplen, Ordering::Relaxed);
        }
        Ok(())
    }

    fn set_filter(&self, f: &abi::Filter) -> Result {
        require_admin()?;
        if f.reserved != 0 || f.len > MAX_FILTER_INSNS {
            return Err(EINVAL);
        }
        let sh = &*self.shared;
        if f.len == 0 {
            *sh.filter.lock() = None;
            return Ok(());
        }
        let bytes = f.len as usize * 8;
        let mut raw = KVec::from_elem(0u8, bytes, GFP_KERNEL)?;
        UserSlice::new(UserPtr::from_addr(f.insns as usize), bytes)
            .reader()
            .read_slice(&mut raw)?;
        let mut insns = KVec::with_capacity(f.len as usize, GFP_KERNEL)?;
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
        let filter = Arc::new(Filter::new(insns)?, GFP_KERNEL)?;
        *sh.filter.lock() = Some(filter);
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
                let mut a: abi::Attach = r.read()?;
                let mode = match (a.mode, a.flags) {
                    (abi::MODE_BLOCKING, 0) => Mode::Blocking,
                    (abi::MODE_LOSSY, 0) => Mode::Lossy,
                    _ => return Err(EINVAL),
                };
                self.detach();
                a.start_offset = self.attach(mode)?;
                w.write(&a)?;
            }
            abi::IOC_DETACH => self.detach(),
            abi::IOC_WAIT => {
                let (mut r, mut w) = user(size_of::<abi::Wait>()).reader_writer();
                let mut wt: abi::Wait = r.read()?;
                self.wait(&mut wt)?;
                w.write(&wt)?;
            }
            abi::IOC_SET_CONFIG => self.set_config(&user(size_of::<abi::Config>()).reader().read()?)?,
            abi::IOC_SET_FILTER => self.set_filter(&user(size_of::<abi::Filter>()).reader().read()?)?,
            abi::IOC_KILL_LISTENER => {
                require_admin()?;
                let id: u32 = user(4).reader().read()?;
                sh.listeners.kill(id as usize).map_err(listener_err)?;
                sh.wake_all();
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    fn poll(&self) -> u32 {
        let sh = &*self.shared;
        let Ok(id) = self.id() else {
            return bindings::POLLHUP;
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
    // SAFETY: `open` stored a leaked `KBox<OpenFile>` in `private_data`;
    // `release` reclaims it only after every other operation ended.
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
    let of = match KBox::new(
        OpenFile {
            shared: sh,
            id: AtomicU32::new(NO_ID),
            header_done: AtomicU32::new(HEADER_UNDECIDED),
            poll_threshold: AtomicU64::new(0),
            reading: AtomicBool::new(false),
        },
        GFP_KERNEL,
    ) {
        Ok(b) => b,
        Err(e) => return Error::from(e).to_errno(),
    };
    // Every open is a blocking listener until it asks otherwise.
    if let Err(e) = of.attach(Mode::Blocking) {
        return e.to_errno();
    }
    // SAFETY: we own `private_data` during open.
    unsafe { (*file).private_data = KBox::into_raw(of).cast() };
    0
}

/// # Safety
///
/// Called by the VFS with valid pointers, as `file_operations` specifies.
unsafe extern "C" fn hpcap_release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
    // SAFETY: release owns the private data; no other operation runs.
    let of = unsafe { KBox::from_raw((*file).private_data.cast::<OpenFile>()) };
    of.detach();
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
    if of.reading.swap(true, Ordering::Acquire) {
        return EBUSY.to_errno() as isize;
    }
    // SAFETY: `file` is valid for the duration of the call and no fdget_pos
    // region is active for this file on this thread (we are in ->read).
    let f = unsafe { File::from_raw_file(file) };
    let r = of.read(f, UserPtr::from_ptr(buf.cast::<c_void>()), count);
    of.reading.store(false, Ordering::Release);
    match r {
        Ok(n) => n as isize,
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
    // SAFETY: `file` is valid for the call.
    let f = unsafe { File::from_raw_file(file) };
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
