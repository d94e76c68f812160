// SPDX-License-Identifier: MIT
//! The PF model driven the way Linux's i40e drives it, without QEMU.

use super::adminq::{opc, MAIN_VSI_SEID};
use super::regs::*;
use super::*;
use crate::transport::PciFunction;
use hpcap_core::desc::{I40e16, RxFormat};

const BASE: u64 = 0x1000_0000;
const ATQ: u64 = BASE;
const ARQ: u64 = BASE + 0x1000;
const BUF: u64 = BASE + 0x2000;
const ARQ_BUFS: u64 = BASE + 0x10_0000;
const HMC_SEG: u64 = BASE + 0x20_0000;
const RING: u64 = BASE + 0x60_0000;
const PKT: u64 = BASE + 0x80_0000;
const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x20];

struct Drv {
    pf: Pf,
    p: Platform,
    ntu: u32,
}

impl Drv {
    fn new() -> Self {
        let mut pf = Pf::new(Config::default());
        let mut p = Platform::for_tests(BASE, 16 << 20, 17);
        // pci_set_master.
        pf.config_write(4, &6u16.to_le_bytes(), &mut p);
        Drv { pf, p, ntu: 0 }
    }

    fn rd(&mut self, off: u64) -> u32 {
        self.pf.read_reg(off)
    }

    fn wr(&mut self, off: u64, v: u32) {
        self.pf.write_reg(off, v, &mut self.p);
    }

    /// `i40e_init_asq`/`i40e_init_arq`: 32 entries each.
    fn init_adminq(&mut self) {
        self.wr(PF_ATQH, 0);
        self.wr(PF_ATQT, 0);
        self.wr(PF_ATQBAL, ATQ as u32);
        self.wr(PF_ATQBAH, 0);
        self.wr(PF_ATQLEN, 32 | QLEN_ENABLE);
        assert_eq!(self.rd(PF_ATQBAL), ATQ as u32, "base reads back");
        for i in 0..32u64 {
            let d = Desc::receive_buffer(ARQ_BUFS + i * 4096, 4096);
            self.p.mem.write(ARQ + i * 32, &d.to_bytes()).unwrap();
        }
        self.wr(PF_ARQH, 0);
        self.wr(PF_ARQT, 0);
        self.wr(PF_ARQBAL, ARQ as u32);
        self.wr(PF_ARQBAH, 0);
        self.wr(PF_ARQLEN, 32 | QLEN_ENABLE);
        self.wr(PF_ARQT, 31);
        self.ntu = 0;
    }

    /// `i40e_asq_send_command`: one descriptor, optional buffer.
    fn send(&mut self, mut d: Desc, buf: Option<&[u8]>, buf_len: u16) -> (Desc, Vec<u8>) {
        if buf_len > 0 {
            d.flags |= aq::flag::BUF;
            if buf.is_some() {
                d.flags |= aq::flag::RD;
            }
            d.datalen = buf_len;
            d = d.with_buffer(BUF);
            let mut b = vec![0u8; usize::from(buf_len)];
            if let Some(src) = buf {
                b[..src.len()].copy_from_slice(src);
            }
            self.p.mem.write(BUF, &b).unwrap();
        }
        let at = ATQ + u64::from(self.ntu) * 32;
        self.p.mem.write(at, &d.to_bytes()).unwrap();
        self.ntu = (self.ntu + 1) % 32;
        self.wr(PF_ATQT, self.ntu);
        assert_eq!(self.rd(PF_ATQH), self.ntu, "the command was consumed");
        let mut b = [0u8; 32];
        self.p.mem.read(at, &mut b).unwrap();
        let wb = Desc::from_bytes(&b);
        assert!(wb.done(), "DD set");
        let mut out = vec![0u8; usize::from(buf_len)];
        if buf_len > 0 {
            self.p.mem.read(BUF, &mut out).unwrap();
        }
        (wb, out)
    }

