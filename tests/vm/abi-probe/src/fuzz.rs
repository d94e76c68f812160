// SPDX-License-Identifier: MIT
//! `hpcap-abi-probe --fuzz DEVICE CALLS SEED [nobody] [spare]`: a seeded
//! fuzzer of the device's system-call surface (issue 13, kernel fault
//! campaign).
//!
//! Each of CALLS steps is one system call on the device, chosen and filled
//! from a splitmix64 stream seeded with SEED (printed first; the same seed
//! makes the same sequence of calls, so a finding is replayed with it):
//! `open`/`close` of files (read-only, read-write, non-blocking), `ioctl`
//! with random command numbers (any 32 bits; the hpcap magic with random
//! numbers, directions and sizes; the real commands) and random arguments
//! (NULL, small integers, kernel addresses, pointers at the end of a page
//! followed by an inaccessible one, buffers of random bytes or of
//! plausible structures), `mmap` with random lengths, offsets, protections
//! and flags, `mprotect`/`mremap`/`madvise`/`munmap` of what was mapped,
//! reads of mapped pages, `read`, `write`, `poll` and `lseek`. A 20 ms
//! interval timer interrupts every call that blocks (EINTR), so random
//! WAIT timeouts cannot hang the run, and signal delivery in blocking paths
//! is fuzzed too.
//!
//! `nobody`: the process drops to uid/gid 65534 first (the node must be
//! accessible to it, e.g. mode 0666). `spare`: the administrative commands
//! that act on other listeners by design (SET_CONFIG, SET_FILTER,
//! KILL_LISTENER) are never issued, so a capture running next to the
//! fuzzer must stay intact; without `spare` (and as root) they are fuzzed too.
//!
//! What is checked (exit status 1 if any fails): an ioctl with the hpcap
//! magic that is not one of its commands fails with ENOTTY; as `nobody`,
//! the administrative commands fail with EPERM whatever their argument;
//! a writable or executable shared mapping is never granted; and the
//! device still answers HPCAP_IOC_INFO at the end. The kernel's side
//! (no oops, WARN, KASAN report) is checked by the VM test around it.

use hpcap_core::abi;
use std::collections::BTreeMap;
use std::ffi::CString;

use crate::{errno, ioctl};

const PAGE: usize = 4096;

/// splitmix64: small, seedable, good enough to pick system calls.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        // CAST: a slice index fits usize.
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A mapping the fuzzer made: address, length, current protection.
struct Map {
    addr: *mut libc::c_void,
    len: usize,
    prot: i32,
}

/// Scratch memory for arguments: `SCRATCH_PAGES` read-write pages followed
/// by one inaccessible page (so "a structure at the end of the page" faults
/// half way through).
const SCRATCH_PAGES: usize = 4;

struct Fuzzer {
    rng: Rng,
    path: CString,
    fds: Vec<i32>,
    maps: Vec<Map>,
    scratch: *mut u8,
    nobody: bool,
    spare: bool,
    /// Outcomes by call kind and errno (0: success).
    outcomes: BTreeMap<(&'static str, i32), u64>,
    failed: u64,
    buffer_size: u64,
}

const HPCAP_CMDS: [u32; 9] = [
    abi::IOC_INFO,
    abi::IOC_ATTACH,
    abi::IOC_DETACH,
    abi::IOC_WAIT,
    abi::IOC_STATS,
    abi::IOC_SET_CONFIG,
    abi::IOC_SET_FILTER,
    abi::IOC_KILL_LISTENER,
    abi::IOC_ATTACH_NAMED,
];
const ADMIN_CMDS: [u32; 3] = [
    abi::IOC_SET_CONFIG,
    abi::IOC_SET_FILTER,
    abi::IOC_KILL_LISTENER,
];

extern "C" fn on_alarm(_: libc::c_int) {}

impl Fuzzer {
    fn note(&mut self, what: &'static str, ret: i64) -> i32 {
        let e = if ret < 0 { errno() } else { 0 };
        *self.outcomes.entry((what, e)).or_insert(0) += 1;
        e
    }

    fn fail(&mut self, step: u64, msg: &str) {
        self.failed += 1;
        if self.failed <= 20 {
            println!("FAIL step {step}: {msg}");
        }
    }

