// SPDX-License-Identifier: MIT
//! The VF model driven the way Linux's iavf drives it, without QEMU: a
//! test "driver" sets up the admin queues in test memory, exchanges virtchnl
//! messages and receives frames.

use super::*;
use crate::transport::{PciFunction, Platform};
use hpcap_core::virtchnl::{QueuePairInfo, TxqInfo, RXDID_LEGACY_32B};

fn version() -> Vec<u8> {
    encode(|b| virtchnl::VERSION.encode(b))
}

/// CONFIG_VSI_QUEUES for queue pair 0 as iavf sends it.
fn queue_config(tx_ring: u64, tx_len: u16, max_pkt: u32) -> Vec<u8> {
    let p = QueuePairInfo {
        txq: TxqInfo {
            vsi_id: VSI_ID,
            ring_len: tx_len,
            dma_ring_addr: tx_ring,
            ..TxqInfo::default()
        },
        rxq: RxqInfo {
            vsi_id: VSI_ID,
            ring_len: RING_LEN,
            databuffer_size: BUF,
            max_pkt_size: max_pkt,
            rxdid: RXDID_LEGACY_32B,
            dma_ring_addr: RING,
            ..RxqInfo::default()
        },
    };
    encode(|b| VsiQueueConfig::encode(VSI_ID, &[p], b))
}

const MEM: u64 = 0x10_0000;
const ATQ: u64 = MEM;
const ARQ: u64 = MEM + 0x1000;
const ARQ_BUFS: u64 = MEM + 0x10000;
const MSG: u64 = MEM + 0x8000;
const RING: u64 = MEM + 0x40000;
const BUFS: u64 = MEM + 0x80000;
const N_AQ: u32 = 16;
const RING_LEN: u32 = 64;
const BUF: u32 = 2048;
const OWN: [u8; 6] = [0x02, 0, 0, 0, 0, 0x10];

struct Driver {
    vf: Vf,
    p: Platform,
    now: Instant,
    atq_next: u32,
    arq_next: u32,
}

/// A reply or event read from the ARQ.
#[derive(Debug)]
struct Msg {
    opcode: u32,
    retval: i32,
    data: Vec<u8>,
}

impl Driver {
    fn new(config: Config) -> Self {
        let mut d = Driver {
            vf: Vf::new(config),
            p: Platform::for_tests(MEM, 0x20_0000, 5),
            now: Instant::now(),
            atq_next: 0,
            arq_next: 0,
        };
        d.vf.config_write(4, &[0x06, 0], &mut d.p);
        d.init_aq();
        d
    }

    fn w(&mut self, off: u64, v: u32) {
        self.vf.write_reg(off, v, self.now, &mut self.p);
    }

    fn r(&mut self, off: u64) -> u32 {
        self.vf.read_reg(off)
    }

    fn init_aq(&mut self) {
        self.atq_next = 0;
        self.arq_next = 0;
        for i in 0..N_AQ {
            self.post_arq(i);
        }
        // As iavf_config_asq_regs/arq_regs: head and tail to 0 first.
        for r in [reg::VF_ATQH1, reg::VF_ATQT1, reg::VF_ARQH1, reg::VF_ARQT1] {
            self.w(r, 0);
        }
        self.w(reg::VF_ATQBAL1, ATQ as u32);
        self.w(reg::VF_ATQBAH1, 0);
        self.w(reg::VF_ATQLEN1, N_AQ | reg::QLEN_ENABLE);
        self.w(reg::VF_ARQBAL1, ARQ as u32);
        self.w(reg::VF_ARQBAH1, 0);
        self.w(reg::VF_ARQLEN1, N_AQ | reg::QLEN_ENABLE);
        self.w(reg::VF_ARQT1, N_AQ - 1);
        self.w(reg::VFINT_ICR0_ENA1, reg::ICR0_ADMINQ);
        self.w(reg::VFINT_DYN_CTL01, reg::DYN_INTENA);
    }

    fn post_arq(&mut self, i: u32) {
        let d = Desc::receive_buffer(ARQ_BUFS + u64::from(i) * 4096, 4096);
        self.p
            .mem
            .write(ARQ + u64::from(i) * 32, &d.to_bytes())
            .unwrap();
    }