    fn direct(&mut self, op: u16, p0: u32, p1: u32) -> Desc {
        let d = Desc {
            opcode: op,
            flags: aq::flag::SI,
            param0: p0,
            param1: p1,
            ..Desc::default()
        };
        self.send(d, None, 0).0
    }

    fn nvm_word(&mut self, at: u16) -> u16 {
        assert_ne!(self.rd(GLNVM_SRCTL) & nvm::srctl::DONE, 0);
        self.wr(GLNVM_SRCTL, (u32::from(at) << 14) | nvm::srctl::START);
        assert_ne!(self.rd(GLNVM_SRCTL) & nvm::srctl::DONE, 0);
        (self.rd(GLNVM_SRDATA) >> 16) as u16
    }

    /// `i40e_configure_lan_hmc` with one direct segment, then the RX
    /// context of queue 0 written into it.
    fn hmc_and_rx_queue(&mut self, qlen: u16, dbuff: u32, dsize32: bool) {
        assert_eq!(self.rd(GLHMC_LANRXOBJSZ), 5);
        assert_eq!(self.rd(GLHMC_LANTXOBJSZ), 7);
        self.wr(PFHMC_SDDATAHIGH, (HMC_SEG >> 32) as u32);
        self.wr(PFHMC_SDDATALOW, HMC_SEG as u32 | (512 << 2) | 2 | 1);
        self.wr(PFHMC_SDCMD, PFHMC_SDCMD_WR);
        // TX contexts first (8 x 128 bytes), RX after them.
        self.wr(GLHMC_LANTXBASE, 0);
        self.wr(GLHMC_LANRXBASE, 8 * 128 / 512);
        let mut ctx = [0u8; 32];
        let put = |ctx: &mut [u8], lsb: usize, width: usize, v: u64| {
            for i in 0..width {
                if v >> i & 1 != 0 {
                    ctx[(lsb + i) / 8] |= 1 << ((lsb + i) % 8);
                }
            }
        };
        put(&mut ctx, 32, 57, RING / 128);
        put(&mut ctx, 89, 13, u64::from(qlen));
        put(&mut ctx, 102, 7, u64::from(dbuff / 128));
        put(&mut ctx, 116, 1, u64::from(dsize32));
        put(&mut ctx, 117, 1, 1);
        put(&mut ctx, 174, 14, 9728);
        self.p.mem.write(HMC_SEG + 8 * 128, &ctx).unwrap();
        let dl = if dsize32 { 32 } else { 16 };
        for i in 0..u64::from(qlen) {
            let w = I40e16::arm(PKT + i * u64::from(dbuff));
            self.p
                .mem
                .write(RING + i * dl, &w[0].to_le_bytes())
                .unwrap();
            self.p
                .mem
                .write(RING + i * dl + 8, &0u64.to_le_bytes())
                .unwrap();
        }
        self.wr(QRX_ENA, QENA_REQ);
        assert_eq!(self.rd(QRX_ENA) & QENA_STAT, QENA_STAT, "queue started");
    }

    fn wb(&self, i: u64, dl: u64) -> [u64; 2] {
        let at = RING + i * dl;
        [
            self.p.mem.read_u64(at).unwrap(),
            self.p.mem.read_u64(at + 8).unwrap(),
        ]
    }
}

fn frame(dst: [u8; 6], len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x99]);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = i as u8;
    }
    f
}

#[test]
fn probe_registers_and_pf_reset() {
    let mut d = Drv::new();
    assert_eq!(d.rd(GLGEN_RSTAT) & 3, 0, "no global reset running");
    let uld = d.rd(GLNVM_ULD);
    assert_eq!(uld & 0x18, 0x18, "core and global modules done");
    d.wr(PFGEN_CTRL, PFGEN_CTRL_PFSWR);
    assert_eq!(d.rd(PFGEN_CTRL) & PFGEN_CTRL_PFSWR, 0, "the reset is over");
    assert_eq!(d.rd(GL_FWSTS) & 0xff, 0, "not in recovery mode");
    assert_ne!(d.rd(GLNVM_FLA) & GLNVM_FLA_LOCKED, 0, "normal NVM mode");
    let gens = d.rd(GLNVM_GENS);
    assert_eq!((1 << ((gens >> 5) & 7)) * 512, 2048, "4 KB shadow RAM");
    let qalloc = d.rd(PFLAN_QALLOC);
    assert_eq!(((qalloc >> 16) & 0x7ff) + 1, 8);
    assert_ne!(qalloc & (1 << 31), 0);
    // i40e_probe refuses a BAR0 smaller than GLGEN_STAT_CLEAR.
    assert!(d.pf.bar_sizes()[0] >= 0x39_0004);
    let mut id = [0u8; 4];
    d.pf.config_read(0, &mut id);
    assert_eq!(u32::from_le_bytes(id), 0x1583_8086);
}

