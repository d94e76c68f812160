// SPDX-License-Identifier: MIT
//! The Intel 82599 10 GbE physical function (8086:10fb, 82599ES SFP+), as
//! Linux's `ixgbe` driver uses it (register names from the 82599 datasheet
//! and Linux `ixgbe_type.h`).
//!
//! What is modelled: the EEPROM behind `EERD` (a valid checksum, the MAC
//! address, the firmware and SFP init-sequence blocks ixgbe looks up), the
//! software/firmware semaphores (`SWSM`, `GSSR`), reset (`CTRL.RST` and
//! `CTRL.LNK_RST`, self-clearing, reloading the MAC into `RAL0/RAH0`), the
//! MDIO bus with no PHY on it, the SFP+ cage with a passive direct-attach
//! cable in it ([`sfp`], read over bit-banged `I2CCTL`; `ESDP.SDP2` says
//! the cage is full), the link (`LINKS`: up at 10 Gb/s; `ANLP1` shows
//! auto-negotiation left state 0 after a pipeline reset), MSI-X with
//! `IVAR` routing, `EICR`/`EICS`/`EIMS`/`EIMC` and their `_EX` halves,
//! and 128 RX and TX queues.
//!
//! Receive: [`Pf::receive`] runs the L2 filters (`RAL/RAH` with AV, `FCTRL`
//! UPE/MPE/BAM, the multicast table with `MCSTCTRL`, `VLNCTRL.VFE` with
//! `VFTA`, the frame length against 1518 or `MAXFRS.MFS` when
//! `HLREG0.JUMBOEN`), picks the queue RSS would for a frame that hashes to
//! 0 (`RETA` entry 0 when `MRQC` enables RSS, else queue 0: the model
//! computes no hash), and writes one-buffer advanced descriptors as
//! `SRRCTL` says (`BSIZEPACKET`; frames larger than a buffer are chained),
//! stripping the VLAN tag into the descriptor when `RXDCTL.VME` is set.
//! A frame that finds no free descriptor is dropped and counted in
//! `QPRDC` when the queue's `SRRCTL.DROP_EN` is set; otherwise it waits in
//! the receive packet buffer (`RXPBSIZE0`, 512 KiB after reset) and frames
//! that do not fit there are missed (`RXMPC0`), as on the device.
//! Statistics: `GPRC`, `GORCL/H`, `BPRC`, `MPRC`, `TPR`, `TORL/H`, `ROC`,
//! `RXMPC`, `QPRC`, `QPRDC`, `QBRC` (queue n counts in set n: `RQSMR` is
//! not modelled), `GPTC`, `GOTCL/H`, `TPT`; all clear on read. The frames
//! come without an FCS and are delivered without one (as with
//! `HLREG0.RXCRCSTRP`, which ixgbe sets); their lengths are counted with it.
//!
//! Not modelled: flow director filters, RSC, DCB, SR-IOV pools, IPsec,
//! flow control, checksum offload (no checksum status bits are reported).

pub mod sfp;

use std::collections::{HashMap, VecDeque};

use crate::ixgbevf::mta_hash;
use crate::pci::{ConfigSpace, Identity, MsixLayout, Registers};
use crate::transport::Platform;
use hpcap_core::desc::{IxgbeAdv, RxDone, RxFormat};

