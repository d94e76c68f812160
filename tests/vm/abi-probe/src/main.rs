// SPDX-License-Identifier: MIT
//! `hpcap-abi-probe DEVICE`: a VM test helper that calls the device's ABI
//! with bad arguments and checks every answer is the documented error code
//! (and that good calls still work afterwards). Prints one line per check
//! and exits 1 if any check failed.
//!
//! `hpcap-abi-probe --poll DEVICE`: blocks in poll(POLLIN) (at most 60 s)
//! until a block is published for this listener, then checks with
//! HPCAP_IOC_WAIT that a whole block is indeed available.
//!
//! `hpcap-abi-probe --bar32 RESOURCE OFFSET`: prints the 32-bit register at
//! OFFSET of a PCI memory BAR, through its sysfs `resourceN` file (mapped:
//! those files cannot be read; the guest has no /dev/mem).
//!
//! `hpcap-abi-probe --hold DEVICE [map]`: attaches a blocking listener and
//! never reads (a stalled consumer holding the producer back), until
//! killed; with `map` it also maps the buffer and keeps touching it.
//!
//! `hpcap-abi-probe --security DEVICE [ROUNDS PER READY_FILE]`: what one
//! process with access to the device can do to others (see `security.rs`);
//! it creates READY_FILE when it needs traffic.
//!
//! `hpcap-abi-probe --fuzz DEVICE CALLS SEED [nobody] [spare]`: a seeded
//! ioctl/mmap/read/poll fuzzer (see `fuzz.rs`).
//!
//! `hpcap-abi-probe --storm DEVICE ROUNDS`: a listener open/attach/map/close
//! storm from two threads (see `storm.rs`).

use hpcap_core::abi;
use std::ffi::CString;

mod fuzz;
mod security;
mod storm;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

struct Probe {
    failed: u32,
}

impl Probe {
    /// Checks that a call returning `ret` failed with `want_errno` (0: succeeded).
    fn expect(&mut self, what: &str, ret: i64, want_errno: i32) {
        let got = if ret < 0 { errno() } else { 0 };
        self.check(
            what,
            got == want_errno,
            &format!("errno {got} (want {want_errno})"),
        );
    }

    fn check(&mut self, what: &str, ok: bool, detail: &str) {
        println!("{} {what}: {detail}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

fn ioctl<T>(fd: i32, cmd: u32, arg: *mut T) -> i64 {
    // SAFETY: the kernel validates `arg`; bad pointers are part of the test.
    i64::from(unsafe { libc::ioctl(fd, cmd as libc::c_ulong, arg) })
}

/// Waits for POLLIN; exit status 0 if readiness matched the data.
fn poll_mode(dev: &str) -> ! {
    let path = CString::new(dev).expect("device path");
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        eprintln!("hpcap-abi-probe: cannot open {dev}: errno {}", errno());
        std::process::exit(2);
    }
    let mut info = abi::Info::ZERO;
    ioctl(fd, abi::IOC_INFO, &mut info);
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let t0 = std::time::Instant::now();
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, 60_000) };
    let ms = t0.elapsed().as_millis();
    let mut w = abi::Wait::default();
    ioctl(fd, abi::IOC_WAIT, &mut w);
    let ok = n == 1 && pfd.revents & libc::POLLIN != 0 && w.available >= info.block_size;
    println!(
        "{} poll: returned {n} after {ms} ms, revents {:#x}, {} bytes available (block {})",
        if ok { "ok  " } else { "FAIL" },
        pfd.revents,
        w.available,
        info.block_size
    );
    std::process::exit(i32::from(!ok));
}

/// Prints one 32-bit register of a memory BAR.
fn bar32_mode(resource: &str, offset: &str) -> ! {
    let off = offset
        .strip_prefix("0x")
        .map_or_else(
            || offset.parse().ok(),
            |h| usize::from_str_radix(h, 16).ok(),
        )
        .filter(|o| o % 4 == 0);
    let Some(off) = off else {
        eprintln!("hpcap-abi-probe: bad register offset {offset}");
        std::process::exit(2);
    };
    let path = CString::new(resource).expect("resource path");
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_SYNC) };
    let len = off + 4;
    // SAFETY: a shared read-only mapping of the BAR file; checked below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if fd < 0 || map == libc::MAP_FAILED {
        eprintln!("hpcap-abi-probe: cannot map {resource}: errno {}", errno());
        std::process::exit(2);
    }
    // SAFETY: `off + 4 <= len` bytes are mapped; device registers are read
    // with one volatile 32-bit load.
    let v = unsafe { map.cast::<u8>().add(off).cast::<u32>().read_volatile() };
    println!("{v}");
    std::process::exit(0);
}

