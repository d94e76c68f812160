// SPDX-License-Identifier: MIT
//! The 82599 VF model driven the way Linux's ixgbevf drives it, without
//! QEMU: the legacy mailbox handshake (`ixgbevf_write_mbx_vf_legacy`,
//! `ixgbevf_read_mbx_vf_legacy`), queue setup and frames.

use super::*;
use crate::transport::{PciFunction, Platform};
use hpcap_core::vfmbx::MSGTYPE_CTS;

const MEM: u64 = 0x10_0000;
const RING: u64 = MEM + 0x1000;
const BUFS: u64 = MEM + 0x10000;
const TXRING: u64 = MEM + 0x8000;
const RING_LEN: u32 = 32;
const OWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

struct Driver {
    vf: Vf,
    p: Platform,
}

impl Driver {
    fn new(config: Config) -> Self {
        let mut d = Driver {
            vf: Vf::new(config),
            p: Platform::for_tests(MEM, 0x10_0000, VECTORS as usize),
        };
        d.vf.config_write(4, &[0x06, 0], &mut d.p);
        d
    }

    fn w(&mut self, off: u64, v: u32) {
        self.vf.write_reg(off, v, &mut self.p);
    }

    fn r(&mut self, off: u64) -> u32 {
        self.vf.read_reg(off)
    }

    /// One request and the PF's reply, as ixgbevf's legacy mailbox does it:
    /// take the buffer (VFU), write, REQ; wait for PFSTS; read; ACK.
    fn call(&mut self, msg: &[u32]) -> [u32; 16] {
        self.w(reg::VFMAILBOX, reg::MBX_VFU);
        assert_ne!(
            self.r(reg::VFMAILBOX) & reg::MBX_VFU,
            0,
            "VF does not own the buffer"
        );
        for (i, w) in msg.iter().enumerate() {
            self.w(reg::VFMBMEM + 4 * i as u64, *w);
        }
        self.w(reg::VFMAILBOX, reg::MBX_REQ);
        assert_ne!(self.r(reg::VFMAILBOX) & reg::MBX_PFSTS, 0, "no reply");
        let mut r = [0u32; 16];
        for (i, w) in r.iter_mut().enumerate() {
            *w = self.r(reg::VFMBMEM + 4 * i as u64);
        }
        self.w(reg::VFMAILBOX, reg::MBX_ACK);
        r
    }

    /// ixgbevf's probe: VF reset, RESET handshake, API 1.7, features,
    /// queues; returns the MAC the PF gave.
    fn probe(&mut self) -> [u8; 6] {
        self.w(reg::VFCTRL, reg::CTRL_RST);
        assert_ne!(self.r(reg::VFMAILBOX) & reg::MBX_RSTD, 0, "reset done");
        assert_eq!(
            self.r(reg::VFMAILBOX) & reg::MBX_RSTD,
            0,
            "RSTD clears on read"
        );
        let r = self.call(&[msg::RESET]);
        assert_eq!(r[0], msg::RESET | MSGTYPE_ACK);
        let mac = vfmbx::mac_from_words(r[1], r[2]);
        let r = self.call(&[ixgbe::API_NEGOTIATE, ixgbe::api::V17, 0]);
        assert_eq!(r[0], ixgbe::API_NEGOTIATE | MSGTYPE_ACK | MSGTYPE_CTS);
        let r = self.call(&[ixgbe::FEATURES_NEGOTIATE, 0xff]);
        assert_eq!((r[0] & MSGTYPE_ACK, r[1]), (MSGTYPE_ACK, 0));
        let r = self.call(&[ixgbe::GET_QUEUES, 0, 0, 0, 0]);
        assert_eq!(r[0], ixgbe::GET_QUEUES | MSGTYPE_ACK | MSGTYPE_CTS);
        assert_eq!((r[1], r[2]), (1, 1));
        mac
    }

    /// Queue 0 as ixgbevf_configure_rx_ring sets it up, all descriptors
    /// armed with 2 KiB buffers; VME as asked.
    fn rx_ring(&mut self, vme: bool, bsize_kb: u32) {
        let q = reg::RXQ;
        self.w(q + reg::RDBAL, RING as u32);
        self.w(q + reg::RDBAH, 0);
        self.w(q + reg::RDLEN, RING_LEN * 16);
        self.w(q + reg::RDH, 0);
        self.w(q + reg::RDT, 0);
        self.w(
            q + reg::SRRCTL,
            reg::SRRCTL_DROP_EN | bsize_kb | reg::SRRCTL_DESCTYPE_ADV_ONEBUF,
        );
        let vme = if vme { reg::RXDCTL_VME } else { 0 };
        self.w(q + reg::RXDCTL, reg::DCTL_ENABLE | vme);
        assert_ne!(self.r(q + reg::RXDCTL) & reg::DCTL_ENABLE, 0);
        for i in 0..RING_LEN {
            self.arm(i);
        }
    }