/// Register offsets in BAR0 (Linux `ixgbe_type.h`, 82599 values).
pub mod reg {
    /// Device control.
    pub const CTRL: u64 = 0x0000;
    /// Device status.
    pub const STATUS: u64 = 0x0008;
    /// Extended device control.
    pub const CTRL_EXT: u64 = 0x0018;
    /// Software-definable pins.
    pub const ESDP: u64 = 0x0020;
    /// I2C control (the SFP+ module's bus).
    pub const I2CCTL: u64 = 0x0028;
    /// Extended interrupt cause (read clears the queue causes).
    pub const EICR: u64 = 0x0800;
    /// Extended interrupt cause set.
    pub const EICS: u64 = 0x0808;
    /// Auto clear.
    pub const EIAC: u64 = 0x0810;
    /// Interrupt mask set / read.
    pub const EIMS: u64 = 0x0880;
    /// Interrupt mask clear.
    pub const EIMC: u64 = 0x0888;
    /// Auto mask.
    pub const EIAM: u64 = 0x0890;
    /// General purpose interrupt enable.
    pub const GPIE: u64 = 0x0898;
    /// IVAR(n): RX/TX queues 2n, 2n+1 to vectors.
    pub const IVAR: u64 = 0x0900;
    /// IVAR_MISC: the other causes' vector.
    pub const IVAR_MISC: u64 = 0x0A00;
    /// EICS_EX(0..1): cause set, vectors 0..31 and 32..63.
    pub const EICS_EX: u64 = 0x0A90;
    /// EIMS_EX(0..1).
    pub const EIMS_EX: u64 = 0x0AA0;
    /// EIMC_EX(0..1).
    pub const EIMC_EX: u64 = 0x0AB0;
    /// EIAM_EX(0..1).
    pub const EIAM_EX: u64 = 0x0AD0;
    /// RX queues 0..63 (block of 0x40 each).
    pub const RXQ_LO: u64 = 0x1000;
    /// RX queues 64..127.
    pub const RXQ_HI: u64 = 0xD000;
    /// TX queues 0..127.
    pub const TXQ: u64 = 0x6000;
    /// Queue register stride.
    pub const QSTRIDE: u64 = 0x40;
    /// In a queue block: base low, base high, length, head.
    pub const DBAL: u64 = 0x00;
    /// Base high.
    pub const DBAH: u64 = 0x04;
    /// Ring length in bytes.
    pub const DLEN: u64 = 0x08;
    /// Head.
    pub const DH: u64 = 0x10;
    /// SRRCTL (RX).
    pub const SRRCTL: u64 = 0x14;
    /// Tail.
    pub const DT: u64 = 0x18;
    /// RXDCTL / TXDCTL.
    pub const DCTL: u64 = 0x28;
    /// QPRC(n) for n < 16 at this offset of RX queue n's block; QPRDC(n)
    /// at this offset of queue n + 16's block.
    pub const QCOUNT: u64 = 0x30;
    /// SRRCTL(n) alias for queues 0..15.
    pub const SRRCTL_ALIAS: u64 = 0x2100;
    /// RDRXCTL.
    pub const RDRXCTL: u64 = 0x2F00;
    /// RX control (RXEN).
    pub const RXCTRL: u64 = 0x3000;
    /// RX packet buffer sizes (8 buffers).
    pub const RXPBSIZE: u64 = 0x3C00;
    /// RX missed packet counts (one per packet buffer).
    pub const RXMPC: u64 = 0x3FA0;
    /// MAC core control 0.
    pub const HLREG0: u64 = 0x4240;
    /// MDI single command and address.
    pub const MSCA: u64 = 0x425C;
    /// MDI single read and write data.
    pub const MSRWD: u64 = 0x4260;
    /// Max frame size.
    pub const MAXFRS: u64 = 0x4268;
    /// Auto-negotiation control.
    pub const AUTOC: u64 = 0x42A0;
    /// Link status.
    pub const LINKS: u64 = 0x42A4;
    /// Auto-negotiation control 2.
    pub const AUTOC2: u64 = 0x42A8;
    /// Auto-negotiation link partner 1 (AN state in bits 19:16).
    pub const ANLP1: u64 = 0x42B0;
    /// Statistics (clear on read).
    pub const GPRC: u64 = 0x4074;
    /// Broadcast packets received.
    pub const BPRC: u64 = 0x4078;
    /// Multicast packets received.
    pub const MPRC: u64 = 0x407C;
    /// Good packets transmitted.
    pub const GPTC: u64 = 0x4080;
    /// Good octets received, low.
    pub const GORCL: u64 = 0x4088;
    /// High (reading it clears the counter).
    pub const GORCH: u64 = 0x408C;
    /// Good octets transmitted, low.
    pub const GOTCL: u64 = 0x4090;
    /// High.
    pub const GOTCH: u64 = 0x4094;
    /// Receive oversize count.
    pub const ROC: u64 = 0x40AC;
    /// Total octets received, low.
    pub const TORL: u64 = 0x40C0;
    /// High.
    pub const TORH: u64 = 0x40C4;
    /// Total packets received.
    pub const TPR: u64 = 0x40D0;
    /// Total packets transmitted.
    pub const TPT: u64 = 0x40D4;
    /// QBRC_L(n) / QBRC_H(n) for n < 16: at these offsets of queue n's block.
    pub const QBRC_L: u64 = 0x34;
    /// High.
    pub const QBRC_H: u64 = 0x38;
    /// Filter control.
    pub const FCTRL: u64 = 0x5080;
    /// VLAN control.
    pub const VLNCTRL: u64 = 0x5088;
    /// Multicast control.
    pub const MCSTCTRL: u64 = 0x5090;
    /// Multicast table (128 words).
    pub const MTA: u64 = 0x5200;
    /// RAL/RAH 0..15 (82598 layout, aliased on the 82599).
    pub const RAR_LO: u64 = 0x5400;
    /// RAL/RAH 0..127.
    pub const RAR_HI: u64 = 0xA200;
    /// VLAN filter table (128 words).
    pub const VFTA: u64 = 0xA000;
    /// DMA TX control.
    pub const DMATXCTL: u64 = 0x4A80;
    /// Security RX status (ready bit 0).
    pub const SECRXSTAT: u64 = 0x8D04;
    /// RSS redirection table (32 words, 4 entries each).
    pub const RETA: u64 = 0xEB00;
    /// Multiple receive queues command.
    pub const MRQC: u64 = 0xEC80;
    /// Flow director control (INIT_DONE bit 3).
    pub const FDIRCTRL: u64 = 0xEE00;
    /// Flow director command (the command field clears when done).
    pub const FDIRCMD: u64 = 0xEE2C;
    /// EEPROM/flash control.
    pub const EEC: u64 = 0x10010;
    /// EEPROM read.
    pub const EERD: u64 = 0x10014;
    /// Software semaphore.
    pub const SWSM: u64 = 0x10140;
    /// Firmware semaphore.
    pub const FWSM: u64 = 0x10148;
    /// Software/firmware sync.
    pub const GSSR: u64 = 0x10160;

