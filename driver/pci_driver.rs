// SPDX-License-Identifier: GPL-2.0

//! PCI glue: the devices hpcap drives, and what happens on probe and unbind.
//!
//! Probe takes the port over (backend reset and RX setup), allocates the
//! stream buffer, starts the consumer threads and registers `/dev/hpcapN`
//! (plus `/dev/hpcap/by-pci/<address>`). Unbind reverses it; open files and
//! mappings keep the buffer alive until they are closed.

use crate::capture::{
    Engine,
    Params,
    Shared, //
};
use crate::chardev::CharDev;
use crate::hpcap_core::abi;
use crate::kthread::KThread;
use crate::nic::{
    igb::Igb,
    igbvf::IgbVf,
    Nic, //
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

/// The NIC families hpcap drives, one per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NicKind {
    /// Intel 82576 physical function (igb).
    Igb,
    /// Intel 82576 virtual function (igbvf), created by the host's igb PF driver.
    IgbVf,
}

/// Device indices (N of /dev/hpcapN) in use, one bit each.
static INDICES: AtomicU64 = AtomicU64::new(0);

/// The (vendor, device) IDs of [`PCI_TABLE`], for counting devices.
const DRIVEN_IDS: [(u32, u32); 2] = [(0x8086, 0x10c9), (0x8086, 0x10ca)];

/// Rank of the PCI address `name` among the present devices hpcap drives:
/// the preferred N of /dev/hpcapN, independent of probe order.
fn pci_rank(name: &CStr) -> u32 {
    let mut rank = 0;
    for (vendor, device) in DRIVEN_IDS {
        let mut p: *mut bindings::pci_dev = core::ptr::null_mut();
        loop {
            // SAFETY: `pci_get_device` drops the reference it gave us on `p`
            // and returns the next matching device with a new reference, or
            // null at the end (then nothing is held).
            p = unsafe { bindings::pci_get_device(vendor, device, p) };
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

/// Takes index `want` if free, else the lowest free one.
fn take_index(want: u32) -> Result<u32> {
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
            return Ok(idx);
        }
    }
}

fn put_index(i: u32) {
    INDICES.fetch_and(!(1u64 << i), Ordering::AcqRel);
}

/// Running capture threads and engine; dropping stops them in order.
trait Running: Send + Sync {}

struct Capture<N: Nic> {
    threads: KVec<KThread<crate::capture::Consumer<N>>>,
    engine: Arc<Engine<N>>,
}

impl<N: Nic> Running for Capture<N> {}

impl<N: Nic> Drop for Capture<N> {
    fn drop(&mut self) {
        // Threads first (each stop waits for the thread to leave its loop),
        // then the NIC, so nothing touches the ring when it is freed.
        self.threads.clear();
        self.engine.stop();
    }
}

/// Per-device state while hpcap is bound.
pub(crate) struct HpcapDevice<'bound> {
    pdev: &'bound pci::Device,
    /// Character device nodes: dropped first, so no new open races unbind.
    nodes: KVec<Pin<KBox<CharDev>>>,
    capture: KBox<dyn Running>,
    shared: Arc<Shared>,
    kind: NicKind,
    index: u32,
}

/// The hpcap PCI driver.
pub(crate) struct HpcapDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <HpcapDriver as pci::Driver>::IdInfo,
    [
        (pci::DeviceId::from_id(pci::Vendor::INTEL, 0x10c9), NicKind::Igb),
        (pci::DeviceId::from_id(pci::Vendor::INTEL, 0x10ca), NicKind::IgbVf),
    ]
);

/// Formats the PCI address ("0000:00:02.0") of `pdev`.
fn bus_addr(pdev: &pci::Device<Core<'_>>) -> Result<CString> {
    let dev: &kernel::device::Device = pdev.as_ref();
    CString::try_from_fmt(fmt!("{}", dev.name()))
}

