// SPDX-License-Identifier: MIT
//! The Intel 82599 virtual function (8086:10ed) with an embedded PF.
//!
//! What a KVM guest sees when the host's ixgbe PF passes it a VF: BAR0 with
//! the VF's registers (82599 datasheet 8.3.5, Linux `ixgbevf/regs.h`),
//! MSI-X in BAR3 (three vectors: two for queues, one for the mailbox), the
//! PF/VF mailbox (`VFMAILBOX`, `VFMBMEM`), and RX/TX queues with advanced
//! 16-byte descriptors. The embedded PF answers the mailbox the way Linux's
//! ixgbe PF does (`ixgbe_sriov.c`, `ixgbe_rcv_msg_from_vf`) for one VF: the
//! reset handshake with the MAC the host assigned, MAC, multicast, VLAN,
//! long packets, API negotiation, queue counts, xcast modes as the 82599
//! allows them (no unicast promiscuous mode for a VF), link state, feature
//! negotiation. Unknown requests are NACKed.
//!
//! Frames arrive through [`Vf::receive`] (from hpcap-inject) and pass the
//! PF's switch (MAC, VLAN and length filters) into RX queue 0, written as
//! the 82599 writes one-buffer advanced descriptors. A frame that finds no
//! free descriptor is dropped and counted (the PF forces drop-enable on
//! every VF queue, `PFQDE.QDE`, so the queue never stalls the port); the VF
//! itself has no counter for it (the PF's `QPRDC`), the model's
//! `no_descriptor` does.

use std::time::Instant;

use crate::pci::{ConfigSpace, Identity, MsixLayout, Registers};
use crate::transport::Platform;
use hpcap_core::desc::{IxgbeAdv, RxDone, RxFormat};
use hpcap_core::vfmbx::{self, ixgbe, msg, MSGTYPE_ACK, MSGTYPE_NACK};

/// Register offsets in BAR0 (Linux `ixgbevf/regs.h`, `mbx.h`).
pub mod reg {
    /// VF control; bit 26 is the VF's software reset.
    pub const VFCTRL: u64 = 0x0000;
    /// VF status (read by drivers to flush posted writes).
    pub const VFSTATUS: u64 = 0x0008;
    /// VF link status.
    pub const VFLINKS: u64 = 0x0010;
    /// Extended interrupt cause (one bit per MSI-X vector).
    pub const VTEICR: u64 = 0x0100;
    /// Interrupt cause set.
    pub const VTEICS: u64 = 0x0104;
    /// Interrupt mask set.
    pub const VTEIMS: u64 = 0x0108;
    /// Interrupt mask clear.
    pub const VTEIMC: u64 = 0x010C;
    /// Auto clear.
    pub const VTEIAC: u64 = 0x0110;
    /// Auto mask.
    pub const VTEIAM: u64 = 0x0114;
    /// VTIVAR(n): queue 2n and 2n+1 causes to vectors.
    pub const VTIVAR: u64 = 0x0120;
    /// VTIVAR_MISC: the mailbox cause's vector.
    pub const VTIVAR_MISC: u64 = 0x0140;
    /// VFMBMEM: the mailbox buffer, 16 dwords.
    pub const VFMBMEM: u64 = 0x0200;
    /// VFMAILBOX: the mailbox control.
    pub const VFMAILBOX: u64 = 0x02FC;
    /// Base of the RX queue registers; queue q at `+ 0x40 * q`.
    pub const RXQ: u64 = 0x1000;
    /// Base of the TX queue registers.
    pub const TXQ: u64 = 0x2000;
    /// Queue register stride.
    pub const QSTRIDE: u64 = 0x40;
    /// In an RX queue's block: descriptor base low, high, ring bytes.
    pub const RDBAL: u64 = 0x00;
    /// Descriptor base high.
    pub const RDBAH: u64 = 0x04;
    /// Ring length in bytes.
    pub const RDLEN: u64 = 0x08;
    /// Head.
    pub const RDH: u64 = 0x10;
    /// SRRCTL: buffer size, descriptor type, DROP_EN.
    pub const SRRCTL: u64 = 0x14;
    /// Tail.
    pub const RDT: u64 = 0x18;
    /// RXDCTL: enable, VLAN strip.
    pub const RXDCTL: u64 = 0x28;
    /// In a TX queue's block: head, tail, control.
    pub const TDH: u64 = 0x10;
    /// TX tail.
    pub const TDT: u64 = 0x18;
    /// TXDCTL.
    pub const TXDCTL: u64 = 0x28;
    /// VF good packets received (wraps, not cleared on read).
    pub const VFGPRC: u64 = 0x101C;
    /// VF good octets received, low 32 bits.
    pub const VFGORC_LSB: u64 = 0x1020;
    /// High bits.
    pub const VFGORC_MSB: u64 = 0x1024;
    /// VF multicast packets received.
    pub const VFMPRC: u64 = 0x1034;
    /// VF good packets transmitted.
    pub const VFGPTC: u64 = 0x201C;
    /// VF good octets transmitted, low.
    pub const VFGOTC_LSB: u64 = 0x2020;
    /// High.
    pub const VFGOTC_MSB: u64 = 0x2024;