#[test]
fn nvm_control_word_and_checksum_through_registers() {
    let mut d = Drv::new();
    assert_eq!(d.nvm_word(0) & 0xc0, 0x40);
    let mut sum = 0u16;
    for i in 0..2048u16 {
        let w = d.nvm_word(i);
        if i != 0x3f {
            sum = sum.wrapping_add(w); // VPD and alt pointers are 0xFFFF: nothing skipped
        }
    }
    assert_eq!(0xBABAu16.wrapping_sub(sum), d.nvm_word(0x3f));
}

#[test]
fn probe_time_admin_queue_commands_in_linux_order() {
    let mut d = Drv::new();
    d.init_adminq();
    // 0x0001 get version: API 1.x.
    let v = d.direct(opc::GET_VERSION, 0, 0);
    let b = v.to_bytes();
    assert_eq!(u16::from_le_bytes([b[28], b[29]]), 1, "API major 1");
    assert_eq!(u16::from_le_bytes([b[24], b[25]]), 4, "firmware 4.x");
    // 0x0008/0x0009 NVM lock around the checksum.
    let r = d.direct(opc::REQUEST_RESOURCE, 1 | (1 << 16), 0);
    assert_eq!(r.retval, 0);
    assert!(d.pf.nvm_locked);
    assert_eq!(d.direct(opc::REQUEST_RESOURCE, 1, 0).retval, 12, "busy");
    d.direct(opc::RELEASE_RESOURCE, 1, 0);
    assert!(!d.pf.nvm_locked);
    // 0x0110 clear PXE.
    assert_eq!(d.direct(opc::CLEAR_PXE_MODE, 2, 0).retval, 0);
    // 0x000A capabilities: too small a buffer first, as Linux may.
    let cap = Desc {
        opcode: opc::LIST_FUNC_CAPS,
        ..Desc::default()
    };
    let (wb, _) = d.send(cap, None, 64);
    assert!(wb.failed());
    assert_eq!(wb.retval, 9, "ENOMEM");
    let need = wb.datalen;
    let (wb, data) = d.send(cap, None, 40 * 32);
    assert!(!wb.failed());
    assert_eq!(wb.datalen, need);
    let mut found = std::collections::HashMap::new();
    for e in data[..usize::from(wb.datalen)].chunks(32) {
        let id = u16::from_le_bytes([e[0], e[1]]);
        let n = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        found.insert(id, n);
    }
    assert_eq!(found[&0x41], 8, "RX queues");
    assert_eq!(found[&0x43], 17, "MSI-X vectors");
    // 0x0A05 LLDP stop: accepted.
    assert_eq!(d.direct(opc::LLDP_STOP, 1, 0).retval, 0);
    // 0x0107 MAC read.
    let (wb, data) = d.send(
        Desc {
            opcode: opc::MAC_ADDRESS_READ,
            ..Desc::default()
        },
        None,
        24,
    );
    assert_eq!(wb.param0 & 0x50, 0x50);
    assert_eq!(&data[0..6], &MAC);
    // 0x0200 switch config: one VSI (the PF's) under the MAC.
    let (_, data) = d.send(
        Desc {
            opcode: opc::GET_SWITCH_CONFIG,
            ..Desc::default()
        },
        None,
        2048,
    );
    assert_eq!(u16::from_le_bytes([data[0], data[1]]), 1);
    assert_eq!(data[16], 19, "a VSI");
    assert_eq!(u16::from_le_bytes([data[18], data[19]]), MAIN_VSI_SEID);
    // 0x0212 VSI parameters.
    let (wb, _) = d.send(
        Desc {
            opcode: opc::GET_VSI,
            param0: u32::from(MAIN_VSI_SEID),
            ..Desc::default()
        },
        None,
        128,
    );
    assert!(!wb.failed());
    // 0x0607 link status, with link events enabled.
    let l = d.direct(opc::GET_LINK_STATUS, 3, 0);
    let b = l.to_bytes();
    assert_eq!(b[20] & 1, 1, "link up");
    assert_eq!(b[19], 0x10, "40 Gb/s");
    assert_eq!(b[16] & 1, 1, "LSE enabled");
    assert_eq!(
        d.rd(PRTMAC_LINKSTA),
        LINKSTA_UP_40G,
        "the MAC's view agrees"
    );
    // A link change arrives on the ARQ with ADMINQ in ICR0.
    d.wr(PFINT_ICR0_ENA, ICR0_ADMINQ);
    d.wr(PFINT_DYN_CTL0, DYN_INTENA);
    d.pf.set_link(false, &mut d.p);
    assert_eq!(d.rd(PF_ARQH), 1);
    let mut ev = [0u8; 32];
    d.p.mem.read(ARQ, &mut ev).unwrap();
    let ev = Desc::from_bytes(&ev);
    assert_eq!(ev.opcode, opc::GET_LINK_STATUS);
    assert_eq!(ev.to_bytes()[20] & 1, 0, "link down");
    assert_eq!(d.rd(PRTMAC_LINKSTA), 0);
    assert_ne!(d.rd(PFINT_ICR0) & ICR0_ADMINQ, 0);
    assert_eq!(d.rd(PFINT_ICR0), 0, "read clears");
    assert_eq!(d.p.irq.raised[0], 1);
    // Unknown opcodes are accepted.
    assert_eq!(d.direct(0x0613, 0, 0).retval, 0);
}