// Out of line: keeps probe's stack frame small (kernel stacks are 16 KiB).
#[inline(never)]
fn start<N: Nic>(
    pdev: &pci::Device<Core<'_>>,
    nic: N,
    shared: &Arc<Shared>,
    p: &Params,
    name: &str,
) -> Result<KBox<dyn Running>> {
    let engine = Engine::start(pdev.as_ref(), nic, shared.clone(), p)?;
    let threads = engine.spawn(p, name)?;
    let link = engine.nic().link();
    dev_info!(
        pdev,
        "{} capturing as {}: {} MiB buffer, {} KiB blocks, {} descriptors, {} consumer(s), link {}\n",
        N::MODEL,
        name,
        p.buffer_size >> 20,
        p.block_size >> 10,
        p.ring_size,
        p.consumers,
        if link.up { "up" } else { "down" }
    );
    Ok(KBox::new(Capture { threads, engine }, GFP_KERNEL)? as KBox<dyn Running>)
}

impl pci::Driver for HpcapDriver {
    type IdInfo = NicKind;
    type Data<'bound> = HpcapDevice<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        let kind = *info.ok_or(ENODEV)?;
        let p = crate::params().inspect_err(|_| dev_err!(pdev, "invalid module parameters\n"))?;
        pdev.enable_device_mem()?;
        pdev.set_master();
        // SAFETY: no DMA allocation of this device is in flight during probe.
        unsafe { kernel::dma::Device::dma_set_mask_and_coherent(pdev, kernel::dma::DmaMask::new::<64>())? };

        let bus = bus_addr(pdev)?;
        let want = pci_rank(&bus);
        let index = take_index(want)?;
        if index != want {
            dev_warn!(pdev, "hpcap{} is taken (devices changed since it was given); using hpcap{}\n", want, index);
        }
        let result = (|| {
            let name = CString::try_from_fmt(fmt!("hpcap{}", index))?;
            let mut info = abi::Info::ZERO;
            abi::set_cstr(&mut info.name, name.to_bytes());
            abi::set_cstr(&mut info.bus_addr, bus.to_bytes());
            info.index = index;
            info.ring_size = p.ring_size;
            info.consumers = p.consumers;
            info.nic = match kind {
                NicKind::Igb => Igb::ABI_KIND,
                NicKind::IgbVf => IgbVf::ABI_KIND,
            };
            let node = crate::buffer::numa_node(pdev.as_ref());
            let shared = Shared::new(&p, info, node).inspect_err(|_| {
                dev_err!(
                    pdev,
                    "cannot allocate a {} MiB stream buffer (buffer_mb=); try a smaller one\n",
                    p.buffer_size >> 20
                )
            })?;
            let tname = name.to_str().map_err(|_| EINVAL)?;
            let capture = match kind {
                NicKind::Igb => start(pdev, Igb::new(pdev)?, &shared, &p, tname)?,
                NicKind::IgbVf => start(pdev, IgbVf::new(pdev)?, &shared, &p, tname)?,
            };
            let mut nodes = KVec::with_capacity(2, GFP_KERNEL)?;
            nodes.push(KBox::pin_init(CharDev::register(name, shared.clone()), GFP_KERNEL)?, GFP_KERNEL)?;
            let by_pci = CString::try_from_fmt(fmt!("hpcap/by-pci/{}", bus.to_str().map_err(|_| EINVAL)?))?;
            match KBox::pin_init(CharDev::register(by_pci, shared.clone()), GFP_KERNEL) {
                Ok(n) => nodes.push(n, GFP_KERNEL)?,
                Err(e) => dev_warn!(pdev, "no /dev/hpcap/by-pci node: {:?}\n", e),
            }
            Ok(HpcapDevice {
                pdev,
                nodes,
                capture,
                shared,
                kind,
                index,
            })
        })();
        if result.is_err() {
            put_index(index);
        }
        result
    }

    fn unbind<'bound>(_pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let model = match this.kind {
            NicKind::Igb => Igb::MODEL,
            NicKind::IgbVf => IgbVf::MODEL,
        };
        dev_info!(this.pdev, "unbinding {} (hpcap{})\n", model, this.index);
        // Sleepers and pollers see the end of the stream (HUP / EOF).
        this.shared.gone.store(true, Ordering::Release);
        this.shared.wake_all();
    }
}

impl Drop for HpcapDevice<'_> {
    fn drop(&mut self) {
        self.shared.gone.store(true, Ordering::Release);
        self.shared.wake_all();
        // Fields drop next, in order: nodes, then the capture threads and NIC.
        self.nodes.clear();
        let _ = &self.capture;
        put_index(self.index);
    }
}