    /// VFCTRL.RST.
    pub const CTRL_RST: u32 = 1 << 26;
    /// VFLINKS: link up, 10 Gb/s.
    pub const LINKS_UP_10G: u32 = 0x4000_0000 | 0x3000_0000;
    /// RXDCTL/TXDCTL.ENABLE.
    pub const DCTL_ENABLE: u32 = 1 << 25;
    /// RXDCTL.VME: strip VLAN tags into the descriptor.
    pub const RXDCTL_VME: u32 = 1 << 30;
    /// SRRCTL.BSIZEPACKET (1 KiB units).
    pub const SRRCTL_BSIZEPKT_MASK: u32 = 0x7F;
    /// SRRCTL.DROP_EN.
    pub const SRRCTL_DROP_EN: u32 = 1 << 28;
    /// SRRCTL.DESCTYPE field and its advanced one-buffer value.
    pub const SRRCTL_DESCTYPE_MASK: u32 = 7 << 25;
    /// Advanced, one buffer.
    pub const SRRCTL_DESCTYPE_ADV_ONEBUF: u32 = 1 << 25;
    /// IVAR entry valid.
    pub const IVAR_VALID: u32 = 0x80;

    /// VFMAILBOX bits (Linux `IXGBE_VFMAILBOX_*`).
    pub const MBX_REQ: u32 = 1 << 0;
    /// The VF acknowledges a PF message.
    pub const MBX_ACK: u32 = 1 << 1;
    /// The VF owns the buffer.
    pub const MBX_VFU: u32 = 1 << 2;
    /// The PF owns the buffer.
    pub const MBX_PFU: u32 = 1 << 3;
    /// The PF wrote a message (read to clear).
    pub const MBX_PFSTS: u32 = 1 << 4;
    /// The PF acknowledged the VF's message (read to clear).
    pub const MBX_PFACK: u32 = 1 << 5;
    /// PF reset in progress.
    pub const MBX_RSTI: u32 = 1 << 6;
    /// Reset done (read to clear).
    pub const MBX_RSTD: u32 = 1 << 7;
}

/// BAR sizes: BAR0 registers and BAR3 MSI-X, 16 KiB each (82599 VF).
const BAR0_SIZE: u64 = 0x4000;
const BAR3_SIZE: u64 = 0x4000;
/// MSI-X vectors of an 82599 VF.
pub const VECTORS: u16 = 3;
/// Queue register sets the model keeps (the driver may touch up to 8).
const QUEUES: usize = 8;
/// The PF's MTU default: 1500 + header + FCS (MAXFRS until a VF asks more).
const DEFAULT_MAX_FRAME: u32 = 1518;
/// Largest frame the ixgbe PF grants (`IXGBE_MAX_JUMBO_FRAME_SIZE`).
pub const MAX_JUMBO_FRAME: u32 = 9728;

/// The host side's settings for this VF (what `ip link set PF vf 0 ...`
/// decides).
#[derive(Debug, Clone)]
pub struct Config {
    /// The MAC the PF assigns (`ip link set PF vf 0 mac M`).
    pub mac: [u8; 6],
    /// `trust on`: all-multicast is granted (unicast promiscuous mode never
    /// is on an 82599).
    pub trust: bool,
    /// Port VLAN (`vlan VID`; 0 = none): only that VLAN reaches the VF.
    pub port_vlan: u16,
    /// With a port VLAN, Linux's PF sets `PFQDE.HIDE_VLAN`: a stripped
    /// port VLAN tag is not reported in the descriptor. False reports it.
    pub hide_port_vlan: bool,
    /// RX (and TX) queues offered in GET_QUEUES.
    pub queues: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mac: [0x02, 0, 0, 0, 0, 0x10],
            trust: false,
            port_vlan: 0,
            hide_port_vlan: true,
            queues: 1,
        }
    }
}

