// SPDX-License-Identifier: GPL-2.0

//! Intel 82576 virtual function (igbvf-style), one RX queue, polled.
//!
//! The VF owns only its queue registers; everything else (reset completion,
//! MAC address, multicast promiscuous mode) is asked of the PF driver through
//! the PF/VF mailbox (82576 datasheet 7.8.2.9), with the message types the
//! Linux igb PF driver serves. A VF cannot be made unicast-promiscuous by an
//! igb PF: it receives frames addressed to its own MAC, broadcast and (with
//! the request below) all multicast.

use super::{
    Errno,
    e82576_queue as queue,
    vf_mailbox::{
        Layout,
        Mailbox, //
    },
    with_bar,
    Backend,
    Caps,
    Nic,
    RingConfig,
    Status, //
};
use crate::hpcap_core::{
    abi,
    desc::IgbAdv,
    stats::{
        NicCounters,
        NIC_RECEIVED, //
    },
    vfmbx::{
        msg::{
            RESET as VF_RESET,
            SET_LPE as VF_SET_LPE, //
        },
        mac_from_words,
        MSGINFO_SHIFT,
        WORDS, //
    }, //
};
use core::sync::atomic::{
    AtomicU32,
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
    sync::aref::ARef,
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// The backend's entry in the device table.
pub(crate) static BACKEND: Backend = Backend {
    name: "igbvf",
    model: "82576 VF",
    abi_kind: abi::NIC_IGBVF,
    start: crate::capture::start::<IgbVf>,
};

/// Bytes of the VF's BAR0.
pub(crate) const BAR0_LEN: usize = 0x4000;

type Bar0 = pci::DevresBar<BAR0_LEN>;

register! {
    /// VF Device Control.
    pub(crate) VTCTRL(u32) @ 0x0000 {
        /// VF reset (self-clearing).
        26:26 rst;
    }

    /// VF Good Packets Received Count (8.28): counts up and wraps, not
    /// cleared on read.
    pub(crate) VFGPRC(u32) @ 0x0F10 {
        /// Frames received without error.
        31:0 count;
    }

    /// VF Extended Interrupt Mask Clear.
    pub(crate) VTEIMC(u32) @ 0x1528 {
        /// Mask bits to clear.
        31:0 mask;
    }
}

/// The mailbox: V2PMAILBOX0 and its buffer VMBMEM (82576 datasheet 8.28).
const MAILBOX: Layout = Layout {
    ctl: 0x0C40,
    mem: 0x0800,
};

/// igb's own message (igb `e1000_mbx.h`): promiscuous modes.
const VF_SET_PROMISC: u32 = 0x06;
/// VF_SET_PROMISC's information field: multicast promiscuous.
const VF_SET_PROMISC_MULTICAST: u32 = 0x02 << MSGINFO_SHIFT;
/// Longest frame the igb PF lets a VF receive (plus FCS and one tag).
const MAX_FRAME: u32 = 9216;
/// Without a long-packet grant: a standard tagged Ethernet frame.
const STD_FRAME: u32 = 1518;

/// What the 82576 VF can do with its queue, before the PF's answers.
const CAPS: Caps = Caps {
    ring: queue::RING,
    max_frame: MAX_FRAME,
    // The host's PF sets VMOLR.STRVLAN on this VF's pool when it gives the
    // VF a port VLAN (or the VF joins one); the VF cannot see that register,
    // so VP means "stripped", as Linux's igbvf assumes too.
    vlan_stripped: true,
    // The VF has a good-packets counter but no missed counter (the PF
    // counts its queue's drops).
    counters: NIC_RECEIVED,
};

/// An 82576 VF driven for capture.
pub(crate) struct IgbVf {
    pdev: ARef<pci::Device>,
    bar: Bar0,
    mbx: Mailbox,
    mac: [u8; 6],
    /// VFGPRC at `start_rx`, and the running total since.
    rx_last: AtomicU32,
    received: AtomicU64,
    /// What the PF granted (`abi::PROMISC_MULTICAST` or `PROMISC_REFUSED`).
    promisc: u32,
}

impl IgbVf {
    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// Sends `msg` to the PF and returns its reply.
    fn mbx_call(&self, msg: &[u32]) -> Result<[u32; WORDS]> {
        self.mbx.call(&self.pdev, &self.bar, msg)
    }

    /// VF reset, wait for the PF's reset-done, then the reset handshake that
    /// returns our MAC address.
    fn reset(&mut self) -> Result {
        self.io(|b| {
            b.write_reg(VTEIMC::zeroed().with_mask(u32::MAX));
            b.write_reg(VTCTRL::zeroed().with_rst(true));
        })?;
        fsleep(Delta::from_millis(10));
        // The mailbox is unusable while the PF's reset indications (RSTI,
        // and the read-to-clear RSTD) are asserted: wait until a read shows
        // neither, then greet the PF.
        self.mbx
            .await_reset_done(&self.bar, Delta::from_millis(1000))
            .inspect_err(|_| {
                dev_err!(self.pdev, "the PF did not complete the VF reset; is the PF interface up?\n")
            })?;
        let reply = self
            .mbx_call(&[VF_RESET])
            .inspect_err(|e| dev_err!(self.pdev, "VF reset message to the PF failed: {}\n", Errno(*e)))?;
        self.mac = mac_from_words(reply[1], reply[2]);
        dev_info!(
            self.pdev,
            "VF MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
            self.mac[0],
            self.mac[1],
            self.mac[2],
            self.mac[3],
            self.mac[4],
            self.mac[5]
        );
        Ok(())
    }
}

impl Nic for IgbVf {
    type Format = IgbAdv;

    /// Takes over the VF: reset, PF handshake, then asks the PF for
    /// multicast promiscuous mode and long frames; the caps say what the PF
    /// granted.
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let mbx = Mailbox::new(MAILBOX)?;
        let mut vf = Self {
            pdev: pdev.into(),
            bar,
            mbx,
            mac: [0; 6],
            rx_last: AtomicU32::new(0),
            received: AtomicU64::new(0),
            promisc: abi::PROMISC_MULTICAST,
        };
        vf.reset()?;
        if let Err(e) = vf.mbx_call(&[VF_SET_PROMISC | VF_SET_PROMISC_MULTICAST]) {
            dev_warn!(pdev, "the PF refused multicast promiscuous mode: {}\n", Errno(e));
            vf.promisc = abi::PROMISC_REFUSED;
        }
        let mut caps = CAPS;
        // Frame length as the PF counts it: plus FCS and one VLAN tag.
        if let Err(e) = vf.mbx_call(&[VF_SET_LPE, MAX_FRAME + 8]) {
            dev_warn!(pdev, "the PF refused frames of {} bytes ({}); capturing up to {}\n", MAX_FRAME, Errno(e), STD_FRAME);
            caps.max_frame = STD_FRAME;
        }
        Ok((vf, caps))
    }

    fn start_rx(&self, ring: &RingConfig) -> Result {
        queue::start(&self.bar, ring)?;
        let now = self.io(|b| b.read(VFGPRC).count().get()).unwrap_or(0);
        self.rx_last.store(now, Ordering::Relaxed);
        self.received.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop_rx(&self) {
        queue::stop(&self.bar);
    }

    fn write_tail(&self, tail: u32) {
        queue::write_tail(&self.bar, tail);
    }

    fn service(&self) -> Status {
        // VFGPRC wraps: add the difference since the last read; nothing
        // once the function reads all ones (gone, see `queue::present`).
        let now = self.io(|b| b.read(VFGPRC).count().get());
        if let Some(now) = now.ok().filter(|_| queue::present(&self.bar)) {
            let last = self.rx_last.swap(now, Ordering::Relaxed);
            self.received
                .fetch_add(u64::from(now.wrapping_sub(last)), Ordering::Relaxed);
        }
        Status {
            link: queue::link(&self.bar),
            counters: NicCounters {
                received: self.received.load(Ordering::Relaxed),
                missed: 0,
                valid: CAPS.counters,
            },
            reset: false,
            promisc: self.promisc,
        }
    }
}

impl Drop for IgbVf {
    /// Masks the VF's interrupts; the receive queue was stopped by its
    /// owner before.
    fn drop(&mut self) {
        let _ = self.io(|b| b.write_reg(VTEIMC::zeroed().with_mask(u32::MAX)));
    }
}
