// SPDX-License-Identifier: GPL-2.0

//! The intermediate buffer: a large vmalloc area the capture threads write
//! records into and userspace maps read-only, twice back to back.

use crate::hpcap_core::engine::StreamMemory;
use core::{
    alloc::Layout,
    ptr::NonNull, //
};
use kernel::{
    alloc::{
        allocator::Vmalloc,
        Allocator,
        NumaNode, //
    },
    bindings,
    device::Device,
    mm::virt::VmaNew,
    page::{
        BorrowedPage,
        PAGE_SIZE, //
    },
    prelude::*,
    uaccess::UserPtr, //
};

unsafe extern "C" {
    /// `dev_to_node()` (static inline in C; `helpers.c`). Takes the
    /// `struct device *` as `void *`: the bindgen type has zero-sized members
    /// that trip `improper_ctypes`.
    fn hpcap_dev_to_node(dev: *mut core::ffi::c_void) -> core::ffi::c_int;
    /// `cond_resched()` (a macro in C; `helpers.c`).
    fn hpcap_cond_resched();
}

/// NUMA node of `dev`, or "no node" when unknown.
pub(crate) fn numa_node(dev: &Device) -> NumaNode {
    // CAST: `Device` is `#[repr(transparent)]` over `Opaque<bindings::device>`
    // (its `as_raw()` is crate-private), so this is the C device.
    let raw = core::ptr::from_ref(dev).cast::<bindings::device>().cast_mut().cast::<core::ffi::c_void>();
    // SAFETY: `raw` is a valid device; the helper only reads its node.
    let node = unsafe { hpcap_dev_to_node(raw) };
    NumaNode::new(node).unwrap_or(NumaNode::NO_NODE)
}

/// The stream buffer.
///
/// # Invariants
///
/// `base` points to a zeroed vmalloc area of `len` bytes allocated by
/// [`Vmalloc`] with [`Self::layout`], owned by `self` and freed in `drop`;
/// `len` is a non-zero multiple of `PAGE_SIZE`.
pub(crate) struct StreamBuffer {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is plain memory; concurrent access to disjoint ranges is
// arbitrated by the publication protocol (see `span_mut`).
unsafe impl Send for StreamBuffer {}
// SAFETY: as above.
unsafe impl Sync for StreamBuffer {}

impl StreamBuffer {
    /// Allocates `len` zeroed bytes (a multiple of the page size) on NUMA
    /// node `node`, so the capture threads and the disk writer near the NIC
    /// touch local memory.
    pub(crate) fn new(len: usize, node: NumaNode) -> Result<Self> {
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let layout = Self::layout(len)?;
        let mem = Vmalloc::alloc(layout, GFP_KERNEL | __GFP_ZERO | __GFP_NOWARN, node)?;
        // INVARIANT: a zeroed vmalloc area of `len` bytes, freed in `drop`.
        Ok(Self {
            base: mem.cast::<u8>(),
            len,
        })
    }

    fn layout(len: usize) -> Result<Layout> {
        Layout::from_size_align(len, PAGE_SIZE).map_err(|_| EINVAL)
    }

    /// Mutable view of `[pos, pos + len)`.
    ///
    /// # Safety
    ///
    /// The range must be exclusively reserved for the caller by the
    /// publication protocol (no other writer touches it and no reader relies
    /// on it until it is published) for as long as the slice lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn span_mut(&self, pos: usize, len: usize) -> Option<&mut [u8]> {
        let end = pos.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in bounds (checked above, type invariant); exclusive per
        // the caller's contract.
        Some(unsafe { core::slice::from_raw_parts_mut(self.base.as_ptr().add(pos), len) })
    }