    /// CTRL.LNK_RST.
    pub const CTRL_LNK_RST: u32 = 1 << 3;
    /// CTRL.RST.
    pub const CTRL_RST: u32 = 1 << 26;
    /// ESDP.SDP2: the SFP+ cage is full (82599 SFP boards).
    pub const ESDP_SDP2: u32 = 1 << 2;
    /// GPIE.EIAME: auto mask enable.
    pub const GPIE_EIAME: u32 = 1 << 30;
    /// RXDCTL/TXDCTL.ENABLE.
    pub const DCTL_ENABLE: u32 = 1 << 25;
    /// RXDCTL.VME: strip VLAN tags.
    pub const RXDCTL_VME: u32 = 1 << 30;
    /// SRRCTL.BSIZEPACKET (1 KiB units).
    pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x1F;
    /// SRRCTL.DESCTYPE.
    pub const SRRCTL_DESCTYPE_MASK: u32 = 7 << 25;
    /// Advanced one buffer.
    pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
    /// SRRCTL.DROP_EN.
    pub const SRRCTL_DROP_EN: u32 = 1 << 28;
    /// RXCTRL.RXEN.
    pub const RXCTRL_RXEN: u32 = 1;
    /// HLREG0.JUMBOEN.
    pub const HLREG0_JUMBOEN: u32 = 1 << 2;
    /// FCTRL.MPE.
    pub const FCTRL_MPE: u32 = 1 << 8;
    /// FCTRL.UPE.
    pub const FCTRL_UPE: u32 = 1 << 9;
    /// FCTRL.BAM.
    pub const FCTRL_BAM: u32 = 1 << 10;
    /// VLNCTRL.VFE.
    pub const VLNCTRL_VFE: u32 = 1 << 30;
    /// MCSTCTRL.MFE.
    pub const MCSTCTRL_MFE: u32 = 1 << 2;
    /// RAH.AV.
    pub const RAH_AV: u32 = 1 << 31;
    /// LINKS: KX/KX4/KR AN complete, link up, 10 Gb/s.
    pub const LINKS_UP_10G: u32 = (1 << 31) | (1 << 30) | (3 << 28);
    /// MSCA.MDI_COMMAND.
    pub const MSCA_MDI_COMMAND: u32 = 1 << 30;
    /// SWSM.SMBI.
    pub const SWSM_SMBI: u32 = 1;
    /// EEC: present, auto-read done, size 2^(4+6) words.
    pub const EEC_VALUE: u32 = (1 << 8) | (1 << 9) | (4 << 11);
    /// FWSM: firmware valid, no manageability mode.
    pub const FWSM_FW_VAL: u32 = 1 << 15;
    /// EERD.START / DONE.
    pub const EERD_START: u32 = 1;
    /// EERD.DONE.
    pub const EERD_DONE: u32 = 1 << 1;
    /// RDRXCTL.DMAIDONE.
    pub const RDRXCTL_DMAIDONE: u32 = 1 << 3;
    /// FDIRCTRL.INIT_DONE.
    pub const FDIRCTRL_INIT_DONE: u32 = 1 << 3;
}

/// PCI device id of the 82599ES SFP+ (`IXGBE_DEV_ID_82599_SFP`).
pub const DEVICE_SFP: u16 = 0x10fb;
/// BAR0: 128 KiB of registers; BAR4: MSI-X, 16 KiB.
const BAR0_SIZE: u64 = 0x20000;
const BAR4_SIZE: u64 = 0x4000;
/// MSI-X vectors of an 82599 PF.
pub const VECTORS: u16 = 64;
/// Queues.
pub const QUEUES: usize = 128;
/// EEPROM words (EEC size field 4).
const EEPROM_WORDS: usize = 1024;
/// Default receive packet buffer 0: 512 KiB.
const RXPB_DEFAULT: u32 = 0x80000;

/// Host-side settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The port's MAC address (in the EEPROM, loaded into RAL0/RAH0).
    pub mac: [u8; 6],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mac: [0x02, 0, 0, 0, 0, 0x20],
        }
    }
}

/// The model's own counts (the same names as the other NIC models';
/// tools/hpcap-vm reads them).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ModelStats {
    /// Frames offered to the port.
    pub frames_in: u64,
    /// Frames written into a guest RX ring.
    pub delivered: u64,
    /// When the last of them was written (ns since the Unix epoch; 0: none).
    pub last_delivery_unix_ns: u64,
    /// Dropped for lack of a descriptor on a DROP_EN queue (QPRDC).
    pub no_descriptor: u64,
    /// Missed: the receive packet buffer was full (RXMPC).
    pub missed: u64,
    /// Refused by the L2 filters (address, VLAN, length).
    pub filtered: u64,
    /// Of `filtered`: longer than the largest frame allowed (ROC).
    pub oversize: u64,
    /// Arrived while receive was off (RXCTRL.RXEN, the queue disabled, no
    /// bus master).
    pub not_ready: u64,
    /// Lost from the packet buffer by a reset or a disabled queue.
    pub flushed: u64,
    /// Frames the guest transmitted.
    pub tx_frames: u64,
    /// Device resets (CTRL.RST, CTRL.LNK_RST, FLR).
    pub resets: u64,
    /// DMA accesses that failed.
    pub dma_errors: u64,
    /// SFP+ serial ID bytes the driver read over I2C.
    pub sfp_bytes_read: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Queue {
    bal: u32,
    bah: u32,
    len: u32,
    head: u32,
    tail: u32,
    srrctl: u32,
    dctl: u32,
}

impl Queue {
    fn base(&self) -> u64 {
        u64::from(self.bah) << 32 | u64::from(self.bal & !0x7F)
    }
    fn entries(&self) -> u32 {
        self.len / 16
    }
    fn enabled(&self) -> bool {
        self.dctl & reg::DCTL_ENABLE != 0 && self.entries() > 0
    }
}

/// Counters that clear on read.
#[derive(Debug, Default, Clone)]
struct Counters {
    gprc: u32,
    bprc: u32,
    mprc: u32,
    gorc: u64,
    tor: u64,
    tpr: u32,
    roc: u32,
    gptc: u32,
    gotc: u64,
    tpt: u32,
    rxmpc: u32,
    qprc: [u32; 16],
    qprdc: [u32; 16],
    qbrc: [u64; 16],
}

/// A frame waiting in the receive packet buffer.
struct Held {
    queue: usize,
    frame: Vec<u8>,
}

/// The 82599 PF.
pub struct Pf {
    cfg_space: ConfigSpace,
    config: Config,
    eeprom: Vec<u16>,
    sfp: sfp::Sfp,
    i2cctl: u32,
    regs: HashMap<u64, u32>,
    rxq: Vec<Queue>,
    txq: Vec<Queue>,
    rar: Vec<(u32, u32)>,
    mta: Vec<u32>,
    vfta: Vec<u32>,
    ivar: Vec<u32>,
    /// Pending causes per vector (EICR queue bits / EICR_EX).
    cause: u64,
    /// Enabled vectors.
    mask: u64,
    /// Auto-mask vectors.
    automask: u64,
    /// The other causes (EICR bits 16..31) and their mask.
    other: u32,
    other_mask: u32,
    counters: Counters,
    pb: VecDeque<Held>,
    pb_bytes: usize,
    tx_out: Vec<Vec<u8>>,
    /// The model's counts.
    pub stats: ModelStats,
}