/// Counts the model keeps beyond what the guest can read (for tests); the
/// same names as the XL710 models' (tools/hpcap-vm reads them).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ModelStats {
    /// Frames offered to the port.
    pub frames_in: u64,
    /// Frames written into the guest's RX ring.
    pub delivered: u64,
    /// When the last of them was written (ns since the Unix epoch; 0: none).
    pub last_delivery_unix_ns: u64,
    /// Frames for the VF dropped for lack of a free descriptor (QPRDC).
    pub no_descriptor: u64,
    /// Frames the PF's switch did not give to this VF (MAC, VLAN, length).
    pub filtered: u64,
    /// Of `filtered`: longer than the largest frame the PF allows.
    pub oversize: u64,
    /// Frames for the VF that arrived while its RX queue was disabled, the
    /// function was not bus master or had not done its reset handshake.
    pub not_ready: u64,
    /// Frames the guest transmitted.
    pub tx_frames: u64,
    /// Reset handshakes (mailbox RESET) and VF software resets.
    pub resets: u64,
    /// Mailbox requests the PF NACKed.
    pub nacks: u64,
    /// xcast modes asked beyond what was granted (promiscuous on an 82599,
    /// all-multicast without trust).
    pub xcast_downgraded: u64,
    /// DMA accesses that failed.
    pub dma_errors: u64,
}

/// One queue's registers.
#[derive(Debug, Default, Clone, Copy)]
struct Queue {
    bal: u32,
    bah: u32,
    len: u32,
    head: u32,
    tail: u32,
    srrctl: u32,
    dctl: u32,
    /// Other registers of the block, by offset (DCA, RSCCTL, write-back).
    other: [u32; 16],
}

impl Queue {
    fn base(&self) -> u64 {
        u64::from(self.bah) << 32 | u64::from(self.bal & !0x7f)
    }
    fn entries(&self) -> u32 {
        self.len / 16
    }
    fn enabled(&self) -> bool {
        self.dctl & reg::DCTL_ENABLE != 0 && self.entries() > 0
    }
}

/// The PF's view of the VF.
#[derive(Debug, Clone)]
struct PfState {
    /// The VF completed a reset handshake (clear to send).
    cts: bool,
    api: u32,
    mac: [u8; 6],
    macvlans: Vec<[u8; 6]>,
    /// Multicast hashes (12-bit vectors, filter type 0: bits 47:36).
    mc_hashes: Vec<u16>,
    vlans: Vec<u16>,
    xcast: u32,
    max_frame: u32,
}

/// The 82599 VF with its embedded PF.
pub struct Vf {
    cfg_space: ConfigSpace,
    /// Host-side settings.
    pub config: Config,
    pf: PfState,
    mbx_mem: [u32; vfmbx::WORDS],
    /// Latched VFMAILBOX status bits (PFSTS, PFACK, RSTD, RSTI).
    mbx_status: u32,
    vfu: bool,
    eicr: u32,
    eims: u32,
    eiac: u32,
    eiam: u32,
    ivar: [u32; 4],
    ivar_misc: u32,
    rxq: [Queue; QUEUES],
    txq: [Queue; QUEUES],
    other_regs: std::collections::HashMap<u64, u32>,
    gprc: u32,
    gorc: u64,
    mprc: u32,
    gptc: u32,
    gotc: u64,
    /// Model-side counters.
    pub stats: ModelStats,
    tx_out: Vec<Vec<u8>>,
}

/// The 12-bit multicast hash of filter type 0 (`ixgbevf_mta_vector`).
pub fn mta_hash(mac: &[u8]) -> u16 {
    ((u16::from(mac[4]) >> 4) | (u16::from(mac[5]) << 4)) & 0xFFF
}

