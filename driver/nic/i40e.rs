// SPDX-License-Identifier: GPL-2.0
//! Intel XL710/X710 physical function (i40e-style), one RX queue, polled.
//!
//! The PF talks to its firmware through the admin queue (the shared
//! transport [`super::xl710_adminq`]); the rest is registers. Bring-up
//! follows the XL710 datasheet's initialization (7.2 "Device
//! initialization", 7.10 "Admin queue", 8.3 "Receive", 7.9 "Host memory
//! cache") in the order Linux's i40e uses: wait out a global reset, PF
//! software reset, admin queue, firmware API version, PXE mode off, function
//! capabilities, the port MAC; then the Host Memory Cache (HMC) with room
//! for one LAN TX and one LAN RX queue context, the PF's VSI (from the
//! switch configuration) with VLAN stripping off. `start_rx` writes the RX
//! queue context into the HMC, requests the queue (`QRX_ENA`) and turns on
//! promiscuous unicast and multicast on the VSI.
//!
//! The queue context chooses 16- or 32-byte receive descriptors (`dsize`):
//! the backend is generic over the format, and the module parameter
//! `rx_desc` picks one of its two instances at probe ([`start`]). 16 bytes
//! is the default: the same 64-byte hot path measured 47.20 Mpps with the
//! 16-byte format against 46.85 Mpps with the 32-byte one (`BENCHES=hotpath
//! tests/bench/run`, 2026-11-28; docs/deployment.md).
//!
//! Names are the datasheet's (Linux `i40e_register.h`, `i40e_adminq_cmd.h`).
//! Interrupts stay masked: the capture threads poll the ring. Link state
//! comes from the firmware (get link status, slow path); the counters from
//! the port's statistics registers (`GLPRT_*`), the frames the port dropped
//! for lack of a descriptor from `GLPRT_RDPC`.

use super::{
    poll_until,
    Errno,
    with_bar,
    xl710_adminq::{
        AdminQueue,
        BUF_SIZE,
        PF_REGS, //
    },
    Backend,
    Caps,
    Link,
    Nic,
    RingConfig,
    Status, //
};
use crate::hpcap_core::{
    abi,
    adminq::{
        rc,
        Desc, //
    },
    config::RingLimits,
    desc::{
        I40e16,
        I40e32,
        RxFormat, //
    },
    hmc::{
        counter_delta,
        RxQueueContext,
        RX_CONTEXT_LEN, //
    },
    stats::{
        NicCounters,
        NIC_MISSED,
        NIC_RECEIVED, //
    }, //
};
use crate::capture::{
    Params,
    Running,
    Shared, //
};
use core::marker::PhantomData;
use kernel::{
    device::Core,
    dma::Coherent,
    io::{
        register,
        register::Array,
        Io, //
    },
    pci,
    prelude::*,
    sync::{
        aref::ARef,
        new_mutex,
        Arc,
        Mutex, //
    },
    time::Delta, //
};

/// The backend's entry in the device table.
pub(crate) static BACKEND: Backend = Backend {
    name: "i40e",
    model: "XL710 PF",
    abi_kind: abi::NIC_I40E,
    start,
};

/// Starts the capture with the descriptor size `rx_desc` asks for (0: 16
/// bytes, the faster hot path).
fn start(
    pdev: &pci::Device<Core<'_>>,
    p: &Params,
    shared: &Arc<Shared>,
    name: &CStr,
) -> Result<KBox<dyn Running>> {
    match p.rx_desc {
        32 => crate::capture::start::<I40e<I40e32>>(pdev, p, shared, name),
        _ => crate::capture::start::<I40e<I40e16>>(pdev, p, shared, name),
    }
}

/// Bytes of BAR0 the backend maps: up to the port statistics (the XL710's
/// BAR0 is larger; Linux needs at least `GLGEN_STAT_CLEAR` + 4).
pub(crate) const BAR0_LEN: usize = 0x40_0000;

type Bar0 = pci::DevresBar<BAR0_LEN>;

/// The PF queue hpcap uses (relative to the PF's first queue).
const QUEUE: usize = 0;