    /// Sends one virtchnl message; returns the ATQ write-back flags.
    fn send(&mut self, vop: u32, msg: &[u8]) -> u16 {
        let i = self.atq_next;
        self.p.mem.write(MSG, msg).unwrap();
        let d = Desc::send_to_pf(vop, msg.len() as u16).with_buffer(MSG);
        self.p
            .mem
            .write(ATQ + u64::from(i) * 32, &d.to_bytes())
            .unwrap();
        self.atq_next = (i + 1) % N_AQ;
        self.w(reg::VF_ATQT1, self.atq_next);
        if vop != op::RESET_VF {
            assert_eq!(
                self.r(reg::VF_ATQH1),
                self.atq_next,
                "ATQ head did not advance"
            );
        }
        let mut wb = [0u8; 32];
        self.p.mem.read(ATQ + u64::from(i) * 32, &mut wb).unwrap();
        u16::from_le_bytes([wb[0], wb[1]])
    }

    /// The next message in the ARQ, if any (and reposts the buffer).
    fn recv(&mut self) -> Option<Msg> {
        let head = self.r(reg::VF_ARQH1);
        if head == self.arq_next {
            return None;
        }
        let i = self.arq_next;
        let mut d = [0u8; 32];
        self.p.mem.read(ARQ + u64::from(i) * 32, &mut d).unwrap();
        let m = Desc::from_bytes(&d).pf_message().expect("a PF message");
        let len = usize::from(m.len);
        let mut data = vec![0u8; len];
        self.p
            .mem
            .read(ARQ_BUFS + u64::from(i) * 4096, &mut data)
            .unwrap();
        self.post_arq(i);
        self.w(reg::VF_ARQT1, i);
        self.arq_next = (i + 1) % N_AQ;
        Some(Msg {
            opcode: m.opcode,
            retval: m.status,
            data,
        })
    }

    fn request(&mut self, vop: u32, msg: &[u8]) -> Msg {
        self.send(vop, msg);
        loop {
            let m = self.recv().expect("no reply");
            if m.opcode == vop {
                return m;
            }
            assert_eq!(m.opcode, op::EVENT, "unexpected {m:?}");
        }
    }

    /// VERSION, GET_VF_RESOURCES, one queue pair, vector 1 on RX queue 0,
    /// enable, all descriptors posted: what iavf does on `ip link set up`.
    fn bring_up(&mut self) {
        assert_eq!(self.request(op::VERSION, &version()).data, version());
        let res = self.request(
            op::GET_VF_RESOURCES,
            &(cap::L2 | cap::RSS_REG).to_le_bytes(),
        );
        assert_eq!(res.retval, 0);
        // As iavf: the ring is filled and its tail written before the
        // queue contexts are sent (the tail survives CONFIG_VSI_QUEUES).
        for i in 0..RING_LEN {
            self.post_rx(i);
        }
        self.w(reg::QRX_TAIL1, RING_LEN - 1);
        let q = queue_config(0, 0, 9018);
        assert_eq!(self.request(op::CONFIG_VSI_QUEUES, &q).retval, 0);
        let mut m = vec![0u8; 14 + 12];
        m[0] = 1;
        m[2..4].copy_from_slice(&VSI_ID.to_le_bytes());
        m[4..6].copy_from_slice(&1u16.to_le_bytes()); // vector 1
        m[6..8].copy_from_slice(&1u16.to_le_bytes()); // rx queue 0
        assert_eq!(self.request(op::CONFIG_IRQ_MAP, &m).retval, 0);
        assert_eq!(self.request(op::ENABLE_QUEUES, &select(1, 1)).retval, 0);
        self.w(reg::VFINT_DYN_CTLN1, reg::DYN_INTENA);
        while self.recv().is_some() {}
    }

    fn post_rx(&mut self, i: u32) {
        let mut d = [0u8; 32];
        d[0..8].copy_from_slice(&(BUFS + u64::from(i) * u64::from(BUF)).to_le_bytes());
        self.p.mem.write(RING + u64::from(i) * 32, &d).unwrap();
    }

    /// (qword0, qword1) of RX descriptor i.
    fn rx_desc(&self, i: u32) -> (u64, u64) {
        let mut d = [0u8; 32];
        self.p.mem.read(RING + u64::from(i) * 32, &mut d).unwrap();
        (
            u64::from_le_bytes(d[0..8].try_into().unwrap()),
            u64::from_le_bytes(d[8..16].try_into().unwrap()),
        )
    }

    fn rx_data(&self, i: u32, len: usize) -> Vec<u8> {
        let mut b = vec![0u8; len];
        self.p
            .mem
            .read(BUFS + u64::from(i) * u64::from(BUF), &mut b)
            .unwrap();
        b
    }