/// Attaches a blocking listener and sleeps until killed. With `map`, it
/// also maps the buffer (twice, read-only) and every 50 ms reads a word of
/// the next page and polls HPCAP_IOC_WAIT without blocking, whatever
/// happens to the device meanwhile (the kernel fault campaign unbinds and
/// removes it under this process; errors are expected then, a crash of
/// the kernel is not). Each change of what WAIT answers is printed
/// (`WAIT: capturing`, `WAIT: end of stream (HUP), N bytes available`,
/// `WAIT: error, errno E`).
fn hold_mode(dev: &str, map: bool) -> ! {
    let path = CString::new(dev).expect("device path");
    // SAFETY: plain open of a path; read-write so it may block.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR) };
    let mut a = abi::Attach {
        mode: abi::MODE_BLOCKING,
        ..Default::default()
    };
    if fd < 0 || ioctl(fd, abi::IOC_ATTACH, &mut a) < 0 {
        eprintln!("hpcap-abi-probe: cannot attach to {dev}: errno {}", errno());
        std::process::exit(2);
    }
    let mut info = abi::Info::ZERO;
    let len = if map && ioctl(fd, abi::IOC_INFO, &mut info) >= 0 {
        info.buffer_size as usize * 2
    } else {
        0
    };
    let m = if len > 0 {
        // SAFETY: a read-only shared mapping of our fd, checked below.
        unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                0,
            )
        }
    } else {
        libc::MAP_FAILED
    };
    if map && m == libc::MAP_FAILED {
        eprintln!("hpcap-abi-probe: cannot map {dev}: errno {}", errno());
        std::process::exit(2);
    }
    println!(
        "holding {dev} from offset {}{}",
        a.start_offset,
        if map { ", mapped" } else { "" }
    );
    let mut page = 0usize;
    let mut last = String::new();
    loop {
        if !map {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            continue;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        page = (page + 1) % (len / 4096);
        // SAFETY: a word inside the mapping, which stays valid until exit.
        let x = unsafe {
            (m as *const u8)
                .add(page * 4096)
                .cast::<u64>()
                .read_volatile()
        };
        std::hint::black_box(x);
        let mut w = abi::Wait::default();
        let state = if ioctl(fd, abi::IOC_WAIT, &mut w) < 0 {
            format!("error, errno {}", errno())
        } else if w.flags & abi::WAIT_HUP != 0 {
            format!("end of stream (HUP), {} bytes available", w.available)
        } else {
            "capturing".to_string()
        };
        // One line per change of what WAIT says (the hotplug case checks
        // that the end of the stream is announced once the device is gone).
        if state != last {
            println!("WAIT: {state}");
            last = state;
        }
    }
}

/// `HPCAP_IOC_ATTACH_NAMED` with a `name`.
fn named(name: &[u8], mode: u32, linger_ms: u32) -> abi::AttachNamed {
    let mut a = abi::AttachNamed {
        mode,
        linger_ms,
        ..Default::default()
    };
    a.name[..name.len()].copy_from_slice(name);
    a
}

fn open_dev(path: &CString) -> i32 {
    // SAFETY: plain open of a path.
    unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) }
}

/// The listener of `name` in STATS (id, flags, cursor, linger_ms), if listed.
fn listed(fd: i32, name: &[u8]) -> Option<(u32, u32, u64, u32)> {
    let mut st = abi::Stats::ZERO;
    if ioctl(fd, abi::IOC_STATS, &mut st) < 0 {
        return None;
    }
    st.listener[..(st.nlisteners as usize).min(abi::MAX_LISTENERS)]
        .iter()
        .find(|l| l.flags & abi::LISTENER_NAMED != 0 && abi::get_cstr(&l.name) == name)
        .map(|l| (l.id, l.flags, l.cursor, l.linger_ms))
}