register! {
    /// Global reset status (`GLGEN_RSTAT`).
    pub(crate) GLGEN_RSTAT(u32) @ 0x000B_8188 {
        /// 0: no global reset in progress.
        1:0 devstate;
    }

    /// Global reset control (`GLGEN_RSTCTL`).
    pub(crate) GLGEN_RSTCTL(u32) @ 0x000B_8180 {
        /// Delay of a global reset, in 100 ms units.
        5:0 grstdel;
    }

    /// NVM module load status (`GLNVM_ULD`).
    pub(crate) GLNVM_ULD(u32) @ 0x000B_6008 {
        /// The core configuration is loaded.
        3:3 conf_core_done;
        /// The global configuration is loaded.
        4:4 conf_global_done;
    }

    /// PF control (`PFGEN_CTRL`).
    pub(crate) PFGEN_CTRL(u32) @ 0x0009_2400 {
        /// PF software reset (self-clearing).
        0:0 pfswr;
    }

    /// The PF's PCI requester id (`PF_FUNC_RID`).
    pub(crate) PF_FUNC_RID(u32) @ 0x0009_C000 {
        /// Function number (bits 2:0 without ARI, 7:0 with).
        7:0 function_number;
    }

    /// PCIe capabilities in use (`GLPCI_CAPSUP`).
    pub(crate) GLPCI_CAPSUP(u32) @ 0x000B_E4A8 {
        /// Alternative routing-id interpretation enabled.
        4:4 ari_en;
    }

    /// The port this PF owns (`PFGEN_PORTNUM`).
    pub(crate) PFGEN_PORTNUM(u32) @ 0x001C_0480 {
        /// Port number.
        1:0 port_num;
    }

    /// LAN RX control (`GLLAN_RCTL_0`).
    pub(crate) GLLAN_RCTL_0(u32) @ 0x0012_A500 {
        /// Writing 1 leaves PXE mode.
        0:0 pxe_mode;
    }

    /// Interrupt causes enabled on vector 0 (`PFINT_ICR0_ENA`).
    pub(crate) PFINT_ICR0_ENA(u32) @ 0x0003_8800 {
        /// Enabled causes.
        31:0 causes;
    }

    /// Vector 0 control (`PFINT_DYN_CTL0`).
    pub(crate) PFINT_DYN_CTL0(u32) @ 0x0003_8480 {
        /// Interrupt enable.
        0:0 intena;
    }

    /// RX queue interrupt cause control (`QINT_RQCTL[q]`).
    pub(crate) QINT_RQCTL(u32)[1536, stride = 4] @ 0x0003_A000 {
        /// The queue raises an interrupt.
        30:30 cause_ena;
    }

    /// HMC segment descriptor command (`PFHMC_SDCMD`).
    pub(crate) PFHMC_SDCMD(u32) @ 0x000C_0000 {
        /// Segment descriptor index.
        11:0 pmsdidx;
        /// Write `PFHMC_SDDATALOW`/`HIGH` into the descriptor.
        31:31 pmsdwr;
    }

    /// HMC segment descriptor data, low (`PFHMC_SDDATALOW`).
    pub(crate) PFHMC_SDDATALOW(u32) @ 0x000C_0100 {
        /// The descriptor is valid.
        0:0 pmsdvalid;
        /// 1: direct (the segment is one contiguous backing region).
        1:1 pmsdtype;
        /// Backing pages (4 KiB) of the segment.
        11:2 pmsdbpcount;
        /// Bits 31:12 of the backing region's bus address.
        31:12 pmsddatalow;
    }

    /// HMC segment descriptor data, high (`PFHMC_SDDATAHIGH`).
    pub(crate) PFHMC_SDDATAHIGH(u32) @ 0x000C_0200 {
        /// Bits 63:32 of the backing region's bus address.
        31:0 pmsddatahigh;
    }

    /// HMC: size of a LAN TX queue context, 2^n bytes (`GLHMC_LANTXOBJSZ`).
    pub(crate) GLHMC_LANTXOBJSZ(u32) @ 0x000C_2004 {
        /// log2 of the object size.
        3:0 pmlantxobjsz;
    }

    /// HMC: size of a LAN RX queue context, 2^n bytes (`GLHMC_LANRXOBJSZ`).
    pub(crate) GLHMC_LANRXOBJSZ(u32) @ 0x000C_200C {
        /// log2 of the object size.
        3:0 pmlanrxobjsz;
    }

    /// HMC: LAN TX objects base of PF i, 512-byte units (`GLHMC_LANTXBASE[i]`).
    pub(crate) GLHMC_LANTXBASE(u32)[16, stride = 4] @ 0x000C_6200 {
        /// Base in the function's HMC space.
        23:0 fpmlantxbase;
    }

    /// HMC: LAN TX objects of PF i (`GLHMC_LANTXCNT[i]`).
    pub(crate) GLHMC_LANTXCNT(u32)[16, stride = 4] @ 0x000C_6300 {
        /// Object count.
        10:0 fpmlantxcnt;
    }

    /// HMC: LAN RX objects base of PF i, 512-byte units (`GLHMC_LANRXBASE[i]`).
    pub(crate) GLHMC_LANRXBASE(u32)[16, stride = 4] @ 0x000C_6400 {
        /// Base in the function's HMC space.
        23:0 fpmlanrxbase;
    }

    /// HMC: LAN RX objects of PF i (`GLHMC_LANRXCNT[i]`).
    pub(crate) GLHMC_LANRXCNT(u32)[16, stride = 4] @ 0x000C_6500 {
        /// Object count.
        10:0 fpmlanrxcnt;
    }

    /// HMC: FCoE DDP contexts of PF i (`GLHMC_FCOEDDPCNT[i]`).
    pub(crate) GLHMC_FCOEDDPCNT(u32)[16, stride = 4] @ 0x000C_6700 {
        /// Object count.
        19:0 fpmfcoeddpcnt;
    }

    /// HMC: FCoE filters of PF i (`GLHMC_FCOEFCNT[i]`).
    pub(crate) GLHMC_FCOEFCNT(u32)[16, stride = 4] @ 0x000C_6900 {
        /// Object count.
        22:0 fpmfcoefcnt;
    }

    /// RX queue enable (`QRX_ENA[q]`).
    pub(crate) QRX_ENA(u32)[1536, stride = 4] @ 0x0012_0000 {
        /// Enable request.
        0:0 qena_req;
        /// The queue is enabled (follows the request once done).
        2:2 qena_stat;
    }

    /// RX queue tail (`QRX_TAIL[q]`).
    pub(crate) QRX_TAIL(u32)[1536, stride = 4] @ 0x0012_8000 {
        /// Tail index.
        12:0 tail;
    }

    /// Port: unicast packets received, low 32 bits (`GLPRT_UPRCL[port]`).
    pub(crate) GLPRT_UPRCL(u32)[4, stride = 8] @ 0x0030_05A0 {
        /// Count bits 31:0.
        31:0 count;
    }

    /// Port: unicast packets received, high 16 bits (`GLPRT_UPRCH[port]`).
    pub(crate) GLPRT_UPRCH(u32)[4, stride = 8] @ 0x0030_05A4 {
        /// Count bits 47:32.
        15:0 count;
    }

    /// Port: multicast packets received, low (`GLPRT_MPRCL[port]`).
    pub(crate) GLPRT_MPRCL(u32)[4, stride = 8] @ 0x0030_05C0 {
        /// Count bits 31:0.
        31:0 count;
    }

    /// Port: multicast packets received, high (`GLPRT_MPRCH[port]`).
    pub(crate) GLPRT_MPRCH(u32)[4, stride = 8] @ 0x0030_05C4 {
        /// Count bits 47:32.
        15:0 count;
    }

    /// Port: broadcast packets received, low (`GLPRT_BPRCL[port]`).
    pub(crate) GLPRT_BPRCL(u32)[4, stride = 8] @ 0x0030_05E0 {
        /// Count bits 31:0.
        31:0 count;
    }

    /// Port: broadcast packets received, high (`GLPRT_BPRCH[port]`).
    pub(crate) GLPRT_BPRCH(u32)[4, stride = 8] @ 0x0030_05E4 {
        /// Count bits 47:32.
        15:0 count;
    }

    /// Port: receive discards, frames dropped for lack of a descriptor
    /// (`GLPRT_RDPC[port]`).
    pub(crate) GLPRT_RDPC(u32)[4, stride = 8] @ 0x0030_0600 {
        /// Count.
        31:0 count;
    }
}

