// SPDX-License-Identifier: MIT
//! The transport between a device model and QEMU: one PCI function served
//! over vfio-user (QEMU's `vfio-user-pci` client, QEMU >= 10.1).
//!
//! This is the only file that knows the `vfio_user` crate. A model
//! implements [`PciFunction`] (config space, BAR accesses, reset); it reaches
//! guest memory and its MSI-X vectors through a [`Platform`], which also
//! exists without QEMU ([`Platform::for_tests`]) so that the models' logic is
//! unit-tested in plain `cargo test`.
//!
//! Facts this layer copes with (QEMU 10.2, `vfio_user` 0.1.7):
//! - BAR writes are posted by default; the crate answers them in order.
//! - Guest RAM arrives as DMA regions with an fd only when it is fd-backed
//!   (`memory-backend-memfd,share=on`); fd-less regions (ROM) are accepted and
//!   ignored, and a DMA to them fails like a DMA to unmapped memory.
//! - QEMU emulates the MSI-X table itself and hands us one eventfd per
//!   vector through SET_IRQS; its first SET_IRQS carries no fds.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_SET_ACTION_TRIGGER,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vfio_user::{DmaMapFlags, DmaUnmapFlags, IrqInfo, Server, ServerBackend, ServerRegion};

/// One mapped range of guest memory.
struct Mapping {
    iova: u64,
    size: u64,
    /// Start of the mapping in this process (from `mmap`).
    ptr: *mut u8,
    /// Whether we own the mapping and must unmap it.
    owned: bool,
}

// SAFETY: a `Mapping` is a plain address range of a shared mapping owned by
// its `GuestMemory`; it is only dereferenced through `GuestMemory`'s methods,
// which copy bytes in and out (no references into guest memory are made),
// so moving it to another thread is sound.
unsafe impl Send for Mapping {}

/// An error of a DMA access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaError {
    /// The guest address.
    pub addr: u64,
    /// The length of the access.
    pub len: usize,
}

impl std::fmt::Display for DmaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DMA of {} bytes at {:#x}: not in guest memory",
            self.len, self.addr
        )
    }
}

/// Guest memory as the device sees it: what QEMU mapped for DMA.
#[derive(Default)]
pub struct GuestMemory {
    maps: Vec<Mapping>,
}

impl GuestMemory {
    fn find(&self, addr: u64, len: usize) -> Result<*mut u8, DmaError> {
        let err = DmaError { addr, len };
        let end = addr.checked_add(len as u64).ok_or(err)?;
        let m = self
            .maps
            .iter()
            .find(|m| addr >= m.iova && end <= m.iova + m.size)
            .ok_or(err)?;
        let off = usize::try_from(addr - m.iova).map_err(|_| err)?;
        // SAFETY: `off + len <= m.size`, so the result stays inside the mapping.
        Ok(unsafe { m.ptr.add(off) })
    }

    /// Copies guest memory at `addr` into `buf` (a device read, e.g. a descriptor).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let p = self.find(addr, buf.len())?;
        // SAFETY: `p..p + buf.len()` lies inside a live mapping (find); the
        // guest may change it concurrently, as real DMA would observe.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into guest memory at `addr` (a device write).
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        let p = self.find(addr, data.len())?;
        // SAFETY: as in `read`; the range is writable (mapped PROT_WRITE).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }

    /// Reads a little-endian u64 at `addr`.
    pub fn read_u64(&self, addr: u64) -> Result<u64, DmaError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn map_fd(&mut self, iova: u64, size: u64, offset: u64, fd: &File) -> std::io::Result<()> {
        let len = usize::try_from(size).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        let off = libc::off_t::try_from(offset).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a fresh shared mapping of the fd QEMU passed; no existing
        // memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        self.maps.push(Mapping {
            iova,
            size,
            ptr: ptr.cast(),
            owned: true,
        });
        Ok(())
    }

    fn unmap(&mut self, iova: u64, size: u64, all: bool) {
        self.maps.retain(|m| {
            let hit = all || (m.iova >= iova && m.iova + m.size <= iova + size);
            if hit && m.owned {
                // SAFETY: we created this mapping in map_fd and drop our only
                // handle to it here.
                unsafe { libc::munmap(m.ptr.cast(), m.size as usize) };
            }
            !hit
        });
    }

    /// Anonymous memory at guest address `iova` (tests and examples).
    pub fn anonymous(iova: u64, size: usize) -> Self {
        let mut g = GuestMemory::default();
        // SAFETY: a fresh private anonymous mapping.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(ptr != libc::MAP_FAILED, "mmap of {size} bytes failed");
        g.maps.push(Mapping {
            iova,
            size: size as u64,
            ptr: ptr.cast(),
            owned: true,
        });
        g
    }
}

