// SPDX-License-Identifier: MIT
//! The transport end to end without QEMU: the `vfio_user` crate's own
//! client talks to our server hosting `testdev` over a real unix socket:
//! config space, BAR registers, a DMA into a memfd the client maps (as
//! QEMU maps guest RAM), and an MSI-X interrupt through an eventfd.
//! (QEMU itself is the client in the VM test
//! test_model_transport_registers_dma_msix.)

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hpcap_model::testdev::{TestDev, TESTDEV_ID, TESTDEV_PCI};
use hpcap_model::transport::{serve, Platform, Shared};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
};

fn memfd(size: usize) -> OwnedFd {
    // SAFETY: plain syscalls on a fresh fd we own.
    unsafe {
        let fd = libc::memfd_create(c"hpcap-model-test".as_ptr(), 0);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, size as libc::off_t), 0);
        OwnedFd::from_raw_fd(fd)
    }
}

#[test]
fn client_reaches_registers_dma_and_msix() {
    let dir = std::env::temp_dir().join(format!("hpcap-model-transport-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sock = dir.join("s");
    let h = Arc::new(Mutex::new(Shared {
        dev: TestDev::new(),
        platform: Platform {
            mem: Default::default(),
            irq: Default::default(),
        },
    }));
    let (h2, sock2) = (h.clone(), sock.clone());
    let server = std::thread::spawn(move || serve(&sock2, h2));
    let t0 = std::time::Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server did not listen"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut c = vfio_user::Client::new(&sock).expect("connect");

    // Config space: IDs, and the BAR sized as a 4 KiB memory BAR.
    let mut id = [0u8; 4];
    c.region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0, &mut id)
        .unwrap();
    assert_eq!(
        id,
        [TESTDEV_PCI.0.to_le_bytes(), TESTDEV_PCI.1.to_le_bytes()].concat()[..]
    );
    assert_eq!(c.region(VFIO_PCI_BAR0_REGION_INDEX).unwrap().size, 4096);

    // Registers.
    let mut v = [0u8; 4];
    c.region_read(VFIO_PCI_BAR0_REGION_INDEX, 0, &mut v)
        .unwrap();
    assert_eq!(u32::from_le_bytes(v), TESTDEV_ID);
    c.region_write(VFIO_PCI_BAR0_REGION_INDEX, 4, &0x1234_5678u32.to_le_bytes())
        .unwrap();
    c.region_read(VFIO_PCI_BAR0_REGION_INDEX, 4, &mut v)
        .unwrap();
    assert_eq!(u32::from_le_bytes(v), 0x1234_5678);

    // "Guest RAM": a memfd at guest address 1 MiB, mapped by both sides.
    let ram = memfd(1 << 20);
    c.dma_map(0, 0x10_0000, 1 << 20, ram.as_raw_fd()).unwrap();
    // SAFETY: a shared mapping of our own memfd.
    let mine = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1 << 20,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            ram.as_raw_fd(),
            0,
        )
    } as *mut u8;
    assert_ne!(mine as *mut libc::c_void, libc::MAP_FAILED);
    // SAFETY: within the 1 MiB mapping.
    unsafe { std::ptr::copy_nonoverlapping([9u8, 8, 7, 6].as_ptr(), mine.add(0x100), 4) };

    // MSI-X vector 1 -> an eventfd.
    // SAFETY: a fresh eventfd we own.
    let efd = unsafe { OwnedFd::from_raw_fd(libc::eventfd(0, libc::EFD_NONBLOCK)) };
    c.set_irqs(
        VFIO_PCI_MSIX_IRQ_INDEX,
        VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
        1,
        1,
        &[efd.as_raw_fd()],
    )
    .unwrap();

    // Bus master on, DMA 4 bytes at 0x100100, doorbell with vector 1.
    c.region_write(VFIO_PCI_CONFIG_REGION_INDEX, 4, &[0x06, 0])
        .unwrap();
    for (off, val) in [(8u64, 0x10_0100u32), (0xc, 0), (0x10, 4), (0x14, 1)] {
        c.region_write(VFIO_PCI_BAR0_REGION_INDEX, off, &val.to_le_bytes())
            .unwrap();
    }
    c.region_read(VFIO_PCI_BAR0_REGION_INDEX, 0x18, &mut v)
        .unwrap();
    assert_eq!(u32::from_le_bytes(v), 1, "DMA status");
    let mut back = [0u8; 4];
    // SAFETY: within the mapping; the server wrote it through its own map.
    unsafe { std::ptr::copy_nonoverlapping(mine.add(0x104), back.as_mut_ptr(), 4) };
    assert_eq!(back, [!9u8, !8, !7, !6]);
    let mut n = [0u8; 8];
    // SAFETY: reading 8 bytes from our eventfd.
    let r = unsafe { libc::read(efd.as_raw_fd(), n.as_mut_ptr().cast(), 8) };
    assert_eq!(r, 8, "the eventfd was not signalled");
    assert_eq!(u64::from_le_bytes(n), 1);
    assert_eq!(h.lock().unwrap().platform.irq.raised, vec![0, 1]);

    c.shutdown().unwrap();
    drop(c);
    server.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