/// Admin-queue opcodes (`i40e_admin_queue_opc`).
mod opc {
    /// Firmware and API versions (direct).
    pub(super) const GET_VERSION: u16 = 0x0001;
    /// The driver stops using the admin queue (direct).
    pub(super) const QUEUE_SHUTDOWN: u16 = 0x0003;
    /// Function capabilities (indirect).
    pub(super) const LIST_FUNC_CAPS: u16 = 0x000A;
    /// MAC addresses (indirect).
    pub(super) const MAC_ADDRESS_READ: u16 = 0x0107;
    /// Leave PXE mode (direct).
    pub(super) const CLEAR_PXE_MODE: u16 = 0x0110;
    /// Switch elements (indirect).
    pub(super) const GET_SWITCH_CONFIG: u16 = 0x0200;
    /// Update a VSI's properties (indirect).
    pub(super) const UPDATE_VSI: u16 = 0x0211;
    /// A VSI's promiscuous modes (direct).
    pub(super) const SET_VSI_PROMISC: u16 = 0x0254;
    /// Link status (direct).
    pub(super) const GET_LINK_STATUS: u16 = 0x0607;
}

/// The admin-queue API major version hpcap speaks (Linux's
/// `I40E_FW_API_VERSION_MAJOR`); a newer major changes command layouts.
const API_MAJOR: u16 = 1;
/// Capability id of the largest frame (`I40E_AQ_CAP_ID_MAX_MTU`).
const CAP_MAX_MTU: u16 = 0x0047;
/// Capability id of the PF's LAN RX queues (`I40E_AQ_CAP_ID_RXQ`).
const CAP_RXQ: u16 = 0x0041;
/// Switch element type of a VSI (`I40E_AQ_SW_ELEM_TYPE_VSI`).
const SW_ELEM_TYPE_VSI: u8 = 19;
/// `i40e_aqc_vsi_properties_data`: bytes, and the VLAN section.
const VSI_PROPS_LEN: usize = 128;
/// `valid_sections`: the VLAN section is meant (`I40E_AQ_VSI_PROP_VLAN_VALID`).
const VSI_PROP_VLAN_VALID: u16 = 0x0004;
/// `port_vlan_flags`: accept tagged and untagged frames, leave every tag
/// in the frame (`I40E_AQ_VSI_PVLAN_MODE_ALL | I40E_AQ_VSI_PVLAN_EMOD_NOTHING`).
const PVLAN_MODE_ALL_EMOD_NOTHING: u8 = 0x03 | 0x18;
/// Promiscuous flags (`I40E_AQC_SET_VSI_*`).
const PROMISC_UNICAST: u16 = 0x0001;
const PROMISC_MULTICAST: u16 = 0x0002;
const PROMISC_BROADCAST: u16 = 0x0004;
/// With API 1.5 and later: unicast promiscuous on receive only.
const PROMISC_RX_ONLY: u16 = 0x8000;
/// `seid` field: the SEID is valid (`I40E_AQC_VSI_PROM_CMD_SEID_VALID`).
const SEID_VALID: u16 = 0x8000;
/// Link status: `link_info` bit 0 (`I40E_AQ_LINK_UP`).
const LINK_UP: u8 = 0x01;
/// Queue shutdown: the driver is unloading (`I40E_AQ_DRIVER_UNLOADING`).
const DRIVER_UNLOADING: u32 = 0x1;