#[test]
fn rx_16_byte_descriptors_filters_and_discards() {
    let mut d = Drv::new();
    d.init_adminq();
    d.hmc_and_rx_queue(32, 2048, false);
    d.wr(QINT_RQCTL, 1 | QINT_CAUSE_ENA);
    d.wr(PFINT_DYN_CTLN, DYN_INTENA);
    d.wr(QRX_TAIL, 4); // descriptors 0..3 free
    let f = frame(MAC, 60);
    assert!(d.pf.receive(&f, &mut d.p));
    let w = d.wb(0, 16);
    let done = I40e16::decode(&w).unwrap();
    assert_eq!((done.len, done.eop, done.vlan), (60, true, None));
    let mut got = vec![0u8; 60];
    d.p.mem.read(PKT, &mut got).unwrap();
    assert_eq!(got, f);
    assert_eq!(d.p.irq.raised[1], 1, "queue vector 1");
    // Not our MAC: filtered until promiscuous.
    let other = frame([0x02, 1, 2, 3, 4, 5], 64);
    assert!(!d.pf.receive(&other, &mut d.p));
    assert_eq!(d.pf.stats.filtered, 1);
    d.direct(
        opc::SET_VSI_PROMISC,
        0x3 | (0x3 << 16),
        u32::from(MAIN_VSI_SEID),
    );
    assert!(d.pf.receive(&other, &mut d.p));
    // A jumbo frame spans two 2 KiB buffers.
    let big = frame(MAC, 3000);
    assert!(d.pf.receive(&big, &mut d.p));
    let a = I40e16::decode(&d.wb(2, 16)).unwrap();
    let b = I40e16::decode(&d.wb(3, 16)).unwrap();
    assert_eq!((a.len, a.eop, b.len, b.eop), (2048, false, 952, true));
    // The ring is full now: the next frame is discarded and counted.
    assert!(!d.pf.receive(&f, &mut d.p));
    assert_eq!(d.pf.port.rx_discards, 1);
    assert_eq!(d.rd(GLPRT_RDPC), 1);
    assert_eq!(d.rd(GLV_RDPC), 1, "the VSI's rx_missed_errors");
    assert_eq!(d.pf.stats.no_descriptor, 1);
    assert_eq!(d.rd(GLPRT_UPRCL), 3);
    assert_eq!(
        d.rd(GLPRT_GORCL),
        (60 + 64 + 3000 + 3 * 4) as u32,
        "FCS counted"
    );
    let s = d.pf.stats;
    assert_eq!(
        s.frames_in,
        s.delivered + s.no_descriptor + s.filtered + s.not_ready
    );
}