/// The EEPROM image: header words, checksum, the firmware module block
/// (for `ixgbe_verify_fw_version_82599` and the LESM check) and the SFP
/// init-sequence list with an entry for a DA cable on port 0.
pub fn eeprom_image(mac: [u8; 6]) -> Vec<u16> {
    let mut e = vec![0xFFFFu16; EEPROM_WORDS];
    // 0x00..0x3F: control words; pointers 0x03..0x0E invalid (no analog,
    // PHY or option ROM sections).
    for w in e.iter_mut().take(0x40) {
        *w = 0;
    }
    for w in &mut e[0x03..0x0F] {
        *w = 0xFFFF;
    }
    // Firmware module block at 0x100: length, LESM parameters pointer
    // (none), pass-through patch configuration pointer.
    const FW: usize = 0x100;
    e[0x0F] = FW as u16;
    e[FW] = 8;
    e[FW + 2] = 0xFFFF; // IXGBE_FW_LESM_PARAMETERS_PTR: LESM off
    e[FW + 4] = 0x120; // IXGBE_FW_PASSTHROUGH_PATCH_CONFIG_PTR
    e[0x120 + 7] = 0x0006; // IXGBE_FW_PATCH_VERSION_4 (> 5)
                           // PBA number (legacy format), EEPROM version words.
    e[0x15] = 0x1234;
    e[0x16] = 0x5678;
    e[0x2E] = 0x0001;
    // 0x27/0x28: no alternate SAN MAC block, no SAN MAC.
    e[0x27] = 0xFFFF;
    e[0x28] = 0xFFFF;
    // 0x2B: PHY init list: pairs (sfp_type, data offset), 0xFFFF ends.
    // sfp_type 3 = ixgbe_sfp_type_da_cu_core0; its data: no CORECTL words.
    const LIST: usize = 0x140;
    e[0x2B] = LIST as u16;
    e[LIST] = 0;
    e[LIST + 1] = 3;
    e[LIST + 2] = 0x150;
    e[LIST + 3] = 0xFFFF;
    e[0x150] = 0;
    e[0x151] = 0xFFFF;
    // 0x2C device caps: 0.
    e[0x2C] = 0;
    // The MAC address of LAN port 0 lives in the LAN core 0 section; the
    // driver reads it from RAL0/RAH0 after the device loaded it.
    let _ = mac;
    e[0x3F] = checksum(&e);
    e
}

/// ixgbe's EEPROM checksum: 0xBABA minus the sum of words 0..0x3E and of
/// the sections the pointers 0x03..0x0E name.
pub fn checksum(e: &[u16]) -> u16 {
    let mut sum = 0u16;
    for &w in &e[..0x3F] {
        sum = sum.wrapping_add(w);
    }
    for i in 0x03..0x0F {
        let p = usize::from(e[i]);
        if p == 0 || p == 0xFFFF || p >= e.len() {
            continue;
        }
        let len = usize::from(e[p]);
        if len == 0 || len == 0xFFFF {
            continue;
        }
        for &w in e.iter().skip(p + 1).take(len) {
            sum = sum.wrapping_add(w);
        }
    }
    0xBABAu16.wrapping_sub(sum)
}

impl Pf {
    /// A port just out of power-on reset.
    pub fn new(config: Config) -> Self {
        let cfg_space = ConfigSpace::new(
            Identity {
                vendor: 0x8086,
                device: DEVICE_SFP,
                subsys_vendor: 0x8086,
                subsys: 0x0003,
                revision: 1,
                class: 0x020000,
            },
            [BAR0_SIZE, 0, 0, 0, BAR4_SIZE, 0],
            MsixLayout {
                vectors: VECTORS,
                bar: 4,
                table: 0,
                pba: 0x2000,
            },
        );
        let mut pf = Pf {
            cfg_space,
            eeprom: eeprom_image(config.mac),
            config,
            sfp: sfp::Sfp::passive_da(),
            i2cctl: sfp::CLK_OUT | sfp::DATA_OUT,
            regs: HashMap::new(),
            rxq: vec![Queue::default(); QUEUES],
            txq: vec![Queue::default(); QUEUES],
            rar: vec![(0, 0); 128],
            mta: vec![0; 128],
            vfta: vec![0; 128],
            ivar: vec![0; 64],
            cause: 0,
            mask: 0,
            automask: 0,
            other: 0,
            other_mask: 0,
            counters: Counters::default(),
            pb: VecDeque::new(),
            pb_bytes: 0,
            tx_out: Vec::new(),
            stats: ModelStats::default(),
        };
        pf.hw_reset();
        pf
    }

    /// The EEPROM words.
    pub fn eeprom(&self) -> &[u16] {
        &self.eeprom
    }

    /// Everything a global reset sets back, and the MAC loaded into RAR0.
    fn hw_reset(&mut self) {
        self.stats.flushed += self.pb.len() as u64;
        self.pb.clear();
        self.pb_bytes = 0;
        self.regs.clear();
        self.regs.insert(reg::RXPBSIZE, RXPB_DEFAULT);
        self.regs.insert(reg::MAXFRS, 1518 << 16);
        self.regs.insert(reg::HLREG0, 0x2);
        self.regs.insert(reg::AUTOC, 0x3 << 13); // LMS 10G serial
        self.rxq.fill(Queue::default());
        self.txq.fill(Queue::default());
        self.rar.fill((0, 0));
        let m = self.config.mac;
        self.rar[0] = (
            u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
            u32::from(u16::from_le_bytes([m[4], m[5]])) | reg::RAH_AV,
        );
        self.mta.fill(0);
        self.vfta.fill(0);
        self.ivar.fill(0);
        self.cause = 0;
        self.mask = 0;
        self.automask = 0;
        self.other = 0;
        self.other_mask = 0;
        self.counters = Counters::default();
    }