/// How long a PF reset may take.
const RESET_TIMEOUT: Delta = Delta::from_millis(2000);
/// How long a queue may take to follow its enable request.
const QUEUE_TIMEOUT: Delta = Delta::from_millis(100);

/// Bytes of the Ethernet frame check sequence.
const FCS_LEN: u32 = 4;
/// The largest frame when the firmware names none (Linux's
/// `I40E_MAX_RXBUFFER`, FCS included).
const DEFAULT_MAX_FRAME: u32 = 9728;

/// The XL710's LAN queue limits.
const RING: RingLimits = RingLimits {
    min: 64,
    max: 4096,
    // The queue length must be a multiple of 32 descriptors.
    step: 32,
    // Descriptors are fetched in groups of 8: tail writes move by 8.
    tail_step: 8,
    buf_min: 1024,
    buf_max: I40e16::MAX_BUFFER,
    // `dbuff` is in 128-byte units.
    buf_unit: 128,
};

/// The admin queue and what the slow path keeps.
struct Firmware {
    aq: AdminQueue,
    /// The admin queue is enabled.
    up: bool,
    /// Buffer for indirect commands' answers.
    buf: KVec<u8>,
    /// The raw port counters at the last reading (UPRC, MPRC, BPRC, RDPC).
    last: [u64; 4],
    /// Frames received and discarded since `start_rx`.
    received: u64,
    missed: u64,
}

/// An XL710 PF driven for capture, writing receive descriptors of format
/// `F` ([`I40e16`] or [`I40e32`]).
///
/// # Invariants
///
/// `hmc` is the backing page of HMC segment 0 while the device may use it:
/// it is handed to the device in [`I40e::new`] and taken back (segment
/// invalidated) in `Drop` before it is freed.
pub(crate) struct I40e<F> {
    pdev: ARef<pci::Device>,
    bar: Bar0,
    fw: Pin<KBox<Mutex<Firmware>>>,
    /// Backing page of the HMC (queue contexts).
    hmc: Coherent<[u8]>,
    /// Offset of the LAN RX context objects in the HMC.
    rx_base: usize,
    /// This PF's number and port.
    pf_id: usize,
    port: usize,
    /// The SEID of the PF's VSI.
    vsi_seid: u16,
    /// The firmware's admin-queue API minor version.
    api_minor: u16,
    /// The descriptor format (no data).
    format: PhantomData<fn() -> F>,
}

/// An admin-queue return code as an errno.
fn aq_error(retval: u16) -> Error {
    match retval {
        rc::EPERM => EPERM,
        rc::ENOENT | rc::ESRCH => ENOENT,
        rc::EINVAL => EINVAL,
        _ => EIO,
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_le_bytes([x, y]),
        _ => 0,
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_le_bytes([a, c, d, e]),
        _ => 0,
    }
}

impl<F> I40e<F> {
    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// Runs one firmware command: `data` to the firmware, the answer's
    /// buffer into `fw.buf`. Returns the completed descriptor and the
    /// answer's length; a command the firmware failed is `Err`.
    fn command(&self, fw: &mut Firmware, desc: Desc, data: &[u8]) -> Result<(Desc, usize)> {
        if !fw.up {
            return Err(ENODEV);
        }
        let Firmware { aq, buf, .. } = fw;
        let (done, n) = aq.command(&self.bar, desc, data, buf)?;
        if done.failed() {
            return Err(aq_error(done.retval));
        }
        Ok((done, n))
    }

    /// Datasheet 7.2.1.3 "PF reset", as Linux's `i40e_pf_reset`: wait for a
    /// global reset to end (`GLGEN_RSTAT.DEVSTATE`) and the NVM's
    /// configuration to be loaded (`GLNVM_ULD`), then reset the PF
    /// (`PFGEN_CTRL.PFSWR`) and wait until the bit clears.
    fn pf_reset(&self) -> Result {
        let ms = Delta::from_millis;
        // GRSTDEL is in 100 ms units; wait that long and a bit more.
        let grstdel = self.io(|b| b.read(GLGEN_RSTCTL).grstdel().get())?;
        let global = ms(i64::from(grstdel) * 100 + 1000);
        poll_until(|| self.io(|b| b.read(GLGEN_RSTAT).devstate().get()), |s| *s == 0, ms(10), global)
            .inspect_err(|_| dev_err!(self.pdev, "a global reset did not end (GLGEN_RSTAT)\n"))?;
        poll_until(
            || self.io(|b| b.read(GLNVM_ULD)),
            |u| u.conf_core_done().into_bool() && u.conf_global_done().into_bool(),
            ms(10),
            RESET_TIMEOUT,
        )
        .inspect_err(|_| dev_err!(self.pdev, "the NVM configuration did not load (GLNVM_ULD)\n"))?;
        self.io(|b| b.update(PFGEN_CTRL, |r| r.with_pfswr(true)))?;
        poll_until(|| self.io(|b| b.read(PFGEN_CTRL).pfswr().into_bool()), |on| !*on, ms(1), RESET_TIMEOUT)
            .inspect_err(|_| dev_err!(self.pdev, "the PF reset did not end (PFGEN_CTRL.PFSWR)\n"))?;
        Ok(())
    }

