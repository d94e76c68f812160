// SPDX-License-Identifier: GPL-2.0

//! Intel 82576 physical function (igb-style), one RX queue, polled.
//!
//! Register names and bits follow the 82576 datasheet (section numbers in
//! the comments) and the Linux igb driver's `e1000_regs.h`/`e1000_defines.h`.
//! Only queue 0 is used; interrupts stay masked (the capture threads poll).

use super::{
    e82576_queue as queue,
    poll_until,
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
        register::Array,
        Io, //
    },
    pci,
    prelude::*,
    time::Delta, //
};

/// The backend's entry in the device table.
pub(crate) static BACKEND: Backend = Backend {
    name: "igb",
    model: "82576 PF",
    abi_kind: abi::NIC_IGB,
    start: crate::capture::start::<Igb>,
};

/// Bytes of BAR0 the backend maps (the whole 128 KiB register space).
pub(crate) const BAR0_LEN: usize = 0x20000;

/// The mapped register space.
pub(crate) type Bar0 = pci::DevresBar<BAR0_LEN>;

register! {
    /// Device Control (8.2.1).
    pub(crate) CTRL(u32) @ 0x0000 {
        /// Set Link Up.
        6:6 slu;
        /// Device reset (self-clearing).
        26:26 rst;
        /// VLAN mode enable: strip tags (we keep them: off).
        30:30 vme;
    }


    /// EEPROM/Flash Control (8.4.1).
    pub(crate) EECD(u32) @ 0x0010 {
        /// EEPROM auto-read done.
        9:9 auto_rd;
    }

    /// Extended Device Control (8.2.3).
    pub(crate) CTRL_EXT(u32) @ 0x0018 {
        /// Driver loaded: the host driver owns the device.
        28:28 drv_load;
    }

    /// MDI Control, PHY register access (8.2.4).
    pub(crate) MDIC(u32) @ 0x0020 {
        /// Data.
        15:0 data;
        /// PHY register address.
        20:16 regadd;
        /// PHY address.
        25:21 phyadd;
        /// Opcode: 1 = write, 2 = read.
        27:26 op;
        /// Ready (operation complete).
        28:28 ready;
        /// Error.
        30:30 error;
    }

    /// Interrupt Mask Clear (8.8.8).
    pub(crate) IMC(u32) @ 0x00D8 {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// Receive Control (8.10.1).
    pub(crate) RCTL(u32) @ 0x0100 {
        /// Receiver enable.
        1:1 en;
        /// Unicast promiscuous.
        3:3 upe;
        /// Multicast promiscuous.
        4:4 mpe;
        /// Long packet enable.
        5:5 lpe;
        /// Broadcast accept mode.
        15:15 bam;
        /// VLAN filter enable.
        18:18 vfe;
        /// Strip Ethernet CRC.
        26:26 secrc;
    }

    /// Extended Interrupt Mask Clear (8.8.11).
    pub(crate) EIMC(u32) @ 0x1528 {
        /// Mask bits to clear.
        31:0 mask;
    }

    /// Receive Queue Drop Packet Count, read-to-clear (8.10.11): frames
    /// the queue dropped for lack of a descriptor (with `SRRCTL.DROP_EN`).
    pub(crate) RQDPC(u32)[4, stride = 0x100] @ 0x2830 {
        /// Frames dropped.
        31:0 count;
    }

    /// Missed Packets Count, read-to-clear (8.19.4): frames dropped for
    /// lack of receive FIFO space.
    pub(crate) MPC(u32) @ 0x4010 {
        /// Frames missed.
        31:0 count;
    }

    /// Good Packets Received Count, read-to-clear (8.19.29).
    pub(crate) GPRC(u32) @ 0x4074 {
        /// Frames received without error.
        31:0 count;
    }

    /// Receive Checksum Control (8.10.12): offloads off, frames untouched.
    pub(crate) RXCSUM(u32) @ 0x5000 {
        /// Register value.
        31:0 value;
    }

    /// Receive Long Packet Maximum Length (8.10.13).
    pub(crate) RLPML(u32) @ 0x5004 {
        /// Longest accepted frame in bytes, CRC included.
        13:0 rlpml;
    }

    /// Multiple Receive Queues Command (8.10.14): 0 = one queue, no RSS/VMDq.
    pub(crate) MRQC(u32) @ 0x5818 {
        /// Register value.
        31:0 value;
    }
}

/// PHY register 0 (copper control, IEEE 802.3 clause 22).
const PHY_CTRL: u32 = 0;
/// PHY control: auto-negotiation enable (bit 12) and restart (bit 9).
const PHY_CTRL_AUTONEG: u32 = (1 << 12) | (1 << 9);
/// Address of the 82576's internal PHY on MDIO.
const PHY_ADDR: u32 = 1;
/// `MDIC.OP` of a write.
const MDIC_OP_WRITE: u32 = 1;

/// What the 82576 PF can do with one queue.
const CAPS: Caps = Caps {
    ring: queue::RING,
    // 9216-byte jumbo frames need buffers of 10 KiB or more.
    max_frame: 9216,
    // CTRL.VME stays clear: tags stay in the frame.
    vlan_stripped: false,
    counters: NIC_RECEIVED | NIC_MISSED,
};

/// An 82576 PF driven for capture.
pub(crate) struct Igb {
    bar: Bar0,
    /// Running totals of the read-to-clear counters since `start_rx`.
    received: AtomicU64,
    missed: AtomicU64,
}

impl Igb {
    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// 82576 datasheet 4.5 (software initialization): mask interrupts,
    /// reset, wait for the EEPROM auto-read, mask again, take ownership.
    fn reset(&self, pdev: &pci::Device<Core<'_>>) -> Result {
        self.io(|b| {
            b.write_reg(IMC::zeroed().with_mask(u32::MAX));
            b.write_reg(EIMC::zeroed().with_mask(u32::MAX));
            b.update(RCTL, |r| r.with_en(false));
            b.update(CTRL, |r| r.with_rst(true));
        })?;
        // The reset takes about 1 ms; the register space must not be
        // touched before. RST self-clears.
        kernel::time::delay::fsleep(Delta::from_millis(10));
        let ms = Delta::from_millis;
        poll_until(|| self.io(|b| b.read(CTRL)), |c| !c.rst().into_bool(), ms(1), ms(100))
            .inspect_err(|_| dev_err!(pdev, "82576 reset did not complete\n"))?;
        // Without an EEPROM the auto-read never completes; like igb, go on.
        if poll_until(|| self.io(|b| b.read(EECD)), |e| e.auto_rd().into_bool(), ms(1), ms(10)).is_err() {
            dev_dbg!(pdev, "EEPROM auto-read did not complete\n");
        }
        self.io(|b| {
            b.write_reg(IMC::zeroed().with_mask(u32::MAX));
            b.write_reg(EIMC::zeroed().with_mask(u32::MAX));
            b.update(CTRL_EXT, |r| r.with_drv_load(true));
            // Keep VLAN tags in the frames; force the MAC link up.
            b.update(CTRL, |r| r.with_vme(false).with_slu(true));
        })?;
        if let Err(e) = self.phy_write(PHY_CTRL, PHY_CTRL_AUTONEG) {
            // Not fatal: some setups (e.g. fixed links) never answer.
            dev_warn!(pdev, "PHY auto-negotiation restart failed: {}\n", super::Errno(e));
        }
        Ok(())
    }

    /// Writes a PHY register through MDIC (8.2.4).
    fn phy_write(&self, reg: u32, val: u32) -> Result {
        let cmd = MDIC::zeroed()
            .try_with_data(val)?
            .try_with_regadd(reg)?
            .try_with_phyadd(PHY_ADDR)?
            .with_const_op::<MDIC_OP_WRITE>();
        self.io(|b| b.write_reg(cmd))?;
        let done = poll_until(
            || self.io(|b| b.read(MDIC)),
            |m| m.ready().into_bool(),
            Delta::from_micros(50),
            Delta::from_millis(10),
        )?;
        if done.error().into_bool() {
            return Err(EIO);
        }
        Ok(())
    }
}

impl Nic for Igb {
    type Format = IgbAdv;

    /// Takes over the device: global reset, interrupts masked, link up.
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

    /// 82576 datasheet 4.5.9 (receive initialization) for queue 0.
    fn start_rx(&self, ring: &RingConfig) -> Result {
        self.io(|b| -> Result {
            b.update(RCTL, |r| r.with_en(false));
            b.write_reg(MRQC::zeroed());
            b.write_reg(RXCSUM::zeroed());
            // Frames up to max_frame plus FCS and one VLAN tag.
            b.write_reg(RLPML::zeroed().try_with_rlpml(ring.max_frame + 8)?);
            Ok(())
        })??;
        queue::start(&self.bar, ring)?;
        self.io(|b| {
            // Everything, unfiltered: unicast and multicast promiscuous,
            // broadcast, no VLAN filter, long frames; strip the FCS.
            b.write_reg(
                RCTL::zeroed()
                    .with_en(true)
                    .with_upe(true)
                    .with_mpe(true)
                    .with_bam(true)
                    .with_lpe(true)
                    .with_vfe(false)
                    .with_secrc(true),
            );
            // Clear the read-to-clear counters so totals count from now.
            let _ = (b.read(MPC), b.read(GPRC), b.read(RQDPC::at(queue::QUEUE)));
        })?;
        self.received.store(0, Ordering::Relaxed);
        self.missed.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop_rx(&self) {
        let _ = self.io(|b| b.update(RCTL, |r| r.with_en(false)));
        queue::stop(&self.bar);
    }

    fn write_tail(&self, tail: u32) {
        queue::write_tail(&self.bar, tail);
    }

    fn service(&self) -> Status {
        // Frames dropped for lack of a descriptor (RQDPC, with DROP_EN) or
        // of FIFO space (MPC) are both "missed by the NIC".
        // A vanished function reads all ones, in STATUS and in the
        // clear-on-read counters alike: nothing is added then (a real
        // GPRC cannot reach 2^32 - 1 within one service period).
        let (rx, missed) = self
            .io(|b| {
                let rx = b.read(GPRC).count().get();
                let missed = b.read(MPC).count().get() + b.read(RQDPC::at(queue::QUEUE)).count().get();
                (rx, missed)
            })
            .ok()
            .filter(|_| queue::present(&self.bar))
            .unwrap_or((0, 0));
        let add = |total: &AtomicU64, v: u32| total.fetch_add(u64::from(v), Ordering::Relaxed) + u64::from(v);
        Status {
            link: queue::link(&self.bar),
            counters: NicCounters {
                received: add(&self.received, rx),
                missed: add(&self.missed, missed),
                valid: CAPS.counters,
            },
            reset: false,
            // RCTL.UPE and MPE (start_rx).
            promisc: abi::PROMISC_ALL,
        }
    }
}

impl Drop for Igb {
    /// Hands the port back: interrupts masked, DRV_LOAD cleared (the
    /// receive queue was stopped by its owner before).
    fn drop(&mut self) {
        let _ = self.io(|b| {
            b.update(RCTL, |r| r.with_en(false));
            b.write_reg(IMC::zeroed().with_mask(u32::MAX));
            b.update(CTRL_EXT, |r| r.with_drv_load(false));
        });
    }
}
