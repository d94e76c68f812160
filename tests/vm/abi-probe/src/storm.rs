// SPDX-License-Identifier: MIT
//! `hpcap-abi-probe --storm DEVICE ROUNDS`: a listener open/close storm
//! (issue 13, kernel fault campaign). Two threads each run ROUNDS times:
//! open the device (read-only or read-write), attach a listener (blocking or
//! lossy, by HPCAP_IOC_ATTACH or implicitly by a non-blocking WAIT), every
//! fourth round map the buffer read-only and read its first and last page,
//! then close, the mapping left alive past the close every eighth round and
//! read and unmapped a few rounds later.
//! Meant to run next to a capture whose own listener must not notice.
//!
//! Checks (exit status 1 if one fails): no open fails; every attach either
//! succeeds or fails with EBUSY (all listener slots taken); and once every
//! file of the storm is closed, the device has exactly the listeners it had
//! before.

use hpcap_core::abi;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{errno, ioctl};

fn listeners(path: &CString) -> Option<u32> {
    // SAFETY: plain open of a path.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    if fd < 0 {
        return None;
    }
    let mut info = abi::Info::ZERO;
    let r = ioctl(fd, abi::IOC_INFO, &mut info);
    // SAFETY: our own descriptor.
    unsafe { libc::close(fd) };
    (r >= 0).then_some(info.listeners)
}

pub(crate) fn run(dev: &str, rounds: u64) -> ! {
    let Ok(path) = CString::new(dev) else {
        eprintln!("hpcap-abi-probe: bad device path");
        std::process::exit(2);
    };
    let Some(before) = listeners(&path) else {
        eprintln!(
            "hpcap-abi-probe: cannot read the INFO of {dev}: errno {}",
            errno()
        );
        std::process::exit(2);
    };
    let bad = AtomicU64::new(0);
    let attached = AtomicU64::new(0);
    let busy = AtomicU64::new(0);
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (path, bad, attached, busy) = (&path, &bad, &attached, &busy);
            s.spawn(move || {
                let mut late: Vec<(*mut libc::c_void, usize)> = Vec::new();
                for i in 0..rounds {
                    let flags = if (i + t) % 2 == 0 {
                        libc::O_RDONLY
                    } else {
                        libc::O_RDWR
                    };
                    // SAFETY: plain open of a path.
                    let fd = unsafe { libc::open(path.as_ptr(), flags) };
                    if fd < 0 {
                        println!("FAIL storm: open failed: errno {}", errno());
                        bad.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let r = match i % 3 {
                        0 => {
                            let mut a = abi::Attach {
                                mode: abi::MODE_LOSSY,
                                ..Default::default()
                            };
                            ioctl(fd, abi::IOC_ATTACH, &mut a)
                        }
                        1 => {
                            let mode = if flags == libc::O_RDWR {
                                abi::MODE_BLOCKING
                            } else {
                                abi::MODE_LOSSY
                            };
                            let mut a = abi::Attach {
                                mode,
                                ..Default::default()
                            };
                            ioctl(fd, abi::IOC_ATTACH, &mut a)
                        }
                        _ => {
                            let mut w = abi::Wait::default();
                            ioctl(fd, abi::IOC_WAIT, &mut w)
                        }
                    };
                    if r >= 0 {
                        attached.fetch_add(1, Ordering::Relaxed);
                    } else if errno() == libc::EBUSY {
                        busy.fetch_add(1, Ordering::Relaxed);
                    } else {
                        println!("FAIL storm: attach failed: errno {}", errno());
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut info = abi::Info::ZERO;
                    // Every fourth round maps the buffer (a mapping costs a
                    // page insert per page: slow under TCG).
                    let len = if i % 4 == 0 && ioctl(fd, abi::IOC_INFO, &mut info) >= 0 {
                        info.buffer_size as usize * 2
                    } else {
                        0
                    };
                    // SAFETY: a read-only shared mapping of our fd, checked.
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
                    if len > 0 && m != libc::MAP_FAILED {
                        // SAFETY: the first and last word of the mapping.
                        let x = unsafe {
                            (m as *const u64).read_volatile()
                                ^ (m as *const u8).add(len - 8).cast::<u64>().read_volatile()
                        };
                        std::hint::black_box(x);
                    }
                    // SAFETY: our own descriptor; the mapping stays valid.
                    unsafe { libc::close(fd) };
                    if len > 0 && m != libc::MAP_FAILED {
                        if i % 8 == 0 {
                            late.push((m, len));
                        } else {
                            // SAFETY: a mapping we made.
                            unsafe { libc::munmap(m, len) };
                        }
                    }
                    if late.len() > 2 {
                        for (m, len) in late.drain(..) {
                            // SAFETY: the mapping outlived its file; read it
                            // once more, then unmap it.
                            unsafe {
                                std::hint::black_box((m as *const u64).read_volatile());
                                libc::munmap(m, len);
                            }
                        }
                    }
                }
                for (m, len) in late {
                    // SAFETY: a mapping we made.
                    unsafe { libc::munmap(m, len) };
                }
            });
        }
    });
    let after = listeners(&path);
    let ok_count = after == Some(before);
    if !ok_count {
        println!("FAIL storm: {before} listeners before, {after:?} after every file closed");
    }
    let failed = bad.load(Ordering::Relaxed) + u64::from(!ok_count);
    println!(
        "storm: 2 threads x {rounds} rounds in {:.1} s: {} attached, {} EBUSY, listeners {before} before and {after:?} after; {failed} check(s) failed",
        t0.elapsed().as_secs_f64(),
        attached.load(Ordering::Relaxed),
        busy.load(Ordering::Relaxed),
    );
    std::process::exit(i32::from(failed != 0));
}
