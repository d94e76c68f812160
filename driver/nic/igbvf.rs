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
    common,
    poll_until,
    with_bar,
    Link,
    Nic,
    RingConfig, //
};
use crate::hpcap_core::desc::IgbAdv;
use kernel::{
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*,
    sync::{
        new_mutex,
        Mutex, //
    },
    time::Delta, //
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


    /// VF-to-PF mailbox control (V2PMAILBOX0).
    pub(crate) V2PMAILBOX(u32) @ 0x0C40 {
        /// Request: a message for the PF is in the buffer.
        0:0 req;
        /// Acknowledge a PF message.
        1:1 ack;
        /// VF owns the buffer.
        2:2 vfu;
        /// PF owns the buffer.
        3:3 pfu;
        /// PF wrote a message (read to clear).
        4:4 pfsts;
        /// PF acknowledged our message (read to clear).
        5:5 pfack;
        /// PF reset in progress.
        6:6 rsti;
        /// PF reset done (read to clear).
        7:7 rstd;
    }

    /// VF Extended Interrupt Mask Clear.
    pub(crate) VTEIMC(u32) @ 0x1528 {
        /// Mask bits to clear.
        31:0 mask;
    }







}

/// Mailbox message buffer VMBMEM, 16 dwords.
const VMBMEM: usize = 0x0800;
const MBX_WORDS: usize = 16;

/// Message types understood by the igb PF (igb `e1000_mbx.h`).
const VF_RESET: u32 = 0x01;
const VF_SET_LPE: u32 = 0x05;
const VF_SET_PROMISC: u32 = 0x06;
const VF_SET_PROMISC_MULTICAST: u32 = 0x02 << 16;
const MSGTYPE_ACK: u32 = 0x8000_0000;
const MSGTYPE_NACK: u32 = 0x4000_0000;
/// The low 16 bits of word 0 carry the message type.
const MSG_TYPE_MASK: u32 = 0xFFFF;

/// The PF/VF mailbox. Read-to-clear status bits seen while waiting for one
/// bit are remembered in `seen`, so none is lost.
struct Mailbox {
    seen: u32,
}

/// An 82576 VF driven for capture.
pub(crate) struct IgbVf {
    bar: Bar0,
    mbx: Pin<KBox<Mutex<Mailbox>>>,
    /// VFGPRC-based received count is not needed; the VF has no missed
    /// counter of its own (drops are counted by the PF per queue).
    mac: [u8; 6],
}

impl IgbVf {
    /// Takes over the VF: reset, PF handshake, multicast promiscuous mode.
    pub(crate) fn new(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result<Self> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let mbx = KBox::pin_init(new_mutex!(Mailbox { seen: 0 }), GFP_KERNEL)?;
        let mut vf = Self {
            bar,
            mbx,
            mac: [0; 6],
        };
        vf.reset(pdev)?;
        Ok(vf)
    }

    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// Reads V2PMAILBOX, remembering read-to-clear bits; true if any of
    /// `bits` has been seen (and consumes them).
    fn mbx_check(&self, m: &mut Mailbox, bits: u32) -> Result<bool> {
        let v = self.io(|b| b.read(V2PMAILBOX).into_raw())?;
        m.seen |= v;
        if m.seen & bits != 0 {
            m.seen &= !bits;
            return Ok(true);
        }
        Ok(false)
    }

    fn mbx_wait(&self, m: &mut Mailbox, bits: u32, what: &str) -> Result {
        for _ in 0..2000 {
            if self.mbx_check(m, bits)? {
                return Ok(());
            }
            kernel::time::delay::fsleep(Delta::from_micros(500));
        }
        pr_warn!("igbvf mailbox: no {} from the PF within 1 s\n", what);
        Err(ETIMEDOUT)
    }