    /// Masks the PF's interrupts: hpcap polls.
    fn mask_interrupts(&self) {
        let _ = self.io(|b| {
            b.write_reg(PFINT_ICR0_ENA::zeroed());
            b.write_reg(PFINT_DYN_CTL0::zeroed());
            b.write(QINT_RQCTL::at(QUEUE), QINT_RQCTL::zeroed());
        });
    }

    /// Get version (7.10.6.1): the firmware's admin-queue API must be 1.x.
    fn check_version(&self, fw: &mut Firmware) -> Result<u16> {
        let (d, _) = self
            .command(fw, Desc::command(opc::GET_VERSION), &[])
            .inspect_err(|e| dev_err!(self.pdev, "the firmware does not answer on the admin queue: {}\n", Errno(*e)))?;
        let p = d.params();
        let (fw_major, fw_minor, api_major, api_minor) = (le16(&p, 8), le16(&p, 10), le16(&p, 12), le16(&p, 14));
        dev_info!(self.pdev, "firmware {}.{}, admin queue API {}.{}\n", fw_major, fw_minor, api_major, api_minor);
        if api_major != API_MAJOR {
            dev_err!(
                self.pdev,
                "the firmware's admin queue API {}.{} is not supported (hpcap speaks {}.x); update the NVM or hpcap\n",
                api_major,
                api_minor,
                API_MAJOR
            );
            return Err(EOPNOTSUPP);
        }
        Ok(api_minor)
    }

    /// List function capabilities (7.10.8): the largest frame and the
    /// number of LAN RX queues the firmware gave this PF.
    fn capabilities(&self, fw: &mut Firmware) -> Result<(u32, u32)> {
        // CAST: BUF_SIZE is 4 KiB.
        let desc = Desc::command(opc::LIST_FUNC_CAPS).with_buffer_len(BUF_SIZE as u16, false);
        let (d, n) = self
            .command(fw, desc, &[])
            .inspect_err(|e| dev_err!(self.pdev, "the firmware did not list the function's capabilities: {}\n", Errno(*e)))?;
        let count = usize::try_from(le32(&d.params(), 4))?;
        let (mut max_frame, mut rxq) = (DEFAULT_MAX_FRAME, 0);
        for i in 0..count.min(n / 32) {
            let e = fw.buf.get(i * 32..i * 32 + 32).ok_or(EPROTO)?;
            match le16(e, 0) {
                CAP_MAX_MTU => max_frame = le32(e, 4),
                CAP_RXQ => rxq = le32(e, 4),
                _ => {}
            }
        }
        if rxq == 0 {
            dev_err!(self.pdev, "the firmware gave this PF no LAN RX queue\n");
            return Err(ENODEV);
        }
        Ok((max_frame, rxq))
    }

    /// Get switch configuration (7.10.9.1): the SEID of the PF's VSI.
    fn find_vsi(&self, fw: &mut Firmware) -> Result<u16> {
        // CAST: BUF_SIZE is 4 KiB.
        let desc = Desc::command(opc::GET_SWITCH_CONFIG).with_buffer_len(BUF_SIZE as u16, false);
        let (_, n) = self
            .command(fw, desc, &[])
            .inspect_err(|e| dev_err!(self.pdev, "the firmware did not give its switch configuration: {}\n", Errno(*e)))?;
        // Header: num_reported (u16), num_total (u16), 12 reserved; then
        // 16-byte elements: type (u8), revision, seid, uplink, downlink.
        let reported = usize::from(le16(&fw.buf, 0));
        for i in 0..reported {
            let at = 16 + 16 * i;
            if at + 16 > n {
                break;
            }
            if fw.buf.get(at) == Some(&SW_ELEM_TYPE_VSI) {
                return Ok(le16(&fw.buf, at + 2));
            }
        }
        dev_err!(self.pdev, "the switch configuration has no VSI for this PF\n");
        Err(ENODEV)
    }

    /// Update VSI parameters (7.10.9.5), VLAN section only: tags stay in
    /// the frame (no stripping), tagged and untagged frames are accepted.
    fn vlan_stripping_off(&self, fw: &mut Firmware) -> Result {
        let mut props = [0u8; VSI_PROPS_LEN];
        props[0..2].copy_from_slice(&VSI_PROP_VLAN_VALID.to_le_bytes());
        props[12] = PVLAN_MODE_ALL_EMOD_NOTHING;
        let mut p = [0u8; 16];
        p[0..2].copy_from_slice(&self.vsi_seid.to_le_bytes());
        // CAST: 128 bytes.
        let desc = Desc::command(opc::UPDATE_VSI).with_params(&p).with_buffer_len(VSI_PROPS_LEN as u16, true);
        self.command(fw, desc, &props)
            .inspect_err(|e| dev_err!(self.pdev, "the firmware refused to turn VLAN stripping off: {}\n", Errno(*e)))?;
        Ok(())
    }