    /// Copies `[pos, pos + len)` to userspace at `to`.
    ///
    /// The bytes are published, but a lossy reader's may be overwritten by
    /// the producer while they are copied: no Rust reference is formed over
    /// them (that would be undefined behaviour under concurrent writes);
    /// `copy_to_user` reads the raw memory, and the caller treats what was
    /// copied as garbage unless the listener protocol's overrun check
    /// afterwards says it was intact.
    pub(crate) fn copy_to_user(&self, pos: usize, len: usize, to: UserPtr) -> Result {
        let end = pos.checked_add(len).ok_or(EINVAL)?;
        if end > self.len {
            return Err(EINVAL);
        }
        // SAFETY: `base + pos` is inside the area (checked above, type
        // invariant), valid for reads of `len` bytes for the call; the
        // destination is a user pointer, which `copy_to_user` checks.
        let left = unsafe {
            bindings::copy_to_user(
                to.as_mut_ptr(),
                self.base.as_ptr().add(pos).cast::<core::ffi::c_void>(),
                // CAST: `usize` to `c_ulong`, the same width on Linux.
                len as kernel::ffi::c_ulong,
            )
        };
        if left != 0 {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Maps the buffer read-only into `vma`, twice back to back: page `i` of
    /// the mapping is page `i % pages` of the buffer, so a wrapped range is
    /// contiguous for userspace. Write and exec mappings are refused, and
    /// mprotect cannot add them later.
    pub(crate) fn mmap(&self, vma: &VmaNew) -> Result {
        // SAFETY: reading `vm_pgoff` of a VMA under setup, which we own.
        let pgoff = unsafe { (*vma.as_ptr()).vm_pgoff };
        if pgoff != 0 {
            return Err(EINVAL);
        }
        if vma.writable() || vma.executable() {
            return Err(EACCES);
        }
        vma.try_clear_maywrite()?;
        vma.try_clear_mayexec()?;
        vma.set_dontexpand();
        vma.set_dontcopy();
        // Core dumps of a reader must not contain captured traffic.
        vma.set_dontdump();
        let size = vma.end() - vma.start();
        if size == 0 || size > 2 * self.len || size % PAGE_SIZE != 0 {
            return Err(EINVAL);
        }
        let map = vma.set_mixedmap();
        let pages = self.len / PAGE_SIZE;
        for i in 0..size / PAGE_SIZE {
            let off = (i % pages) * PAGE_SIZE;
            // SAFETY: `base + off` is inside the vmalloc area (`off < len`).
            let page = unsafe { bindings::vmalloc_to_page(self.base.as_ptr().add(off).cast()) };
            let page = NonNull::new(page).ok_or(EFAULT)?;
            // SAFETY: the page belongs to our area, which outlives this call;
            // `vm_insert_page` takes its own reference for the mapping.
            let page = unsafe { BorrowedPage::from_raw(page) };
            map.vm_insert_page(vma.start() + i * PAGE_SIZE, &page)?;
            // A 1 GiB buffer is ~524k inserts: let others run.
            if i % 1024 == 1023 {
                // SAFETY: process context (->mmap), no spinlock held.
                unsafe { hpcap_cond_resched() };
            }
        }
        Ok(())
    }
}

impl StreamMemory for StreamBuffer {
    unsafe fn span_mut(&self, pos: u64, len: u64) -> Option<&mut [u8]> {
        let pos = usize::try_from(pos).ok()?;
        let len = usize::try_from(len).ok()?;
        // SAFETY: the caller's contract is `span_mut`'s.
        unsafe { StreamBuffer::span_mut(self, pos, len) }
    }

    fn raw(&self) -> (*mut u8, u64) {
        // CAST: a buffer length fits u64.
        (self.base.as_ptr(), self.len as u64)
    }
}

impl Drop for StreamBuffer {
    fn drop(&mut self) {
        // Mappings hold their own page references, so pages still mapped by
        // a process stay until it unmaps them.
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: `base` was allocated by `Vmalloc` with this layout
            // (type invariant) and is not used after this.
            unsafe { Vmalloc::free(self.base, layout) };
        }
    }
}
