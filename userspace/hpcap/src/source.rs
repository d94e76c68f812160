// SPDX-License-Identifier: MIT
//! [`Source`]: one capture source, a kernel device or a software source,
//! behind the same calls (the `include/hpcap.h` semantics).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use hpcap_core::abi::{self, Attach, AttachNamed, Config, Filter, Info, Stats, Wait};
use hpcap_core::bpf::SockFilter;
use hpcap_core::listener::{Abandoned, ListenerError, ListenerId, Mode, Name, ReadCheck, NAME_MAX};
use hpcap_core::publish::Geometry;
use hpcap_core::session::{self, WaitRequest};

use crate::shm::{geometry_of, DoubleMap, ShmSleeper, ShmSource};
use crate::{Error, Result};

/// How a listener treats the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerMode {
    /// Holds the producer back; never loses data.
    Blocking,
    /// Never holds the producer back; skips forward when overrun.
    Lossy,
}

impl ListenerMode {
    fn abi(self) -> u32 {
        match self {
            Self::Blocking => abi::MODE_BLOCKING,
            Self::Lossy => abi::MODE_LOSSY,
        }
    }

    fn core(self) -> Mode {
        match self {
            Self::Blocking => Mode::Blocking,
            Self::Lossy => Mode::Lossy,
        }
    }
}

/// Which kind of source this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// `/dev/hpcapN`.
    Device,
    /// A `hpcap-sim` shared-memory file.
    Software,
}

/// Outcome of [`Source::wait`] (the `hpcap_wait` output fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitResult {
    /// The listener's cursor after the acknowledgement.
    pub read_offset: u64,
    /// Published bytes from `read_offset` on.
    pub available: u64,
    /// Bytes skipped by an overrun during the call (lossy).
    pub lost_bytes: u64,
    /// Blocks touched by that skip.
    pub lost_blocks: u64,
    /// `abi::WAIT_*` bits.
    pub flags: u32,
}

impl WaitResult {
    /// No more data will ever come (end of stream, device gone, killed).
    pub fn hangup(&self) -> bool {
        self.flags & abi::WAIT_HUP != 0
    }

    /// The timeout expired first.
    pub fn timed_out(&self) -> bool {
        self.flags & abi::WAIT_TIMEOUT != 0
    }
}

enum Backend {
    Device(File),
    Shm(ShmSource),
}

/// A capture source. Opening does not attach a listener:
/// [`Source::attach`] does.
pub struct Source {
    path: PathBuf,
    backend: Backend,
    map: Option<DoubleMap>,
    info: Info,
    geo: Geometry,
    listener: Option<Attachment>,
}

/// This handle's listener.
#[derive(Debug, Clone, Copy)]
enum Attachment {
    /// On a device; its id as the driver reported it in `HPCAP_IOC_STATS`,
    /// and whether it is named.
    Device(u32, bool),
    /// On a software source.
    Shm(ListenerId, bool),
}

impl Attachment {
    fn named(self) -> bool {
        match self {
            Self::Device(_, n) | Self::Shm(_, n) => n,
        }
    }
}

/// Where a named listener starts ([`Source::attach_named`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedStart {
    /// Stream offset of the cursor: a block boundary for a new listener,
    /// the first byte the previous owner had not acknowledged for a
    /// resumed one.
    pub offset: u64,
    /// A lingering listener of that name was taken over.
    pub resumed: bool,
}

/// The linger time to ask for: `None` is the default
/// ([`abi::LINGER_DEFAULT_MS`]); at most [`abi::LINGER_MAX_MS`], at least
/// 1 ms.
fn linger_ms(linger: Option<Duration>) -> Result<u32> {
    let Some(d) = linger else {
        return Ok(abi::LINGER_DEFAULT_MS);
    };
    let ms = d.as_millis();
    if ms == 0 || ms > u128::from(abi::LINGER_MAX_MS) {
        return Err(Error::Invalid(format!(
            "linger time {d:?}: must be from 1 ms to {} s",
            abi::LINGER_MAX_MS / 1000
        )));
    }
    // CAST: checked above.
    Ok(ms as u32)
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("kind", &self.kind())
            .field("listener", &self.listener)
            .finish()
    }
}