impl Vf {
    /// A VF as the PF created it: waiting for the driver's reset handshake.
    pub fn new(config: Config) -> Self {
        let cfg_space = ConfigSpace::new(
            Identity {
                vendor: 0x8086,
                device: 0x10ed,
                subsys_vendor: 0x8086,
                subsys: 0x0000,
                revision: 1,
                class: 0x020000,
            },
            [BAR0_SIZE, 0, 0, BAR3_SIZE, 0, 0],
            MsixLayout {
                vectors: VECTORS,
                bar: 3,
                table: 0,
                pba: 0x2000,
            },
        );
        let pf = PfState {
            cts: false,
            api: ixgbe::api::V10,
            mac: config.mac,
            macvlans: Vec::new(),
            mc_hashes: Vec::new(),
            vlans: Vec::new(),
            xcast: ixgbe::xcast::NONE,
            max_frame: DEFAULT_MAX_FRAME,
        };
        let mut vf = Vf {
            cfg_space,
            config,
            pf,
            mbx_mem: [0; vfmbx::WORDS],
            mbx_status: 0,
            vfu: false,
            eicr: 0,
            eims: 0,
            eiac: 0,
            eiam: 0,
            ivar: [0; 4],
            ivar_misc: 0,
            rxq: [Queue::default(); QUEUES],
            txq: [Queue::default(); QUEUES],
            other_regs: Default::default(),
            gprc: 0,
            gorc: 0,
            mprc: 0,
            gptc: 0,
            gotc: 0,
            stats: ModelStats::default(),
            tx_out: Vec::new(),
        };
        vf.hw_reset();
        vf
    }

    /// The xcast mode in effect (an [`ixgbe::xcast`] value).
    pub fn xcast_mode(&self) -> u32 {
        self.pf.xcast
    }

    /// The largest frame (with FCS) the PF lets through.
    pub fn max_frame(&self) -> u32 {
        self.pf.max_frame
    }

    /// What the VF's software reset (VFCTRL.RST) or an FLR clears: queues,
    /// interrupts, the mailbox; the PF sees "reset done" (RSTD).
    fn hw_reset(&mut self) {
        self.rxq = [Queue::default(); QUEUES];
        self.txq = [Queue::default(); QUEUES];
        self.eicr = 0;
        self.eims = 0;
        self.eiac = 0;
        self.eiam = 0;
        self.ivar = [0; 4];
        self.ivar_misc = 0;
        self.vfu = false;
        self.mbx_status = reg::MBX_RSTD;
    }

    /// The PF's part of a reset handshake (`ixgbe_vf_reset_event`): filters
    /// back to the host's settings, API 1.0.
    fn pf_reset_vf(&mut self) {
        self.pf.api = ixgbe::api::V10;
        self.pf.mac = self.config.mac;
        self.pf.macvlans.clear();
        self.pf.mc_hashes.clear();
        self.pf.vlans.clear();
        self.pf.xcast = ixgbe::xcast::NONE;
    }

    /// Time-driven work (none yet; the frame pump calls it every ms).
    pub fn tick(&mut self, _now: Instant, _p: &mut Platform) {}

    // ------------------------------------------------------------ interrupts

    /// Interrupt cause for MSI-X vector `v` (EICR bit v): fires when the
    /// vector is unmasked, then auto-masks/clears as EIAM/EIAC say.
    fn cause(&mut self, v: u32, p: &mut Platform) {
        if v >= u32::from(VECTORS) {
            return;
        }
        self.eicr |= 1 << v;
        self.fire_pending(p);
    }

    fn fire_pending(&mut self, p: &mut Platform) {
        let due = self.eicr & self.eims;
        for v in 0..u32::from(VECTORS) {
            let bit = 1 << v;
            if due & bit == 0 {
                continue;
            }
            p.irq.raise(v as usize);
            if self.eiam & bit != 0 {
                self.eims &= !bit;
            }
            if self.eiac & bit != 0 {
                self.eicr &= !bit;
            }
        }
    }

    /// The vector an IVAR entry maps a cause to, if valid.
    fn ivar_vector(entry: u32) -> Option<u32> {
        (entry & reg::IVAR_VALID != 0).then_some(entry & 0x3)
    }

    fn queue_cause(&mut self, q: usize, tx: bool, p: &mut Platform) {
        let Some(word) = self.ivar.get(q / 2) else {
            return;
        };
        let shift = 16 * (q as u32 & 1) + if tx { 8 } else { 0 };
        if let Some(v) = Self::ivar_vector(word >> shift & 0xff) {
            self.cause(v, p);
        }
    }

    fn mailbox_cause(&mut self, p: &mut Platform) {
        if let Some(v) = Self::ivar_vector(self.ivar_misc & 0xff) {
            self.cause(v, p);
        }
    }

    // ---------------------------------------------------------------- mailbox

    /// VFMAILBOX as the VF reads it: read-to-clear bits go.
    fn read_mailbox(&mut self) -> u32 {
        let mut v = self.mbx_status;
        if self.vfu {
            v |= reg::MBX_VFU;
        }
        self.mbx_status &= !(reg::MBX_PFSTS | reg::MBX_PFACK | reg::MBX_RSTD);
        v
    }

