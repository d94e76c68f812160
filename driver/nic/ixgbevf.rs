// SPDX-License-Identifier: GPL-2.0

//! Intel 82599 virtual function (ixgbevf-style), one RX queue, polled.
//!
//! The VF owns only its queue and interrupt registers; the reset handshake
//! (which returns the MAC the host assigned), the mailbox API version, the
//! receive mode and long frames are asked of the PF driver through the
//! PF/VF mailbox (82599 datasheet 7.9.2.2), with the messages Linux's ixgbe
//! PF serves. An ixgbe PF never makes an 82599 VF unicast-promiscuous: the
//! VF receives frames for its own MAC, broadcast and multicast (all of it
//! only when the host trusts the VF).
//!
//! VLAN tags stay in the frames (`VFRXDCTL.VME` off), so a port VLAN's tag
//! is stored as it was on the wire: there is nothing to put back, which
//! matters because Linux's PF hides a stripped port VLAN tag from the
//! descriptor (`PFQDE.HIDE_VLAN`).

use super::{
    e82599_queue as queue,
    vf_mailbox::{
        Layout,
        Mailbox, //
    },
    with_bar,
    Backend,
    Caps,
    Errno,
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
        NIC_RECEIVED, //
    },
    vfmbx::{
        ixgbe::{
            api,
            xcast,
            API_NEGOTIATE,
            GET_QUEUES,
            UPDATE_XCAST_MODE, //
        },
        mac_from_words,
        msg::{
            RESET,
            SET_LPE, //
        },
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
    name: "ixgbevf",
    model: "82599 VF",
    abi_kind: abi::NIC_IXGBEVF,
    start: crate::capture::start::<IxgbeVf>,
};

/// Bytes of the VF's BAR0.
pub(crate) const BAR0_LEN: usize = 0x4000;

type Bar0 = pci::DevresBar<BAR0_LEN>;

