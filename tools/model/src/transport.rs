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
//! - QEMU's `vfio-user-pci` is QEMU's vfio-pci: it also emulates an MSI
//!   capability (one eventfd through SET_IRQS on the MSI index) and INTx
//!   (one eventfd, VFIO's automasked level: after each trigger the line
//!   stays masked until QEMU sends UNMASK at the guest's next BAR access).
//!   A function whose config space offers them (an interrupt pin, an MSI
//!   capability) gets them announced in GET_IRQ_INFO; vector 0 of
//!   [`Interrupts::raise`] goes to whichever of MSI-X, MSI or INTx the
//!   guest enabled.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, Result};
use vfio_bindings::bindings::vfio::{
    vfio_region_info, VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK,
    VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_BAR0_REGION_INDEX,
    VFIO_PCI_BAR5_REGION_INDEX, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX, VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS,
    VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
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

/// The function's interrupts: MSI-X vectors, MSI and INTx as eventfds
/// from QEMU, plus counts of what was raised (for tests and statistics).
#[derive(Default)]
pub struct Interrupts {
    fds: Vec<Option<File>>,
    /// The MSI message (one vector), while the guest has MSI enabled.
    msi: Option<File>,
    /// The INTx line, while the guest uses it.
    intx: Option<File>,
    /// INTx fired and QEMU has not unmasked it yet (VFIO's automask).
    intx_masked: bool,
    /// INTx was raised while masked: it fires again on unmask (a level
    /// interrupt stays asserted).
    intx_pending: bool,
    /// How often each vector was raised (whether or not an eventfd was set).
    pub raised: Vec<u64>,
    /// Raises delivered as MSI messages.
    pub msi_raised: u64,
    /// INTx triggers (each one masks the line until QEMU unmasks it).
    pub intx_raised: u64,
}

/// How the guest takes the function's interrupts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqMode {
    /// No eventfd yet (interrupts disabled, or a test without QEMU).
    None,
    /// MSI-X: one eventfd per vector.
    Msix,
    /// MSI: one message.
    Msi,
    /// The INTx line.
    Intx,
}

impl Interrupts {
    fn with_vectors(n: usize) -> Self {
        Interrupts {
            fds: (0..n).map(|_| None).collect(),
            raised: vec![0; n],
            ..Interrupts::default()
        }
    }

    /// The mode the guest enabled last.
    pub fn mode(&self) -> IrqMode {
        if self.fds.iter().any(Option::is_some) {
            IrqMode::Msix
        } else if self.msi.is_some() {
            IrqMode::Msi
        } else if self.intx.is_some() {
            IrqMode::Intx
        } else {
            IrqMode::None
        }
    }

    /// SET_IRQS on the MSI index: the message's eventfd, or none.
    pub fn set_msi(&mut self, fd: Option<File>) {
        self.msi = fd;
    }

    /// SET_IRQS on the INTx index, ACTION_TRIGGER: the line's eventfd
    /// (unmasked), or none.
    pub fn set_intx(&mut self, fd: Option<File>) {
        self.intx = fd;
        self.intx_masked = false;
        self.intx_pending = false;
    }

    /// SET_IRQS on the INTx index, ACTION_MASK / ACTION_UNMASK. Unmasking
    /// a line raised meanwhile fires it again.
    pub fn mask_intx(&mut self, masked: bool) {
        self.intx_masked = masked;
        if !masked && std::mem::take(&mut self.intx_pending) {
            self.fire_intx();
        }
    }

    fn fire_intx(&mut self) -> bool {
        self.intx_masked = true;
        self.intx_raised += 1;
        match self.intx.as_mut() {
            Some(f) => f.write_all(&1u64.to_le_bytes()).is_ok(),
            None => false,
        }
    }