#[test]
fn rx_jumbo_frame_in_one_large_buffer_and_oversize_dropped() {
    // hpcap's i40e backend: one 9728-byte buffer per descriptor (dbuff 76
    // units of 128), rxmax 9728: a 9000-byte frame takes one descriptor.
    let mut d = Drv::new();
    d.init_adminq();
    d.hmc_and_rx_queue(32, 9728, false);
    d.wr(QRX_TAIL, 8);
    let f = frame(MAC, 9000);
    assert!(d.pf.receive(&f, &mut d.p));
    let done = I40e16::decode(&d.wb(0, 16)).unwrap();
    assert_eq!((done.len, done.eop), (9000, true));
    assert_eq!(d.wb(1, 16)[1], 0, "the next descriptor is untouched");
    let mut got = vec![0u8; 9000];
    d.p.mem.read(PKT, &mut got).unwrap();
    assert_eq!(got, f);
    // Longer than rxmax: the MAC drops it, nothing is written.
    assert!(!d.pf.receive(&frame(MAC, 9729), &mut d.p));
    assert_eq!(d.wb(1, 16)[1], 0);
    assert_eq!((d.pf.stats.delivered, d.pf.stats.filtered), (1, 1));
}

#[test]
fn msi_fallback_queue_cause_in_icr0() {
    // The function offers MSI and INTx besides MSI-X (what QEMU's
    // vfio-user-pci asks GET_IRQ_INFO for).
    let mut d = Drv::new();
    assert_eq!(crate::transport::legacy_interrupts(&mut d.pf), (true, true));
    // Linux's i40e without MSI-X (i40e_configure_msi_and_legacy): queue
    // 0's cause on vector 0, MSIX0_INDX 0; ICR0 enabled.
    d.init_adminq();
    d.hmc_and_rx_queue(32, 2048, false);
    let msi = std::fs::File::options()
        .write(true)
        .open("/dev/null")
        .unwrap();
    d.p.irq.set_msi(Some(msi));
    d.wr(QINT_RQCTL, QINT_CAUSE_ENA);
    d.wr(PFINT_DYN_CTL0, DYN_INTENA);
    d.wr(QRX_TAIL, 8);
    let _ = d.rd(PFINT_ICR0);
    let before = d.p.irq.msi_raised;
    assert!(d.pf.receive(&frame(MAC, 60), &mut d.p));
    assert_eq!(
        d.p.irq.msi_raised,
        before + 1,
        "vector 0 is the MSI message"
    );
    let icr0 = d.rd(PFINT_ICR0);
    assert_eq!(
        icr0 & (ICR0_INTEVENT | ICR0_QUEUE_0),
        ICR0_INTEVENT | ICR0_QUEUE_0
    );
    assert_eq!(d.rd(PFINT_ICR0), 0, "read clears");
    // The vector masked itself (INTENA cleared) until i40e enables it.
    assert!(d.pf.receive(&frame(MAC, 60), &mut d.p));
    assert_eq!(d.p.irq.msi_raised, before + 1);
    d.wr(PFINT_DYN_CTL0, DYN_INTENA);
    assert_eq!(d.p.irq.msi_raised, before + 2, "the held cause fires");
}