    fn write_mailbox(&mut self, v: u32, p: &mut Platform) {
        self.vfu = v & reg::MBX_VFU != 0;
        if v & reg::MBX_REQ != 0 {
            // The PF reads the message and acknowledges it, then answers.
            let msg = self.mbx_mem;
            self.mbx_status |= reg::MBX_PFACK;
            if let Some(reply) = self.pf_message(&msg) {
                self.pf_write(&reply);
            }
            self.mailbox_cause(p);
        } else if v & reg::MBX_ACK != 0 && !self.pf.cts {
            // `ixgbe_rcv_ack_from_vf`: a VF that has not done its reset
            // handshake is told so.
            self.pf_write(&[MSGTYPE_NACK]);
            self.mailbox_cause(p);
        }
    }

    /// The PF writes a message into the buffer and raises PFSTS.
    fn pf_write(&mut self, words: &[u32]) {
        for (i, w) in words.iter().take(vfmbx::WORDS).enumerate() {
            self.mbx_mem[i] = *w;
        }
        self.mbx_status |= reg::MBX_PFSTS;
    }

    /// The PF's answer to one message (`ixgbe_rcv_msg_from_vf`).
    fn pf_message(&mut self, m: &[u32; vfmbx::WORDS]) -> Option<Vec<u32>> {
        let w0 = m[0];
        // A message the PF already answered (its own reply read back).
        if w0 & (MSGTYPE_ACK | MSGTYPE_NACK) != 0 {
            return None;
        }
        if w0 == msg::RESET {
            self.stats.resets += 1;
            self.pf_reset_vf();
            self.pf.cts = true;
            let mac = vfmbx::mac_to_words(self.pf.mac);
            // ACK with the MAC the host set; word 3: multicast filter type 0.
            return Some(vec![msg::RESET | MSGTYPE_ACK, mac[0], mac[1], 0]);
        }
        if !self.pf.cts {
            self.stats.nacks += 1;
            return Some(vec![w0 | MSGTYPE_NACK]);
        }
        let mut reply = m.to_vec();
        let ok = match w0 & vfmbx::MSG_TYPE_MASK {
            msg::SET_MAC_ADDR => self.set_mac(vfmbx::mac_from_words(m[1], m[2])),
            msg::SET_MULTICAST => {
                let n = ((w0 & vfmbx::MSGINFO_MASK) >> vfmbx::MSGINFO_SHIFT).min(30) as usize;
                self.pf.mc_hashes = (0..n)
                    .map(|i| (m[1 + i / 2] >> (16 * (i % 2))) as u16 & 0xFFF)
                    .collect();
                true
            }
            msg::SET_VLAN => {
                let add = (w0 & vfmbx::MSGINFO_MASK) >> vfmbx::MSGINFO_SHIFT != 0;
                let vid = (m[1] & 0xFFF) as u16;
                // `ixgbe_set_vf_vlan_msg`: a VF with a port VLAN may not
                // change its VLANs.
                if self.config.port_vlan != 0 {
                    false
                } else {
                    self.pf.vlans.retain(|v| *v != vid);
                    if add {
                        self.pf.vlans.push(vid);
                    }
                    true
                }
            }
            msg::SET_LPE => {
                // `ixgbe_set_vf_lpe`: up to the 82599's jumbo limit; MAXFRS
                // only grows (it is the port's, shared with the PF).
                let f = m[1];
                if !(64..=MAX_JUMBO_FRAME).contains(&f) {
                    false
                } else {
                    self.pf.max_frame = self.pf.max_frame.max(f);
                    true
                }
            }
            ixgbe::SET_MACVLAN => {
                let index = (w0 & vfmbx::MSGINFO_MASK) >> vfmbx::MSGINFO_SHIFT;
                let mac = vfmbx::mac_from_words(m[1], m[2]);
                if index == 0 {
                    self.pf.macvlans.clear();
                    true
                } else if self.config.port_vlan == 0 || self.config.trust {
                    if index == 1 {
                        self.pf.macvlans.clear();
                    }
                    if mac[0] & 1 == 0 && mac != [0; 6] {
                        self.pf.macvlans.push(mac);
                        true
                    } else {
                        false
                    }
                } else {
                    false
                }
            }
            ixgbe::API_NEGOTIATE => {
                use ixgbe::api::*;
                // Linux's PF: 1.0 to 1.4, 1.6 and 1.7 (not 1.5, ESX's).
                let api = m[1];
                if [V10, V11, V12, V13, V14, V16, V17].contains(&api) {
                    self.pf.api = api;
                    true
                } else {
                    false
                }
            }
            ixgbe::GET_QUEUES => {
                if self.pf.api == ixgbe::api::V10 {
                    false
                } else {
                    reply[1] = self.config.queues;
                    reply[2] = self.config.queues;
                    // A port VLAN: the VF must not tag (and strips).
                    reply[3] = u32::from(self.config.port_vlan != 0);
                    reply[4] = 0;
                    true
                }
            }
            ixgbe::UPDATE_XCAST_MODE => self.xcast(m[1], &mut reply),
            ixgbe::GET_LINK_STATE => {
                reply[1] = 1;
                true
            }
            ixgbe::FEATURES_NEGOTIATE => {
                // No optional feature (IPsec, ESX mailbox) offered.
                reply[1] = 0;
                self.pf.api == ixgbe::api::V17
            }
            _ => false,
        };
        if !ok {
            self.stats.nacks += 1;
        }
        reply[0] = vfmbx::reply_word(w0, ok, true);
        Some(reply)
    }