    fn reg(&self, off: u64) -> u32 {
        self.regs.get(&off).copied().unwrap_or(0)
    }

    // ------------------------------------------------------------ interrupts

    fn fire_pending(&mut self, p: &mut Platform) {
        let due = self.cause & self.mask;
        if due != 0 {
            let auto = self.reg(reg::GPIE) & reg::GPIE_EIAME != 0;
            for v in 0..u64::from(VECTORS) {
                let bit = 1u64 << v;
                if due & bit == 0 {
                    continue;
                }
                // MSI-X: a queue vector's cause clears when it fires (EIAC).
                self.cause &= !bit;
                if auto && self.automask & bit != 0 {
                    self.mask &= !bit;
                }
                p.irq.raise(v as usize);
            }
        }
        if self.other & self.other_mask != 0 {
            let misc = self.reg(reg::IVAR_MISC);
            if misc & 0x80 != 0 {
                p.irq.raise(usize::from((misc & 0x3F) as u8));
            }
        }
    }

    /// Raises the cause of RX (or TX) queue `q`'s vector.
    fn queue_cause(&mut self, q: usize, tx: bool, p: &mut Platform) {
        let word = self.ivar[q / 2];
        let entry = word >> ((q & 1) * 16 + if tx { 8 } else { 0 }) & 0xFF;
        if entry & 0x80 == 0 {
            return;
        }
        self.cause |= 1 << (entry & 0x3F);
        self.fire_pending(p);
    }

    // -------------------------------------------------------------------- RX

    /// The L2 filters. Ok(tag TCI if tagged) when the frame is accepted.
    fn accept(&mut self, frame: &[u8]) -> Result<Option<u16>, ()> {
        if frame.len() < 14 {
            return Err(());
        }
        let tagged = frame[12] == 0x81 && frame[13] == 0x00 && frame.len() >= 18;
        let tci = tagged.then(|| u16::from_be_bytes([frame[14], frame[15]]));
        let fctrl = self.reg(reg::FCTRL);
        let dst = &frame[0..6];
        let mac_ok = if dst == [0xff; 6] {
            fctrl & reg::FCTRL_BAM != 0 || fctrl & reg::FCTRL_MPE != 0
        } else if dst[0] & 1 != 0 {
            fctrl & reg::FCTRL_MPE != 0 || self.mta_match(dst)
        } else {
            fctrl & reg::FCTRL_UPE != 0 || self.rar_match(dst)
        };
        if !mac_ok {
            return Err(());
        }
        if let Some(t) = tci {
            if self.reg(reg::VLNCTRL) & reg::VLNCTRL_VFE != 0 {
                let vid = usize::from(t & 0xFFF);
                if self.vfta[vid / 32] >> (vid % 32) & 1 == 0 {
                    return Err(());
                }
            }
        }
        // Lengths with the FCS; one VLAN tag is allowed beyond the limit.
        let max = if self.reg(reg::HLREG0) & reg::HLREG0_JUMBOEN != 0 {
            self.reg(reg::MAXFRS) >> 16
        } else {
            1518
        };
        let len = frame.len() as u32 + 4 - if tagged { 4 } else { 0 };
        if len > max {
            self.stats.oversize += 1;
            self.counters.roc = self.counters.roc.wrapping_add(1);
            return Err(());
        }
        Ok(tci)
    }

    fn rar_match(&self, dst: &[u8]) -> bool {
        let lo = u32::from_le_bytes([dst[0], dst[1], dst[2], dst[3]]);
        let hi = u32::from(u16::from_le_bytes([dst[4], dst[5]]));
        self.rar
            .iter()
            .any(|&(l, h)| h & reg::RAH_AV != 0 && l == lo && h & 0xFFFF == hi)
    }

    fn mta_match(&self, dst: &[u8]) -> bool {
        let mc = self.reg(reg::MCSTCTRL);
        if mc & reg::MCSTCTRL_MFE == 0 {
            return false;
        }
        let (a, b) = (u16::from(dst[4]), u16::from(dst[5]));
        let h = match mc & 3 {
            0 => mta_hash(dst),
            1 => (a >> 3 | b << 5) & 0xFFF,
            2 => (a >> 2 | b << 6) & 0xFFF,
            _ => (a | b << 8) & 0xFFF,
        };
        self.mta[usize::from(h >> 5)] >> (h & 31) & 1 != 0
    }

    /// The queue RSS picks for a hash of 0 (the model computes none).
    fn rx_queue(&self) -> usize {
        if self.reg(reg::MRQC) & 0xF == 0 {
            return 0;
        }
        (self.reg(reg::RETA) & 0x7F) as usize % QUEUES
    }

    fn rx_ready(&self, q: usize) -> bool {
        self.reg(reg::RXCTRL) & reg::RXCTRL_RXEN != 0
            && self.rxq[q].enabled()
            && self.cfg_space.bus_master()
    }

    /// A frame arrives at the port.
    pub fn receive(&mut self, frame: &[u8], p: &mut Platform) {
        self.stats.frames_in += 1;
        self.counters.tpr = self.counters.tpr.wrapping_add(1);
        self.counters.tor += frame.len() as u64 + 4;
        if self.accept(frame).is_err() {
            self.stats.filtered += 1;
            return;
        }
        let q = self.rx_queue();
        if !self.rx_ready(q) {
            self.stats.not_ready += 1;
            return;
        }
        self.drain(p);
        if self.pb.is_empty() && self.try_deliver(q, frame, p) {
            return;
        }
        if self.rxq[q].srrctl & reg::SRRCTL_DROP_EN != 0 && self.pb.is_empty() {
            self.stats.no_descriptor += 1;
            if q < 16 {
                self.counters.qprdc[q] = self.counters.qprdc[q].wrapping_add(1);
            }
            return;
        }
        let cap = (self.reg(reg::RXPBSIZE) & 0xFFC00) as usize;
        if self.pb_bytes + frame.len() > cap {
            self.stats.missed += 1;
            self.counters.rxmpc = self.counters.rxmpc.wrapping_add(1);
            return;
        }
        self.pb_bytes += frame.len();
        self.pb.push_back(Held {
            queue: q,
            frame: frame.to_vec(),
        });
    }