    fn fd(&mut self) -> i32 {
        if self.fds.is_empty() || self.rng.chance(2) {
            // A never-valid descriptor now and then (not 0 to 2: the
            // fuzzer's own stdin, stdout and stderr are not its to fuzz).
            return self.rng.pick(&[-1, 999, 1023, i32::MIN]);
        }
        self.rng.pick(&self.fds)
    }

    /// A pointer argument: mostly into the scratch pages (random bytes),
    /// sometimes at the end of the last page so the structure runs into
    /// the inaccessible one, sometimes garbage.
    fn ptr(&mut self, size: usize) -> u64 {
        let scratch = self.scratch as u64;
        match self.rng.below(10) {
            0 => 0,
            1 => self.rng.below(4096),
            2 => 0xffff_8880_0000_0000 + (self.rng.below(1 << 20) << 12),
            3 => self.rng.next(),
            4 => {
                // Straddles the guard page.
                let cut = self.rng.below(size.max(1) as u64);
                scratch + (SCRATCH_PAGES * PAGE) as u64 - cut
            }
            5 => scratch + 1 + self.rng.below(64), // misaligned
            _ => scratch + self.rng.below(((SCRATCH_PAGES - 1) * PAGE) as u64) / 8 * 8,
        }
    }

    /// Fills the scratch pages: random bytes, or zeros with a few plausible
    /// values (small lengths, offsets near the buffer's size, a random
    /// pointer to BPF instructions).
    fn fill(&mut self) {
        // SAFETY: the scratch pages are SCRATCH_PAGES * PAGE writable bytes
        // we own.
        let s = unsafe { std::slice::from_raw_parts_mut(self.scratch, SCRATCH_PAGES * PAGE) };
        if self.rng.chance(50) {
            for c in s.chunks_mut(8) {
                let v = self.rng.next().to_le_bytes();
                c.copy_from_slice(&v[..c.len()]);
            }
        } else {
            s.fill(0);
            for _ in 0..self.rng.below(16) {
                // CAST: below() of a usize bound fits usize.
                let at = (self.rng.below((SCRATCH_PAGES * PAGE / 8) as u64) * 8) as usize;
                let v: u64 = match self.rng.below(6) {
                    0 => self.rng.below(8),
                    1 => self.rng.below(4097),
                    2 => self
                        .buffer_size
                        .wrapping_add(self.rng.below(3))
                        .wrapping_sub(1),
                    3 => u64::MAX - self.rng.below(2),
                    4 => self.scratch as u64 + self.rng.below((SCRATCH_PAGES * PAGE) as u64),
                    _ => self.rng.below(1 << 32),
                };
                s[at..at + 8].copy_from_slice(&v.to_le_bytes());
            }
        }
    }

    fn cmd(&mut self) -> u32 {
        let cmd = match self.rng.below(10) {
            // Any 32 bits.
            0 => self.rng.next() as u32,
            // The hpcap magic, random number, direction and size.
            1 | 2 => {
                let dir = self.rng.below(4) as u32;
                let size = match self.rng.below(3) {
                    0 => self.rng.below(1 << 14) as u32,
                    1 => self.rng.pick(&[0u32, 4, 16, 24, 64, 144, 1576]),
                    _ => self.rng.below(300) as u32,
                };
                let nr = self.rng.below(16) as u32;
                (dir << 30) | (size << 16) | (abi::IOC_MAGIC << 8) | nr
            }
            // A real command with one bit of its size or direction flipped.
            3 => self.rng.pick(&HPCAP_CMDS) ^ (1 << (16 + self.rng.below(16))),
            // The real commands.
            _ => self.rng.pick(&HPCAP_CMDS),
        };
        if self.spare && ADMIN_CMDS.contains(&cmd) {
            abi::IOC_STATS
        } else {
            cmd
        }
    }