fn ioctl<T>(file: &File, cmd: u32, arg: *mut T, what: &str) -> Result<()> {
    // SAFETY: `cmd` is one of the ABI's commands whose argument type is `T`
    // (the callers pair them), and `arg` points to a valid `T`.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), cmd as libc::c_ulong, arg) };
    if r < 0 {
        return Err(Error::last_os(what.to_string()));
    }
    Ok(())
}

impl Source {
    /// Opens `/dev/hpcapN` (a character device) or a software source file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let meta =
            std::fs::metadata(path).map_err(|e| Error::io(format!("{}", path.display()), e))?;
        if meta.file_type().is_char_device() {
            // Read-write when allowed: a blocking listener needs the node's
            // write permission (or CAP_NET_ADMIN); a read-only open can
            // only be a lossy listener (docs/abi.md, permissions).
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .or_else(|e| match e.raw_os_error() {
                    Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EROFS) => {
                        OpenOptions::new().read(true).open(path)
                    }
                    _ => Err(e),
                })
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            // Stay detached until asked, so that a handle that only reads
            // statistics never counts as a listener.
            ioctl(
                &file,
                abi::IOC_DETACH,
                std::ptr::null_mut::<u8>(),
                "HPCAP_IOC_DETACH",
            )?;
            let mut info = Info::ZERO;
            ioctl(&file, abi::IOC_INFO, &mut info, "HPCAP_IOC_INFO")?;
            if info.abi_version != abi::ABI_VERSION {
                return Err(Error::Invalid(format!(
                    "{}: ABI version {}, this tool speaks {}",
                    path.display(),
                    info.abi_version,
                    abi::ABI_VERSION
                )));
            }
            let geo = geometry_of(&info)?;
            Ok(Self {
                path: path.to_path_buf(),
                backend: Backend::Device(file),
                map: None,
                info,
                geo,
                listener: None,
            })
        } else {
            let shm = ShmSource::open(path, false)?;
            let info = shm.info();
            let geo = geometry_of(&info)?;
            Ok(Self {
                path: path.to_path_buf(),
                backend: Backend::Shm(shm),
                map: None,
                info,
                geo,
                listener: None,
            })
        }
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Device or software source.
    pub fn kind(&self) -> SourceKind {
        match self.backend {
            Backend::Device(_) => SourceKind::Device,
            Backend::Shm(_) => SourceKind::Software,
        }
    }

    /// The software source's control area, if this is one.
    pub fn shm(&self) -> Option<&ShmSource> {
        match &self.backend {
            Backend::Shm(s) => Some(s),
            Backend::Device(_) => None,
        }
    }

    /// Current `Info` (commit, listener count and snaplen are live).
    pub fn info(&self) -> Result<Info> {
        match &self.backend {
            Backend::Device(f) => {
                let mut info = Info::ZERO;
                ioctl(f, abi::IOC_INFO, &mut info, "HPCAP_IOC_INFO")?;
                Ok(info)
            }
            Backend::Shm(s) => Ok(s.info()),
        }
    }

    /// `Info` as of opening, or of the last [`Self::attach`]: format and
    /// block size cannot change while this handle is attached, so after
    /// attaching they are the stream's.
    pub fn cached_info(&self) -> &Info {
        &self.info
    }

    /// Block size in bytes.
    pub fn block_size(&self) -> u64 {
        self.info.block_size
    }

    /// Buffer size in bytes.
    pub fn buffer_size(&self) -> u64 {
        self.info.buffer_size
    }

    /// The stream format (`abi::FORMAT_*`).
    pub fn format(&self) -> u32 {
        self.info.format
    }

    /// Interface name (`hpcapN` or the simulator's `--name`).
    pub fn name(&self) -> String {
        String::from_utf8_lossy(abi::get_cstr(&self.info.name)).into_owned()
    }

    /// File descriptor to poll (devices only: POLLIN when the wait
    /// threshold is available, POLLHUP when gone). Software sources have
    /// none; use [`Source::wait`].
    pub fn poll_fd(&self) -> Option<BorrowedFd<'_>> {
        match &self.backend {
            Backend::Device(f) => Some(f.as_fd()),
            Backend::Shm(_) => None,
        }
    }

    /// Maps the buffer (on first use).
    fn map(&mut self) -> Result<()> {
        if self.map.is_none() {
            let size = usize::try_from(self.info.buffer_size)
                .map_err(|_| Error::Invalid("buffer larger than the address space".into()))?;
            self.map = Some(match &self.backend {
                Backend::Device(f) => DoubleMap::device(f, size)?,
                Backend::Shm(s) => {
                    let f = File::open(&self.path)
                        .map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
                    let _ = s;
                    DoubleMap::new(&f, crate::shm::CONTROL_LEN as u64, size, false)?
                }
            });
        }
        Ok(())
    }

    /// After attaching to a device: the listener id, and format and block
    /// size, which may have been switched since open (`HPCAP_IOC_SET_CONFIG`
    /// while nobody was attached) and are fixed now that we are attached.
    fn attached_device(&mut self, named: bool) -> Result<()> {
        let Backend::Device(f) = &self.backend else {
            return Ok(());
        };
        let mut st = Stats::ZERO;
        ioctl(f, abi::IOC_STATS, &mut st, "HPCAP_IOC_STATS")?;
        let mut info = Info::ZERO;
        ioctl(f, abi::IOC_INFO, &mut info, "HPCAP_IOC_INFO")?;
        self.listener = Some(Attachment::Device(st.self_id, named));
        self.geo = geometry_of(&info)?;
        self.info = info;
        Ok(())
    }

    /// Attaches this handle as a listener; returns the stream offset (a
    /// block boundary) where its cursor starts. Maps the buffer on first use.
    pub fn attach(&mut self, mode: ListenerMode) -> Result<u64> {
        self.map()?;
        match &self.backend {
            Backend::Device(f) => {
                let mut a = Attach {
                    mode: mode.abi(),
                    ..Attach::default()
                };
                ioctl(f, abi::IOC_ATTACH, &mut a, "HPCAP_IOC_ATTACH").map_err(|e| match e {
                    Error::Io { what, err }
                        if mode == ListenerMode::Blocking
                            && err.raw_os_error() == Some(libc::EPERM) =>
                    {
                        Error::Io {
                            what: format!(
                                "{what} (a blocking listener needs write permission on {} or \
                                 CAP_NET_ADMIN; a lossy listener needs only read permission)",
                                self.path.display()
                            ),
                            err,
                        }
                    }
                    e => e,
                })?;
                self.attached_device(false)?;
                Ok(a.start_offset)
            }
            Backend::Shm(s) => {
                let c = s.control();
                if let Some(Attachment::Shm(id, _)) = self.listener.take() {
                    let _ = c.listeners.detach(id);
                }
                let a = c
                    .listeners
                    .attach(mode.core(), &c.publish, &self.geo)
                    .map_err(|e| Error::Invalid(format!("attach: {e:?}")))?;
                // Relaxed: informational (the reaper and status read it).
                c.listener_pid[a.id.slot()].store(std::process::id(), Ordering::Relaxed);
                self.listener = Some(Attachment::Shm(a.id, false));
                Ok(a.start)
            }
        }
    }

    /// Attaches this handle as the blocking listener `name` (1 to 31 bytes
    /// of `A-Z a-z 0-9 . _ -`), or takes over the lingering listener of
    /// that name: then it resumes exactly at the first byte the previous
    /// owner had not acknowledged.
    ///
    /// A named listener that is not detached explicitly ([`Self::detach`])
    /// lingers for `linger` (`None`: 30 s, the ABI's default; at most one
    /// hour) after this handle is dropped or its process dies: it keeps
    /// holding the producer back (the frames this costs are counted as
    /// `dropped_lingering`) and waits for an attach by its name. Fails if
    /// a listener that is not killed already has the name (`EEXIST` from a
    /// device), if the name is invalid, or if this handle may not hold the
    /// producer back (a device opened read-only without `CAP_NET_ADMIN`).
    pub fn attach_named(&mut self, name: &str, linger: Option<Duration>) -> Result<NamedStart> {
        let n = Name::new(name.as_bytes()).ok_or_else(|| {
            Error::Invalid(format!(
                "bad listener name {name:?}: 1 to {NAME_MAX} characters of A-Z a-z 0-9 . _ -"
            ))
        })?;
        let linger_ms = linger_ms(linger)?;
        self.map()?;
        match &self.backend {
            Backend::Device(f) => {
                let mut a = AttachNamed {
                    name: n.field(),
                    mode: abi::MODE_BLOCKING,
                    linger_ms,
                    ..AttachNamed::ZERO
                };
                ioctl(f, abi::IOC_ATTACH_NAMED, &mut a, "HPCAP_IOC_ATTACH_NAMED").map_err(
                    |e| match e {
                        Error::Io { what, err } => {
                            let hint = match err.raw_os_error() {
                                Some(libc::EEXIST) => format!(
                                    " (a listener named {name:?} is attached; `hpcapctl status {}`                                      lists it)",
                                    self.path.display()
                                ),
                                Some(libc::EPERM) => format!(
                                    " (a named listener is blocking: it needs write permission                                      on {} or CAP_NET_ADMIN)",
                                    self.path.display()
                                ),
                                Some(libc::ENOTTY) => {
                                    " (this hpcap.ko predates named listeners)".to_string()
                                }
                                _ => String::new(),
                            };
                            Error::Io {
                                what: format!("{what}{hint}"),
                                err,
                            }
                        }
                        e => e,
                    },
                )?;
                self.attached_device(true)?;
                Ok(NamedStart {
                    offset: a.start_offset,
                    resumed: a.result & abi::ATTACH_RESUMED != 0,
                })
            }
            Backend::Shm(s) => {
                let c = s.control();
                if let Some(Attachment::Shm(id, _)) = self.listener.take() {
                    let _ = c.listeners.detach(id);
                }
                let now = crate::util::mono_ns();
                // A predecessor that died moments ago may not have been
                // reaped yet (or the producer has ended and reaps no more).
                if c.reap(now) {
                    c.wake_all();
                }
                let a = c
                    .listeners
                    .attach_named(
                        &n,
                        u64::from(linger_ms) * 1_000_000,
                        now,
                        true,
                        &c.publish,
                        &self.geo,
                    )
                    .map_err(|e| match e {
                        ListenerError::NameInUse => Error::Invalid(format!(
                            "a listener named {name:?} is attached to {}",
                            self.path.display()
                        )),
                        e => Error::Invalid(format!("attach: {e:?}")),
                    })?;
                // Relaxed: informational (the reaper and status read it).
                c.listener_pid[a.id.slot()].store(std::process::id(), Ordering::Relaxed);
                self.listener = Some(Attachment::Shm(a.id, true));
                Ok(NamedStart {
                    offset: a.start,
                    resumed: a.resumed,
                })
            }
        }
    }

    /// Detaches the listener explicitly: it is freed at once, a named one
    /// included (it does not linger). Dropping the handle detaches an
    /// unnamed listener too, but leaves a named one lingering.
    pub fn detach(&mut self) {
        let Some(att) = self.listener.take() else {
            return;
        };
        match (&self.backend, att) {
            (Backend::Device(f), _) => {
                let _ = ioctl(f, abi::IOC_DETACH, std::ptr::null_mut::<u8>(), "detach");
            }
            (Backend::Shm(s), Attachment::Shm(id, _)) => {
                let c = s.control();
                c.listener_pid[id.slot()].store(0, Ordering::Relaxed);
                let _ = c.listeners.detach(id);
                // The producer may be waiting for room we held.
                c.wake_all();
            }
            (Backend::Shm(_), Attachment::Device(..)) => {}
        }
    }

    /// The handle goes away without an explicit detach: as closing the
    /// device does, a named listener lingers, any other is detached.
    fn abandon(&mut self) {
        match (&self.backend, self.listener) {
            // Closing the file does it in the driver.
            (Backend::Device(_), Some(a)) if a.named() => {
                self.listener = None;
            }
            (Backend::Shm(s), Some(Attachment::Shm(id, true))) => {
                self.listener = None;
                let c = s.control();
                if let Ok(Abandoned::Freed { .. }) = c.listeners.abandon(id, crate::util::mono_ns())
                {
                    c.listener_pid[id.slot()].store(0, Ordering::Relaxed);
                }
                c.wake_all();
            }
            _ => self.detach(),
        }
    }

    /// This handle's listener id (as `HPCAP_IOC_STATS` lists it), if
    /// attached.
    pub fn listener_id(&self) -> Option<u32> {
        match self.listener? {
            Attachment::Device(id, _) => Some(id),
            Attachment::Shm(id, _) => Some(id.raw()),
        }
    }

    fn shm_id(&self) -> Result<ListenerId> {
        match self.listener {
            Some(Attachment::Shm(id, _)) => Ok(id),
            _ => Err(Error::Invalid("not attached".into())),
        }
    }

    /// `len` bytes of the stream at offset `off` (zero-copy, contiguous
    /// across the buffer's end). Only meaningful for published bytes at or
    /// after the listener's cursor; lossy listeners must validate with
    /// [`Source::check_read`] after using them.
    pub fn data(&self, off: u64, len: usize) -> &[u8] {
        let map = self.map.as_ref().expect("attach() maps the buffer");
        map.slice(self.geo.position(off) as usize, len)
    }

    /// Acknowledges `ack` bytes, then waits until `min_bytes` are available
    /// (0: do not wait) or `timeout` passes (`None`: no limit).
    pub fn wait(
        &mut self,
        ack: u64,
        min_bytes: u64,
        timeout: Option<Duration>,
    ) -> Result<WaitResult> {
        match &self.backend {
            Backend::Device(f) => {
                let mut w = Wait {
                    ack_bytes: ack,
                    min_bytes,
                    timeout_ns: timeout
                        .map_or(u64::MAX, |t| t.as_nanos().min(u64::MAX as u128 - 1) as u64),
                    ..Wait::default()
                };
                ioctl(f, abi::IOC_WAIT, &mut w, "HPCAP_IOC_WAIT")?;
                Ok(WaitResult {
                    read_offset: w.read_offset,
                    available: w.available,
                    lost_bytes: w.lost_bytes,
                    lost_blocks: w.lost_blocks,
                    flags: w.flags,
                })
            }
            Backend::Shm(s) => {
                let id = self.shm_id()?;
                let c = s.control();
                let req = WaitRequest {
                    ack,
                    min_bytes,
                    timeout_ns: timeout.map_or(u64::MAX, |t| {
                        u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
                    }),
                };
                let sleeper = ShmSleeper { control: c };
                let out = session::wait(&c.listeners, &c.publish, &self.geo, id, &req, &sleeper)
                    .map_err(|e| Error::Invalid(format!("listener {}: {e:?}", id.raw())))?;
                if ack != 0 {
                    // The producer may be waiting for the room we freed.
                    c.wake_all();
                }
                Ok(WaitResult {
                    read_offset: out.read_offset,
                    available: out.available,
                    lost_bytes: out.lost_bytes,
                    lost_blocks: out.lost_blocks,
                    flags: out.flags,
                })
            }
        }
    }

    /// For a lossy listener after reading bytes from its cursor on: were
    /// they intact? `Some((lost_bytes, lost_blocks))` if they were
    /// overwritten (discard them; the cursor moved to an intact block).
    pub fn check_read(&mut self) -> Result<Option<(u64, u64)>> {
        match &self.backend {
            Backend::Device(_) => {
                let w = self.wait(0, 0, Some(Duration::ZERO))?;
                Ok((w.flags & abi::WAIT_OVERRUN != 0).then_some((w.lost_bytes, w.lost_blocks)))
            }
            Backend::Shm(s) => {
                let id = self.shm_id()?;
                let c = s.control();
                match c.listeners.check_read(id, &c.publish, &self.geo) {
                    Ok(ReadCheck::Intact) => Ok(None),
                    Ok(ReadCheck::Overrun(l)) => Ok(Some((l.bytes, l.blocks))),
                    Err(ListenerError::Killed) => Err(Error::Hangup),
                    Err(e) => Err(Error::Invalid(format!("check_read: {e:?}"))),
                }
            }
        }
    }

    /// Whether every stream byte reserved so far is published, where the
    /// source can tell: `Some` for a software source (its publication
    /// state is mapped), `None` for a device (the ABI does not say).
    pub fn publication_settled(&self) -> Option<bool> {
        match &self.backend {
            Backend::Device(_) => None,
            Backend::Shm(s) => {
                let c = s.control();
                Some(c.publish.committed() >= c.publish.reserved())
            }
        }
    }

    /// Device statistics and listeners.
    pub fn stats(&self) -> Result<Stats> {
        match &self.backend {
            Backend::Device(f) => {
                let mut s = Stats::ZERO;
                ioctl(f, abi::IOC_STATS, &mut s, "HPCAP_IOC_STATS")?;
                Ok(s)
            }
            Backend::Shm(sh) => {
                let c = sh.control();
                let mut st = Stats::ZERO;
                st.counters = c.counters();
                // Relaxed: set once by the producer before it starts.
                st.nic_valid = c.nic_valid.load(Ordering::Relaxed);
                st.uptime_ns =
                    crate::util::now_ns().saturating_sub(c.start_ns.load(Ordering::Relaxed));
                st.self_id = self.listener_id().unwrap_or(u32::MAX);
                let now = crate::util::mono_ns();
                session::fill_stats(&mut st, &c.listeners, &c.publish, &self.geo, now, |slot| {
                    c.listener_pid[slot].load(Ordering::Relaxed)
                });
                Ok(st)
            }
        }
    }

    /// Applies a configuration change (`abi::CONFIG_*` bits in `set`).
    pub fn set_config(&self, cfg: &Config) -> Result<()> {
        match &self.backend {
            Backend::Device(f) => {
                let mut c = *cfg;
                let switching = cfg.set & (abi::CONFIG_FORMAT | abi::CONFIG_BLOCK_SIZE) != 0;
                ioctl(f, abi::IOC_SET_CONFIG, &mut c, "HPCAP_IOC_SET_CONFIG").map_err(|e| match e {
                    Error::Io { what, err } if switching && err.raw_os_error() == Some(libc::EBUSY) => {
                        Error::Io {
                            what: format!(
                                "{what} (format and block size change only while no listener is \
                                 attached: stop hpcapdd and other readers; `hpcapctl status` lists them)"
                            ),
                            err,
                        }
                    }
                    e => e,
                })
            }
            Backend::Shm(s) => {
                if cfg.set & (abi::CONFIG_FORMAT | abi::CONFIG_BLOCK_SIZE) != 0 {
                    return Err(Error::Invalid(
                        "a software source's format and block size are fixed when hpcap-sim \
                         creates it: restart hpcap-sim with --format/--block-size"
                            .into(),
                    ));
                }
                if cfg.set & abi::CONFIG_SNAPLEN != 0 {
                    let v = hpcap_core::config::snaplen(cfg.snaplen)
                        .map_err(|e| Error::Invalid(e.explain().into()))?;
                    s.control().snaplen.store(v, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    /// Installs a classic BPF filter (empty: remove it). It is verified
    /// with the core's verifier first, as the driver does.
    pub fn set_filter(&self, insns: &[SockFilter]) -> Result<()> {
        if !insns.is_empty() {
            hpcap_core::bpf::verify(insns)
                .map_err(|e| Error::Invalid(format!("BPF program rejected: {e:?}")))?;
        }
        match &self.backend {
            Backend::Device(f) => {
                let mut flt = Filter {
                    len: insns.len() as u32,
                    reserved: 0,
                    insns: insns.as_ptr() as u64,
                };
                ioctl(f, abi::IOC_SET_FILTER, &mut flt, "HPCAP_IOC_SET_FILTER")
            }
            Backend::Shm(s) => s.control().set_filter(insns),
        }
    }

    /// Kills listener `id`: it stops holding the producer back and gets a
    /// hang-up.
    pub fn kill_listener(&self, id: u32) -> Result<()> {
        match &self.backend {
            Backend::Device(f) => {
                let mut v = id;
                ioctl(f, abi::IOC_KILL_LISTENER, &mut v, "HPCAP_IOC_KILL_LISTENER")
            }
            Backend::Shm(s) => {
                let c = s.control();
                c.listeners
                    .kill(ListenerId::from_raw(id), c.publish.committed())
                    .map_err(|e| Error::Invalid(format!("listener {id}: {e:?}")))?;
                c.wake_all();
                Ok(())
            }
        }
    }

    /// Kills the listener named `name` (a lingering one is freed at once);
    /// returns its id. Fails if no listener that is not killed has the
    /// name.
    pub fn kill_named(&self, name: &str) -> Result<u32> {
        let st = self.stats()?;
        let n = Name::new(name.as_bytes())
            .ok_or_else(|| Error::Invalid(format!("bad listener name {name:?}")))?;
        let id = st.listener[..(st.nlisteners as usize).min(abi::MAX_LISTENERS)]
            .iter()
            .find(|l| l.flags & abi::LISTENER_KILLED == 0 && l.name == n.field())
            .map(|l| l.id)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "no listener named {name:?} on {}",
                    self.path.display()
                ))
            })?;
        self.kill_listener(id)?;
        Ok(id)
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        self.abandon();
    }
}