impl Drop for GuestMemory {
    fn drop(&mut self) {
        self.unmap(0, 0, true);
    }
}

/// The function's MSI-X vectors: eventfds from QEMU, plus counts of what
/// was raised (for tests and statistics).
#[derive(Default)]
pub struct Interrupts {
    fds: Vec<Option<File>>,
    /// How often each vector was raised (whether or not an eventfd was set).
    pub raised: Vec<u64>,
}

impl Interrupts {
    fn with_vectors(n: usize) -> Self {
        Interrupts {
            fds: (0..n).map(|_| None).collect(),
            raised: vec![0; n],
        }
    }

    /// Raises MSI-X vector `v`; false when the guest has not set it up.
    pub fn raise(&mut self, v: usize) -> bool {
        if let Some(c) = self.raised.get_mut(v) {
            *c += 1;
        }
        match self.fds.get_mut(v).and_then(Option::as_mut) {
            Some(f) => f.write_all(&1u64.to_le_bytes()).is_ok(),
            None => false,
        }
    }

    /// Whether vector `v` has an eventfd.
    pub fn is_set(&self, v: usize) -> bool {
        self.fds.get(v).is_some_and(Option::is_some)
    }
}

/// What a model reaches outside itself: guest memory and its interrupts.
pub struct Platform {
    /// Guest memory mapped for DMA.
    pub mem: GuestMemory,
    /// MSI-X vectors.
    pub irq: Interrupts,
}

impl Platform {
    /// A platform with `size` bytes of memory at guest address `iova` and
    /// `vectors` MSI-X vectors without eventfds (raises are only counted).
    pub fn for_tests(iova: u64, size: usize, vectors: usize) -> Self {
        Platform {
            mem: GuestMemory::anonymous(iova, size),
            irq: Interrupts::with_vectors(vectors),
        }
    }
}

/// A PCI function as a model implements it.
pub trait PciFunction: Send {
    /// Size of each BAR in bytes (0 = absent); a power of two >= 4096.
    fn bar_sizes(&self) -> [u64; 6];
    /// Number of MSI-X vectors.
    fn msix_vectors(&self) -> u32;
    /// Reads config space (256 bytes).
    fn config_read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes config space.
    fn config_write(&mut self, offset: u64, data: &[u8], p: &mut Platform);
    /// Reads BAR `bar` at `offset`.
    fn bar_read(&mut self, bar: u32, offset: u64, data: &mut [u8], p: &mut Platform);
    /// Writes BAR `bar` at `offset`.
    fn bar_write(&mut self, bar: u32, offset: u64, data: &[u8], p: &mut Platform);
    /// A function-level reset from QEMU.
    fn reset(&mut self, p: &mut Platform);
}

/// A model and its platform, shared by the vfio-user server thread and the
/// model's own threads (e.g. the one that receives frames).
pub struct Shared<D> {
    /// The model.
    pub dev: D,
    /// Its guest memory and interrupts.
    pub platform: Platform,
}

/// A handle to a served model.
pub type Handle<D> = Arc<Mutex<Shared<D>>>;

/// Locks a handle (a poisoned lock means a model thread panicked; the
/// state is still what it was, and serving on is the best diagnostic).
pub fn lock<D>(h: &Handle<D>) -> MutexGuard<'_, Shared<D>> {
    h.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Backend<D: PciFunction>(Handle<D>);

impl<D: PciFunction> ServerBackend for Backend<D> {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> std::io::Result<()> {
        let mut g = lock(&self.0);
        let s = &mut *g;
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => s.dev.config_read(offset, data),
            r if r <= VFIO_PCI_BAR5_REGION_INDEX => {
                s.dev.bar_read(r, offset, data, &mut s.platform)
            }
            _ => data.fill(0xff),
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let mut g = lock(&self.0);
        let s = &mut *g;
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => s.dev.config_write(offset, data, &mut s.platform),
            r if r <= VFIO_PCI_BAR5_REGION_INDEX => {
                s.dev.bar_write(r, offset, data, &mut s.platform)
            }
            _ => {}
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: DmaMapFlags,
        offset: u64,
        address: u64,
        size: u64,
        fd: Option<File>,
    ) -> std::io::Result<()> {
        // fd-less regions (ROM, BIOS) cannot be reached: ignored.
        if let Some(fd) = fd {
            lock(&self.0)
                .platform
                .mem
                .map_fd(address, size, offset, &fd)?;
        }
        Ok(())
    }