    /// Set VSI promiscuous modes (7.10.9.8).
    fn promiscuous(&self, fw: &mut Firmware, on: bool) -> Result {
        let mut flags = PROMISC_UNICAST | PROMISC_MULTICAST | PROMISC_BROADCAST;
        if self.api_minor >= 5 {
            flags |= PROMISC_RX_ONLY;
        }
        let mut p = [0u8; 16];
        p[0..2].copy_from_slice(&(if on { flags } else { PROMISC_BROADCAST }).to_le_bytes());
        p[2..4].copy_from_slice(&flags.to_le_bytes());
        p[4..6].copy_from_slice(&(self.vsi_seid | SEID_VALID).to_le_bytes());
        self.command(fw, Desc::command(opc::SET_VSI_PROMISC).with_params(&p), &[])?;
        Ok(())
    }

    /// Get link status (7.10.10.5).
    fn link(&self, fw: &mut Firmware) -> Result<Link> {
        let (d, _) = self.command(fw, Desc::command(opc::GET_LINK_STATUS), &[])?;
        let p = d.params();
        let up = p.get(4).is_some_and(|i| i & LINK_UP != 0);
        // `link_speed` (`I40E_LINK_SPEED_*`).
        let mbps = match p.get(3).copied().unwrap_or(0) {
            0x02 => 100,
            0x04 => 1000,
            0x08 => 10_000,
            0x10 => 40_000,
            0x20 => 20_000,
            0x40 => 25_000,
            _ => 0,
        };
        Ok(Link { up, mbps: if up { mbps } else { 0 } })
    }

    /// Datasheet 7.9.2 "HMC initialization" for one LAN TX and one LAN RX
    /// queue context, in one direct segment backed by one page: TX objects
    /// at 0, RX objects at the next 512-byte boundary, no FCoE objects.
    /// Returns the RX objects' offset.
    fn setup_hmc(&self) -> Result<usize> {
        let (tx_sz, rx_sz) = self.io(|b| {
            (b.read(GLHMC_LANTXOBJSZ).pmlantxobjsz().get(), b.read(GLHMC_LANRXOBJSZ).pmlanrxobjsz().get())
        })?;
        let (tx_len, rx_len) = (1usize << tx_sz, 1usize << rx_sz);
        let rx_base = tx_len.next_multiple_of(512);
        if rx_len < RX_CONTEXT_LEN || rx_base + rx_len > self.hmc.size() {
            dev_err!(self.pdev, "unexpected HMC object sizes (TX 2^{}, RX 2^{} bytes)\n", tx_sz, rx_sz);
            return Err(ENODEV);
        }
        let dma = self.hmc.dma_address();
        let i = self.pf_id;
        self.io(|b| -> Result {
            // CAST: 512-byte units of offsets below one page.
            b.write(GLHMC_LANTXBASE::try_at(i).ok_or(EINVAL)?, GLHMC_LANTXBASE::zeroed());
            b.write(GLHMC_LANTXCNT::try_at(i).ok_or(EINVAL)?, GLHMC_LANTXCNT::zeroed().try_with_fpmlantxcnt(1u32)?);
            b.write(
                GLHMC_LANRXBASE::try_at(i).ok_or(EINVAL)?,
                GLHMC_LANRXBASE::zeroed().try_with_fpmlanrxbase((rx_base / 512) as u32)?,
            );
            b.write(GLHMC_LANRXCNT::try_at(i).ok_or(EINVAL)?, GLHMC_LANRXCNT::zeroed().try_with_fpmlanrxcnt(1u32)?);
            b.write(GLHMC_FCOEDDPCNT::try_at(i).ok_or(EINVAL)?, GLHMC_FCOEDDPCNT::zeroed());
            b.write(GLHMC_FCOEFCNT::try_at(i).ok_or(EINVAL)?, GLHMC_FCOEFCNT::zeroed());
            // Segment descriptor 0: valid, direct, one 4 KiB backing page.
            // CAST: the halves of the bus address.
            b.write_reg(PFHMC_SDDATAHIGH::zeroed().with_pmsddatahigh((dma >> 32) as u32));
            b.write_reg(
                PFHMC_SDDATALOW::zeroed()
                    .with_pmsdvalid(true)
                    .with_pmsdtype(true)
                    .try_with_pmsdbpcount(1u32)?
                    .try_with_pmsddatalow(((dma & 0xFFFF_FFFF) >> 12) as u32)?,
            );
            b.write_reg(PFHMC_SDCMD::zeroed().with_pmsdwr(true));
            Ok(())
        })??;
        Ok(rx_base)
    }

    /// Invalidates HMC segment 0: the device no longer uses the page.
    fn release_hmc(&self) {
        let _ = self.io(|b| {
            b.write_reg(PFHMC_SDDATAHIGH::zeroed());
            b.write_reg(PFHMC_SDDATALOW::zeroed());
            b.write_reg(PFHMC_SDCMD::zeroed().with_pmsdwr(true));
        });
    }