    /// Sends `msg` and returns the PF's reply (datasheet 7.8.2.9.2).
    fn mbx_call(&self, msg: &[u32]) -> Result<[u32; MBX_WORDS]> {
        let mut m = self.mbx.lock();
        // Take the buffer: set VFU and read it back (the PF may hold the
        // buffer for a moment; retry for up to 100 ms). The read also
        // returns read-to-clear bits, which must not be lost.
        let mut owned = false;
        for _ in 0..100 {
            let v = self.io(|b| {
                b.write_reg(V2PMAILBOX::zeroed().with_vfu(true));
                b.read(V2PMAILBOX)
            })?;
            m.seen |= v.into_raw();
            if v.vfu().into_bool() {
                owned = true;
                break;
            }
            kernel::time::delay::fsleep(Delta::from_millis(1));
        }
        if !owned {
            let (st, mb) = self.io(|b| (b.read(common::STATUS).into_raw(), b.read(V2PMAILBOX).into_raw()))?;
            pr_warn!("igbvf mailbox: buffer busy (V2PMAILBOX {:#x}, now {:#x}, STATUS {:#x})\n", m.seen, mb, st);
            return Err(EBUSY);
        }
        self.io(|b| -> Result {
            for i in 0..MBX_WORDS {
                let w = msg.get(i).copied().unwrap_or(0);
                b.try_write32(w, VMBMEM + 4 * i)?;
            }
            b.write_reg(V2PMAILBOX::zeroed().with_req(true));
            Ok(())
        })??;
        self.mbx_wait(&mut m, 1 << 5, "acknowledgement")?; // PFACK
        self.mbx_wait(&mut m, 1 << 4, "reply")?; // PFSTS
        self.io(|b| b.write_reg(V2PMAILBOX::zeroed().with_vfu(true)))?;
        let reply = self.io(|b| -> Result<[u32; MBX_WORDS]> {
            let mut r = [0u32; MBX_WORDS];
            for (i, w) in r.iter_mut().enumerate() {
                *w = b.try_read32(VMBMEM + 4 * i)?;
            }
            // Acknowledge the PF's message and release the buffer.
            b.write_reg(V2PMAILBOX::zeroed().with_ack(true));
            Ok(r)
        })??;
        if reply[0] & MSG_TYPE_MASK != msg.first().copied().unwrap_or(0) & MSG_TYPE_MASK {
            return Err(EPROTO);
        }
        if reply[0] & MSGTYPE_NACK != 0 || reply[0] & MSGTYPE_ACK == 0 {
            return Err(EIO);
        }
        Ok(reply)
    }

    /// VF reset, wait for the PF's reset-done, then the reset handshake that
    /// returns our MAC address, and multicast promiscuous mode.
    fn reset(&mut self, pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
        self.io(|b| {
            b.write_reg(VTEIMC::zeroed().with_mask(u32::MAX));
            b.write_reg(VTCTRL::zeroed().with_rst(true));
        })?;
        kernel::time::delay::fsleep(Delta::from_millis(10));
        // The mailbox is unusable while the PF's reset indications (RSTI,
        // and the read-to-clear RSTD) are asserted: wait until a read shows
        // neither, then greet the PF.
        poll_until(
            || self.io(|b| b.read(V2PMAILBOX)),
            |v| !v.rsti().into_bool() && !v.rstd().into_bool(),
            Delta::from_millis(1),
            Delta::from_millis(1000),
        )
        .inspect_err(|_| dev_err!(pdev, "the PF did not complete the VF reset; is the PF interface up?\n"))?;
        self.mbx.lock().seen = 0;
        let reply = self
            .mbx_call(&[VF_RESET])
            .inspect_err(|e| dev_err!(pdev, "VF reset message to the PF failed: {:?}\n", e))?;
        let mac = [reply[1].to_le_bytes(), reply[2].to_le_bytes()];
        self.mac = [mac[0][0], mac[0][1], mac[0][2], mac[0][3], mac[1][0], mac[1][1]];
        dev_info!(
            pdev,
            "VF MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}\n",
            self.mac[0],
            self.mac[1],
            self.mac[2],
            self.mac[3],
            self.mac[4],
            self.mac[5]
        );
        if let Err(e) = self.mbx_call(&[VF_SET_PROMISC | VF_SET_PROMISC_MULTICAST]) {
            dev_warn!(pdev, "the PF refused multicast promiscuous mode: {:?}\n", e);
        }
        Ok(())
    }
}

impl Nic for IgbVf {
    type Format = IgbAdv;
    const ABI_KIND: u32 = crate::hpcap_core::abi::NIC_IGBVF;
    const MODEL: &'static str = "82576 VF";
    const TAIL_ALIGN: u32 = 1;
    const MAX_FRAME: u32 = 9216;
    // The host's PF sets VMOLR.STRVLAN on this VF's pool when it gives the VF
    // a port VLAN (or the VF joins one); the VF cannot see that register, so
    // VP means "stripped", as Linux's igbvf assumes too. (Linux's igb PF sets
    // STRVLAN whenever the VF has a VLAN: a port VLAN, or one the VF joined
    // through the mailbox, which hpcap never asks for.)
    const RX_VLAN_STRIPPED: bool = true;

    fn start_rx(&self, ring: &RingConfig) -> Result {
        // The PF limits VF frame sizes; ask for ours (plus FCS and a tag).
        if let Err(e) = self.mbx_call(&[VF_SET_LPE, ring.max_frame + 8]) {
            pr_warn!("igbvf: the PF refused max frame {}: {:?}\n", ring.max_frame, e);
        }
        common::start(&self.bar, ring)
    }

    fn stop_rx(&self) {
        common::stop(&self.bar);
    }

    fn write_tail(&self, tail: u32) -> Result {
        common::write_tail(&self.bar, tail)
    }

    fn link(&self) -> Link {
        common::link(&self.bar)
    }

    fn missed(&self) -> u64 {
        0
    }
}