    fn step(&mut self, step: u64) {
        match self.rng.below(100) {
            0..=5 => {
                if self.fds.len() >= 8 {
                    let i = self.rng.below(self.fds.len() as u64) as usize;
                    let fd = self.fds.swap_remove(i);
                    // SAFETY: our own descriptor.
                    let r = unsafe { libc::close(fd) };
                    self.note("close", i64::from(r));
                }
                let flags = self.rng.pick(&[
                    libc::O_RDONLY,
                    libc::O_RDWR,
                    libc::O_RDONLY | libc::O_NONBLOCK,
                    libc::O_RDWR | libc::O_NONBLOCK,
                    libc::O_WRONLY,
                ]) | libc::O_CLOEXEC;
                // SAFETY: plain open of a path.
                let fd = unsafe { libc::open(self.path.as_ptr(), flags) };
                self.note("open", i64::from(fd));
                if fd >= 0 {
                    self.fds.push(fd);
                }
            }
            6..=8 => {
                if !self.fds.is_empty() {
                    let i = self.rng.below(self.fds.len() as u64) as usize;
                    let fd = self.fds.swap_remove(i);
                    // SAFETY: our own descriptor (its mappings stay valid).
                    let r = unsafe { libc::close(fd) };
                    self.note("close", i64::from(r));
                }
            }
            9..=59 => {
                self.fill();
                let fd = self.fd();
                let cmd = self.cmd();
                let size = ((cmd >> 16) & 0x3fff) as usize;
                let arg = self.ptr(size.max(8));
                // SAFETY: the kernel validates the argument; bad pointers
                // are the point. Writes land in our scratch pages or fail.
                let r = i64::from(unsafe { libc::ioctl(fd, cmd as libc::c_ulong, arg) });
                let e = self.note("ioctl", r);
                let open = self.fds.contains(&fd);
                let ours = (cmd >> 8) & 0xff == abi::IOC_MAGIC;
                if open && ours && !HPCAP_CMDS.contains(&cmd) && e != libc::ENOTTY {
                    self.fail(step, &format!("ioctl {cmd:#010x}: errno {e}, want ENOTTY"));
                }
                if open && self.nobody && ADMIN_CMDS.contains(&cmd) && e != libc::EPERM {
                    self.fail(
                        step,
                        &format!("ioctl {cmd:#010x} as nobody: errno {e}, want EPERM"),
                    );
                }
            }
            60..=71 => {
                let fd = self.fd();
                let len = match self.rng.below(5) {
                    0 => self.rng.below(1 << 40) as usize,
                    1 => PAGE * self.rng.below(4) as usize,
                    2 => (self.buffer_size as usize).saturating_mul(self.rng.below(4) as usize),
                    3 => self.rng.below(1 << 24) as usize,
                    _ => (self.buffer_size as usize * 2)
                        .wrapping_add(self.rng.below(3) as usize * PAGE)
                        .wrapping_sub(PAGE),
                };
                let off = match self.rng.below(4) {
                    0 | 1 => 0,
                    2 => (self.rng.below(1 << 20) * PAGE as u64) as i64,
                    _ => self.buffer_size as i64,
                };
                let prot = self.rng.below(8) as i32
                    & (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC);
                let flags = self.rng.pick(&[
                    libc::MAP_SHARED,
                    libc::MAP_PRIVATE,
                    libc::MAP_SHARED_VALIDATE,
                ]) | if self.rng.chance(10) {
                    libc::MAP_POPULATE
                } else {
                    0
                } | if self.rng.chance(5) {
                    libc::MAP_LOCKED
                } else {
                    0
                };
                // SAFETY: no MAP_FIXED: the kernel picks a free address, so
                // nothing of ours is replaced.
                let m = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, off) };
                let e = self.note("mmap", if m == libc::MAP_FAILED { -1 } else { 0 });
                if e == 0 {
                    if flags & libc::MAP_PRIVATE == 0
                        && prot & (libc::PROT_WRITE | libc::PROT_EXEC) != 0
                    {
                        self.fail(
                            step,
                            &format!("mmap prot {prot:#x} flags {flags:#x} granted"),
                        );
                    }
                    self.maps.push(Map { addr: m, len, prot });
                    if self.maps.len() > 16 {
                        let old = self.maps.remove(0);
                        // SAFETY: a mapping we made.
                        unsafe { libc::munmap(old.addr, old.len) };
                    }
                }
            }
            72..=81 => {
                if let Some(i) =
                    (!self.maps.is_empty()).then(|| self.rng.below(self.maps.len() as u64) as usize)
                {
                    let (addr, len, prot) =
                        (self.maps[i].addr, self.maps[i].len, self.maps[i].prot);
                    if prot & libc::PROT_READ != 0 && len > 0 {
                        let mut sum = 0u64;
                        for _ in 0..8 {
                            let at = self.rng.below(len as u64) as usize & !7;
                            if at + 8 <= len {
                                // SAFETY: inside a readable mapping we made;
                                // the driver backs all of it.
                                sum = sum.wrapping_add(unsafe {
                                    (addr as *const u8).add(at).cast::<u64>().read_volatile()
                                });
                            }
                        }
                        std::hint::black_box(sum);
                        self.note("touch", 0);
                    }
                }
            }
            82..=89 => {
                if !self.maps.is_empty() {
                    let i = self.rng.below(self.maps.len() as u64) as usize;
                    let (addr, len) = (self.maps[i].addr, self.maps[i].len);
                    match self.rng.below(4) {
                        0 => {
                            let prot = self.rng.below(8) as i32;
                            // SAFETY: a mapping we made; we track its protection.
                            let r = unsafe { libc::mprotect(addr, len, prot) };
                            if self.note("mprotect", i64::from(r)) == 0 {
                                self.maps[i].prot = prot;
                            }
                        }
                        1 => {
                            let new =
                                self.rng
                                    .pick(&[PAGE, len / 2, len.saturating_mul(2), len + PAGE]);
                            // SAFETY: a mapping we made; MREMAP_MAYMOVE lets the
                            // kernel move it, and we track the result.
                            let m = unsafe { libc::mremap(addr, len, new, libc::MREMAP_MAYMOVE) };
                            if self.note("mremap", if m == libc::MAP_FAILED { -1 } else { 0 }) == 0
                            {
                                self.maps[i].addr = m;
                                self.maps[i].len = new;
                            }
                        }
                        2 => {
                            let advice = self.rng.pick(&[
                                libc::MADV_DONTNEED,
                                libc::MADV_WILLNEED,
                                libc::MADV_DONTFORK,
                                libc::MADV_DOFORK,
                                libc::MADV_SEQUENTIAL,
                                libc::MADV_REMOVE,
                                libc::MADV_COLD,
                                libc::MADV_PAGEOUT,
                            ]);
                            // SAFETY: advice on a mapping we made; pages it
                            // drops are never touched again (below).
                            let r = unsafe { libc::madvise(addr, len, advice) };
                            if self.note("madvise", i64::from(r)) == 0
                                && (advice == libc::MADV_DONTNEED || advice == libc::MADV_REMOVE)
                            {
                                // The pages are gone from the mapping and
                                // nothing faults them back in (the driver
                                // inserts them at mmap time): a touch would
                                // be SIGBUS, our doing, not the driver's.
                                self.maps[i].prot = libc::PROT_NONE;
                            }
                        }
                        _ => {
                            let m = self.maps.swap_remove(i);
                            // SAFETY: a mapping we made, forgotten here.
                            let r = unsafe { libc::munmap(m.addr, m.len) };
                            self.note("munmap", i64::from(r));
                        }
                    }
                }
            }
            90..=93 => {
                let fd = self.fd();
                let len = self.rng.pick(&[0, 1, 64, PAGE, 1 << 20, usize::MAX >> 1]);
                let buf = self.ptr(len.min(PAGE));
                // SAFETY: the kernel validates the buffer; bad pointers are
                // the point. Good ones are our scratch pages.
                let r = unsafe { libc::read(fd, buf as *mut libc::c_void, len) };
                self.note("read", r as i64);
            }
            94..=95 => {
                let fd = self.fd();
                let len = self.rng.pick(&[0, 1, 64, PAGE]);
                let buf = self.ptr(len);
                // SAFETY: as for read; the device is read-only.
                let r = unsafe { libc::write(fd, buf as *const libc::c_void, len) };
                self.note("write", r as i64);
            }
            96..=97 => {
                let mut p = libc::pollfd {
                    fd: self.fd(),
                    events: self.rng.below(1 << 16) as i16,
                    revents: 0,
                };
                let t = self.rng.pick(&[0, 1, 10, -1]);
                // SAFETY: one valid pollfd; the interval timer ends a wait.
                let r = unsafe { libc::poll(&mut p, 1, t) };
                self.note("poll", i64::from(r));
            }
            _ => {
                let fd = self.fd();
                let whence = self.rng.below(5) as i32;
                let off = self.rng.next() as i64;
                // SAFETY: plain lseek.
                let r = unsafe { libc::lseek(fd, off, whence) };
                self.note("lseek", r);
            }
        }
    }
}