    /// Requests the RX queue on or off (`QRX_ENA.QENA_REQ`) and waits until
    /// `QENA_STAT` follows (datasheet 8.3.3.1.1 "Enabling and disabling a
    /// receive queue").
    fn control_queue(&self, on: bool) -> Result {
        let ms = Delta::from_millis;
        let read = || self.io(|b| b.read(QRX_ENA::at(QUEUE)));
        // A change still in flight finishes first.
        poll_until(read, |r| r.qena_req().into_bool() == r.qena_stat().into_bool(), ms(1), QUEUE_TIMEOUT)?;
        self.io(|b| b.update(QRX_ENA::at(QUEUE), |r| r.with_qena_req(on)))?;
        poll_until(read, |r| r.qena_stat().into_bool() == on, ms(1), QUEUE_TIMEOUT).inspect_err(|_| {
            dev_err!(self.pdev, "the RX queue did not {} (QRX_ENA)\n", if on { "start" } else { "stop" })
        })?;
        Ok(())
    }

    /// The port's raw counters: UPRC, MPRC, BPRC (48 bits), RDPC (32).
    fn port_counters(&self) -> Result<[u64; 4]> {
        let p = self.port;
        self.io(|b| -> Result<[u64; 4]> {
            let c48 = |lo: u32, hi: u32| u64::from(hi) << 32 | u64::from(lo);
            Ok([
                c48(
                    b.read(GLPRT_UPRCL::try_at(p).ok_or(EINVAL)?).count().get(),
                    b.read(GLPRT_UPRCH::try_at(p).ok_or(EINVAL)?).count().get(),
                ),
                c48(
                    b.read(GLPRT_MPRCL::try_at(p).ok_or(EINVAL)?).count().get(),
                    b.read(GLPRT_MPRCH::try_at(p).ok_or(EINVAL)?).count().get(),
                ),
                c48(
                    b.read(GLPRT_BPRCL::try_at(p).ok_or(EINVAL)?).count().get(),
                    b.read(GLPRT_BPRCH::try_at(p).ok_or(EINVAL)?).count().get(),
                ),
                u64::from(b.read(GLPRT_RDPC::try_at(p).ok_or(EINVAL)?).count().get()),
            ])
        })?
    }
}

