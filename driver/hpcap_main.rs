// SPDX-License-Identifier: GPL-2.0

//! hpcap: full-packet capture for Intel NICs.
//!
//! The module takes over a NIC port or SR-IOV virtual function, receives on a
//! single RX ring, timestamps every frame and stores it once into a large
//! buffer that userspace maps read-only through `/dev/hpcapN`.
//!
//! This file holds only the module glue: the module parameters, the shared
//! core's self-test run at load and the PCI driver registration. The PCI
//! side is in `pci_driver.rs`; the code shared with userspace is the core,
//! included below from `core/src/lib.rs`.

use kernel::{
    driver::Registration,
    pci,
    prelude::*,
    InPlaceModule, //
};

mod buffer;
mod capture;
mod chardev;
// The shared core, its kernel subset (`--cfg hpcap_kernel`, see
// `core/src/lib.rs`): private to the module, so anything it does not use is
// reported as dead code rather than exported.
#[allow(unreachable_pub)]
#[path = "../core/src/lib.rs"]
mod hpcap_core;
mod kthread;
mod nic;
mod pci_driver;
mod probe_fault;
mod rx_ring;

/// The module name, as the driver core sees it.
pub(crate) const MODULE_NAME: &CStr = <LocalModule as kernel::ModuleMetadata>::NAME;

/// The module instance: the PCI driver registration.
#[pin_data]
pub(crate) struct HpcapModule {
    #[pin]
    _driver: Registration<pci::Adapter<pci_driver::HpcapDriver>>,
}

/// Module parameters, validated (by the core's rules, shared with
/// `HPCAP_IOC_SET_CONFIG` and the tools) into capture [`capture::Params`].
/// Ring settings are checked against the NIC's own limits at probe.
pub(crate) fn params() -> Result<capture::Params> {
    use hpcap_core::{
        config,
        format::StreamFormat, //
    };
    let bad = |what: &str, v: u64, e: config::ConfigError| {
        pr_err!("{}={}: {}\n", what, v, e.explain());
        EINVAL
    };
    let block_kb = module_parameters::block_kb.value();
    let block_size = config::block_size(u64::from(block_kb) << 10).map_err(|e| bad("block_kb", block_kb.into(), e))?;
    let buffer_mb = module_parameters::buffer_mb.value();
    let wanted = match buffer_mb {
        0 => default_buffer_size(),
        mb => u64::from(mb) << 20,
    };
    let buffer_size = config::buffer_size(wanted, block_size).map_err(|e| bad("buffer_mb", buffer_mb.into(), e))?;
    let format = module_parameters::format.value();
    let format = StreamFormat::try_from(format).map_err(|_| bad("format", format.into(), config::ConfigError::Format))?;
    let snaplen = module_parameters::snaplen.value();
    let snaplen = config::snaplen(snaplen).map_err(|e| bad("snaplen", snaplen.into(), e))?;
    let rx_desc = module_parameters::rx_desc.value();
    if !matches!(rx_desc, 0 | 16 | 32) {
        pr_err!("rx_desc={}: an RX descriptor is 16 or 32 bytes (0 = the NIC's default)\n", rx_desc);
        return Err(EINVAL);
    }
    let fail_at = module_parameters::fail_probe_at.value();
    if fail_at > probe_fault::STEPS {
        pr_err!("fail_probe_at={}: there are {} probe steps (0 = never fail)\n", fail_at, probe_fault::STEPS);
        return Err(EINVAL);
    }
    Ok(capture::Params {
        buffer_size,
        block_size,
        ring_size: module_parameters::ring_size.value(),
        rx_buf_size: module_parameters::rx_buf.value(),
        rx_desc,
        consumers: module_parameters::consumers.value(),
        core_mask: module_parameters::core_mask.value(),
        snaplen,
        format,
        flush_ms: module_parameters::flush_ms.value(),
    })
}

/// 1 GiB, or a quarter of RAM when that is less.
fn default_buffer_size() -> u64 {
    let mut si = kernel::bindings::sysinfo::default();
    // SAFETY: `si_meminfo` fills the struct it is given.
    unsafe { kernel::bindings::si_meminfo(&mut si) };
    // CAST: `c_ulong` is at most 64 bits.
    let ram = (si.totalram as u64).saturating_mul(u64::from(si.mem_unit));
    (1u64 << 30).min(ram / 4)
}

/// Runs the shared core's known-answer test and logs its result, so a test
/// can compare the kernel's output with the userspace build of the same code.
fn core_selftest() -> Result {
    let mut scratch = KVec::from_elem(0u8, hpcap_core::pcapng::FILE_HEADER_LEN, GFP_KERNEL)?;
    let (len, digest) = hpcap_core::selftest::file_header_digest(&mut scratch).ok_or(EINVAL)?;
    pr_info!("core self-test: file header {} bytes fnv1a={:#010x}\n", len, digest);
    Ok(())
}

impl InPlaceModule for HpcapModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pin_init::pin_init_scope(move || {
            core_selftest()?;
            Ok(try_pin_init!(Self {
                _driver <- Registration::new(MODULE_NAME, module),
            }))
        })
    }
}

module! {
    type: HpcapModule,
    name: "hpcap",
    authors: ["The hpcap-rs authors"],
    description: "Full-packet capture to a shared buffer for Intel NICs",
    license: "GPL v2",
    params: {
        buffer_mb: u32 {
            default: 0,
            description: "Stream buffer per device in MiB (0 = 1024, or a quarter of RAM if less)",
        },
        block_kb: u32 {
            default: 4096,
            description: "Stream block size in KiB: a power of two, 64..262144",
        },
        ring_size: u32 {
            default: 4096,
            description: "RX descriptors (82576: a multiple of 8 in 64..4096)",
        },
        rx_buf: u32 {
            default: 2048,
            description: "RX buffer bytes per descriptor (82576: a multiple of 1024 in 1024..16384; larger for jumbo frames)",
        },
        rx_desc: u32 {
            default: 0,
            description: "RX descriptor bytes: 0 = the NIC's default; XL710 PF: 16 (default, faster) or 32; other NICs have one size",
        },
        consumers: u32 {
            default: 1,
            description: "Capture threads, taking turns over segments of the RX ring (1..32, at most ring_size/(2*tail step))",
        },
        core_mask: u64 {
            default: 0,
            description: "CPUs to pin capture threads to, in bit order (0 = not pinned)",
        },
        snaplen: u32 {
            default: 0,
            description: "Bytes kept per frame (0 = whole frames; else 14..65535)",
        },
        format: u32 {
            default: 0,
            description: "Stream format: 0 = pcapng, 1 = HPCAP RAW",
        },
        flush_ms: u32 {
            default: 100,
            description: "Close a partly filled block after this many ms without traffic",
        },
        fail_probe_at: u32 {
            default: 0,
            description: "TEST ONLY: fail probe after step N (1..9, see docs/testing.md); 0 = never",
        },
    },
}