    /// Raises vector `v`: its MSI-X eventfd; without MSI-X, vector 0 is
    /// the MSI message or the INTx line (as on the real function, the
    /// other vectors exist only with MSI-X). False when the guest has not
    /// set it up (or INTx is masked: it fires again on unmask).
    pub fn raise(&mut self, v: usize) -> bool {
        if let Some(c) = self.raised.get_mut(v) {
            *c += 1;
        }
        if let Some(f) = self.fds.get_mut(v).and_then(Option::as_mut) {
            return f.write_all(&1u64.to_le_bytes()).is_ok();
        }
        if v != 0 || self.mode() == IrqMode::Msix {
            return false;
        }
        if let Some(f) = self.msi.as_mut() {
            self.msi_raised += 1;
            return f.write_all(&1u64.to_le_bytes()).is_ok();
        }
        if self.intx.is_none() {
            return false;
        }
        if self.intx_masked {
            self.intx_pending = true;
            return false;
        }
        self.fire_intx()
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

/// What the function's config space offers besides MSI-X: (INTx, MSI).
/// INTx when it names an interrupt pin, MSI when its capability list has
/// an MSI capability.
pub(crate) fn legacy_interrupts<D: PciFunction>(dev: &mut D) -> (bool, bool) {
    let mut b = [0u8; 1];
    dev.config_read(0x3d, &mut b);
    let intx = b[0] != 0;
    dev.config_read(0x34, &mut b);
    let mut at = b[0] & !3;
    let mut msi = false;
    // At most 48 capabilities fit in 256 bytes: a loop is a broken list.
    for _ in 0..48 {
        if at < 0x40 {
            break;
        }
        let mut cap = [0u8; 2];
        dev.config_read(u64::from(at), &mut cap);
        msi |= cap[0] == 0x05;
        at = cap[1] & !3;
    }
    (intx, msi)
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
        let mut g = lock(&self.0);
        let irq = &mut g.platform.irq;
        let trigger = flags & VFIO_IRQ_SET_ACTION_TRIGGER != 0;
        match index {
            // One message (or the line): an eventfd sets it, none (or
            // DATA_NONE with count 0) disables it.
            VFIO_PCI_MSI_IRQ_INDEX if trigger => {
                irq.set_msi(fds.into_iter().next());
                return Ok(());
            }
            VFIO_PCI_INTX_IRQ_INDEX if trigger => {
                irq.set_intx(fds.into_iter().next());
                return Ok(());
            }
            VFIO_PCI_INTX_IRQ_INDEX if flags & VFIO_IRQ_SET_ACTION_UNMASK != 0 => {
                irq.mask_intx(false);
                return Ok(());
            }
            VFIO_PCI_INTX_IRQ_INDEX if flags & VFIO_IRQ_SET_ACTION_MASK != 0 => {
                irq.mask_intx(true);
                return Ok(());
            }
            VFIO_PCI_MSIX_IRQ_INDEX => {}
            _ => return Ok(()),
        }
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
    let (bars, vectors, (intx, msi)) = {
        let mut g = lock(&handle);
        (
            g.dev.bar_sizes(),
            g.dev.msix_vectors(),
            legacy_interrupts(&mut g.dev),
        )
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
        .map(|index| {
            let (count, flags) = match index {
                VFIO_PCI_MSIX_IRQ_INDEX => (vectors, VFIO_IRQ_INFO_EVENTFD),
                VFIO_PCI_MSI_IRQ_INDEX if msi => (1, VFIO_IRQ_INFO_EVENTFD),
                VFIO_PCI_INTX_IRQ_INDEX if intx => (
                    1,
                    VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED,
                ),
                _ => (0, 0),
            };
            IrqInfo {
                index,
                count,
                flags,
            }
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

    /// An eventfd and a way to read (and reset) its count.
    fn eventfd() -> (File, impl Fn() -> u64) {
        use std::io::Read;
        use std::os::fd::FromRawFd;
        // SAFETY: a fresh non-blocking eventfd owned by the File below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: `fd` is ours and open.
        let f = unsafe { File::from_raw_fd(fd) };
        let reader = f.try_clone().unwrap();
        (f, move || {
            let mut b = [0u8; 8];
            match (&reader).read(&mut b) {
                Ok(8) => u64::from_le_bytes(b),
                _ => 0,
            }
        })
    }

    #[test]
    fn msi_takes_vector_0_when_msix_is_off() {
        let mut irq = Interrupts::with_vectors(4);
        let (fd, count) = eventfd();
        irq.set_msi(Some(fd));
        assert_eq!(irq.mode(), IrqMode::Msi);
        assert!(irq.raise(0));
        assert!(!irq.raise(2), "only vector 0 exists without MSI-X");
        assert_eq!((count(), irq.msi_raised), (1, 1));
        irq.set_msi(None);
        assert_eq!(irq.mode(), IrqMode::None);
        assert!(!irq.raise(0));
    }

    #[test]
    fn intx_is_automasked_and_fires_again_on_unmask() {
        let mut irq = Interrupts::with_vectors(1);
        let (fd, count) = eventfd();
        irq.set_intx(Some(fd));
        assert_eq!(irq.mode(), IrqMode::Intx);
        assert!(irq.raise(0));
        assert_eq!(count(), 1);
        // Masked until QEMU unmasks (the guest's EOI): a raise meanwhile
        // is held, not lost.
        assert!(!irq.raise(0));
        assert_eq!(count(), 0);
        irq.mask_intx(false);
        assert_eq!((count(), irq.intx_raised), (1, 2));
        // Nothing held: unmasking fires nothing.
        irq.mask_intx(false);
        assert_eq!(count(), 0);
        assert!(irq.raise(0));
        assert_eq!(count(), 1);
    }

    #[test]
    fn interrupts_count_without_eventfds() {
        let mut p = Platform::for_tests(0, 4096, 2);
        assert!(!p.irq.raise(1));
        assert_eq!(p.irq.raised, vec![0, 1]);
        assert!(!p.irq.is_set(0));
    }
}