    fn rx(&mut self, f: &[u8]) -> bool {
        self.vf.receive(f, self.now, &mut self.p)
    }

    fn stats(&mut self) -> Vec<u64> {
        let m = self.request(op::GET_STATS, &select(0, 0));
        m.data
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
}

fn select(rx: u32, tx: u32) -> Vec<u8> {
    let mut v = VSI_ID.to_le_bytes().to_vec();
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(&rx.to_le_bytes());
    v.extend_from_slice(&tx.to_le_bytes());
    v
}

fn frame(dst: [u8; 6], len: usize, seq: u8) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x88, 0xb5]);
    f.extend((0..len - 14).map(|i| (i as u8).wrapping_add(seq)));
    f
}

fn len_of(qw1: u64) -> usize {
    ((qw1 >> 38) & 0x3fff) as usize
}

#[test]
fn version_resources_and_link_event_in_linux_pf_order() {
    let mut d = Driver::new(Config::default());
    let v = d.request(op::VERSION, &version());
    assert_eq!((v.retval, v.data), (0, version()));
    assert_eq!(d.p.irq.raised[0], 1, "the reply raised the mailbox vector");
    // The driver re-arms vector 0 and clears the cause, as iavf's handler does.
    assert_ne!(d.r(reg::VFINT_ICR01) & reg::ICR0_ADMINQ, 0);
    assert_eq!(d.r(reg::VFINT_ICR01), 0, "ICR01 is read-to-clear");
    d.w(reg::VFINT_DYN_CTL01, reg::DYN_INTENA);
    d.send(op::GET_VF_RESOURCES, &u32::MAX.to_le_bytes());
    let res = d.recv().unwrap();
    assert_eq!(res.opcode, op::GET_VF_RESOURCES);
    assert_eq!(res.data.len(), 52);
    assert_eq!(u16::from_le_bytes([res.data[0], res.data[1]]), 1, "one VSI");
    assert_eq!(
        u32::from_le_bytes(res.data[8..12].try_into().unwrap()),
        cap::L2 | cap::RSS_REG
    );
    assert_eq!(
        i32::from_le_bytes(res.data[24..28].try_into().unwrap()),
        virtchnl::VSI_SRIOV
    );
    assert_eq!(&res.data[30..36], &OWN);
    let ev = d.recv().expect("a link event after the resources");
    assert_eq!(ev.opcode, op::EVENT);
    let link = PfEvent::parse(&ev.data).unwrap();
    assert_eq!(link, PfEvent::link(true, virtchnl::speed::S40GB));
}

#[test]
fn unknown_opcodes_get_not_supported() {
    let mut d = Driver::new(Config::default());
    for vop in [4u32, 12, 18, 23, 27, 29, 44, 51, 60] {
        assert_eq!(
            d.request(vop, &[0; 8]).retval,
            status::ERR_NOT_SUPPORTED,
            "op {vop}"
        );
    }
    // A malformed request is ERR_PARAM, not a crash.
    assert_eq!(
        d.request(op::CONFIG_VSI_QUEUES, &[1, 2, 3]).retval,
        status::ERR_PARAM
    );
    assert_eq!(
        d.request(op::ENABLE_QUEUES, &[0; 5]).retval,
        status::ERR_PARAM
    );
}

#[test]
fn frames_land_in_the_ring_byte_for_byte_with_interrupts() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    let irq0 = d.p.irq.raised[1];
    let fs: Vec<Vec<u8>> = (0..10).map(|i| frame(OWN, 60 + i * 150, i as u8)).collect();
    for f in &fs {
        assert!(d.rx(f));
    }
    for (i, f) in fs.iter().enumerate() {
        let (qw0, qw1) = d.rx_desc(i as u32);
        assert_eq!(qw1 & 0b11, 0b11, "DD and EOP");
        assert_eq!(qw1 & 0b100, 0, "no L2TAG1P");
        assert_eq!(len_of(qw1), f.len());
        assert_eq!(qw0, 0);
        assert_eq!(&d.rx_data(i as u32, f.len()), f);
    }
    assert_eq!(
        d.p.irq.raised[1],
        irq0 + 1,
        "auto-masked after the first frame"
    );
    d.w(reg::VFINT_DYN_CTLN1, reg::DYN_INTENA);
    assert_eq!(
        d.p.irq.raised[1],
        irq0 + 2,
        "a pending cause fires on re-enable"
    );
    // Broadcast is received; another unicast MAC is not (not promiscuous).
    assert!(d.rx(&frame([0xff; 6], 60, 0)));
    assert!(!d.rx(&frame([2, 0, 0, 0, 0, 0x99], 60, 0)));
    assert_eq!(d.vf.stats.filtered, 1);
    let s = d.stats();
    assert_eq!(s[1], 10, "rx_unicast");
    assert_eq!(s[3], 1, "rx_broadcast");
    assert_eq!(s[4], 0, "rx_discards");
}

