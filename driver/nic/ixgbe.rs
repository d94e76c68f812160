// SPDX-License-Identifier: GPL-2.0

//! Intel 82599 physical function (ixgbe-style), one RX queue, polled.
//!
//! Register names and bits follow the 82599 datasheet (section numbers in
//! the comments) and Linux's `ixgbe_type.h`. Only queue 0 is used, with
//! RSS, VMDq and the VLAN filter off, unicast and multicast promiscuous;
//! interrupts stay masked (the capture threads poll). The queue's
//! registers are shared with the 82599 VF backend (`e82599_queue`).
//!
//! The link: hpcap does not run ixgbe's PHY and SFP+ module set-up (module
//! identification over I2C, the EEPROM's init sequence into `CORECTL`). It
//! keeps the link mode the NVM loads at reset (`AUTOC`) and restarts
//! auto-negotiation, which brings an SFP+ direct-attach or SR/LR link up on
//! a port whose NVM selects SFI; a port that needs ixgbe's module set-up
//! (or 1 Gb/s modules) is not supported yet.

use super::{
    e82599_queue as queue,
    poll_until,
    with_bar,
    Backend,
    Caps,
    Link,
    Nic,
    RingConfig,
    Status, //
};
use crate::hpcap_core::{
    abi,
    desc::IxgbeAdv,
    stats::{
        NicCounters,
        NIC_MISSED,
        NIC_RECEIVED, //
    }, //
};
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    device::Core,
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// The backend's entry in the device table.
pub(crate) static BACKEND: Backend = Backend {
    name: "ixgbe",
    model: "82599 PF",
    abi_kind: abi::NIC_IXGBE,
    start: crate::capture::start::<Ixgbe>,
};

/// Bytes of BAR0 the backend maps (the whole 128 KiB register space).
pub(crate) const BAR0_LEN: usize = 0x20000;

/// The mapped register space.
type Bar0 = pci::DevresBar<BAR0_LEN>;

