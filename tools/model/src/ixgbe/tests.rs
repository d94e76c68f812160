// SPDX-License-Identifier: MIT
//! The 82599 PF model driven the way Linux's ixgbe drives it, without QEMU:
//! EEPROM through EERD, reset, the SFP+ module, RX rings and frames.

use super::reg::*;
use super::*;
use crate::transport::{PciFunction, Platform};

const MEM: u64 = 0x10_0000;
const RING: u64 = MEM + 0x1000;
const BUFS: u64 = MEM + 0x10000;
const RING_LEN: u32 = 16;
const OWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

struct Driver {
    pf: Pf,
    p: Platform,
}

impl Driver {
    fn new() -> Self {
        let mut d = Driver {
            pf: Pf::new(Config::default()),
            p: Platform::for_tests(MEM, 0x10_0000, VECTORS as usize),
        };
        d.pf.config_write(4, &[0x06, 0], &mut d.p);
        d
    }

    fn w(&mut self, off: u64, v: u32) {
        self.pf.write_reg(off, v, &mut self.p);
    }

    fn r(&mut self, off: u64) -> u32 {
        self.pf.read_reg(off)
    }

    /// `ixgbe_read_eerd_generic`.
    fn eeprom(&mut self, a: u16) -> u16 {
        self.w(EERD, u32::from(a) << 2 | EERD_START);
        let v = self.r(EERD);
        assert!(v & EERD_DONE != 0);
        (v >> 16) as u16
    }

    /// Queue 0 as `ixgbe_configure_rx_ring` sets it up, all descriptors
    /// given to the device, vector 1 for its cause.
    fn rx_up(&mut self, srrctl: u32, dctl_extra: u32) {
        self.w(RXQ_LO + DBAL, RING as u32);
        self.w(RXQ_LO + DBAH, 0);
        self.w(RXQ_LO + DLEN, RING_LEN * 16);
        self.w(RXQ_LO + DH, 0);
        self.w(SRRCTL_ALIAS, srrctl);
        self.arm(0..RING_LEN);
        self.w(IVAR, 0x81);
        self.w(RXQ_LO + DCTL, DCTL_ENABLE | dctl_extra);
        assert!(self.r(RXQ_LO + DCTL) & DCTL_ENABLE != 0);
        self.w(RXQ_LO + DT, RING_LEN - 1);
        self.w(RXCTRL, RXCTRL_RXEN);
        self.w(FCTRL, FCTRL_BAM);
        self.w(EIMS_EX, !0);
    }

    /// Descriptors `r` point at their buffers again (as ixgbe re-arms them).
    fn arm(&mut self, r: std::ops::Range<u32>) {
        for i in r {
            let at = RING + u64::from(i) * 16;
            self.p
                .mem
                .write(at, &(BUFS + u64::from(i) * 2048).to_le_bytes())
                .unwrap();
            self.p.mem.write(at + 8, &0u64.to_le_bytes()).unwrap();
        }
    }

    fn desc(&self, i: u32) -> (u64, u64) {
        let mut b = [0u8; 16];
        self.p.mem.read(RING + u64::from(i) * 16, &mut b).unwrap();
        (
            u64::from_le_bytes(b[0..8].try_into().unwrap()),
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
        )
    }

    fn rx(&mut self, f: &[u8]) {
        self.pf.receive(f, &mut self.p);
    }
}