#[test]
fn a_full_ring_drops_and_counts_in_rx_discards() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    // Tail = 63: 63 descriptors belong to the device.
    for i in 0..70 {
        d.rx(&frame(OWN, 60, i));
    }
    assert_eq!(d.vf.stats.delivered, 63);
    assert_eq!(d.vf.stats.no_descriptor, 7);
    assert_eq!(d.stats()[4], 7, "GET_STATS rx_discards");
    // The driver refills and returns 10 descriptors: 10 more frames fit.
    for i in (RING_LEN - 1..RING_LEN).chain(0..9) {
        d.post_rx(i);
    }
    d.w(reg::QRX_TAIL1, (RING_LEN - 1 + 10) % RING_LEN);
    let got = (0..12).filter(|&i| d.rx(&frame(OWN, 60, i))).count();
    assert_eq!(got, 10);
}

#[test]
fn jumbo_frames_span_descriptors_with_eop_on_the_last() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    let f = frame(OWN, 9000, 7);
    assert!(d.rx(&f));
    let mut got = Vec::new();
    for i in 0..5 {
        let (_, qw1) = d.rx_desc(i);
        assert_eq!(qw1 & 1, 1, "DD on {i}");
        assert_eq!(qw1 >> 1 & 1, u64::from(i == 4), "EOP only on the last");
        got.extend(d.rx_data(i, len_of(qw1)));
    }
    assert_eq!(got, f);
    // Longer than max_pkt_size (9018): dropped.
    assert!(!d.rx(&frame(OWN, 9100, 0)));
}

#[test]
fn port_vlan_strips_the_tag_into_l2tag1() {
    let mut d = Driver::new(Config {
        port_vlan: 100,
        ..Config::default()
    });
    d.bring_up();
    let plain = frame(OWN, 100, 1);
    let tag = |tci: u16| {
        [
            &plain[..12],
            &[0x81, 0x00],
            &tci.to_be_bytes()[..],
            &plain[12..],
        ]
        .concat()
    };
    assert!(!d.rx(&plain), "untagged frames are not the VF's");
    assert!(!d.rx(&tag(200)), "nor other VLANs");
    assert!(d.rx(&tag(5 << 13 | 100)));
    let (qw0, qw1) = d.rx_desc(0);
    assert_eq!(qw1 & 0b100, 0b100, "L2TAG1P");
    assert_eq!((qw0 >> 16) & 0xffff, 5 << 13 | 100);
    assert_eq!(len_of(qw1), plain.len());
    assert_eq!(d.rx_data(0, plain.len()), plain);
}

#[test]
fn promiscuous_needs_trust_and_the_untrusted_answer_is_the_linux_lie() {
    let other = frame([2, 0, 0, 0, 0, 0x77], 60, 0);
    let promisc = [1u8, 0, 3, 0];
    let mut d = Driver::new(Config::default());
    d.bring_up();
    assert_eq!(d.request(op::CONFIG_PROMISCUOUS_MODE, &promisc).retval, 0);
    assert!(!d.vf.promiscuous());
    assert!(!d.rx(&other));
    assert_eq!(d.vf.stats.promisc_refused, 1);

    let mut e = Driver::new(Config {
        promisc_refusal: PromiscRefusal::Error,
        ..Config::default()
    });
    e.bring_up();
    assert_eq!(
        e.request(op::CONFIG_PROMISCUOUS_MODE, &promisc).retval,
        status::ERR_PARAM
    );

    let mut t = Driver::new(Config {
        trust: true,
        ..Config::default()
    });
    t.bring_up();
    assert_eq!(t.request(op::CONFIG_PROMISCUOUS_MODE, &promisc).retval, 0);
    assert!(t.rx(&other));
}