    fn arm(&mut self, i: u32) {
        let buf = BUFS + u64::from(i) * 0x2000;
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&buf.to_le_bytes());
        self.p.mem.write(RING + u64::from(i) * 16, &d).unwrap();
    }

    fn desc(&self, i: u32) -> (RxDone, Vec<u8>) {
        let mut d = [0u8; 16];
        self.p.mem.read(RING + u64::from(i) * 16, &mut d).unwrap();
        let w = [
            u64::from_le_bytes(d[0..8].try_into().unwrap()),
            u64::from_le_bytes(d[8..16].try_into().unwrap()),
        ];
        let done = IxgbeAdv::decode(&w).expect("descriptor not done");
        let mut data = vec![0u8; done.len as usize];
        self.p
            .mem
            .read(BUFS + u64::from(i) * 0x2000, &mut data)
            .unwrap();
        (done, data)
    }
}

fn frame(dst: [u8; 6], len: usize, seq: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x99, 0x08, 0x00]);
    f.resize(len, seq);
    f
}

fn tagged(f: &[u8], tci: u16) -> Vec<u8> {
    [&f[..12], &[0x81, 0x00], &tci.to_be_bytes(), &f[12..]].concat()
}

#[test]
fn reset_handshake_gives_the_host_mac_and_cts() {
    let mut d = Driver::new(Config::default());
    // Before the handshake the PF refuses everything (no CTS).
    let r = d.call(&[msg::SET_LPE, 1522]);
    assert_eq!(r[0], msg::SET_LPE | MSGTYPE_NACK);
    assert_eq!(d.probe(), OWN);
    assert_eq!(d.vf.stats.resets, 2, "VFCTRL.RST and the RESET message");
    // The API Linux's PF does not offer (1.5, ESX) is refused.
    let r = d.call(&[ixgbe::API_NEGOTIATE, ixgbe::api::V15, 0]);
    assert_eq!(r[0] & (MSGTYPE_ACK | MSGTYPE_NACK), MSGTYPE_NACK);
    // Unknown requests are NACKed with CTS.
    let r = d.call(&[0x7f]);
    assert_eq!(r[0], 0x7f | MSGTYPE_NACK | MSGTYPE_CTS);
}

#[test]
fn mac_lpe_and_xcast_as_an_ixgbe_pf_grants_them() {
    let mut d = Driver::new(Config::default());
    d.probe();
    // An untrusted VF keeps the host's MAC.
    let other = vfmbx::mac_to_words([0x02, 0, 0, 0, 0, 0x55]);
    let r = d.call(&[msg::SET_MAC_ADDR, other[0], other[1]]);
    assert_eq!(r[0] & MSGTYPE_NACK, MSGTYPE_NACK);
    let own = vfmbx::mac_to_words(OWN);
    assert!(vfmbx::is_ack_of(
        msg::SET_MAC_ADDR,
        d.call(&[msg::SET_MAC_ADDR, own[0], own[1]])[0]
    ));
    // Long packets up to 9728.
    assert!(vfmbx::is_ack_of(
        msg::SET_LPE,
        d.call(&[msg::SET_LPE, 9018])[0]
    ));
    assert_eq!(d.vf.max_frame(), 9018);
    assert!(!vfmbx::is_ack_of(
        msg::SET_LPE,
        d.call(&[msg::SET_LPE, 9729])[0]
    ));
    // Promiscuous: an untrusted VF gets multicast mode, and is told so.
    let r = d.call(&[ixgbe::UPDATE_XCAST_MODE, ixgbe::xcast::PROMISC]);
    assert!(vfmbx::is_ack_of(ixgbe::UPDATE_XCAST_MODE, r[0]));
    assert_eq!(r[1], ixgbe::xcast::MULTI);
    // A trusted VF gets all-multicast, but no unicast promiscuous mode on an 82599.
    let mut d = Driver::new(Config {
        trust: true,
        ..Config::default()
    });
    d.probe();
    let r = d.call(&[ixgbe::UPDATE_XCAST_MODE, ixgbe::xcast::PROMISC]);
    assert_eq!(r[0] & MSGTYPE_NACK, MSGTYPE_NACK);
    let r = d.call(&[ixgbe::UPDATE_XCAST_MODE, ixgbe::xcast::ALLMULTI]);
    assert_eq!(
        (r[0] & MSGTYPE_ACK, r[1]),
        (MSGTYPE_ACK, ixgbe::xcast::ALLMULTI)
    );
    assert_eq!(d.vf.xcast_mode(), ixgbe::xcast::ALLMULTI);
}