    fn dma_unmap(&mut self, flags: DmaUnmapFlags, address: u64, size: u64) -> std::io::Result<()> {
        lock(&self.0)
            .platform
            .mem
            .unmap(address, size, flags.contains(DmaUnmapFlags::UNMAP_ALL));
        Ok(())
    }

    fn reset(&mut self) -> std::io::Result<()> {
        let mut g = lock(&self.0);
        let s = &mut *g;
        s.dev.reset(&mut s.platform);
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> std::io::Result<()> {
        if index != VFIO_PCI_MSIX_IRQ_INDEX {
            return Ok(());
        }
        let mut g = lock(&self.0);
        let irq = &mut g.platform.irq;
        let start = start as usize;
        if flags & VFIO_IRQ_SET_ACTION_TRIGGER != 0 && flags & VFIO_IRQ_SET_DATA_EVENTFD != 0 {
            for (i, f) in fds.into_iter().enumerate() {
                if let Some(slot) = irq.fds.get_mut(start + i) {
                    *slot = Some(f);
                }
            }
        } else if flags & VFIO_IRQ_SET_DATA_NONE != 0 && count == 0 {
            // Disable: drop every eventfd.
            irq.fds.iter_mut().for_each(|s| *s = None);
        }
        Ok(())
    }
}

/// Serves `handle`'s model on the unix socket `path` until QEMU disconnects.
pub fn serve<D: PciFunction + 'static>(path: &Path, handle: Handle<D>) -> Result<()> {
    let (bars, vectors) = {
        let g = lock(&handle);
        (g.dev.bar_sizes(), g.dev.msix_vectors())
    };
    {
        let mut g = lock(&handle);
        g.platform.irq = Interrupts::with_vectors(vectors as usize);
    }
    let mut regions = Vec::new();
    for index in 0..VFIO_PCI_NUM_REGIONS {
        let size = match index {
            VFIO_PCI_CONFIG_REGION_INDEX => 256,
            i if i <= VFIO_PCI_BAR5_REGION_INDEX => bars[(i - VFIO_PCI_BAR0_REGION_INDEX) as usize],
            _ => 0,
        };
        let info = vfio_region_info {
            argsz: std::mem::size_of::<vfio_region_info>() as u32,
            index,
            size,
            flags: if size > 0 {
                VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE
            } else {
                0
            },
            ..Default::default()
        };
        regions.push(ServerRegion {
            region_info: info,
            sparse_areas: Vec::new(),
            mmap_fd: None,
        });
    }
    let irqs = (0..VFIO_PCI_NUM_IRQS)
        .map(|index| IrqInfo {
            index,
            count: if index == VFIO_PCI_MSIX_IRQ_INDEX {
                vectors
            } else {
                0
            },
            flags: if index == VFIO_PCI_MSIX_IRQ_INDEX {
                VFIO_IRQ_INFO_EVENTFD
            } else {
                0
            },
        })
        .collect();
    let _ = std::fs::remove_file(path);
    let server = Server::new(path, true, irqs, regions)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("listening on {}", path.display()))?;
    let mut backend = Backend(handle);
    server
        .run(&mut backend)
        .map_err(|e| anyhow::anyhow!("vfio-user: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_memory_reads_back_and_refuses_outside() {
        let m = GuestMemory::anonymous(0x1000_0000, 8192);
        m.write(0x1000_0ff0, &[1, 2, 3, 4]).unwrap();
        let mut b = [0u8; 4];
        m.read(0x1000_0ff0, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert!(m.read(0x0fff_ffff, &mut b).is_err());
        assert!(m.write(0x1000_1ffe, &[0; 4]).is_err(), "crosses the end");
        assert!(m.read(u64::MAX - 1, &mut b).is_err(), "wraps");
    }

    #[test]
    fn interrupts_count_without_eventfds() {
        let mut p = Platform::for_tests(0, 4096, 2);
        assert!(!p.irq.raise(1));
        assert_eq!(p.irq.raised, vec![0, 1]);
        assert!(!p.irq.is_set(0));
    }
}
