// SPDX-License-Identifier: GPL-2.0

//! PCI glue: the devices hpcap drives, and what happens on probe and unbind.
//!
//! The device table below is the one list of supported functions: each
//! entry names a PCI device id and its backend ([`Backend`]). Probe takes
//! the port over through the backend, allocates the stream buffer, starts
//! the capture and registers `/dev/hpcapN` (plus
//! `/dev/hpcap/by-pci/<address>`). Unbind reverses it; open files and
//! mappings keep the buffer alive until they are closed.

use crate::capture::{
    Running,
    Shared, //
};
use crate::chardev::CharDev;
use crate::hpcap_core::abi;
use crate::nic::{
    i40e,
    iavf,
    igb,
    igbvf,
    ixgbe,
    ixgbevf,
    Backend, //
};
use crate::probe_fault::{
    fail_at,
    Step, //
};
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    bindings,
    device::Core,
    pci,
    prelude::*,
    str::CString,
    sync::Arc, //
};

/// The device table: every PCI function hpcap drives and its backend.
/// Adding a backend is one file under `nic/` and one line here.
macro_rules! devices {
    ($($id:literal => $backend:path),* $(,)?) => {
        kernel::pci_device_table!(
            PCI_TABLE,
            <HpcapDriver as pci::Driver>::IdInfo,
            [$((pci::DeviceId::from_id(pci::Vendor::INTEL, $id), &$backend)),*]
        );

        /// The same table, for counting devices (`/dev/hpcapN` ranks).
        const DEVICES: &[(u32, &Backend)] = &[$(($id, &$backend)),*];
    };
}

devices! {
    0x10c9 => igb::BACKEND,
    0x10ca => igbvf::BACKEND,
    0x154c => iavf::BACKEND,
    0x1572 => i40e::BACKEND,
    0x1583 => i40e::BACKEND,
    0x10ed => ixgbevf::BACKEND,
    0x10fb => ixgbe::BACKEND,
}

/// Device indices (N of /dev/hpcapN) in use, one bit each.
static INDICES: AtomicU64 = AtomicU64::new(0);

/// Rank of the PCI address `name` among the present devices hpcap drives:
/// the preferred N of /dev/hpcapN, independent of probe order.
fn pci_rank(name: &CStr) -> u32 {
    let mut rank = 0;
    for &(device, _) in DEVICES {
        let mut p: *mut bindings::pci_dev = core::ptr::null_mut();
        loop {
            // SAFETY: `pci_get_device` drops the reference it gave us on `p`
            // and returns the next matching device with a new reference, or
            // null at the end (then nothing is held).
            p = unsafe { bindings::pci_get_device(u32::from(pci::Vendor::INTEL.as_raw()), device, p) };
            if p.is_null() {
                break;
            }
            // SAFETY: `p` is a valid, referenced pci_dev; its name lives as
            // long as the device.
            let other = unsafe { CStr::from_char_ptr(bindings::dev_name(&raw mut (*p).dev)) };
            if other.to_bytes() < name.to_bytes() {
                rank += 1;
            }
        }
    }
    rank
}

/// An index of /dev/hpcapN, returned on drop.
struct Index(u32);

impl Index {
    /// Takes index `want` if free, else the lowest free one.
    fn take(want: u32) -> Result<Self> {
        loop {
            let used = INDICES.load(Ordering::Relaxed);
            let idx = if want < 64 && used & (1 << want) == 0 {
                want
            } else {
                (!used).trailing_zeros()
            };
            if idx >= 64 {
                return Err(EBUSY);
            }
            if INDICES
                .compare_exchange(used, used | (1 << idx), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(Self(idx));
            }
        }
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        INDICES.fetch_and(!(1u64 << self.0), Ordering::AcqRel);
    }
}

/// Memory decoding and bus mastering of a device, enabled for as long as
/// this lives: dropping it clears bus mastering and disables the device, so
/// no failed probe or unbind leaves a function able to DMA. (The 7.3
/// `pci::Device` can enable a device and set bus mastering, but has no
/// counterpart: the one gap, filled here with the exported C functions.)
///
/// # Invariants
///
/// `pdev` was enabled with `pci_enable_device_mem` by [`PciEnable::new`],
/// once, and is bound to this driver while the guard lives.
struct PciEnable<'bound> {
    pdev: &'bound pci::Device,
}

impl<'bound> PciEnable<'bound> {
    fn new(pdev: &'bound pci::Device<Core<'_>>) -> Result<Self> {
        pdev.enable_device_mem()?;
        pdev.set_master();
        // INVARIANT: enabled just above.
        Ok(Self { pdev })
    }
}

impl Drop for PciEnable<'_> {
    fn drop(&mut self) {
        // CAST: `pci::Device` is `#[repr(transparent)]` over
        // `Opaque<bindings::pci_dev>` (its `as_raw()` is crate-private).
        let raw = core::ptr::from_ref(self.pdev).cast::<bindings::pci_dev>().cast_mut();
        // SAFETY: `raw` is a live, bound PCI device that we enabled (type
        // invariant); both calls only update its command register and
        // enable count.
        unsafe {
            bindings::pci_clear_master(raw);
            bindings::pci_disable_device(raw);
        }
    }
}