#[test]
fn frames_are_written_as_one_buffer_advanced_descriptors() {
    let mut d = Driver::new(Config::default());
    d.probe();
    d.rx_ring(true, 2);
    let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(OWN, 60 + 300 * i, i as u8)).collect();
    // Nothing is handed over yet: every frame is the NIC's drop.
    assert!(!d.vf.receive(&frames[0], &mut d.p));
    assert_eq!(d.vf.stats.no_descriptor, 1);
    d.w(reg::RXQ + reg::RDT, RING_LEN - 1);
    for f in &frames {
        assert!(d.vf.receive(f, &mut d.p));
    }
    for (i, f) in frames.iter().enumerate() {
        let (done, data) = d.desc(i as u32);
        assert!(done.eop && !done.error && done.vlan.is_none());
        assert_eq!(&data, f);
    }
    assert_eq!(d.r(reg::RXQ + reg::RDH), 5);
    assert_eq!(d.r(reg::VFGPRC), 5);
    let bytes: usize = frames.iter().map(|f| f.len() + 4).sum();
    assert_eq!(d.r(reg::VFGORC_LSB) as usize, bytes);
    // Other unicast MACs are not for this VF.
    assert!(!d
        .vf
        .receive(&frame([0x02, 0, 0, 0, 0, 0x77], 60, 0), &mut d.p));
    assert!(d.vf.receive(&frame([0xff; 6], 60, 0), &mut d.p));
    let s = d.vf.stats;
    assert_eq!(
        s.frames_in,
        s.delivered + s.no_descriptor + s.filtered + s.not_ready
    );
    assert_eq!((s.delivered, s.filtered), (6, 1));
}

#[test]
fn a_frame_longer_than_the_buffer_spans_descriptors() {
    let mut d = Driver::new(Config::default());
    d.probe();
    d.call(&[msg::SET_LPE, 9022]);
    d.rx_ring(true, 2);
    d.w(reg::RXQ + reg::RDT, 3);
    let f = frame(OWN, 5000, 7);
    // 5000 bytes need three 2 KiB buffers: exactly what is free.
    assert!(d.vf.receive(&f, &mut d.p));
    let parts: Vec<_> = (0..3).map(|i| d.desc(i)).collect();
    assert_eq!(
        parts
            .iter()
            .map(|(x, _)| (x.len, x.eop))
            .collect::<Vec<_>>(),
        [(2048, false), (2048, false), (904, true)]
    );
    assert_eq!(
        parts
            .iter()
            .flat_map(|(_, b)| b.clone())
            .collect::<Vec<_>>(),
        f
    );
    // Beyond the frame size the PF allows: filtered as oversize.
    assert!(!d.vf.receive(&frame(OWN, 9100, 0), &mut d.p));
    assert_eq!(d.vf.stats.oversize, 1);
}

#[test]
fn vlan_tags_are_stripped_when_vme_and_filtered_by_the_pool() {
    let mut d = Driver::new(Config::default());
    d.probe();
    d.rx_ring(true, 2);
    d.w(reg::RXQ + reg::RDT, RING_LEN - 1);
    let plain = frame(OWN, 100, 1);
    // VLAN 5 is not the VF's: filtered; after SET_VLAN it is received.
    assert!(!d.vf.receive(&tagged(&plain, 5), &mut d.p));
    assert!(vfmbx::is_ack_of(
        msg::SET_VLAN,
        d.call(&[msg::SET_VLAN | 1 << 16, 5])[0]
    ));
    assert!(d.vf.receive(&tagged(&plain, 0xA005), &mut d.p));
    let (done, data) = d.desc(0);
    assert_eq!((done.vlan, data), (Some(0xA005), plain.clone()));
    // Without VME the tag stays in the frame.
    let mut d2 = Driver::new(Config::default());
    d2.probe();
    d2.call(&[msg::SET_VLAN | 1 << 16, 5]);
    d2.rx_ring(false, 2);
    d2.w(reg::RXQ + reg::RDT, RING_LEN - 1);
    assert!(d2.vf.receive(&tagged(&plain, 5), &mut d2.p));
    let (done, data) = d2.desc(0);
    assert_eq!((done.vlan, data), (None, tagged(&plain, 5)));
}