    fn set_mac(&mut self, mac: [u8; 6]) -> bool {
        // `ixgbe_set_vf_mac_addr`: a valid unicast address; an untrusted VF
        // whose MAC the host set may not change it.
        if mac[0] & 1 != 0 || mac == [0; 6] {
            return false;
        }
        if mac != self.config.mac && !self.config.trust {
            return false;
        }
        self.pf.mac = mac;
        true
    }

    fn xcast(&mut self, asked: u32, reply: &mut [u32]) -> bool {
        use ixgbe::xcast::*;
        if self.pf.api < ixgbe::api::V12 || (self.pf.api == ixgbe::api::V12 && asked == PROMISC) {
            return false;
        }
        let mut mode = asked;
        if mode > MULTI && !self.config.trust {
            self.stats.xcast_downgraded += 1;
            mode = MULTI;
        }
        if mode == PROMISC {
            // `ixgbe_update_vf_xcast_mode`: not on an 82599.
            self.stats.xcast_downgraded += 1;
            return false;
        }
        if mode > PROMISC {
            return false;
        }
        self.pf.xcast = mode;
        reply[1] = mode;
        true
    }

    // ------------------------------------------------------------------- RX

    /// The PF's switch: does this frame go to the VF's pool? Returns the
    /// VLAN tag's TCI if the frame is tagged.
    fn accept(&mut self, frame: &[u8]) -> Result<Option<u16>, ()> {
        if frame.len() < 14 {
            return Err(());
        }
        let tagged = frame[12] == 0x81 && frame[13] == 0x00 && frame.len() >= 18;
        let tci = tagged.then(|| u16::from_be_bytes([frame[14], frame[15]]));
        let vid = tci.map(|t| t & 0xFFF);
        let vlan_ok = if self.config.port_vlan != 0 {
            vid == Some(self.config.port_vlan)
        } else {
            // Untagged and priority-tagged frames reach the pool (AUPE);
            // tagged ones only for VLANs the VF joined.
            matches!(vid, None | Some(0)) || vid.is_some_and(|v| self.pf.vlans.contains(&v))
        };
        if !vlan_ok {
            return Err(());
        }
        let dst = &frame[0..6];
        let mac_ok = if dst == [0xff; 6] {
            true
        } else if dst[0] & 1 != 0 {
            self.pf.xcast >= ixgbe::xcast::ALLMULTI
                || (self.pf.xcast >= ixgbe::xcast::MULTI
                    && self.pf.mc_hashes.contains(&mta_hash(dst)))
        } else {
            dst == self.pf.mac || self.pf.macvlans.iter().any(|m| m == dst)
        };
        if !mac_ok {
            return Err(());
        }
        // MAXFRS counts the frame with its FCS; one VLAN tag is extra.
        let len = frame.len() as u32 + 4 - if tagged { 4 } else { 0 };
        if len > self.pf.max_frame {
            self.stats.oversize += 1;
            return Err(());
        }
        Ok(tci)
    }