pub(crate) fn run(dev: &str, calls: u64, seed: u64, nobody: bool, spare: bool) -> ! {
    println!(
        "fuzz: device {dev}, {calls} calls, seed {seed} (replay: hpcap-abi-probe --fuzz {dev} {calls} {seed}{}{})",
        if nobody { " nobody" } else { "" },
        if spare { " spare" } else { "" }
    );
    if nobody {
        // SAFETY: dropping privileges of this single-threaded process.
        let ok = unsafe {
            libc::setgroups(0, std::ptr::null()) == 0
                && libc::setgid(65534) == 0
                && libc::setuid(65534) == 0
        };
        if !ok {
            eprintln!("hpcap-abi-probe: cannot become nobody: errno {}", errno());
            std::process::exit(2);
        }
    }
    let Ok(path) = CString::new(dev) else {
        eprintln!("hpcap-abi-probe: bad device path");
        std::process::exit(2);
    };
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    let mut info = abi::Info::ZERO;
    if fd < 0 || ioctl(fd, abi::IOC_INFO, &mut info) < 0 {
        eprintln!(
            "hpcap-abi-probe: cannot open {dev} or read its INFO: errno {}",
            errno()
        );
        std::process::exit(2);
    }
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    // SAFETY: an anonymous mapping for the scratch pages plus a guard page
    // made inaccessible right after.
    let scratch = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            (SCRATCH_PAGES + 1) * PAGE,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if scratch == libc::MAP_FAILED
        // SAFETY: the last page of the mapping above.
        || unsafe {
            libc::mprotect(
                scratch.cast::<u8>().add(SCRATCH_PAGES * PAGE).cast(),
                PAGE,
                libc::PROT_NONE,
            )
        } != 0
    {
        eprintln!(
            "hpcap-abi-probe: cannot map scratch pages: errno {}",
            errno()
        );
        std::process::exit(2);
    }
    // A 20 ms interval timer whose signal interrupts blocking calls.
    // SAFETY: installing a handler that does nothing, without SA_RESTART.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
    }
    let mut f = Fuzzer {
        rng: Rng(seed),
        path: path.clone(),
        fds: Vec::new(),
        maps: Vec::new(),
        scratch: scratch.cast(),
        nobody,
        spare,
        outcomes: BTreeMap::new(),
        failed: 0,
        buffer_size: info.buffer_size,
    };
    let t0 = std::time::Instant::now();
    for step in 0..calls {
        f.step(step);
        if step > 0 && step % 20_000 == 0 {
            println!("fuzz: {step} calls in {:.0} s", t0.elapsed().as_secs_f64());
        }
    }
    for m in std::mem::take(&mut f.maps) {
        // SAFETY: mappings we made.
        unsafe { libc::munmap(m.addr, m.len) };
    }
    for fd in std::mem::take(&mut f.fds) {
        // SAFETY: our own descriptors.
        unsafe { libc::close(fd) };
    }
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    let mut end = abi::Info::ZERO;
    if fd < 0 || ioctl(fd, abi::IOC_INFO, &mut end) < 0 {
        f.fail(
            calls,
            &format!("the device no longer answers INFO: errno {}", errno()),
        );
    }
    let mut summary = String::new();
    for ((what, e), n) in &f.outcomes {
        summary += &format!(
            " {what}/{}={n}",
            if *e == 0 {
                "ok".to_string()
            } else {
                e.to_string()
            }
        );
    }
    println!("fuzz: outcomes (call/errno=count):{summary}");
    println!(
        "fuzz: {calls} calls in {:.1} s, seed {seed}, {} check(s) failed",
        t0.elapsed().as_secs_f64(),
        f.failed
    );
    std::process::exit(i32::from(f.failed != 0));
}