fn frame(dst: [u8; 6], len: usize, seq: u8) -> Vec<u8> {
    let mut f = vec![seq; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f[12] = 0x88;
    f[13] = 0xb5;
    f
}

#[test]
fn eeprom_checksum_is_valid_and_the_pointers_lead_where_ixgbe_looks() {
    let mut d = Driver::new();
    // ixgbe_calc_eeprom_checksum_generic over what EERD returns.
    let words: Vec<u16> = (0..0x200).map(|a| d.eeprom(a)).collect();
    assert_eq!(checksum(&words), words[0x3F], "EEPROM checksum");
    // ixgbe_verify_fw_version_82599: FW_PTR -> pass-through config -> version > 5.
    let fw = d.eeprom(0x0F);
    let ptp = d.eeprom(fw + 4);
    assert!(d.eeprom(ptp + 7) > 5);
    // LESM off.
    assert_eq!(d.eeprom(fw + 2), 0xFFFF);
    // ixgbe_get_sfp_init_sequence_offsets: DA core 0 (3) has a data block.
    let list = d.eeprom(0x2B);
    assert_eq!(d.eeprom(list + 1), 3);
    let data = d.eeprom(list + 2);
    assert_eq!(d.eeprom(data + 1), 0xFFFF);
    // EEC: present, auto-read done.
    assert_eq!(d.r(EEC) & 0x300, 0x300);
}

#[test]
fn reset_self_clears_and_reloads_the_mac() {
    let mut d = Driver::new();
    d.w(RAR_LO, 0);
    d.w(RAR_LO + 4, 0);
    d.w(CTRL, CTRL_RST);
    assert_eq!(d.r(CTRL) & CTRL_RST, 0, "RST self-clears");
    let lo = d.r(RAR_LO).to_le_bytes();
    let hi = d.r(RAR_LO + 4);
    assert_eq!(&lo[..], &OWN[..4]);
    assert_eq!(hi & 0xFFFF, u32::from(u16::from_le_bytes([OWN[4], OWN[5]])));
    assert!(hi & RAH_AV != 0);
    // The same entry through the 82599's own RAL/RAH addresses.
    assert_eq!(d.r(RAR_HI), d.r(RAR_LO));
    assert_eq!(d.pf.stats.resets, 1);
    assert_eq!(d.r(LINKS) & LINKS_UP_10G, LINKS_UP_10G);
    assert!(d.r(ESDP) & ESDP_SDP2 != 0, "SFP+ cage full");
}

#[test]
fn semaphores_behave_as_ixgbe_expects() {
    let mut d = Driver::new();
    // ixgbe_get_eeprom_semaphore: SMBI reads 0 once, then 1 until released.
    assert_eq!(d.r(SWSM) & SWSM_SMBI, 0);
    assert_eq!(d.r(SWSM) & SWSM_SMBI, 1);
    d.w(SWSM, 0x2 | SWSM_SMBI);
    assert_eq!(d.r(SWSM) & 0x2, 0x2, "SWESMBI sticks");
    d.w(SWSM, 0);
    assert_eq!(d.r(SWSM) & SWSM_SMBI, 0);
    // MDIO: a command completes at once; nobody answers.
    d.w(MSCA, MSCA_MDI_COMMAND | 0x1234);
    assert_eq!(d.r(MSCA) & MSCA_MDI_COMMAND, 0);
    assert_eq!(d.r(MSRWD) >> 16, 0xFFFF);
}

#[test]
fn frames_are_written_as_advanced_one_buffer_descriptors() {
    let mut d = Driver::new();
    d.rx_up(SRRCTL_DESCTYPE_ADV_ONEBUF | 2, 0);
    let f = frame(OWN, 60, 1);
    d.rx(&f);
    let mut got = vec![0u8; 60];
    d.p.mem.read(BUFS, &mut got).unwrap();
    assert_eq!(got, f);
    let (_, hi) = d.desc(0);
    let done = IxgbeAdv::decode(&[d.desc(0).0, hi]).expect("DD");
    assert_eq!(done.len, 60);
    assert!(done.eop);
    assert_eq!(d.r(RXQ_LO + DH), 1);
    assert_eq!(d.p.irq.raised[1], 1, "IVAR routes queue 0 to vector 1");
    // Not for us, not promiscuous: filtered.
    d.rx(&frame([0x02, 0, 0, 0, 0, 0x77], 60, 2));
    assert_eq!(d.pf.stats.filtered, 1);
    d.w(FCTRL, FCTRL_UPE | FCTRL_MPE | FCTRL_BAM);
    d.rx(&frame([0x02, 0, 0, 0, 0, 0x77], 1514, 3));
    // 1514 in 2 KiB buffers: one descriptor.
    assert_eq!(d.r(RXQ_LO + DH), 2);
    // A jumbo frame is refused without JUMBOEN...
    d.rx(&frame(OWN, 3000, 4));
    assert_eq!(d.pf.stats.oversize, 1);
    // ... and chained over two buffers with it.
    d.w(HLREG0, HLREG0_JUMBOEN | 2);
    d.w(MAXFRS, 9018 << 16);
    d.rx(&frame(OWN, 3000, 5));
    assert_eq!(d.r(RXQ_LO + DH), 4);
    let first = IxgbeAdv::decode(&[d.desc(2).0, d.desc(2).1]).unwrap();
    assert!(!first.eop && first.len == 2048);
    // Statistics, clear on read.
    assert_eq!(d.r(GPRC), 3);
    assert_eq!(d.r(GPRC), 0);
    assert_eq!(d.r(GORCL), 64 + 1518 + 3004);
    assert_eq!(d.r(GORCH), 0);
    assert_eq!(d.r(ROC), 1);
    assert_eq!(d.r(RXQ_LO + QCOUNT), 3, "QPRC0");
}

#[test]
fn vlan_tags_are_stripped_only_when_rxdctl_vme_is_set() {
    let mut d = Driver::new();
    d.rx_up(SRRCTL_DESCTYPE_ADV_ONEBUF | 2, RXDCTL_VME);
    let mut f = frame(OWN, 64, 1);
    f.splice(12..12, [0x81, 0x00, 0x00, 0x05]);
    d.rx(&f);
    let done = IxgbeAdv::decode(&[d.desc(0).0, d.desc(0).1]).unwrap();
    assert_eq!(done.vlan, Some(5));
    assert_eq!(done.len as usize, f.len() - 4);
    d.w(RXQ_LO + DCTL, DCTL_ENABLE);
    d.rx(&f);
    let done = IxgbeAdv::decode(&[d.desc(1).0, d.desc(1).1]).unwrap();
    assert_eq!(done.vlan, None);
    assert_eq!(done.len as usize, f.len());
    let mut got = vec![0u8; f.len()];
    d.p.mem.read(BUFS + 2048, &mut got).unwrap();
    assert_eq!(got, f, "tag kept in the buffer");
    // VLAN filtering: VFE on, VID 5 not in the table.
    d.w(VLNCTRL, VLNCTRL_VFE);
    d.rx(&f);
    assert_eq!(d.pf.stats.filtered, 1);
    d.w(VFTA, 1 << 5);
    d.rx(&f);
    assert_eq!(d.pf.stats.delivered, 3);
}

#[test]
fn a_full_ring_drops_with_drop_en_and_holds_then_misses_without() {
    let mut d = Driver::new();
    d.rx_up(SRRCTL_DESCTYPE_ADV_ONEBUF | 2 | SRRCTL_DROP_EN, 0);
    for i in 0..20 {
        d.rx(&frame(OWN, 100, i));
    }
    // RING_LEN - 1 descriptors were given.
    assert_eq!(d.pf.stats.delivered, 15);
    assert_eq!(d.pf.stats.no_descriptor, 5);
    assert_eq!(d.r(RXQ_LO + 16 * QSTRIDE + QCOUNT), 5, "QPRDC0");
    // Without DROP_EN frames wait in the packet buffer ...
    let mut d = Driver::new();
    d.rx_up(SRRCTL_DESCTYPE_ADV_ONEBUF | 2, 0);
    d.w(RXPBSIZE, 10 * 1024); // a 10 KiB buffer for the test
    for i in 0..30 {
        d.rx(&frame(OWN, 1000, i));
    }
    assert_eq!(d.pf.stats.delivered, 15);
    assert_eq!(d.counters_held(), 10);
    assert_eq!(d.pf.stats.missed, 5);
    assert_eq!(d.r(RXMPC), 5);
    // ... and go to the ring when the driver gives descriptors back.
    d.arm(0..RING_LEN);
    d.w(RXQ_LO + DT, (RING_LEN - 1 + 10) % RING_LEN);
    assert_eq!(d.pf.stats.delivered, 25);
    assert_eq!(d.counters_held(), 0);
    let s = d.pf.stats;
    assert_eq!(
        s.frames_in,
        s.delivered + s.missed + s.no_descriptor + s.filtered + s.not_ready
    );
}

impl Driver {
    fn counters_held(&self) -> usize {
        self.pf.counters_json()["held"].as_u64().unwrap() as usize
    }
}

#[test]
fn the_sfp_module_answers_over_i2cctl() {
    let mut d = Driver::new();
    // One byte read at 0xA0 offset 8, bit-banged the way ixgbe does it.
    let mut ctl = sfp::CLK_OUT | sfp::DATA_OUT;
    let mut set = |d: &mut Driver, bit: u32, on: bool| {
        if on {
            ctl |= bit
        } else {
            ctl &= !bit
        }
        d.w(I2CCTL, ctl);
    };
    let out = |d: &mut Driver, set: &mut dyn FnMut(&mut Driver, u32, bool), v: u8| {
        for i in (0..8).rev() {
            set(d, sfp::DATA_OUT, v >> i & 1 != 0);
            set(d, sfp::CLK_OUT, true);
            set(d, sfp::CLK_OUT, false);
        }
        set(d, sfp::DATA_OUT, true);
        set(d, sfp::CLK_OUT, true);
        let ack = d.r(I2CCTL) & sfp::DATA_IN == 0;
        set(d, sfp::CLK_OUT, false);
        ack
    };
    let start = |d: &mut Driver, set: &mut dyn FnMut(&mut Driver, u32, bool)| {
        set(d, sfp::DATA_OUT, true);
        set(d, sfp::CLK_OUT, true);
        set(d, sfp::DATA_OUT, false);
        set(d, sfp::CLK_OUT, false);
    };
    start(&mut d, &mut set);
    assert!(out(&mut d, &mut set, 0xA0));
    assert!(out(&mut d, &mut set, 8));
    start(&mut d, &mut set);
    assert!(out(&mut d, &mut set, 0xA1));
    let mut v = 0u8;
    for _ in 0..8 {
        set(&mut d, sfp::CLK_OUT, true);
        v = v << 1 | u8::from(d.r(I2CCTL) & sfp::DATA_IN != 0);
        set(&mut d, sfp::CLK_OUT, false);
    }
    assert_eq!(v, 0x04, "passive DA cable");
    assert_eq!(d.pf.stats.sfp_bytes_read, 1);
}

#[test]
fn msix_capability_sits_where_ixgbe_reads_the_table_size() {
    let mut d = Driver::new();
    let mut b = [0u8; 2];
    d.pf.config_read(0x72, &mut b);
    assert_eq!(u16::from_le_bytes(b) & 0x7FF, VECTORS - 1);
    let mut id = [0u8; 4];
    d.pf.config_read(0, &mut id);
    assert_eq!(u32::from_le_bytes(id), 0x10fb_8086);
}