    /// A frame arrives at the port. Returns true when it was written into
    /// the guest's ring.
    pub fn receive(&mut self, frame: &[u8], p: &mut Platform) -> bool {
        self.stats.frames_in += 1;
        let Ok(tci) = self.accept(frame) else {
            self.stats.filtered += 1;
            return false;
        };
        let q = self.rxq[0];
        if !q.enabled() || !self.cfg_space.bus_master() || !self.pf.cts {
            self.stats.not_ready += 1;
            return false;
        }
        let strip = tci.is_some() && q.dctl & reg::RXDCTL_VME != 0;
        let stripped;
        let data: &[u8] = if strip {
            stripped = [&frame[..12], &frame[16..]].concat();
            &stripped
        } else {
            frame
        };
        let report = strip && !(self.config.port_vlan != 0 && self.config.hide_port_vlan);
        let buf = ((q.srrctl & reg::SRRCTL_BSIZEPKT_MASK).max(1) * 1024) as usize;
        let n = q.entries();
        let need = data.len().div_ceil(buf).max(1) as u32;
        let free = (q.tail + n - q.head) % n;
        if free < need {
            // PFQDE.QDE: the PF made every VF queue drop when it is full.
            self.stats.no_descriptor += 1;
            return false;
        }
        let mut head = q.head;
        let chunks = data.chunks(buf).count().max(1);
        for (k, chunk) in data.chunks(buf).enumerate() {
            let at = q.base() + u64::from(head) * 16;
            let Ok(pkt_addr) = p.mem.read_u64(at) else {
                self.stats.dma_errors += 1;
                return false;
            };
            if p.mem.write(pkt_addr, chunk).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            let wb = IxgbeAdv::write_back(&RxDone {
                len: chunk.len() as u32,
                eop: k + 1 == chunks,
                error: false,
                skip: false,
                vlan: if report { tci } else { None },
            });
            let mut b = [0u8; 16];
            b[0..8].copy_from_slice(&wb[0].to_le_bytes());
            b[8..16].copy_from_slice(&wb[1].to_le_bytes());
            if p.mem.write(at, &b).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            head = (head + 1) % n;
        }
        self.rxq[0].head = head;
        self.stats.delivered += 1;
        self.stats.last_delivery_unix_ns = crate::unix_ns();
        self.gprc = self.gprc.wrapping_add(1);
        self.gorc += frame.len() as u64 + 4;
        if frame[0] & 1 != 0 {
            self.mprc = self.mprc.wrapping_add(1);
        }
        self.queue_cause(0, false, p);
        true
    }

    // ------------------------------------------------------------------- TX

