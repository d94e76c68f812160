// SPDX-License-Identifier: GPL-2.0

//! Intel 82576 physical function (igb-style), one RX queue, polled.
//!
//! Register names and bits follow the 82576 datasheet (section numbers in
//! the comments) and the Linux igb driver's `e1000_regs.h`/`e1000_defines.h`.
//! Only queue 0 is used; interrupts stay masked (the capture threads poll).

use super::{
    common,
    poll_until,
    with_bar,
    Link,
    Nic,
    RingConfig, //
};
use crate::hpcap_core::desc::IgbAdv;
use core::sync::atomic::{
    AtomicU64,
    Ordering, //
};
use kernel::{
    io::{
        register,
        Io, //
    },
    pci,
    prelude::*,
    time::Delta, //
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








    /// Missed Packets Count, read-to-clear (8.19.4).
    pub(crate) MPC(u32) @ 0x4010 {
        /// Frames missed for lack of descriptors or FIFO space.
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

/// PHY register 0 (copper control): restart auto-negotiation.
const PHY_CTRL: u32 = 0;
const PHY_CTRL_AUTONEG: u32 = 0x1000 | 0x0200;
/// Address of the 82576's internal PHY on MDIO.
const PHY_ADDR: u32 = 1;

/// An 82576 PF driven for capture.
pub(crate) struct Igb {
    bar: Bar0,
    /// MPC is read-to-clear: the running total since `start_rx`.
    missed: AtomicU64,
}

impl Igb {
    /// Takes over the device: global reset, interrupts masked, link up.
    pub(crate) fn new(pdev: &pci::Device<kernel::device::Core<'_>>) -> Result<Self> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let nic = Self {
            bar,
            missed: AtomicU64::new(0),
        };
        nic.reset(pdev)?;
        Ok(nic)
    }

    /// Register access; `f` must not sleep (see [`with_bar`]).
    fn io<R>(&self, f: impl for<'a> FnOnce(&pci::Bar<'a, BAR0_LEN>) -> R) -> Result<R> {
        with_bar(&self.bar, f)
    }

    /// 82576 datasheet 4.5 (software initialization): mask interrupts,
    /// reset, wait for the EEPROM auto-read, mask again, take ownership.
    fn reset(&self, pdev: &pci::Device<kernel::device::Core<'_>>) -> Result {
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
            dev_warn!(pdev, "PHY auto-negotiation restart failed: {:?}\n", e);
        }
        Ok(())
    }

    /// Writes a PHY register through MDIC (8.2.4).
    fn phy_write(&self, reg: u32, val: u32) -> Result {
        let cmd = MDIC::zeroed()
            .try_with_data(val)?
            .try_with_regadd(reg)?
            .try_with_phyadd(PHY_ADDR)?
            .with_const_op::<1>();
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
    const ABI_KIND: u32 = crate::hpcap_core::abi::NIC_IGB;
    const MODEL: &'static str = "82576 PF";
    const TAIL_ALIGN: u32 = 1;
    /// 9216-byte jumbo frames need 9 KiB+ buffers; see `RingConfig`.
    const MAX_FRAME: u32 = 9216;
    // CTRL.VME stays clear: tags stay in the frame.
    const RX_VLAN_STRIPPED: bool = false;

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
        common::start(&self.bar, ring)?;
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
            // Clear the read-to-clear counter so `missed` counts from now.
            let _ = b.read(MPC);
        })?;
        self.missed.store(0, Ordering::Relaxed);
        Ok(())
    }

    fn stop_rx(&self) {
        let _ = self.io(|b| b.update(RCTL, |r| r.with_en(false)));
        common::stop(&self.bar);
        let _ = self.io(|b| b.update(CTRL_EXT, |r| r.with_drv_load(false)));
    }

    fn write_tail(&self, tail: u32) -> Result {
        common::write_tail(&self.bar, tail)
    }

    fn link(&self) -> Link {
        common::link(&self.bar)
    }

    fn missed(&self) -> u64 {
        let now = self.io(|b| b.read(MPC).count().get()).unwrap_or(0);
        self.missed.fetch_add(u64::from(now), Ordering::Relaxed) + u64::from(now)
    }
}