register! {
    /// Device Control (8.2.3.1.1).
    pub(crate) CTRL(u32) @ 0x0000 {
        /// Link reset (self-clearing).
        3:3 lnk_rst;
        /// Device reset (self-clearing).
        26:26 rst;
    }

    /// Device Status (8.2.3.1.2): reads all ones only from a gone function.
    pub(crate) STATUS(u32) @ 0x0008 {
        /// Register value.
        31:0 value;
    }

    /// Extended Device Control (8.2.3.1.3).
    pub(crate) CTRL_EXT(u32) @ 0x0018 {
        /// Driver loaded: the host driver owns the device.
        28:28 drv_load;
    }

    /// Extended Interrupt Mask Clear (8.2.3.5.4).
    pub(crate) EIMC(u32) @ 0x0888 {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// Extended Interrupt Mask Clear of vectors 0..31 (8.2.3.5.5).
    pub(crate) EIMC_EX0(u32) @ 0x0AB0 {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// Extended Interrupt Mask Clear of vectors 32..63.
    pub(crate) EIMC_EX1(u32) @ 0x0AB4 {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// Queue Packets Received Drop Count of queue 0, read-to-clear
    /// (8.2.3.23.75): frames dropped for lack of a descriptor (DROP_EN).
    pub(crate) QPRDC0(u32) @ 0x1430 {
        /// Frames dropped.
        31:0 count;
    }

    /// Receive DMA Control (8.2.3.8.8).
    pub(crate) RDRXCTL(u32) @ 0x2F00 {
        /// DMA initialization done (after a reset).
        3:3 dmaidone;
    }

    /// Receive Control (8.2.3.8.10).
    pub(crate) RXCTRL(u32) @ 0x3000 {
        /// Receive enable.
        0:0 rxen;
    }

    /// Missed Packets Count of packet buffer 0, read-to-clear
    /// (8.2.3.23.4): frames the full receive packet buffer could not take.
    pub(crate) RXMPC0(u32) @ 0x3FA0 {
        /// Frames missed.
        31:0 count;
    }

    /// Good Packets Received Count, read-to-clear (8.2.3.23.18).
    pub(crate) GPRC(u32) @ 0x4074 {
        /// Frames received without error.
        31:0 count;
    }

    /// MAC Core Control 0 (8.2.3.22.8).
    pub(crate) HLREG0(u32) @ 0x4240 {
        /// Strip the FCS from received frames.
        1:1 rxcrcstrp;
        /// Accept frames up to MAXFRS.MFS.
        2:2 jumboen;
    }

    /// Max Frame Size (8.2.3.22.13).
    pub(crate) MAXFRS(u32) @ 0x4268 {
        /// Largest frame in bytes, FCS included (one VLAN tag extra).
        31:16 mfs;
    }

    /// Auto-Negotiation Control (8.2.3.22.19).
    pub(crate) AUTOC(u32) @ 0x42A0 {
        /// Restart auto-negotiation (self-clearing).
        12:12 restart_an;
    }

    /// Link Status (8.2.3.22.20).
    pub(crate) LINKS(u32) @ 0x42A4 {
        /// Speed: 1 = 100 Mb/s, 2 = 1 Gb/s, 3 = 10 Gb/s.
        29:28 speed;
        /// Link up.
        30:30 up;
    }

    /// Filter Control (8.2.3.7.1).
    pub(crate) FCTRL(u32) @ 0x5080 {
        /// Multicast promiscuous.
        8:8 mpe;
        /// Unicast promiscuous.
        9:9 upe;
        /// Accept broadcast.
        10:10 bam;
    }

    /// VLAN Control (8.2.3.7.2).
    pub(crate) VLNCTRL(u32) @ 0x5088 {
        /// VLAN Ethernet type (0x8100).
        15:0 vet;
        /// VLAN filter enable.
        30:30 vfe;
    }

    /// Security RX Control (8.2.3.12.1).
    pub(crate) SECRXCTRL(u32) @ 0x8D00 {
        /// Disable the security RX path (while receive is switched).
        1:1 rx_dis;
    }

    /// Security RX Status (8.2.3.12.2).
    pub(crate) SECRXSTAT(u32) @ 0x8D04 {
        /// The security RX path is idle.
        0:0 secrx_rdy;
    }

    /// Multiple Receive Queues Command (8.2.3.7.12): 0 = one queue.
    pub(crate) MRQC(u32) @ 0xEC80 {
        /// Register value.
        31:0 value;
    }

    /// EEPROM/Flash Control (8.2.3.2.1).
    pub(crate) EEC(u32) @ 0x10010 {
        /// The EEPROM auto-read after reset is done.
        9:9 ard;
    }
}

/// Largest frame (with FCS) hpcap asks for (`IXGBE_MAX_JUMBO_FRAME_SIZE`).
const MAX_FRAME_FCS: u32 = 9728;
/// FCS bytes counted in MAXFRS.
const FCS: u32 = 4;

/// What the 82599 PF can do with one queue.
const CAPS: Caps = Caps {
    ring: queue::RING,
    // MAXFRS does not count one VLAN tag.
    max_frame: MAX_FRAME_FCS - FCS + 4,
    // RXDCTL.VME stays clear: tags stay in the frames.
    vlan_stripped: false,
    counters: NIC_RECEIVED | NIC_MISSED,
};

/// An 82599 PF driven for capture.
pub(crate) struct Ixgbe {
    bar: Bar0,
    /// Running totals of the read-to-clear counters since `start_rx`.
    received: AtomicU64,
    missed: AtomicU64,
}

impl Ixgbe {
    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// Masks every interrupt cause (82599 datasheet 4.6.3.1).
    fn mask_interrupts(b: &pci::Bar<'_, BAR0_LEN>) {
        b.write_reg(EIMC::zeroed().with_mask(0x7FFF_FFFFu32));
        b.write_reg(EIMC_EX0::zeroed().with_mask(u32::MAX));
        b.write_reg(EIMC_EX1::zeroed().with_mask(u32::MAX));
    }

    /// 82599 datasheet 4.6.3 (initialization after reset): mask
    /// interrupts, receive off, global reset, wait for the EEPROM auto-read
    /// and the DMA initialization, mask again, take ownership, restart
    /// auto-negotiation in the link mode the NVM loaded.
    fn reset(&self, pdev: &pci::Device<Core<'_>>) -> Result {
        self.io(|b| {
            Self::mask_interrupts(b);
            b.update(RXCTRL, |r| r.with_rxen(false));
            b.update(CTRL, |r| r.with_rst(true).with_lnk_rst(true));
        })?;
        // At least 1 ms before the register space may be touched again.
        fsleep(Delta::from_millis(10));
        let ms = Delta::from_millis;
        poll_until(
            || self.io(|b| b.read(CTRL)),
            |c| !c.rst().into_bool() && !c.lnk_rst().into_bool(),
            ms(1),
            ms(100),
        )
        .inspect_err(|_| dev_err!(pdev, "82599 reset did not complete\n"))?;
        poll_until(|| self.io(|b| b.read(EEC)), |e| e.ard().into_bool(), ms(1), ms(100))
            .inspect_err(|_| dev_err!(pdev, "82599 EEPROM auto-read did not complete\n"))?;
        poll_until(|| self.io(|b| b.read(RDRXCTL)), |r| r.dmaidone().into_bool(), ms(1), ms(100))
            .inspect_err(|_| dev_err!(pdev, "82599 receive DMA initialization did not complete\n"))?;
        self.io(|b| {
            Self::mask_interrupts(b);
            b.update(CTRL_EXT, |r| r.with_drv_load(true));
            b.update(AUTOC, |r| r.with_restart_an(true));
        })?;
        Ok(())
    }

    /// Whether the function still answers: a gone function reads all ones,
    /// which a working 82599 never returns for `STATUS`.
    fn present(&self) -> bool {
        self.io(|b| b.read(STATUS).value().get() != u32::MAX).unwrap_or(false)
    }

    /// Switches receive on or off the way the 82599 errata want it (Linux's
    /// `ixgbe_enable_rx_dma_82599`): the security RX path disabled and
    /// idle while `RXCTRL.RXEN` changes.
    fn set_rx(&self, on: bool) -> Result {
        self.io(|b| b.update(SECRXCTRL, |r| r.with_rx_dis(true)))?;
        // Not fatal when it stays busy (Linux goes on too).
        let _ = poll_until(
            || self.io(|b| b.read(SECRXSTAT)),
            |s| s.secrx_rdy().into_bool(),
            Delta::from_micros(100),
            Delta::from_millis(40),
        );
        self.io(|b| {
            b.update(RXCTRL, |r| r.with_rxen(on));
            b.update(SECRXCTRL, |r| r.with_rx_dis(false));
        })
    }
}

impl Nic for Ixgbe {
    type Format = IxgbeAdv;

    /// Takes over the device: global reset, interrupts masked.
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let nic = Self {
            bar,
            received: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        };
        nic.reset(pdev)?;
        Ok((nic, CAPS))
    }

    /// 82599 datasheet 4.6.7 (receive initialization) for queue 0.
    fn start_rx(&self, ring: &RingConfig) -> Result {
        self.set_rx(false)?;
        self.io(|b| -> Result {
            // One queue: no RSS, no VMDq.
            b.write_reg(MRQC::zeroed());
            // Frames up to max_frame plus FCS (MFS does not count one VLAN
            // tag); the FCS stripped.
            let mfs = (ring.max_frame + FCS).saturating_sub(4).max(1518);
            b.write_reg(MAXFRS::zeroed().try_with_mfs(mfs)?);
            b.update(HLREG0, |r| r.with_rxcrcstrp(true).with_jumboen(true));
            // Everything, unfiltered: unicast and multicast promiscuous,
            // broadcast, no VLAN filter (tags stay in the frames).
            b.update(FCTRL, |r| r.with_upe(true).with_mpe(true).with_bam(true));
            b.update(VLNCTRL, |r| r.with_vfe(false));
            Ok(())
        })??;
        // No DROP_EN: a frame that finds no descriptor waits in the 512 KiB
        // receive packet buffer; what does not fit there is counted in
        // RXMPC.
        queue::start(&self.bar, ring, false)?;
        self.set_rx(true)?;
        // Clear the read-to-clear counters so totals count from now.
        let _ = self.io(|b| (b.read(GPRC), b.read(RXMPC0), b.read(QPRDC0)));
        self.received.store(0, Ordering::Relaxed);
        self.missed.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop_rx(&self) {
        let _ = self.set_rx(false);
        queue::stop(&self.bar);
    }

    fn write_tail(&self, tail: u32) {
        queue::write_tail(&self.bar, tail);
    }

    fn service(&self) -> Status {
        // Frames missed for lack of packet-buffer space (RXMPC) or dropped
        // for lack of a descriptor (QPRDC, only with DROP_EN) are both
        // "missed by the NIC". A vanished function reads all ones, in
        // STATUS and in the counters alike: nothing is added then.
        let (rx, missed) = self
            .io(|b| {
                let rx = b.read(GPRC).count().get();
                let missed = b.read(RXMPC0).count().get() + b.read(QPRDC0).count().get();
                (rx, missed)
            })
            .ok()
            .filter(|_| self.present())
            .unwrap_or((0, 0));
        let add = |total: &AtomicU64, v: u32| total.fetch_add(u64::from(v), Ordering::Relaxed) + u64::from(v);
        let link = self
            .io(|b| {
                let l = b.read(LINKS);
                Link {
                    up: l.up().into_bool(),
                    mbps: match l.speed().get() {
                        1 => 100,
                        2 => 1000,
                        _ => 10000,
                    },
                }
            })
            .ok()
            .filter(|_| self.present())
            .unwrap_or_default();
        Status {
            link,
            counters: NicCounters {
                received: add(&self.received, rx),
                missed: add(&self.missed, missed),
                valid: CAPS.counters,
            },
            reset: false,
            // FCTRL.UPE and MPE (start_rx).
            promisc: abi::PROMISC_ALL,
        }
    }
}

impl Drop for Ixgbe {
    /// Hands the port back: receive off, interrupts masked, DRV_LOAD
    /// cleared (the receive queue was stopped by its owner before).
    fn drop(&mut self) {
        let _ = self.set_rx(false);
        let _ = self.io(|b| {
            Self::mask_interrupts(b);
            b.update(CTRL_EXT, |r| r.with_drv_load(false));
        });
    }
}