#[test]
fn rx_32_byte_descriptors_and_vlan_stripping() {
    let mut d = Drv::new();
    d.init_adminq();
    d.hmc_and_rx_queue(32, 2048, true);
    d.wr(QRX_TAIL, 31);
    // i40e_vlan_stripping_enable: MODE_ALL | EMOD_STR_BOTH.
    let mut props = [0u8; 128];
    props[0] = 0x04;
    props[12] = 0x03;
    d.send(
        Desc {
            opcode: opc::UPDATE_VSI,
            param0: u32::from(MAIN_VSI_SEID),
            ..Desc::default()
        },
        Some(&props),
        128,
    );
    assert!(d.pf.vsi.strip_vlan);
    let mut f = frame(MAC, 64);
    f[12..18].copy_from_slice(&[0x81, 0x00, 0x20, 0x64, 0x88, 0xb5]);
    assert!(d.pf.receive(&f, &mut d.p));
    let done = I40e16::decode(&d.wb(0, 32)).unwrap();
    assert_eq!((done.len, done.vlan), (60, Some(0x2064)));
    let mut got = vec![0u8; 60];
    d.p.mem.read(PKT, &mut got).unwrap();
    assert_eq!(&got[..12], &f[..12]);
    assert_eq!(&got[12..], &f[16..], "tag removed");
    // The second descriptor sits 32 bytes on.
    assert!(d.pf.receive(&frame(MAC, 100), &mut d.p));
    assert_eq!(I40e16::decode(&d.wb(1, 32)).unwrap().len, 100);
}

#[test]
fn queue_disable_and_pf_reset_stop_rx() {
    let mut d = Drv::new();
    d.init_adminq();
    d.hmc_and_rx_queue(32, 2048, false);
    d.wr(QRX_TAIL, 31);
    d.wr(QRX_ENA, 0);
    assert_eq!(d.rd(QRX_ENA) & QENA_STAT, 0);
    assert!(!d.pf.receive(&frame(MAC, 60), &mut d.p));
    assert_eq!(d.pf.stats.not_ready, 1);
    d.wr(QRX_ENA, QENA_REQ);
    d.wr(PFGEN_CTRL, PFGEN_CTRL_PFSWR);
    assert_eq!(d.rd(QRX_ENA), 0, "reset stops the queue");
    assert_eq!(d.pf.hmc.segment(0).map(|s| s.valid), Some(false));
    assert!(!d.pf.receive(&frame(MAC, 60), &mut d.p));
}

#[test]
fn tx_completes_with_descriptor_done() {
    let mut d = Drv::new();
    d.init_adminq();
    d.hmc_and_rx_queue(32, 2048, false);
    // TX context of queue 0 at HMC offset 0.
    let mut ctx = [0u8; 128];
    let ring = RING + 0x10_0000;
    let base = ring / 128;
    for i in 0..57 {
        if base >> i & 1 != 0 {
            ctx[(32 + i) / 8] |= 1 << ((32 + i) % 8);
        }
    }
    for i in 0..13 {
        if 64u64 >> i & 1 != 0 {
            ctx[(161 + i) / 8] |= 1 << ((161 + i) % 8);
        }
    }
    d.p.mem.write(HMC_SEG, &ctx).unwrap();
    d.wr(QTX_ENA, QENA_REQ);
    assert_ne!(d.rd(QTX_ENA) & QENA_STAT, 0);
    let f = frame([0xff; 6], 60);
    d.p.mem.write(PKT + 0x10_0000, &f).unwrap();
    // Data descriptor: EOP | RS, 60 bytes.
    let qw1: u64 = ((0x1 | 0x2) << 4) | (60 << 34);
    d.p.mem
        .write(ring, &(PKT + 0x10_0000).to_le_bytes())
        .unwrap();
    d.p.mem.write(ring + 8, &qw1.to_le_bytes()).unwrap();
    d.wr(QTX_TAIL, 1);
    assert_eq!(d.pf.take_tx(), vec![f]);
    assert_eq!(d.p.mem.read_u64(ring + 8).unwrap() & 0xf, 0xf, "DD");
}
