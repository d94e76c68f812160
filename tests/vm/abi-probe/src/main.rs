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
//! `hpcap-abi-probe --hold DEVICE`: attaches a blocking listener and never
//! reads (a stalled consumer holding the producer back), until killed.
//!
//! `hpcap-abi-probe --security DEVICE [ROUNDS PER READY_FILE]`: what one
//! process with access to the device can do to others (see `security.rs`);
//! it creates READY_FILE when it needs traffic.

use hpcap_core::abi;
use std::ffi::CString;

mod security;

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

/// Attaches a blocking listener and sleeps until killed.
fn hold_mode(dev: &str) -> ! {
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
    println!("holding {dev} from offset {}", a.start_offset);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let first = args.next();
    if first.as_deref() == Some("--bar32") {
        let resource = args.next().unwrap_or_default();
        bar32_mode(&resource, &args.next().unwrap_or_default());
    }
    if first.as_deref() == Some("--hold") {
        hold_mode(&args.next().unwrap_or_else(|| "/dev/hpcap0".into()));
    }
    if first.as_deref() == Some("--poll") {
        poll_mode(&args.next().unwrap_or_else(|| "/dev/hpcap0".into()));
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