/// Per-device state while hpcap is bound.
pub(crate) struct HpcapDevice<'bound> {
    pdev: &'bound pci::Device,
    backend: &'static Backend,
    /// Character device nodes: removed first, so no new open races unbind.
    nodes: KVec<Pin<KBox<CharDev>>>,
    capture: KBox<dyn Running>,
    shared: Arc<Shared>,
    index: Index,
    /// Dropped last: the device stops being a bus master only after the
    /// capture (and with it the NIC's receive queue) has stopped.
    _enabled: PciEnable<'bound>,
}

/// The hpcap PCI driver.
pub(crate) struct HpcapDriver;

/// Formats the PCI address ("0000:00:02.0") of `pdev`.
fn bus_addr(pdev: &pci::Device<Core<'_>>) -> Result<CString> {
    let dev: &kernel::device::Device = pdev.as_ref();
    CString::try_from_fmt(fmt!("{}", dev.name()))
}

/// Registers `/dev/hpcapN` and `/dev/hpcap/by-pci/<address>`.
fn register_nodes(pdev: &pci::Device<Core<'_>>, name: CString, bus: &CStr, shared: &Arc<Shared>) -> Result<KVec<Pin<KBox<CharDev>>>> {
    let mut nodes = KVec::with_capacity(2, GFP_KERNEL)?;
    nodes.push(KBox::pin_init(CharDev::register(name, shared.clone()), GFP_KERNEL)?, GFP_KERNEL)?;
    let by_pci = CString::try_from_fmt(fmt!("hpcap/by-pci/{}", bus.to_str().map_err(|_| EINVAL)?))?;
    match KBox::pin_init(CharDev::register(by_pci, shared.clone()), GFP_KERNEL) {
        Ok(n) => nodes.push(n, GFP_KERNEL)?,
        Err(e) => dev_warn!(pdev, "no /dev/hpcap/by-pci node: {}\n", crate::nic::Errno(e)),
    }
    Ok(nodes)
}

impl HpcapDriver {
    /// Probe, step by step; any failure undoes what was done (each step
    /// owns what it set up).
    fn take_over<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        backend: &'static Backend,
    ) -> Result<HpcapDevice<'bound>> {
        let p = crate::params().inspect_err(|_| dev_err!(pdev, "invalid module parameters\n"))?;
        // Declared first, so on a failed probe it is dropped last.
        let enabled = PciEnable::new(pdev)?;
        // SAFETY: no DMA allocation of this device is in flight during probe.
        unsafe { kernel::dma::Device::dma_set_mask_and_coherent(pdev, kernel::dma::DmaMask::new::<64>())? };
        fail_at(pdev, Step::Enable)?;

        let bus = bus_addr(pdev)?;
        let want = pci_rank(&bus);
        let index = Index::take(want)?;
        if index.0 != want {
            dev_warn!(pdev, "hpcap{} is taken (devices changed since it was given); using hpcap{}\n", want, index.0);
        }
        fail_at(pdev, Step::Index)?;

        let name = CString::try_from_fmt(fmt!("hpcap{}", index.0))?;
        let mut info = abi::Info::ZERO;
        abi::set_cstr(&mut info.name, name.to_bytes());
        abi::set_cstr(&mut info.bus_addr, bus.to_bytes());
        info.index = index.0;
        info.ring_size = p.ring_size;
        info.consumers = p.consumers;
        info.nic = backend.abi_kind;
        let node = crate::buffer::numa_node(pdev.as_ref());
        let shared = Shared::new(&p, info, node).inspect_err(|_| {
            dev_err!(
                pdev,
                "cannot allocate a {} MiB stream buffer (buffer_mb=); try a smaller one\n",
                p.buffer_size >> 20
            )
        })?;
        fail_at(pdev, Step::Buffer)?;

        let capture = (backend.start)(pdev, &p, &shared, &name)?;
        let (up, mbps) = shared.link();
        dev_info!(
            pdev,
            "{} capturing as {} ({} backend): {} MiB buffer, {} KiB blocks, {} descriptors, {} consumer(s), link {} {} Mb/s\n",
            backend.model,
            name.to_str().unwrap_or("hpcap"),
            backend.name,
            p.buffer_size >> 20,
            p.block_size >> 10,
            p.ring_size,
            p.consumers,
            if up { "up" } else { "down" },
            mbps
        );
        let nodes = register_nodes(pdev, name, &bus, &shared)?;
        let dev = HpcapDevice {
            pdev,
            backend,
            nodes,
            capture,
            shared,
            index,
            _enabled: enabled,
        };
        fail_at(pdev, Step::Nodes)?;
        Ok(dev)
    }
}

impl pci::Driver for HpcapDriver {
    type IdInfo = &'static Backend;
    type Data<'bound> = HpcapDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let backend: &'static Backend = *info.ok_or(ENODEV)?;
        Self::take_over(pdev, backend)
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        // The end of the stream is announced once capture has stopped
        // (`Drop` below), so listeners woken by it find everything that
        // will ever be published.
        dev_info!(this.pdev, "unbinding {} (hpcap{})\n", this.backend.model, this.index.0);
    }
}

impl Drop for HpcapDevice<'_> {
    fn drop(&mut self) {
        // No new opens, then the capture in order (threads, then the NIC,
        // then the ring); the index goes last (field drop).
        self.nodes.clear();
        self.capture.stop();
        self.shared.report_final(self.pdev.as_ref());
        // Sleepers and pollers see the end of the stream (HUP / EOF) only
        // now: publication is over, nothing is published after they
        // consumed "the rest".
        self.shared.gone.store(true, Ordering::Release);
        self.shared.wake_all();
    }
}