    /// The guest advanced a TX tail: complete its advanced descriptors
    /// (context descriptors are skipped; DD is written where RS asks).
    fn transmit(&mut self, qi: usize, p: &mut Platform) {
        let q = self.txq[qi];
        if !q.enabled() || !self.cfg_space.bus_master() {
            return;
        }
        let w = crate::e82599_queues::transmit(&p.mem, q.base(), q.entries(), q.head, q.tail);
        self.stats.dma_errors += w.dma_errors;
        for f in &w.frames {
            self.stats.tx_frames += 1;
            self.gptc = self.gptc.wrapping_add(1);
            self.gotc += f.len() as u64 + 4;
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

    /// A register read (32-bit).
    pub fn read_reg(&mut self, off: u64) -> u32 {
        use reg::*;
        match off {
            VFCTRL => 0,
            VFSTATUS => 0x0000_0080,
            VFLINKS => LINKS_UP_10G,
            VTEICR => std::mem::take(&mut self.eicr),
            VTEICS => self.eicr,
            VTEIMS | VTEIMC => self.eims,
            VTEIAC => self.eiac,
            VTEIAM => self.eiam,
            o if (VTIVAR..VTIVAR + 16).contains(&o) => self.ivar[((o - VTIVAR) / 4) as usize],
            VTIVAR_MISC => self.ivar_misc,
            VFMAILBOX => self.read_mailbox(),
            o if (VFMBMEM..VFMBMEM + 64).contains(&o) => self.mbx_mem[((o - VFMBMEM) / 4) as usize],
            VFGPRC => self.gprc,
            VFGORC_LSB => self.gorc as u32,
            VFGORC_MSB => (self.gorc >> 32) as u32 & 0xF,
            VFMPRC => self.mprc,
            VFGPTC => self.gptc,
            VFGOTC_LSB => self.gotc as u32,
            VFGOTC_MSB => (self.gotc >> 32) as u32 & 0xF,
            o if (RXQ..RXQ + QSTRIDE * QUEUES as u64).contains(&o) => {
                let q = &self.rxq[((o - RXQ) / QSTRIDE) as usize];
                match (o - RXQ) % QSTRIDE {
                    RDBAL => q.bal,
                    RDBAH => q.bah,
                    RDLEN => q.len,
                    RDH => q.head,
                    SRRCTL => q.srrctl,
                    RDT => q.tail,
                    RXDCTL => q.dctl,
                    r => q.other[(r / 4) as usize],
                }
            }
            o if (TXQ..TXQ + QSTRIDE * QUEUES as u64).contains(&o) => {
                let q = &self.txq[((o - TXQ) / QSTRIDE) as usize];
                match (o - TXQ) % QSTRIDE {
                    RDBAL => q.bal,
                    RDBAH => q.bah,
                    RDLEN => q.len,
                    TDH => q.head,
                    TDT => q.tail,
                    TXDCTL => q.dctl,
                    r => q.other[(r / 4) as usize],
                }
            }
            o => self.other_regs.get(&o).copied().unwrap_or(0),
        }
    }

    /// A register write (32-bit).
    pub fn write_reg(&mut self, off: u64, v: u32, p: &mut Platform) {
        use reg::*;
        match off {
            VFCTRL => {
                if v & CTRL_RST != 0 {
                    self.stats.resets += 1;
                    self.hw_reset();
                }
            }
            VTEICR => self.eicr &= !v,
            VTEICS => {
                self.eicr |= v & ((1 << VECTORS) - 1);
                self.fire_pending(p);
            }
            VTEIMS => {
                self.eims |= v & ((1 << VECTORS) - 1);
                self.fire_pending(p);
            }
            VTEIMC => self.eims &= !v,
            VTEIAC => self.eiac = v,
            VTEIAM => self.eiam = v,
            o if (VTIVAR..VTIVAR + 16).contains(&o) => self.ivar[((o - VTIVAR) / 4) as usize] = v,
            VTIVAR_MISC => self.ivar_misc = v,
            VFMAILBOX => self.write_mailbox(v, p),
            o if (VFMBMEM..VFMBMEM + 64).contains(&o) => {
                self.mbx_mem[((o - VFMBMEM) / 4) as usize] = v
            }
            VFGPRC | VFGORC_LSB | VFGORC_MSB | VFMPRC | VFGPTC | VFGOTC_LSB | VFGOTC_MSB => {}
            o if (RXQ..RXQ + QSTRIDE * QUEUES as u64).contains(&o) => {
                let q = &mut self.rxq[((o - RXQ) / QSTRIDE) as usize];
                match (o - RXQ) % QSTRIDE {
                    RDBAL => q.bal = v,
                    RDBAH => q.bah = v,
                    RDLEN => q.len = v & 0xF_FF80,
                    RDH => q.head = v & 0xFFFF,
                    SRRCTL => q.srrctl = v,
                    RDT => q.tail = v & 0xFFFF,
                    RXDCTL => q.dctl = v,
                    r => q.other[(r / 4) as usize] = v,
                }
                if q.entries() > 0 {
                    q.head %= q.entries();
                    q.tail %= q.entries();
                }
            }
            o if (TXQ..TXQ + QSTRIDE * QUEUES as u64).contains(&o) => {
                let i = ((o - TXQ) / QSTRIDE) as usize;
                let q = &mut self.txq[i];
                match (o - TXQ) % QSTRIDE {
                    RDBAL => q.bal = v,
                    RDBAH => q.bah = v,
                    RDLEN => q.len = v & 0xF_FF80,
                    TDH => q.head = v & 0xFFFF,
                    TDT => {
                        q.tail = v & 0xFFFF;
                        self.transmit(i, p);
                    }
                    TXDCTL => q.dctl = v,
                    r => q.other[(r / 4) as usize] = v,
                }
            }
            o => {
                self.other_regs.insert(o, v);
            }
        }
    }

    /// The model's counters as JSON (for `--stats-json`).
    pub fn counters_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model": self.stats,
            "vf": {"vfgprc": self.gprc, "vfgorc": self.gorc, "vfmprc": self.mprc,
                   "vfgptc": self.gptc, "vfgotc": self.gotc},
            "xcast_mode": self.pf.xcast,
            "api": self.pf.api,
            "max_frame": self.pf.max_frame,
        })
    }
}

impl Registers for Vf {
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
        // A function-level reset: the VF's registers; the PF notices the
        // VFLR and makes the VF redo its reset handshake.
        self.stats.resets += 1;
        self.hw_reset();
        self.pf.cts = false;
        self.pf_reset_vf();
    }
}

#[cfg(test)]
mod tests;