impl<F: RxFormat + 'static> Nic for I40e<F> {
    type Format = F;

    /// Takes over the PF (the steps in the file's documentation).
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let mut buf = KVec::with_capacity(BUF_SIZE, GFP_KERNEL)?;
        buf.resize(BUF_SIZE, 0, GFP_KERNEL)?;
        let fw = KBox::pin_init(
            new_mutex!(Firmware {
                aq: AdminQueue::new(pdev.as_ref(), &PF_REGS)?,
                up: false,
                buf,
                last: [0; 4],
                received: 0,
                missed: 0,
            }),
            GFP_KERNEL,
        )?;
        let hmc = Coherent::<u8>::zeroed_slice(pdev.as_ref(), 4096, GFP_KERNEL)?;
        let mut pf = Self {
            pdev: pdev.into(),
            bar,
            fw,
            hmc,
            rx_base: 0,
            pf_id: 0,
            port: 0,
            vsi_seid: 0,
            api_minor: 0,
            format: PhantomData,
        };
        // 7.2.1.3: PF reset; interrupts masked (hpcap polls).
        pf.pf_reset()?;
        pf.mask_interrupts();
        // The PF's number (HMC registers are per function) and port.
        let (rid, ari, port) = pf.io(|b| {
            (
                b.read(PF_FUNC_RID).function_number().get(),
                b.read(GLPCI_CAPSUP).ari_en().into_bool(),
                b.read(PFGEN_PORTNUM).port_num().get(),
            )
        })?;
        pf.pf_id = usize::try_from(if ari { rid } else { rid & 0x7 })?;
        pf.port = usize::try_from(port)?;
        let (caps, mac) = {
            let mut guard = pf.fw.lock();
            let fw = &mut *guard;
            // 7.10.3: admin queue initialization.
            fw.aq.enable(&pf.bar)
                .inspect_err(|_| dev_err!(pf.pdev, "the admin queue registers do not read back (PF_ATQBAL)\n"))?;
            fw.up = true;
            pf.api_minor = pf.check_version(fw)?;
            // Leave PXE mode (the boot ROM's receive setup), as Linux does
            // at probe; a firmware that is not in PXE mode refuses (EEXIST).
            let mut p = [0u8; 16];
            p[0] = 0x2; // rx_cnt
            if pf.command(fw, Desc::command(opc::CLEAR_PXE_MODE).with_params(&p), &[]).is_ok() {
                pf.io(|b| b.write_reg(GLLAN_RCTL_0::zeroed().with_pxe_mode(true)))?;
            }
            let (max_frame, rxq) = pf.capabilities(fw)?;
            // The LAN and port MACs (24 bytes; the LAN MAC first).
            let desc = Desc::command(opc::MAC_ADDRESS_READ).with_buffer_len(24, false);
            let (_, n) = pf
                .command(fw, desc, &[])
                .inspect_err(|e| dev_err!(pf.pdev, "the firmware did not give the MAC address: {}\n", Errno(*e)))?;
            let mut mac = [0u8; 6];
            if let Some(m) = fw.buf.get(..6).filter(|_| n >= 6) {
                mac.copy_from_slice(m);
            }
            pf.vsi_seid = pf.find_vsi(fw)?;
            pf.vlan_stripping_off(fw)?;
            dev_info!(
                pf.pdev,
                "PF {} port {}: VSI {}, {} RX queue(s), largest frame {} bytes\n",
                pf.pf_id,
                pf.port,
                pf.vsi_seid,
                rxq,
                max_frame
            );
            let caps = Caps {
                ring: RingLimits {
                    buf_max: F::MAX_BUFFER,
                    ..RING
                },
                max_frame: max_frame.saturating_sub(FCS_LEN).max(1518),
                // The VSI leaves tags in the frame; a tag a descriptor
                // still reports (L2TAG1P) was stripped and is put back.
                vlan_stripped: true,
                counters: NIC_RECEIVED | NIC_MISSED,
            };
            (caps, mac)
        };
        pf.rx_base = pf.setup_hmc()?;
        dev_info!(
            pf.pdev,
            "MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5]
        );
        Ok((pf, caps))
    }

    /// Datasheet 8.3.3.1 "Receive queue configuration": the queue off, its
    /// context written into the HMC, the tail at 0, the queue requested on;
    /// then the VSI promiscuous and the counters' starting point.
    fn start_rx(&self, ring: &RingConfig) -> Result {
        self.control_queue(false)?;
        let ctx = RxQueueContext {
            base: ring.dma,
            qlen: u16::try_from(ring.count)?,
            dbuff: ring.buf_size,
            dsize32: F::WORDS == 4,
            crcstrip: true,
            // As Linux: L2TAG1 is the outer tag; no tag is shown (none is
            // stripped).
            l2tsel: true,
            showiv: false,
            rxmax: u16::try_from(ring.max_frame + FCS_LEN)?,
            prefena: true,
            lrxqthresh: 1,
        }
        .encode()
        .ok_or(EINVAL)?;
        let at = self.rx_base + QUEUE * RX_CONTEXT_LEN;
        if at + RX_CONTEXT_LEN > self.hmc.size() {
            return Err(EINVAL);
        }
        for (i, byte) in ctx.iter().enumerate() {
            // SAFETY: `at + i < self.hmc.size()` (checked above); the
            // device reads the context only when the queue is requested on,
            // below (the register write orders these stores before it).
            unsafe { self.hmc.as_mut_ptr().cast::<u8>().add(at + i).write_volatile(*byte) };
        }
        self.io(|b| b.write(QRX_TAIL::at(QUEUE), QRX_TAIL::zeroed()))?;
        self.control_queue(true)?;
        let mut fw = self.fw.lock();
        self.promiscuous(&mut fw, true)
            .inspect_err(|e| dev_err!(self.pdev, "the firmware refused promiscuous mode: {}\n", Errno(*e)))?;
        fw.last = self.port_counters()?;
        fw.received = 0;
        fw.missed = 0;
        Ok(())
    }

    /// Requests the queue off and waits for `QENA_STAT` to clear: the
    /// device no longer writes into the ring or its buffers.
    fn stop_rx(&self) {
        if self.control_queue(false).is_err() {
            // A PF reset stops every queue of the PF.
            dev_warn!(self.pdev, "resetting the PF to stop its receive queue\n");
            let _ = self.pf_reset();
        }
    }

    fn write_tail(&self, tail: u32) {
        let _ = self.io(|b| {
            if let Ok(r) = QRX_TAIL::zeroed().try_with_tail(tail) {
                b.write(QRX_TAIL::at(QUEUE), r);
            }
        });
    }

    /// Link from the firmware; frames received (unicast + multicast +
    /// broadcast) and discarded for lack of a descriptor (`GLPRT_RDPC`)
    /// from the port's counters, added up across their wraps.
    fn service(&self) -> Status {
        let mut fw = self.fw.lock();
        let link = self.link(&mut fw).unwrap_or_default();
        if let Ok(now) = self.port_counters() {
            let d = |i: usize, bits| counter_delta(fw.last[i], now[i], bits);
            let rx = d(0, 48) + d(1, 48) + d(2, 48);
            let missed = d(3, 32);
            fw.received = fw.received.wrapping_add(rx);
            fw.missed = fw.missed.wrapping_add(missed);
            fw.last = now;
        }
        Status {
            link,
            counters: NicCounters {
                received: fw.received,
                missed: fw.missed,
                valid: NIC_RECEIVED | NIC_MISSED,
            },
            reset: false,
            // start_rx fails unless the firmware set the VSI promiscuous.
            promisc: abi::PROMISC_ALL,
        }
    }
}

impl<F> Drop for I40e<F> {
    /// Hands the port back for the next driver (Linux's i40e resets the PF
    /// at probe): promiscuous mode off, the HMC segment invalidated before
    /// its page is freed, the admin queue shut down (7.10.3.2) and
    /// disabled. The receive queue was stopped by its owner before.
    fn drop(&mut self) {
        self.mask_interrupts();
        let mut fw = self.fw.lock();
        let _ = self.promiscuous(&mut fw, false);
        // INVARIANT: the device no longer uses the HMC page.
        self.release_hmc();
        let d = Desc::command(opc::QUEUE_SHUTDOWN);
        let mut p = [0u8; 16];
        p[0..4].copy_from_slice(&DRIVER_UNLOADING.to_le_bytes());
        let _ = self.command(&mut fw, d.with_params(&p), &[]);
        fw.aq.disable(&self.bar);
        fw.up = false;
    }
}