    /// Moves frames from the packet buffer into rings with free descriptors.
    fn drain(&mut self, p: &mut Platform) {
        while let Some(h) = self.pb.pop_front() {
            if !self.rx_ready(h.queue) {
                self.stats.flushed += 1;
                self.pb_bytes -= h.frame.len();
                continue;
            }
            if self.try_deliver(h.queue, &h.frame, p) {
                self.pb_bytes -= h.frame.len();
                continue;
            }
            if self.rxq[h.queue].srrctl & reg::SRRCTL_DROP_EN != 0 {
                // The queue turned drop-enable while the frame waited.
                self.pb_bytes -= h.frame.len();
                self.stats.no_descriptor += 1;
                continue;
            }
            self.pb.push_front(h);
            break;
        }
    }

    /// Writes a frame into queue `q` if its ring has room; false if not.
    fn try_deliver(&mut self, qi: usize, frame: &[u8], p: &mut Platform) -> bool {
        let q = self.rxq[qi];
        let tci = frame.len() >= 18 && frame[12] == 0x81 && frame[13] == 0x00;
        let strip = tci && q.dctl & reg::RXDCTL_VME != 0;
        let stripped;
        let data: &[u8] = if strip {
            stripped = [&frame[..12], &frame[16..]].concat();
            &stripped
        } else {
            frame
        };
        let vlan = strip.then(|| u16::from_be_bytes([frame[14], frame[15]]));
        let buf = ((q.srrctl & reg::SRRCTL_BSIZEPKT_MASK).max(1) * 1024) as usize;
        let n = q.entries();
        let need = data.len().div_ceil(buf).max(1) as u32;
        let free = (q.tail + n - q.head) % n;
        if free < need {
            return false;
        }
        let mut head = q.head;
        let chunks = data.chunks(buf).count().max(1);
        for (k, chunk) in data.chunks(buf).enumerate() {
            let at = q.base() + u64::from(head) * 16;
            let Ok(pkt_addr) = p.mem.read_u64(at) else {
                self.stats.dma_errors += 1;
                return true;
            };
            if p.mem.write(pkt_addr, chunk).is_err() {
                self.stats.dma_errors += 1;
                return true;
            }
            let wb = IxgbeAdv::write_back(&RxDone {
                len: chunk.len() as u32,
                eop: k + 1 == chunks,
                error: false,
                skip: false,
                vlan,
            });
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&wb[0].to_le_bytes());
            b[8..16].copy_from_slice(&wb[1].to_le_bytes());
            if p.mem.write(at, &b).is_err() {
                self.stats.dma_errors += 1;
                return true;
            }
            head = (head + 1) % n;
        }
        self.rxq[qi].head = head;
        self.stats.delivered += 1;
        self.stats.last_delivery_unix_ns = crate::unix_ns();
        let c = &mut self.counters;
        let wire = frame.len() as u64 + 4;
        c.gprc = c.gprc.wrapping_add(1);
        c.gorc += wire;
        if frame[0..6] == [0xff; 6] {
            c.bprc = c.bprc.wrapping_add(1);
        } else if frame[0] & 1 != 0 {
            c.mprc = c.mprc.wrapping_add(1);
        }
        if qi < 16 {
            c.qprc[qi] = c.qprc[qi].wrapping_add(1);
            c.qbrc[qi] += wire;
        }
        self.queue_cause(qi, false, p);
        true
    }

    // -------------------------------------------------------------------- TX

    /// The guest advanced a TX tail: complete advanced data descriptors
    /// (DD where RS asks), collect the frames.
    fn transmit(&mut self, qi: usize, p: &mut Platform) {
        let q = self.txq[qi];
        if !q.enabled() || !self.cfg_space.bus_master() {
            return;
        }
        let w = crate::e82599_queues::transmit(&p.mem, q.base(), q.entries(), q.head, q.tail);
        self.stats.dma_errors += w.dma_errors;
        for f in &w.frames {
            self.stats.tx_frames += 1;
            self.counters.gptc = self.counters.gptc.wrapping_add(1);
            self.counters.tpt = self.counters.tpt.wrapping_add(1);
            self.counters.gotc += f.len() as u64 + 4;
        }
        self.tx_out.extend(w.frames);
        self.txq[qi].head = w.head;
        self.queue_cause(qi, true, p);
    }

    /// Frames the guest sent since the last call.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx_out)
    }

    // ------------------------------------------------------------- registers

    fn queue_at(off: u64, base: u64, first: usize, count: usize) -> Option<(usize, u64)> {
        let end = base + reg::QSTRIDE * count as u64;
        (base..end).contains(&off).then(|| {
            (
                first + ((off - base) / reg::QSTRIDE) as usize,
                (off - base) % reg::QSTRIDE,
            )
        })
    }

    fn rx_block(off: u64) -> Option<(usize, u64)> {
        Self::queue_at(off, reg::RXQ_LO, 0, 64).or_else(|| Self::queue_at(off, reg::RXQ_HI, 64, 64))
    }

    fn read_rx_block(&mut self, q: usize, r: u64, off: u64) -> u32 {
        use reg::*;
        let c = &mut self.counters;
        match r {
            DBAL => self.rxq[q].bal,
            DBAH => self.rxq[q].bah,
            DLEN => self.rxq[q].len,
            DH => self.rxq[q].head,
            SRRCTL => self.rxq[q].srrctl,
            DT => self.rxq[q].tail,
            DCTL => self.rxq[q].dctl,
            QCOUNT if q < 16 => std::mem::take(&mut c.qprc[q]),
            QCOUNT if q < 32 => std::mem::take(&mut c.qprdc[q - 16]),
            QBRC_L if q < 16 => c.qbrc[q] as u32,
            QBRC_H if q < 16 => ((std::mem::take(&mut c.qbrc[q]) >> 32) & 0xF) as u32,
            _ => self.reg(off),
        }
    }

    fn write_rx_block(&mut self, q: usize, r: u64, off: u64, v: u32, p: &mut Platform) {
        use reg::*;
        let rq = &mut self.rxq[q];
        match r {
            DBAL => rq.bal = v & !0x7F,
            DBAH => rq.bah = v,
            DLEN => rq.len = v & 0xF_FF80,
            DH => rq.head = v & 0xFFFF,
            SRRCTL => rq.srrctl = v,
            DT => {
                rq.tail = v & 0xFFFF;
                if rq.entries() > 0 {
                    rq.tail %= rq.entries();
                }
                self.drain(p);
                return;
            }
            DCTL => rq.dctl = v,
            QCOUNT | QBRC_L | QBRC_H if q < 32 => {}
            _ => {
                self.regs.insert(off, v);
            }
        }
        let rq = &mut self.rxq[q];
        if rq.entries() > 0 {
            rq.head %= rq.entries();
            rq.tail %= rq.entries();
        }
    }

    /// A register read (32-bit).
    pub fn read_reg(&mut self, off: u64) -> u32 {
        use reg::*;
        if let Some((q, r)) = Self::rx_block(off) {
            return self.read_rx_block(q, r, off);
        }
        if let Some((q, r)) = Self::queue_at(off, TXQ, 0, QUEUES) {
            let t = &self.txq[q];
            return match r {
                DBAL => t.bal,
                DBAH => t.bah,
                DLEN => t.len,
                DH => t.head,
                DT => t.tail,
                DCTL => t.dctl,
                _ => self.reg(off),
            };
        }
        let c = &mut self.counters;
        match off {
            CTRL => self.reg(CTRL) & !(CTRL_RST | CTRL_LNK_RST),
            STATUS => 0, // LAN ID 0, no GIO master requests pending
            ESDP => self.reg(ESDP) | ESDP_SDP2,
            I2CCTL => self.i2cctl & (sfp::CLK_OUT | sfp::DATA_OUT) | self.sfp.lines(),
            EICR => {
                // Reading clears the causes (the queue vectors' ones too).
                let v = (self.cause & 0xFFFF) as u32 | self.other << 16;
                self.cause &= !0xFFFF;
                self.other = 0;
                v
            }
            EICS => (self.cause & 0xFFFF) as u32 | self.other << 16,
            EIMS | EIMC => (self.mask & 0xFFFF) as u32 | self.other_mask << 16,
            o if (IVAR..IVAR + 256).contains(&o) => self.ivar[((o - IVAR) / 4) as usize],
            o if o == EIMS_EX || o == EIMS_EX + 4 => {
                (self.mask >> (32 * ((o - EIMS_EX) / 4))) as u32
            }
            o if o == EICS_EX || o == EICS_EX + 4 => {
                (self.cause >> (32 * ((o - EICS_EX) / 4))) as u32
            }
            o if (SRRCTL_ALIAS..SRRCTL_ALIAS + 64).contains(&o) => {
                self.rxq[((o - SRRCTL_ALIAS) / 4) as usize].srrctl
            }
            o if (MTA..MTA + 512).contains(&o) => self.mta[((o - MTA) / 4) as usize],
            o if (VFTA..VFTA + 512).contains(&o) => self.vfta[((o - VFTA) / 4) as usize],
            o if (RAR_LO..RAR_LO + 128).contains(&o) => self.rar_reg(((o - RAR_LO) / 4) as usize),
            o if (RAR_HI..RAR_HI + 1024).contains(&o) => self.rar_reg(((o - RAR_HI) / 4) as usize),
            LINKS => LINKS_UP_10G,
            ANLP1 => 0x4 << 16, // AN state: out of state 0
            MSCA => self.reg(MSCA) & !MSCA_MDI_COMMAND,
            MSRWD => 0xFFFF_0000, // no PHY answers: the bus reads all ones
            SECRXSTAT => 1,
            // DMA initialization is done as soon as a reset is.
            RDRXCTL => self.reg(RDRXCTL) | RDRXCTL_DMAIDONE,
            FDIRCTRL => self.reg(FDIRCTRL) | FDIRCTRL_INIT_DONE,
            FDIRCMD => self.reg(FDIRCMD) & !0x3,
            EEC => EEC_VALUE,
            EERD => self.reg(EERD),
            SWSM => {
                // Reading takes the software semaphore (SMBI) if free.
                let v = self.reg(SWSM);
                self.regs.insert(SWSM, v | SWSM_SMBI);
                v
            }
            FWSM => FWSM_FW_VAL,
            GPRC => std::mem::take(&mut c.gprc),
            BPRC => std::mem::take(&mut c.bprc),
            MPRC => std::mem::take(&mut c.mprc),
            GORCL => c.gorc as u32,
            GORCH => ((std::mem::take(&mut c.gorc) >> 32) & 0xF) as u32,
            TORL => c.tor as u32,
            TORH => ((std::mem::take(&mut c.tor) >> 32) & 0xF) as u32,
            TPR => std::mem::take(&mut c.tpr),
            ROC => std::mem::take(&mut c.roc),
            RXMPC => std::mem::take(&mut c.rxmpc),
            GPTC => std::mem::take(&mut c.gptc),
            GOTCL => c.gotc as u32,
            GOTCH => ((std::mem::take(&mut c.gotc) >> 32) & 0xF) as u32,
            TPT => std::mem::take(&mut c.tpt),
            o => self.reg(o),
        }
    }

    fn rar_reg(&self, i: usize) -> u32 {
        let (l, h) = self.rar[(i / 2) % 128];
        if i.is_multiple_of(2) {
            l
        } else {
            h
        }
    }

    fn set_rar_reg(&mut self, i: usize, v: u32) {
        let e = &mut self.rar[(i / 2) % 128];
        if i.is_multiple_of(2) {
            e.0 = v;
        } else {
            e.1 = v;
        }
    }

    /// A register write (32-bit).
    pub fn write_reg(&mut self, off: u64, v: u32, p: &mut Platform) {
        use reg::*;
        if let Some((q, r)) = Self::rx_block(off) {
            self.write_rx_block(q, r, off, v, p);
            return;
        }
        if let Some((q, r)) = Self::queue_at(off, TXQ, 0, QUEUES) {
            let t = &mut self.txq[q];
            match r {
                DBAL => t.bal = v & !0x7F,
                DBAH => t.bah = v,
                DLEN => t.len = v & 0xF_FF80,
                DH => t.head = v & 0xFFFF,
                DT => {
                    t.tail = v & 0xFFFF;
                    self.transmit(q, p);
                }
                DCTL => t.dctl = v,
                _ => {
                    self.regs.insert(off, v);
                }
            }
            return;
        }
        match off {
            CTRL => {
                if v & (CTRL_RST | CTRL_LNK_RST) != 0 {
                    // A reset sets CTRL back too (GIO_DIS and all).
                    self.stats.resets += 1;
                    self.hw_reset();
                } else {
                    self.regs.insert(CTRL, v);
                }
            }
            I2CCTL => {
                self.i2cctl = v;
                self.sfp.write(v);
                self.stats.sfp_bytes_read = self.sfp.bytes_read;
            }
            EICR => {
                self.cause &= !u64::from(v & 0xFFFF);
                self.other &= !(v >> 16);
            }
            EICS => {
                self.cause |= u64::from(v & 0xFFFF);
                self.other |= v >> 16;
                self.fire_pending(p);
            }
            EIMS => {
                self.mask |= u64::from(v & 0xFFFF);
                self.other_mask |= v >> 16;
                self.fire_pending(p);
            }
            EIMC => {
                self.mask &= !u64::from(v & 0xFFFF);
                self.other_mask &= !(v >> 16);
            }
            EIAM => {
                self.automask = (self.automask & !0xFFFF) | u64::from(v & 0xFFFF);
                self.regs.insert(EIAM, v);
            }
            o if (IVAR..IVAR + 256).contains(&o) => self.ivar[((o - IVAR) / 4) as usize] = v,
            o if o == EICS_EX || o == EICS_EX + 4 => {
                self.cause |= u64::from(v) << (32 * ((o - EICS_EX) / 4));
                self.fire_pending(p);
            }
            o if o == EIMS_EX || o == EIMS_EX + 4 => {
                self.mask |= u64::from(v) << (32 * ((o - EIMS_EX) / 4));
                self.fire_pending(p);
            }
            o if o == EIMC_EX || o == EIMC_EX + 4 => {
                self.mask &= !(u64::from(v) << (32 * ((o - EIMC_EX) / 4)));
            }
            o if o == EIAM_EX || o == EIAM_EX + 4 => {
                let sh = 32 * ((o - EIAM_EX) / 4);
                self.automask = (self.automask & !(0xFFFF_FFFFu64 << sh)) | u64::from(v) << sh;
            }
            o if (SRRCTL_ALIAS..SRRCTL_ALIAS + 64).contains(&o) => {
                self.rxq[((o - SRRCTL_ALIAS) / 4) as usize].srrctl = v
            }
            o if (MTA..MTA + 512).contains(&o) => self.mta[((o - MTA) / 4) as usize] = v,
            o if (VFTA..VFTA + 512).contains(&o) => self.vfta[((o - VFTA) / 4) as usize] = v,
            o if (RAR_LO..RAR_LO + 128).contains(&o) => {
                self.set_rar_reg(((o - RAR_LO) / 4) as usize, v)
            }
            o if (RAR_HI..RAR_HI + 1024).contains(&o) => {
                self.set_rar_reg(((o - RAR_HI) / 4) as usize, v)
            }
            MSCA => {
                // The MDIO cycle completes at once (nobody answers).
                self.regs.insert(MSCA, v & !MSCA_MDI_COMMAND);
            }
            EERD => {
                let v = if v & EERD_START != 0 {
                    let a = (v >> 2 & 0x3FFF) as usize;
                    let w = self.eeprom.get(a).copied().unwrap_or(0xFFFF);
                    u32::from(w) << 16 | (a as u32) << 2 | EERD_DONE
                } else {
                    v
                };
                self.regs.insert(EERD, v);
            }
            RXCTRL => {
                self.regs.insert(RXCTRL, v);
                self.drain(p);
            }
            LINKS | ANLP1 | EEC | FWSM | SECRXSTAT | GPRC | BPRC | MPRC | GORCL | GORCH | TORL
            | TORH | TPR | ROC | RXMPC | GPTC | GOTCL | GOTCH | TPT => {}
            o => {
                self.regs.insert(o, v);
            }
        }
    }

    /// The model's counters as JSON (for `--stats-json`).
    pub fn counters_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.stats,
            "held": self.pb.len(),
            "promiscuous": self.reg(reg::FCTRL) & reg::FCTRL_UPE != 0,
        })
    }
}

impl Registers for Pf {
    fn config_space(&self) -> &ConfigSpace {
        &self.cfg_space
    }

    fn config_space_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg_space
    }

    fn vectors(&self) -> u32 {
        u32::from(VECTORS)
    }

    fn reg_read(&mut self, off: u64) -> u32 {
        self.read_reg(off)
    }

    fn reg_write(&mut self, off: u64, v: u32, p: &mut Platform) {
        self.write_reg(off, v, p)
    }

    fn function_reset(&mut self, _p: &mut Platform) {
        self.stats.resets += 1;
        self.hw_reset();
    }
}

#[cfg(test)]
mod tests;