/// `HPCAP_IOC_ATTACH_NAMED`: bad arguments, a name in use, a file closed
/// without detaching (the listener lingers), a take-over by name (resumed
/// at the cursor, new id), and an explicit detach (nothing lingers). Run as
/// root: blocking is allowed, so every error here is the argument's.
fn named_checks(p: &mut Probe, path: &CString) {
    let fd = open_dev(path);
    let bad: [(&str, abi::AttachNamed); 7] = [
        ("empty name", named(b"", abi::MODE_BLOCKING, 0)),
        ("name with a space", named(b"a b", abi::MODE_BLOCKING, 0)),
        ("name with a slash", named(b"a/b", abi::MODE_BLOCKING, 0)),
        (
            "name of 32 bytes, no NUL",
            named(&[b'x'; 32], abi::MODE_BLOCKING, 0),
        ),
        ("lossy mode", named(b"probe", abi::MODE_LOSSY, 0)),
        (
            "linger past one hour",
            named(b"probe", abi::MODE_BLOCKING, abi::LINGER_MAX_MS + 1),
        ),
        ("flags set", {
            let mut a = named(b"probe", abi::MODE_BLOCKING, 0);
            a.flags = 1;
            a
        }),
    ];
    for (what, mut a) in bad {
        p.expect(
            &format!("ATTACH_NAMED {what}"),
            ioctl(fd, abi::IOC_ATTACH_NAMED, &mut a),
            libc::EINVAL,
        );
    }
    let mut a = named(b"probe", abi::MODE_BLOCKING, 0);
    a.name[20] = b'z'; // garbage after the NUL
    p.expect(
        "ATTACH_NAMED bytes after the NUL",
        ioctl(fd, abi::IOC_ATTACH_NAMED, &mut a),
        libc::EINVAL,
    );
    p.expect(
        "ATTACH_NAMED from a bad pointer",
        ioctl(fd, abi::IOC_ATTACH_NAMED, 16usize as *mut abi::AttachNamed),
        libc::EFAULT,
    );
    p.check(
        "bad ATTACH_NAMED attach nothing",
        listed(fd, b"probe").is_none(),
        "no listener named probe",
    );

    let mut a = named(b"probe", abi::MODE_BLOCKING, 0);
    p.expect(
        "ATTACH_NAMED probe",
        ioctl(fd, abi::IOC_ATTACH_NAMED, &mut a),
        0,
    );
    p.check(
        "a new named listener is not resumed",
        a.result == 0,
        &format!("result {:#x}", a.result),
    );
    let first = listed(fd, b"probe");
    p.check(
        "named listener listed with its default linger",
        first.is_some_and(|(_, f, _, ms)| {
            f & abi::LISTENER_LINGERING == 0 && ms == abi::LINGER_DEFAULT_MS
        }),
        &format!("{first:?}"),
    );
    let fd2 = open_dev(path);
    let mut b = named(b"probe", abi::MODE_BLOCKING, 0);
    p.expect(
        "ATTACH_NAMED a name in use",
        ioctl(fd2, abi::IOC_ATTACH_NAMED, &mut b),
        libc::EEXIST,
    );
    // Closed without HPCAP_IOC_DETACH: it lingers, then fd2 takes it over.
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
    let after = listed(fd2, b"probe");
    p.check(
        "closed without DETACH: lingering",
        after.is_some_and(|(_, f, _, _)| f & abi::LISTENER_LINGERING != 0),
        &format!("{after:?}"),
    );
    let mut b = named(b"probe", abi::MODE_BLOCKING, 0);
    p.expect(
        "ATTACH_NAMED takes over the lingering one",
        ioctl(fd2, abi::IOC_ATTACH_NAMED, &mut b),
        0,
    );
    let now = listed(fd2, b"probe");
    p.check(
        "take-over resumes at the cursor with a new id",
        b.result & abi::ATTACH_RESUMED != 0
            && first.is_some_and(|(id, _, c, _)| {
                now.is_some_and(|(id2, f, _, _)| id2 != id && f & abi::LISTENER_LINGERING == 0)
                    && b.start_offset == c
            }),
        &format!(
            "result {:#x} start {} before {first:?} now {now:?}",
            b.result, b.start_offset
        ),
    );
    p.expect(
        "DETACH the named listener",
        ioctl(fd2, abi::IOC_DETACH, std::ptr::null_mut::<u8>()),
        0,
    );
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd2) };
    let fd3 = open_dev(path);
    let gone = listed(fd3, b"probe");
    p.check(
        "detached explicitly: nothing lingers",
        gone.is_none(),
        &format!("{gone:?}"),
    );
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd3) };
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--bar32") {
        let resource = args.next().unwrap_or_default();
        bar32_mode(&resource, &args.next().unwrap_or_default());
    }
    if first.as_deref() == Some("--hold") {
        let dev = args.next().unwrap_or_else(|| "/dev/hpcap0".into());
        hold_mode(&dev, args.next().as_deref() == Some("map"));
    }
    if first.as_deref() == Some("--poll") {
        poll_mode(&args.next().unwrap_or_else(|| "/dev/hpcap0".into()));
    }
    if first.as_deref() == Some("--fuzz") {
        let dev = args.next().unwrap_or_else(|| "/dev/hpcap0".into());
        let calls = args.next().and_then(|s| s.parse().ok()).unwrap_or(100_000);
        let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
        let rest: Vec<String> = args.collect();
        fuzz::run(
            &dev,
            calls,
            seed,
            rest.iter().any(|a| a == "nobody"),
            rest.iter().any(|a| a == "spare"),
        );
    }
    if first.as_deref() == Some("--storm") {
        let dev = args.next().unwrap_or_else(|| "/dev/hpcap0".into());
        let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
        storm::run(&dev, rounds);
    }
    if first.as_deref() == Some("--security") {
        let dev = args.next().unwrap_or_else(|| "/dev/hpcap0".into());
        let rounds = args.next().and_then(|s| s.parse().ok()).unwrap_or(300);
        let per = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
        let ready = args.next();
        security::run(&dev, rounds, per, ready.as_deref());
    }
    let dev = first.unwrap_or_else(|| "/dev/hpcap0".into());
    let path = CString::new(dev.clone()).expect("device path");
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        eprintln!("hpcap-abi-probe: cannot open {dev}: errno {}", errno());
        std::process::exit(2);
    }
    let mut p = Probe { failed: 0 };

    let mut info = abi::Info::ZERO;
    p.expect("INFO", ioctl(fd, abi::IOC_INFO, &mut info), 0);
    p.expect(
        "unknown command",
        ioctl(fd, abi::IOC_INFO + 0x40, &mut info),
        libc::ENOTTY,
    );
    p.expect(
        "INFO to a bad pointer",
        ioctl(fd, abi::IOC_INFO, 16usize as *mut abi::Info),
        libc::EFAULT,
    );

    let mut a = abi::Attach {
        mode: 7,
        ..Default::default()
    };
    p.expect(
        "ATTACH mode 7",
        ioctl(fd, abi::IOC_ATTACH, &mut a),
        libc::EINVAL,
    );
    let mut a = abi::Attach {
        mode: abi::MODE_LOSSY,
        flags: 1,
        ..Default::default()
    };
    p.expect(
        "ATTACH with flags",
        ioctl(fd, abi::IOC_ATTACH, &mut a),
        libc::EINVAL,
    );

    let mut w = abi::Wait {
        reserved: 1,
        ..Default::default()
    };
    p.expect(
        "WAIT with reserved bits",
        ioctl(fd, abi::IOC_WAIT, &mut w),
        libc::EINVAL,
    );
    let mut w = abi::Wait {
        ack_bytes: u64::MAX,
        ..Default::default()
    };
    p.expect(
        "WAIT acking past the data",
        ioctl(fd, abi::IOC_WAIT, &mut w),
        libc::EINVAL,
    );
    let mut w = abi::Wait::default();
    p.expect("WAIT, poll only", ioctl(fd, abi::IOC_WAIT, &mut w), 0);

    let mut c = abi::Config {
        set: abi::CONFIG_SNAPLEN,
        snaplen: 5,
        ..Default::default()
    };
    p.expect(
        "SET_CONFIG snaplen 5",
        ioctl(fd, abi::IOC_SET_CONFIG, &mut c),
        libc::EINVAL,
    );
    let mut c = abi::Config {
        set: 1 << 9,
        ..Default::default()
    };
    p.expect(
        "SET_CONFIG unknown field",
        ioctl(fd, abi::IOC_SET_CONFIG, &mut c),
        libc::EINVAL,
    );
    let mut f = abi::Filter {
        len: 5000,
        ..Default::default()
    };
    p.expect(
        "SET_FILTER 5000 instructions",
        ioctl(fd, abi::IOC_SET_FILTER, &mut f),
        libc::EINVAL,
    );
    // `ld #0; ja -1` style: a jump past the end, and no final RET.
    let prog: [u64; 1] = [0x05 | (u64::from(u32::MAX) << 32)];
    let mut f = abi::Filter {
        len: 1,
        reserved: 0,
        insns: prog.as_ptr() as u64,
    };
    p.expect(
        "SET_FILTER invalid program",
        ioctl(fd, abi::IOC_SET_FILTER, &mut f),
        libc::EINVAL,
    );
    let mut f = abi::Filter {
        len: 4,
        reserved: 0,
        insns: 8,
    };
    p.expect(
        "SET_FILTER from a bad pointer",
        ioctl(fd, abi::IOC_SET_FILTER, &mut f),
        libc::EFAULT,
    );
    let mut id: u32 = 99;
    p.expect(
        "KILL_LISTENER 99",
        ioctl(fd, abi::IOC_KILL_LISTENER, &mut id),
        libc::EINVAL,
    );

    named_checks(&mut p, &path);

    let len = (info.buffer_size * 2) as usize;
    // SAFETY: mmap of our fd; failures are the expected outcome here.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    p.expect(
        "mmap PROT_WRITE",
        if m == libc::MAP_FAILED { -1 } else { 0 },
        libc::EACCES,
    );
    // SAFETY: as above.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            4096,
        )
    };
    p.expect(
        "mmap at an offset",
        if m == libc::MAP_FAILED { -1 } else { 0 },
        libc::EINVAL,
    );
    // SAFETY: as above.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len * 2,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    p.expect(
        "mmap beyond 2x the buffer",
        if m == libc::MAP_FAILED { -1 } else { 0 },
        libc::EINVAL,
    );
    // SAFETY: as above.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    p.expect(
        "mmap read-only, 2x the buffer",
        if m == libc::MAP_FAILED { -1 } else { 0 },
        0,
    );
    if m != libc::MAP_FAILED {
        // SAFETY: `m` maps `len` bytes; mprotect must refuse to add write.
        let r = unsafe { libc::mprotect(m, 4096, libc::PROT_READ | libc::PROT_WRITE) };
        p.expect("mprotect to writable", i64::from(r), libc::EACCES);
        // The two halves alias: the same bytes at offset 0 and buffer_size.
        // SAFETY: both addresses are inside the mapping.
        let (x, y) = unsafe {
            (
                *(m as *const u64),
                *((m as *const u8).add(len / 2) as *const u64),
            )
        };
        p.check(
            "double mapping aliases",
            x == y,
            &format!("{x:#x} vs {y:#x}"),
        );
    }

    // Unprivileged: the node is 0600 root, and config needs CAP_NET_ADMIN.
    // SAFETY: fork/setuid/exit in a single-threaded process.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: drop to nobody in the child only.
        unsafe {
            libc::setgid(65534);
            libc::setuid(65534);
            let r = libc::open(path.as_ptr(), libc::O_RDONLY);
            libc::_exit(if r < 0 && errno() == libc::EACCES {
                0
            } else {
                1
            });
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let code = libc::WEXITSTATUS(status);
    p.check(
        "open as nobody",
        code == 0,
        &format!("child exit {code} (0 = refused with EACCES)"),
    );

    println!("hpcap-abi-probe: {} check(s) failed", p.failed);
    std::process::exit(i32::from(p.failed != 0));
}