register! {
    /// VF Control (82599 8.3.5.1.1).
    pub(crate) VFCTRL(u32) @ 0x0000 {
        /// VF software reset (self-clearing).
        26:26 rst;
    }

    /// VF Link Status (8.3.5.1.3).
    pub(crate) VFLINKS(u32) @ 0x0010 {
        /// Link speed: 1 = 100 Mb/s, 2 = 1 Gb/s, 3 = 10 Gb/s.
        29:28 speed;
        /// Link up.
        30:30 up;
    }

    /// VF Extended Interrupt Mask Clear (8.3.5.2.4).
    pub(crate) VTEIMC(u32) @ 0x010C {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// VF Good Packets Received Count (8.3.5.4.1): counts up and wraps,
    /// not cleared on read.
    pub(crate) VFGPRC(u32) @ 0x101C {
        /// Frames received without error.
        31:0 count;
    }
}

/// The mailbox: VFMAILBOX and its buffer VFMBMEM.
const MAILBOX: Layout = Layout {
    ctl: 0x02FC,
    mem: 0x0200,
};

/// Largest frame (with FCS) the ixgbe PF grants (`IXGBE_MAX_JUMBO_FRAME_SIZE`).
const MAX_FRAME_FCS: u32 = 9728;
/// Without a long-packet grant: 1500 bytes of payload, header and FCS.
const STD_FRAME_FCS: u32 = 1518;
/// FCS bytes the PF counts in a frame length.
const FCS: u32 = 4;

/// What the 82599 VF can do with its queue, before the PF's answers.
const CAPS: Caps = Caps {
    ring: queue::RING,
    // One VLAN tag is not counted by the PF's MAXFRS.
    max_frame: MAX_FRAME_FCS - FCS + 4,
    // VME stays off: tags are kept in the frames.
    vlan_stripped: false,
    // The VF has a good-packets counter but no drop counter (the PF's
    // QPRDC counts its queue's drops).
    counters: NIC_RECEIVED,
};

/// An 82599 VF driven for capture.
pub(crate) struct IxgbeVf {
    pdev: ARef<pci::Device>,
    bar: Bar0,
    mbx: Mailbox,
    /// VFGPRC at `start_rx`, and the running total since.
    rx_last: AtomicU32,
    received: AtomicU64,
    /// The receive mode the PF granted (`abi::PROMISC_*`).
    promisc: u32,
}

impl IxgbeVf {
    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    fn mbx_call(&self, msg: &[u32]) -> Result<[u32; WORDS]> {
        self.mbx.call(&self.pdev, &self.bar, msg)
    }

    /// VF reset, then the reset handshake, which returns the MAC the host
    /// assigned (a NACK: none assigned yet).
    fn reset(&self) -> Result<[u8; 6]> {
        self.io(|b| {
            b.write_reg(VTEIMC::zeroed().with_mask(u32::MAX));
            b.write_reg(VFCTRL::zeroed().with_rst(true));
        })?;
        fsleep(Delta::from_millis(10));
        self.mbx
            .await_reset_done(&self.bar, Delta::from_millis(1000))
            .inspect_err(|_| dev_err!(self.pdev, "the PF did not complete the VF reset; is the PF interface up?\n"))?;
        match self.mbx_call(&[RESET]) {
            Ok(r) => Ok(mac_from_words(r[1], r[2])),
            Err(EIO) => {
                dev_warn!(self.pdev, "the PF has assigned this VF no MAC address (ip link set <PF> vf <N> mac M)\n");
                Ok([0; 6])
            }
            Err(e) => {
                dev_err!(self.pdev, "VF reset message to the PF failed: {}\n", Errno(e));
                Err(e)
            }
        }
    }

    /// The newest mailbox API the PF speaks that hpcap needs (1.2 for the
    /// receive modes, 1.1 for the queue count), else 1.0.
    fn negotiate_api(&self) -> u32 {
        for v in [api::V14, api::V13, api::V12, api::V11] {
            if self.mbx_call(&[API_NEGOTIATE, v, 0]).is_ok() {
                return v;
            }
        }
        api::V10
    }
}

impl Nic for IxgbeVf {
    type Format = IxgbeAdv;

    /// Takes over the VF: reset, PF handshake, API, then asks the PF for
    /// the widest receive mode it grants and long frames; the caps say
    /// what was granted.
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let mut vf = Self {
            pdev: pdev.into(),
            bar,
            mbx: Mailbox::new(MAILBOX)?,
            rx_last: AtomicU32::new(0),
            received: AtomicU64::new(0),
            promisc: abi::PROMISC_UNKNOWN,
        };
        let mac = vf.reset()?;
        dev_info!(
            pdev,
            "VF MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5]
        );
        let v = vf.negotiate_api();
        if v >= api::V11 {
            // Word 3: the PF tags and strips for this VF (a port VLAN).
            if let Ok(q) = vf.mbx_call(&[GET_QUEUES, 0, 0, 0, 0]) {
                if q[3] != 0 {
                    dev_info!(pdev, "the PF gives this VF a port VLAN: only its frames arrive, tag kept\n");
                }
            }
        }
        // Unicast promiscuous mode first (granted on newer NICs to a
        // trusted VF), then all multicast.
        let mode = if v >= api::V12 {
            [xcast::PROMISC, xcast::ALLMULTI]
                .iter()
                .find_map(|m| vf.mbx_call(&[UPDATE_XCAST_MODE, *m]).ok().map(|r| r[1]))
        } else {
            None
        };
        vf.promisc = match mode {
            Some(xcast::PROMISC) => abi::PROMISC_ALL,
            Some(xcast::ALLMULTI) => abi::PROMISC_MULTICAST,
            _ => abi::PROMISC_REFUSED,
        };
        match mode {
            Some(xcast::PROMISC) => dev_info!(pdev, "promiscuous mode granted\n"),
            Some(xcast::ALLMULTI) => dev_warn!(
                pdev,
                "the PF grants no unicast promiscuous mode to an 82599 VF: capturing frames for this VF's MAC, \
                 broadcast and all multicast\n"
            ),
            _ => dev_warn!(
                pdev,
                "the PF refused promiscuous mode: capturing only frames for this VF's MAC, broadcast and its \
                 multicast groups; for all multicast, trust the VF on the host (`ip link set <PF> vf <N> trust on`) \
                 and rebind it\n"
            ),
        }
        let mut caps = CAPS;
        if let Err(e) = vf.mbx_call(&[SET_LPE, MAX_FRAME_FCS]) {
            dev_warn!(
                pdev,
                "the PF refused frames of {} bytes ({}); capturing up to {}\n",
                MAX_FRAME_FCS,
                Errno(e),
                STD_FRAME_FCS - FCS
            );
            caps.max_frame = STD_FRAME_FCS - FCS + 4;
        }
        Ok((vf, caps))
    }

    /// Programs queue 0 (advanced one-buffer descriptors, drop when no
    /// descriptor is free, tags kept) and enables it (datasheet 4.6.7).
    fn start_rx(&self, ring: &RingConfig) -> Result {
        // Drop when no descriptor is free: the PF forces that on every VF
        // queue anyway (PFQDE.QDE).
        queue::start(&self.bar, ring, true)?;
        let now = self.io(|b| b.read(VFGPRC).count().get()).unwrap_or(0);
        self.rx_last.store(now, Ordering::Relaxed);
        self.received.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Disables queue 0 and waits (up to 100 ms) until the VF acknowledges:
    /// once `VFRXDCTL.ENABLE` reads 0 the queue writes no more descriptors.
    fn stop_rx(&self) {
        queue::stop(&self.bar);
    }

    fn write_tail(&self, tail: u32) {
        queue::write_tail(&self.bar, tail);
    }

    fn service(&self) -> Status {
        // VFGPRC wraps: add the difference since the last read.
        if let Ok(now) = self.io(|b| b.read(VFGPRC).count().get()) {
            let last = self.rx_last.swap(now, Ordering::Relaxed);
            self.received
                .fetch_add(u64::from(now.wrapping_sub(last)), Ordering::Relaxed);
        }
        let link = self
            .io(|b| {
                let l = b.read(VFLINKS);
                Link {
                    up: l.up().into_bool(),
                    mbps: match l.speed().get() {
                        1 => 100,
                        2 => 1000,
                        _ => 10000,
                    },
                }
            })
            .unwrap_or_default();
        Status {
            link,
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

impl Drop for IxgbeVf {
    /// Masks the VF's interrupts; the receive queue was stopped by its
    /// owner before.
    fn drop(&mut self) {
        let _ = self.io(|b| b.write_reg(VTEIMC::zeroed().with_mask(u32::MAX)));
    }
}