#[test]
fn untrusted_vf_may_not_add_a_foreign_unicast_mac() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    let list = |mac: [u8; 6]| [&[1u8, 0, 1, 0][..], &mac, &[0; 10]].concat();
    assert_eq!(d.request(op::ADD_ETH_ADDR, &list(OWN)).retval, 0);
    assert_eq!(
        d.request(op::ADD_ETH_ADDR, &list([2, 9, 9, 9, 9, 9]))
            .retval,
        status::ERR_PARAM
    );
    assert_eq!(
        d.request(op::ADD_ETH_ADDR, &list([0x33, 0x33, 0, 0, 0, 1]))
            .retval,
        0
    );
    assert!(d.rx(&frame([0x33, 0x33, 0, 0, 0, 1], 60, 0)));
}

#[test]
fn vf_reset_clears_the_mailbox_and_completes() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    assert!(d.rx(&frame(OWN, 60, 0)));
    assert_eq!(d.vf.eth.rx_unicast, 1);
    d.send(op::RESET_VF, &[]);
    assert_eq!(d.r(reg::VFGEN_RSTAT), reg::VFR_INPROGRESS);
    assert_eq!(
        d.r(reg::VF_ARQLEN1) & reg::QLEN_ENABLE,
        0,
        "iavf detects the reset here"
    );
    assert!(!d.rx(&frame(OWN, 60, 0)));
    assert_eq!(d.vf.stats.not_ready, 1);
    // The PF gives the VF a new VSI, whose counters start at zero.
    assert_eq!(d.vf.eth, EthStats::default());
    d.now += Duration::from_millis(25);
    d.vf.tick(d.now, &mut d.p);
    assert_eq!(d.r(reg::VFGEN_RSTAT), reg::VFR_VFACTIVE);
    d.init_aq();
    d.bring_up();
    assert!(d.rx(&frame(OWN, 60, 0)));
}

#[test]
fn forced_reset_after_n_frames_announces_itself() {
    let mut d = Driver::new(Config {
        reset_after_frames: Some(3),
        ..Config::default()
    });
    d.bring_up();
    for i in 0..3 {
        assert!(d.rx(&frame(OWN, 60, i)));
    }
    let ev = d.recv().expect("RESET_IMPENDING");
    assert_eq!(
        (ev.opcode, &ev.data[0..4]),
        (op::EVENT, &2i32.to_le_bytes()[..])
    );
    d.now += Duration::from_millis(60);
    d.vf.tick(d.now, &mut d.p);
    assert_eq!(d.r(reg::VFGEN_RSTAT), reg::VFR_INPROGRESS);
    assert_eq!(d.vf.stats.resets, 1);
}

#[test]
fn slow_and_malformed_replies() {
    let mut d = Driver::new(Config {
        reply_delay: Duration::from_millis(100),
        malformed_reply: Some(op::GET_VF_RESOURCES),
        ..Config::default()
    });
    d.send(op::VERSION, &version());
    assert!(d.recv().is_none(), "not before the delay");
    d.now += Duration::from_millis(101);
    d.vf.tick(d.now, &mut d.p);
    assert_eq!(d.recv().unwrap().opcode, op::VERSION);
    d.send(op::GET_VF_RESOURCES, &0u32.to_le_bytes());
    d.now += Duration::from_millis(101);
    d.vf.tick(d.now, &mut d.p);
    assert_eq!(d.recv().unwrap().data.len(), 26, "half of 52 bytes");
}

#[test]
fn transmitted_frames_are_completed_and_handed_out() {
    let mut d = Driver::new(Config::default());
    d.bring_up();
    // Re-configure with a TX ring: queue pair 0's TX context.
    let tx_ring = MEM + 0x60000;
    let q = queue_config(tx_ring, 64, 1518);
    assert_eq!(d.request(op::CONFIG_VSI_QUEUES, &q).retval, 0);
    assert_eq!(d.request(op::ENABLE_QUEUES, &select(1, 1)).retval, 0);
    let f = frame([0xff; 6], 90, 3);
    d.p.mem.write(MEM + 0x70000, &f).unwrap();
    let qw1: u64 = (0x3 << 4) | ((f.len() as u64) << 34); // EOP | RS, data descriptor
    let mut desc = (MEM + 0x70000).to_le_bytes().to_vec();
    desc.extend_from_slice(&qw1.to_le_bytes());
    d.p.mem.write(tx_ring, &desc).unwrap();
    d.w(reg::QTX_TAIL1, 1);
    assert_eq!(d.vf.take_tx(), vec![f]);
    let mut wb = [0u8; 8];
    d.p.mem.read(tx_ring + 8, &mut wb).unwrap();
    assert_eq!(u64::from_le_bytes(wb) & 0xf, 0xf, "DTYPE = DESC_DONE");
}