#[test]
fn port_vlan_only_that_vlan_tag_hidden_or_reported() {
    for hide in [true, false] {
        let mut d = Driver::new(Config {
            port_vlan: 100,
            hide_port_vlan: hide,
            ..Config::default()
        });
        d.probe();
        // The VF may not set VLANs of its own; GET_QUEUES says "port VLAN".
        assert_eq!(
            d.call(&[msg::SET_VLAN | 1 << 16, 5])[0] & MSGTYPE_NACK,
            MSGTYPE_NACK
        );
        assert_eq!(d.call(&[ixgbe::GET_QUEUES, 0, 0, 0, 0])[3], 1);
        d.rx_ring(true, 2);
        d.w(reg::RXQ + reg::RDT, RING_LEN - 1);
        let plain = frame(OWN, 100, 1);
        assert!(!d.vf.receive(&plain, &mut d.p), "untagged goes to the PF");
        assert!(!d.vf.receive(&tagged(&plain, 200), &mut d.p));
        assert!(d.vf.receive(&tagged(&plain, 0x6064), &mut d.p));
        let (done, data) = d.desc(0);
        assert_eq!(data, plain);
        assert_eq!(done.vlan, (!hide).then_some(0x6064));
        assert_eq!(d.vf.stats.filtered, 2);
    }
}

#[test]
fn interrupts_follow_ivar_eims_and_auto_mask() {
    let mut d = Driver::new(Config::default());
    d.probe();
    d.rx_ring(true, 2);
    d.w(reg::RXQ + reg::RDT, RING_LEN - 1);
    // ixgbevf_configure_msix: queue 0 RX/TX on vector 0, mailbox on 1.
    d.w(reg::VTIVAR, 0x80 | 0x80 << 8);
    d.w(reg::VTIVAR_MISC, 0x80 | 1);
    d.w(reg::VTEIAM, 0x3);
    d.w(reg::VTEIAC, 0x3);
    d.w(reg::VTEIMS, 0x3);
    let f = frame(OWN, 60, 0);
    d.vf.receive(&f, &mut d.p);
    assert_eq!(d.p.irq.raised[0], 1);
    // Auto-masked: the next frame waits for the driver's EIMS write.
    d.vf.receive(&f, &mut d.p);
    assert_eq!(d.p.irq.raised[0], 1);
    d.w(reg::VTEIMS, 0x1);
    assert_eq!(d.p.irq.raised[0], 2);
    // A mailbox reply raises vector 1.
    d.call(&[ixgbe::GET_LINK_STATE, 0]);
    assert_eq!(d.p.irq.raised[1], 1);
    // EICS: software-triggered.
    d.w(reg::VTEIMS, 0x1);
    d.w(reg::VTEICS, 0x1);
    assert_eq!(d.p.irq.raised[0], 3);
}

#[test]
fn transmit_completes_descriptors_and_reports_frames() {
    let mut d = Driver::new(Config::default());
    d.probe();
    let t = reg::TXQ;
    d.w(t + reg::RDBAL, TXRING as u32);
    d.w(t + reg::RDLEN, 8 * 16);
    d.w(t + reg::TXDCTL, reg::DCTL_ENABLE);
    let data = frame([0xff; 6], 64, 3);
    d.p.mem.write(BUFS, &data).unwrap();
    // One data descriptor: DTYP 3, DEXT, EOP, IFCS, RS.
    let mut desc = [0u8; 16];
    desc[0..8].copy_from_slice(&BUFS.to_le_bytes());
    let ctl = 64u32 | 3 << 20 | (0x20 | 0x08 | 0x02 | 0x01) << 24;
    desc[8..12].copy_from_slice(&ctl.to_le_bytes());
    d.p.mem.write(TXRING, &desc).unwrap();
    d.w(t + reg::TDT, 1);
    assert_eq!(d.vf.take_tx(), vec![data]);
    let mut wb = [0u8; 4];
    d.p.mem.read(TXRING + 12, &mut wb).unwrap();
    assert_eq!(u32::from_le_bytes(wb) & 1, 1, "DD written back");
    assert_eq!(d.r(t + reg::TDH), 1);
    assert_eq!(d.r(reg::VFGPTC), 1);
}

#[test]
fn flr_makes_the_vf_redo_its_handshake() {
    let mut d = Driver::new(Config::default());
    d.probe();
    d.rx_ring(true, 2);
    d.w(reg::RXQ + reg::RDT, RING_LEN - 1);
    d.vf.reset(&mut d.p);
    d.vf.config_write(4, &[0x06, 0], &mut d.p);
    assert!(!d.vf.receive(&frame(OWN, 60, 0), &mut d.p));
    assert_eq!(d.vf.stats.not_ready, 1);
    assert_eq!(
        d.call(&[ixgbe::GET_QUEUES, 0, 0, 0, 0])[0] & MSGTYPE_NACK,
        MSGTYPE_NACK
    );
    assert_eq!(d.probe(), OWN);
}
