// SPDX-License-Identifier: MIT
//! The Intel XL710 virtual function (8086:154c) with an embedded PF.
//!
//! What a KVM guest sees when the host's i40e PF passes it a VF: BAR0 with
//! the VF's registers, MSI-X in BAR3, the admin-queue mailbox to the PF,
//! and RX/TX queues with 32-byte RX descriptors. The PF side answers
//! virtchnl the way Linux's i40e PF does (`i40e_virtchnl_pf.c`), within the
//! subset listed in docs/models.md; everything else gets NOT_SUPPORTED.
//!
//! Frames arrive through [`Vf::receive`] (from hpcap-inject) and are
//! filtered and written exactly as the real VF would receive them; frames
//! that find no free descriptor are dropped and counted in the VSI's
//! `rx_discards` (GLV_RDPC), which the guest reads with GET_STATS.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::pci::{ConfigSpace, Identity, MsixLayout, Registers};
use crate::transport::Platform;
use crate::xl710_queues::{walk_tx_ring, AdminQueue};
use hpcap_core::adminq::{self, Desc};
use hpcap_core::virtchnl::{
    self, cap, op, status, EthStats, EtherAddrList, IrqMapInfo, PfEvent, PromiscInfo, QueueSelect,
    RxqInfo, VfResource, VfResourceMsg, VsiQueueConfig, VsiResource,
};

/// Register offsets in BAR0 (Linux `iavf_register.h`).
pub mod reg {
    /// QTX_TAIL1(q).
    pub const QTX_TAIL1: u64 = 0x0000;
    /// QRX_TAIL1(q).
    pub const QRX_TAIL1: u64 = 0x2000;
    /// VFINT_DYN_CTLN1(v), v = 0..15 (MSI-X vector v + 1).
    pub const VFINT_DYN_CTLN1: u64 = 0x3800;
    /// VFINT_ICR01: interrupt causes of vector 0 (read clears).
    pub const VFINT_ICR01: u64 = 0x4800;
    /// VFINT_ICR0_ENA1: enabled causes of vector 0.
    pub const VFINT_ICR0_ENA1: u64 = 0x5000;
    /// VFINT_DYN_CTL01: vector 0 control.
    pub const VFINT_DYN_CTL01: u64 = 0x5c00;
    /// VF_ARQBAH1.
    pub const VF_ARQBAH1: u64 = 0x6000;
    /// VF_ATQH1.
    pub const VF_ATQH1: u64 = 0x6400;
    /// VF_ATQLEN1.
    pub const VF_ATQLEN1: u64 = 0x6800;
    /// VF_ARQBAL1.
    pub const VF_ARQBAL1: u64 = 0x6c00;
    /// VF_ARQT1.
    pub const VF_ARQT1: u64 = 0x7000;
    /// VF_ARQH1.
    pub const VF_ARQH1: u64 = 0x7400;
    /// VF_ATQBAH1.
    pub const VF_ATQBAH1: u64 = 0x7800;
    /// VF_ATQBAL1.
    pub const VF_ATQBAL1: u64 = 0x7c00;
    /// VF_ARQLEN1.
    pub const VF_ARQLEN1: u64 = 0x8000;
    /// VF_ATQT1.
    pub const VF_ATQT1: u64 = 0x8400;
    /// VFGEN_RSTAT.
    pub const VFGEN_RSTAT: u64 = 0x8800;
    pub use crate::xl710_queues::{QLEN_ENABLE, QLEN_MASK};
    /// VFINT_ICR01 / ICR0_ENA1: admin queue cause.
    pub const ICR0_ADMINQ: u32 = 1 << 30;
    /// DYN_CTL: interrupt enable.
    pub const DYN_INTENA: u32 = 1 << 0;
    /// DYN_CTL: software interrupt trigger.
    pub const DYN_SWINT_TRIG: u32 = 1 << 2;
    /// VFGEN_RSTAT values (VIRTCHNL_VFR_*).
    pub const VFR_INPROGRESS: u32 = 0;
    /// The VF reset is done, the VF not yet enabled by the PF.
    pub const VFR_COMPLETED: u32 = 1;
    /// The VF is active.
    pub const VFR_VFACTIVE: u32 = 2;
}

/// Encodes a message with one of the core's encoders into a new vector.
pub fn encode(f: impl FnOnce(&mut [u8]) -> Option<usize>) -> Vec<u8> {
    let mut b = vec![0u8; 4096];
    let n = f(&mut b).unwrap_or(0);
    b.truncate(n);
    b
}

/// The VSI counters as JSON (for `--stats-json`).
pub fn eth_stats_json(e: &EthStats) -> serde_json::Value {
    serde_json::json!({
        "rx_bytes": e.rx_bytes, "rx_unicast": e.rx_unicast, "rx_multicast": e.rx_multicast,
        "rx_broadcast": e.rx_broadcast, "rx_discards": e.rx_discards,
        "rx_unknown_protocol": e.rx_unknown_protocol, "tx_bytes": e.tx_bytes,
        "tx_unicast": e.tx_unicast, "tx_multicast": e.tx_multicast, "tx_broadcast": e.tx_broadcast,
        "tx_discards": e.tx_discards, "tx_errors": e.tx_errors,
    })
}

/// BAR sizes: BAR0 registers (64 KiB), BAR3 MSI-X table and PBA.
const BAR0_SIZE: u64 = 0x10000;
const BAR3_SIZE: u64 = 0x4000;

/// How the embedded PF answers a promiscuous request from an untrusted VF.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
pub enum PromiscRefusal {
    /// As Linux's i40e PF: answer SUCCESS and change nothing (it logs
    /// "Unprivileged VF is attempting to configure promiscuous mode").
    Lie,
    /// Answer ERR_PARAM (a PF that says no).
    Error,
}

/// The host side's settings for this VF (what `ip link set PF vf 0 ...`
/// and the PF driver decide) plus fault knobs for tests.
#[derive(Debug, Clone)]
pub struct Config {
    /// The MAC the PF assigns (`ip link set PF vf 0 mac M`).
    pub mac: [u8; 6],
    /// `trust on`: promiscuous requests are granted.
    pub trust: bool,
    /// Port VLAN (`vlan VID`; 0 = none): only that VLAN, tag stripped.
    pub port_vlan: u16,
    /// Queue pairs offered.
    pub queue_pairs: u16,
    /// Largest MTU offered.
    pub max_mtu: u16,
    /// Promiscuous refusal style.
    pub promisc_refusal: PromiscRefusal,
    /// Fault: every PF reply is delayed this long.
    pub reply_delay: Duration,
    /// Fault: replies to this virtchnl opcode are cut to half their length.
    pub malformed_reply: Option<u32>,
    /// Fault: after this many frames were delivered, the PF resets the VF
    /// (RESET_IMPENDING, then a VF reset) once.
    pub reset_after_frames: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mac: [0x02, 0, 0, 0, 0, 0x10],
            trust: false,
            port_vlan: 0,
            queue_pairs: 4,
            max_mtu: 9706,
            promisc_refusal: PromiscRefusal::Lie,
            reply_delay: Duration::ZERO,
            malformed_reply: None,
            reset_after_frames: None,
        }
    }
}

/// MSI-X vectors: one for the mailbox plus up to 4 queue vectors.
const VECTORS: u16 = 5;
const VSI_ID: u16 = 1;

/// A message from the PF waiting for the VF (a full ARQ, or a delay).
#[derive(Debug, Clone)]
struct PfMessage {
    opcode: u32,
    retval: i32,
    data: Vec<u8>,
    due: Instant,
}

/// A queue's context and state.
#[derive(Debug, Default, Clone)]
struct RxQueue {
    info: Option<RxqInfo>,
    enabled: bool,
    tail: u32,
    /// Next descriptor the device fills.
    next: u32,
}

#[derive(Debug, Default, Clone, Copy)]
struct TxQueue {
    ring: u64,
    len: u32,
    enabled: bool,
    head: u32,
}

/// Counts the model keeps beyond what the guest can read (for tests).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ModelStats {
    /// Frames offered to the VF's port.
    pub frames_in: u64,
    /// Frames written into the guest's RX ring.
    pub delivered: u64,
    /// When the last of them was written (ns since the Unix epoch; 0: none).
    pub last_delivery_unix_ns: u64,
    /// Frames dropped for lack of a free descriptor (= rx_discards).
    pub no_descriptor: u64,
    /// Frames not for this VF (MAC/VLAN filters): the real switch sends them elsewhere.
    pub filtered: u64,
    /// Frames that arrived while the VF's RX queue was disabled or in reset.
    pub not_ready: u64,
    /// Frames the guest transmitted.
    pub tx_frames: u64,
    /// VF resets (requested by the VF or forced by the PF).
    pub resets: u64,
    /// Promiscuous requests refused (untrusted VF).
    pub promisc_refused: u64,
    /// DMA accesses that failed (driver bug or teardown race).
    pub dma_errors: u64,
}

/// The XL710 VF with its embedded PF.
pub struct Vf {
    cfg_space: ConfigSpace,
    /// Host-side settings and fault knobs.
    pub config: Config,
    atq: AdminQueue,
    arq: AdminQueue,
    rstat: u32,
    reset_done_at: Option<Instant>,
    icr0: u32,
    icr0_ena: u32,
    dyn_ctl0: u32,
    dyn_ctln: [u32; 16],
    /// A cause is waiting for its vector to be enabled (index 0 = vector 0).
    pending_irq: [bool; 17],
    other_regs: std::collections::HashMap<u64, u32>,
    pending: VecDeque<PfMessage>,
    // The PF's view of the VF.
    version_ok: bool,
    resources_sent: bool,
    rxq: Vec<RxQueue>,
    txq: Vec<TxQueue>,
    rx_vector: [u16; 16],
    tx_vector: [u16; 16],
    macs: Vec<[u8; 6]>,
    unicast_promisc: bool,
    multicast_promisc: bool,
    link_up: bool,
    /// GET_STATS counters.
    pub eth: EthStats,
    /// Model-side counters.
    pub stats: ModelStats,
    reset_fault_done: bool,
    forced_reset_at: Option<Instant>,
    tx_out: Vec<Vec<u8>>,
}

impl Vf {
    /// A VF as the PF created it (VF reset completed, active).
    pub fn new(config: Config) -> Self {
        let cfg_space = ConfigSpace::new(
            Identity {
                vendor: 0x8086,
                device: 0x154c,
                subsys_vendor: 0x8086,
                subsys: 0x0000,
                revision: 2,
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
        let n = usize::from(config.queue_pairs);
        let mut vf = Vf {
            cfg_space,
            config,
            atq: AdminQueue::default(),
            arq: AdminQueue::default(),
            rstat: reg::VFR_VFACTIVE,
            reset_done_at: None,
            icr0: 0,
            icr0_ena: 0,
            dyn_ctl0: 0,
            dyn_ctln: [0; 16],
            pending_irq: [false; 17],
            other_regs: Default::default(),
            pending: VecDeque::new(),
            version_ok: false,
            resources_sent: false,
            rxq: vec![RxQueue::default(); n],
            txq: vec![TxQueue::default(); n],
            rx_vector: [0; 16],
            tx_vector: [0; 16],
            macs: Vec::new(),
            unicast_promisc: false,
            multicast_promisc: false,
            link_up: true,
            eth: EthStats::default(),
            stats: ModelStats::default(),
            reset_fault_done: false,
            forced_reset_at: None,
            tx_out: Vec::new(),
        };
        vf.reset_vf_state();
        vf
    }

    /// Whether unicast promiscuous mode is in effect.
    pub fn promiscuous(&self) -> bool {
        self.unicast_promisc
    }

    /// What a VF reset clears (queues, filters, interrupts, the mailbox).
    fn reset_vf_state(&mut self) {
        self.atq = AdminQueue::default();
        self.arq = AdminQueue::default();
        self.icr0 = 0;
        self.icr0_ena = 0;
        self.dyn_ctl0 = 0;
        self.dyn_ctln = [0; 16];
        self.pending_irq = [false; 17];
        self.pending.clear();
        self.version_ok = false;
        self.resources_sent = false;
        self.rxq.iter_mut().for_each(|q| *q = RxQueue::default());
        self.txq.iter_mut().for_each(|q| *q = TxQueue::default());
        self.rx_vector = [0; 16];
        self.tx_vector = [0; 16];
        // The PF installs the VF's own MAC filter.
        self.macs = vec![self.config.mac];
        self.unicast_promisc = false;
        self.multicast_promisc = false;
        // Linux's PF frees and allocates the VF's VSI in a reset
        // (`i40e_cleanup_reset_vf`), and a new VSI's counters start at
        // zero (`i40e_vsi_reset_stats`).
        self.eth = EthStats::default();
    }

    /// Starts a VF reset (VFGEN_RSTAT goes through INPROGRESS; the mailbox
    /// is disabled, which is how the VF driver notices) that completes a
    /// little later in [`Vf::tick`].
    fn start_vf_reset(&mut self, now: Instant) {
        self.stats.resets += 1;
        self.reset_vf_state();
        self.rstat = reg::VFR_INPROGRESS;
        self.reset_done_at = Some(now + Duration::from_millis(20));
    }

    /// Time-driven work: a VF reset completing, delayed PF replies, a
    /// forced reset. Call often (the model's RX thread does, every ms).
    pub fn tick(&mut self, now: Instant, p: &mut Platform) {
        if let Some(t) = self.reset_done_at {
            if now >= t {
                self.reset_done_at = None;
                self.rstat = reg::VFR_VFACTIVE;
            }
        }
        if let Some(t) = self.forced_reset_at {
            if now >= t {
                self.forced_reset_at = None;
                self.start_vf_reset(now);
            }
        }
        self.deliver_pending(now, p);
    }

    fn virtchnl_reply(&mut self, opcode: u32, retval: i32, mut data: Vec<u8>, now: Instant) {
        if self.config.malformed_reply == Some(opcode) {
            data.truncate(data.len() / 2);
        }
        self.pending.push_back(PfMessage {
            opcode,
            retval,
            data,
            due: now + self.config.reply_delay,
        });
    }

    fn send_event(&mut self, data: Vec<u8>, now: Instant) {
        self.pending.push_back(PfMessage {
            opcode: op::EVENT,
            retval: status::SUCCESS,
            data,
            due: now,
        });
    }

    /// Writes due PF messages into the ARQ while it has free descriptors.
    fn deliver_pending(&mut self, now: Instant, p: &mut Platform) {
        let mut wrote = false;
        while let Some(m) = self.pending.front() {
            if m.due > now || !self.arq.can_post() {
                break;
            }
            let posted = self
                .arq
                .post(&p.mem, &m.data, &mut self.stats.dma_errors, |d, len| {
                    d.deliver_pf_message(m.opcode, m.retval, len)
                });
            if posted.is_err() {
                break;
            }
            self.pending.pop_front();
            wrote = true;
        }
        if wrote {
            self.icr0 |= reg::ICR0_ADMINQ;
            if self.icr0_ena & reg::ICR0_ADMINQ != 0 {
                self.cause(0, p);
            }
        }
    }

    /// An interrupt cause for MSI-X vector `v`: fires now if the vector is
    /// enabled (and auto-masks it, as DYN_CTL's INTENA does), else waits.
    fn cause(&mut self, v: usize, p: &mut Platform) {
        let ctl = if v == 0 {
            &mut self.dyn_ctl0
        } else {
            &mut self.dyn_ctln[v - 1]
        };
        if *ctl & reg::DYN_INTENA != 0 {
            *ctl &= !reg::DYN_INTENA;
            self.pending_irq[v] = false;
            p.irq.raise(v);
        } else {
            self.pending_irq[v] = true;
        }
    }

    fn write_dyn_ctl(&mut self, v: usize, val: u32, p: &mut Platform) {
        if v == 0 {
            self.dyn_ctl0 = val;
        } else {
            self.dyn_ctln[v - 1] = val;
        }
        if val & reg::DYN_SWINT_TRIG != 0 {
            p.irq.raise(v);
        } else if val & reg::DYN_INTENA != 0 && self.pending_irq[v] {
            self.cause(v, p);
        }
    }

    /// Processes the ATQ from head to tail: each 0x0801 descriptor carries
    /// one virtchnl message for the PF.
    fn process_atq(&mut self, p: &mut Platform, now: Instant) {
        if !self.atq.enabled() {
            return;
        }
        let n = self.atq.entries();
        let mut guard = 0;
        while self.atq.head != self.atq.tail % n && guard < n {
            guard += 1;
            let at = self.atq.base() + u64::from(self.atq.head) * adminq::DESC_LEN as u64;
            let mut d = [0u8; adminq::DESC_LEN];
            if p.mem.read(at, &mut d).is_err() {
                self.stats.dma_errors += 1;
                return;
            }
            let desc = Desc::from_bytes(&d);
            let mut retval = adminq::rc::OK;
            if desc.opcode == adminq::opc::SEND_MSG_TO_PF {
                let len = usize::from(desc.datalen);
                let mut msg = vec![0u8; len];
                if len > 0 && p.mem.read(desc.buffer(), &mut msg).is_err() {
                    self.stats.dma_errors += 1;
                    msg.clear();
                }
                self.handle_virtchnl(desc.cookie_high, &msg, now, p);
                if self.rstat != reg::VFR_VFACTIVE {
                    return; // the message reset the VF, mailbox included
                }
            } else {
                retval = adminq::rc::ESRCH;
            }
            if p.mem.write(at, &desc.complete(retval).to_bytes()).is_err() {
                self.stats.dma_errors += 1;
            }
            self.atq.head = adminq::next_index(self.atq.head, n);
        }
        self.deliver_pending(now, p);
    }

    /// The embedded PF: one virtchnl request from the VF.
    fn handle_virtchnl(&mut self, vop: u32, msg: &[u8], now: Instant, p: &mut Platform) {
        use status::*;
        // Linux's PF checks every request's length first
        // (`virtchnl_vc_validate_vf_msg`); unknown opcodes are not supported.
        let r = match virtchnl::valid_request(vop, msg) {
            None => Some(ERR_NOT_SUPPORTED),
            Some(false) => Some(ERR_PARAM),
            Some(true) => self.handle_valid(vop, msg, now),
        };
        let Some(r) = r else {
            return;
        };
        if r != SUCCESS {
            // The model's log (hpcap-model's stderr) shows what was refused.
            eprintln!(
                "hpcap-model: virtchnl op {vop} ({} bytes) -> {r}: {:02x?}",
                msg.len(),
                &msg[..msg.len().min(96)]
            );
        }
        self.virtchnl_reply(vop, r, Vec::new(), now);
        let _ = p;
    }

    /// A request of the right length: `Some(status)` for a reply without
    /// data, `None` when the reply (or none, for RESET_VF) was queued.
    fn handle_valid(&mut self, vop: u32, msg: &[u8], now: Instant) -> Option<i32> {
        use status::*;
        Some(match vop {
            op::VERSION => {
                self.version_ok = true;
                let v = encode(|b| virtchnl::VERSION.encode(b));
                self.virtchnl_reply(vop, SUCCESS, v, now);
                return None;
            }
            op::RESET_VF => {
                // No reply: the VF watches VFGEN_RSTAT.
                self.start_vf_reset(now);
                return None;
            }
            op::GET_VF_RESOURCES => {
                let res = VfResource {
                    num_vsis: 1,
                    num_queue_pairs: self.config.queue_pairs,
                    max_vectors: VECTORS,
                    max_mtu: self.config.max_mtu,
                    vf_cap_flags: cap::L2 | cap::RSS_REG,
                    rss_key_size: 52,
                    rss_lut_size: 64,
                };
                let vsi = VsiResource {
                    vsi_id: VSI_ID,
                    num_queue_pairs: self.config.queue_pairs,
                    vsi_type: virtchnl::VSI_SRIOV,
                    qset_handle: 0,
                    default_mac: self.config.mac,
                };
                self.resources_sent = true;
                let reply = encode(|b| VfResourceMsg::encode(&res, &[vsi], b));
                self.virtchnl_reply(vop, SUCCESS, reply, now);
                // Linux's PF tells a freshly configured VF its link state.
                self.send_event(self.link_event(), now);
                return None;
            }
            op::ENABLE_QUEUES | op::DISABLE_QUEUES => {
                let r = self.enable_queues(msg, vop == op::ENABLE_QUEUES);
                if r == SUCCESS && vop == op::ENABLE_QUEUES {
                    self.virtchnl_reply(vop, r, Vec::new(), now);
                    self.send_event(self.link_event(), now);
                    return None;
                }
                r
            }
            op::ADD_ETH_ADDR | op::DEL_ETH_ADDR => self.eth_addr(msg, vop == op::ADD_ETH_ADDR),
            op::CONFIG_PROMISCUOUS_MODE => self.promisc(msg),
            op::GET_STATS => match QueueSelect::parse(msg) {
                Some(q) if q.vsi_id == VSI_ID => {
                    let s = encode(|b| self.eth.encode(b));
                    self.virtchnl_reply(vop, SUCCESS, s, now);
                    return None;
                }
                _ => ERR_PARAM,
            },
            op::CONFIG_IRQ_MAP => self.config_irq_map(msg),
            op::CONFIG_VSI_QUEUES => self.config_queues(msg),
            _ => ERR_NOT_SUPPORTED,
        })
    }

    /// The link event Linux's PF sends (legacy speed encoding, 40G).
    fn link_event(&self) -> Vec<u8> {
        encode(|b| PfEvent::link(self.link_up, virtchnl::speed::S40GB).encode(b))
    }

    fn config_queues(&mut self, msg: &[u8]) -> i32 {
        let Some(cfg) = VsiQueueConfig::parse(msg) else {
            return status::ERR_PARAM;
        };
        if cfg.vsi_id != VSI_ID || usize::from(cfg.num_queue_pairs) > self.rxq.len() {
            return status::ERR_PARAM;
        }
        // Linux's PF (`i40e_config_vsi_rx_queue`): queue ids in order, the
        // VSI's; a buffer of at most 16 KiB - 128 in 128-byte units; 64 <=
        // max_pkt_size < 16 KiB; ring length a multiple of 32.
        for (i, p) in cfg.pairs().enumerate() {
            let q = p.rxq;
            if usize::from(q.queue_id) != i
                || usize::from(p.txq.queue_id) != i
                || q.vsi_id != VSI_ID
                || p.txq.vsi_id != VSI_ID
                || q.ring_len == 0
                || q.ring_len % 32 != 0
                || q.databuffer_size == 0
                || q.databuffer_size > virtchnl::MAX_RX_BUFFER
                || q.databuffer_size < virtchnl::RX_BUFFER_UNIT
                || q.max_pkt_size < virtchnl::MIN_PKT_SIZE
                || q.max_pkt_size >= virtchnl::MAX_PKT_SIZE
            {
                return status::ERR_PARAM;
            }
        }
        for (i, p) in cfg.pairs().enumerate() {
            let q = p.rxq;
            self.txq[i] = TxQueue {
                ring: p.txq.dma_ring_addr,
                len: u32::from(p.txq.ring_len),
                enabled: false,
                head: 0,
            };
            // The tail is a register: iavf fills the ring and writes it
            // before it sends the queue contexts.
            let tail = self.rxq[i].tail % q.ring_len;
            // The PF programs the buffer in 128-byte units (`dbuff`).
            let unit = virtchnl::RX_BUFFER_UNIT;
            self.rxq[i] = RxQueue {
                info: Some(RxqInfo {
                    databuffer_size: q.databuffer_size / unit * unit,
                    ..q
                }),
                enabled: false,
                tail,
                next: 0,
            };
        }
        status::SUCCESS
    }

    fn config_irq_map(&mut self, msg: &[u8]) -> i32 {
        let Some(info) = IrqMapInfo::parse(msg) else {
            return status::ERR_PARAM;
        };
        for m in info.maps() {
            if m.vsi_id != VSI_ID || m.vector_id >= VECTORS {
                return status::ERR_PARAM;
            }
            for q in 0..16 {
                if m.rxq_map & (1 << q) != 0 {
                    self.rx_vector[q] = m.vector_id;
                }
                if m.txq_map & (1 << q) != 0 {
                    self.tx_vector[q] = m.vector_id;
                }
            }
        }
        status::SUCCESS
    }

    fn enable_queues(&mut self, msg: &[u8], on: bool) -> i32 {
        let Some(QueueSelect {
            vsi_id: vsi,
            rx_queues: rx,
            tx_queues: tx,
        }) = QueueSelect::parse(msg)
        else {
            return status::ERR_PARAM;
        };
        if vsi != VSI_ID || (rx == 0 && tx == 0) {
            return status::ERR_PARAM;
        }
        for (i, q) in self.rxq.iter_mut().enumerate() {
            if rx & (1 << i) != 0 {
                if on && q.info.is_none() {
                    return status::ERR_PARAM;
                }
                q.enabled = on;
                q.next = 0;
            }
        }
        for (i, q) in self.txq.iter_mut().enumerate() {
            if tx & (1 << i) != 0 {
                q.enabled = on;
                q.head = 0;
            }
        }
        status::SUCCESS
    }

    fn eth_addr(&mut self, msg: &[u8], add: bool) -> i32 {
        let Some(list) = EtherAddrList::parse(msg) else {
            return status::ERR_PARAM;
        };
        if list.vsi_id != VSI_ID {
            return status::ERR_PARAM;
        }
        for mac in list.addrs().map(|a| a.addr) {
            let unicast = mac[0] & 1 == 0;
            if add {
                // Linux's PF: an untrusted VF whose MAC the host set may not
                // add another unicast address.
                if unicast && !self.config.trust && mac != self.config.mac {
                    return status::ERR_PARAM;
                }
                if !self.macs.contains(&mac) {
                    self.macs.push(mac);
                }
            } else if mac != self.config.mac {
                self.macs.retain(|m| *m != mac);
            }
        }
        status::SUCCESS
    }

    fn promisc(&mut self, msg: &[u8]) -> i32 {
        let Some(PromiscInfo { vsi_id: vsi, flags }) = PromiscInfo::parse(msg) else {
            return status::ERR_PARAM;
        };
        if !self.config.trust {
            self.stats.promisc_refused += 1;
            return match self.config.promisc_refusal {
                PromiscRefusal::Lie => status::SUCCESS,
                PromiscRefusal::Error => status::ERR_PARAM,
            };
        }
        if vsi != VSI_ID || flags > 3 {
            return status::ERR_PARAM;
        }
        self.unicast_promisc = flags & virtchnl::FLAG_UNICAST_PROMISC != 0;
        self.multicast_promisc = flags & virtchnl::FLAG_MULTICAST_PROMISC != 0;
        status::SUCCESS
    }

    /// The PF's switch: does this frame go to the VF's VSI, and with which
    /// stripped tag?
    fn accept(&self, frame: &[u8]) -> Option<Option<u16>> {
        if frame.len() < 14 {
            return None;
        }
        let dst: [u8; 6] = frame[0..6].try_into().ok()?;
        let tagged = frame[12] == 0x81 && frame[13] == 0x00 && frame.len() >= 18;
        let tag = if self.config.port_vlan != 0 {
            // Port VLAN: only that VLAN reaches the VF, its tag stripped.
            if !tagged {
                return None;
            }
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            if tci & 0xfff != self.config.port_vlan {
                return None;
            }
            Some(tci)
        } else {
            None
        };
        let mac_ok = if dst == [0xff; 6] {
            true
        } else if dst[0] & 1 != 0 {
            self.multicast_promisc || self.unicast_promisc || self.macs.contains(&dst)
        } else {
            self.unicast_promisc || self.macs.contains(&dst)
        };
        mac_ok.then_some(tag)
    }

    /// A frame arrives at the port. Returns true when it was written into
    /// the guest's ring.
    pub fn receive(&mut self, frame: &[u8], now: Instant, p: &mut Platform) -> bool {
        self.stats.frames_in += 1;
        let Some(tag) = self.accept(frame) else {
            self.stats.filtered += 1;
            return false;
        };
        let stripped;
        let data: &[u8] = match tag {
            Some(_) => {
                stripped = [&frame[..12], &frame[16..]].concat();
                &stripped
            }
            None => frame,
        };
        let ok = self.rstat == reg::VFR_VFACTIVE && self.cfg_space.bus_master();
        let Some(q) = self.rxq.first_mut().filter(|q| ok && q.enabled) else {
            self.stats.not_ready += 1;
            return false;
        };
        let Some(info) = q.info else {
            self.stats.not_ready += 1;
            return false;
        };
        let buf = info.databuffer_size as usize;
        let need = data.len().div_ceil(buf).max(1) as u32;
        let free = (q.tail + info.ring_len - q.next) % info.ring_len;
        if data.len() > info.max_pkt_size as usize + 4 || free < need {
            // GLV_RDPC: received for the VSI, no descriptor.
            self.eth.rx_discards += 1;
            self.stats.no_descriptor += 1;
            return false;
        }
        for (k, chunk) in data.chunks(buf).enumerate() {
            let at = info.dma_ring_addr + u64::from(q.next) * 32;
            let Ok(pkt_addr) = p.mem.read_u64(at) else {
                self.stats.dma_errors += 1;
                return false;
            };
            if p.mem.write(pkt_addr, chunk).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            let eop = k as u32 + 1 == need;
            let mut qw1: u64 = 1; // DD
            if eop {
                qw1 |= 1 << 1; // EOP
            }
            let mut qw0: u64 = 0;
            if let Some(tci) = tag {
                qw1 |= 1 << 2; // L2TAG1P
                qw0 |= u64::from(tci) << 16;
            }
            qw1 |= 1u64 << 30; // packet type 1: L2 payload
            qw1 |= (chunk.len() as u64 & 0x3fff) << 38;
            let mut wb = [0u8; 32];
            wb[0..8].copy_from_slice(&qw0.to_le_bytes());
            wb[8..16].copy_from_slice(&qw1.to_le_bytes());
            if p.mem.write(at, &wb).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            q.next = (q.next + 1) % info.ring_len;
        }
        let dst = &frame[0..6];
        self.eth.rx_bytes += frame.len() as u64;
        if dst == [0xff; 6] {
            self.eth.rx_broadcast += 1;
        } else if dst[0] & 1 != 0 {
            self.eth.rx_multicast += 1;
        } else {
            self.eth.rx_unicast += 1;
        }
        self.stats.delivered += 1;
        self.stats.last_delivery_unix_ns = crate::unix_ns();
        let v = usize::from(self.rx_vector[0]);
        if v > 0 {
            self.cause(v, p);
        }
        if let Some(n) = self.config.reset_after_frames {
            if !self.reset_fault_done && self.stats.delivered >= n {
                self.reset_fault_done = true;
                let ev = encode(|b| PfEvent::reset_impending().encode(b));
                self.send_event(ev, now);
                self.deliver_pending(now, p);
                self.forced_reset_at = Some(now + Duration::from_millis(50));
            }
        }
        true
    }

    /// The guest advanced a TX tail: complete its descriptors (frames are
    /// counted and returned, for the host side to see).
    fn transmit(&mut self, q: usize, tail: u32, p: &mut Platform) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let Some(t) = self.txq.get(q).copied() else {
            return out;
        };
        if !t.enabled || t.len == 0 || !self.cfg_space.bus_master() {
            return out;
        }
        let head = walk_tx_ring(
            &p.mem,
            t.ring,
            t.len,
            t.head,
            tail,
            &mut self.stats.dma_errors,
            |frame| out.push(frame),
        );
        self.stats.tx_frames += out.len() as u64;
        self.eth.tx_bytes += out.iter().map(|f| f.len() as u64).sum::<u64>();
        self.eth.tx_unicast += out.len() as u64;
        self.txq[q].head = head;
        let v = usize::from(self.tx_vector[q]);
        if v > 0 {
            self.cause(v, p);
        }
        out
    }

    /// Frames the guest sent since the last call (see [`Vf::transmit`]).
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx_out)
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
        self.write_reg(off, v, Instant::now(), p)
    }

    fn function_reset(&mut self, _p: &mut Platform) {
        // A function-level reset from the hypervisor: like a VF reset
        // that is over at once.
        self.stats.resets += 1;
        self.reset_vf_state();
        self.rstat = reg::VFR_VFACTIVE;
    }
}

impl Vf {
    /// A register read (32-bit).
    pub fn read_reg(&mut self, off: u64) -> u32 {
        use reg::*;
        match off {
            VFGEN_RSTAT => self.rstat,
            VF_ATQBAL1 => self.atq.bal,
            VF_ATQBAH1 => self.atq.bah,
            VF_ATQLEN1 => self.atq.len,
            VF_ATQH1 => self.atq.head,
            VF_ATQT1 => self.atq.tail,
            VF_ARQBAL1 => self.arq.bal,
            VF_ARQBAH1 => self.arq.bah,
            VF_ARQLEN1 => self.arq.len,
            VF_ARQH1 => self.arq.head,
            VF_ARQT1 => self.arq.tail,
            VFINT_ICR01 => std::mem::take(&mut self.icr0),
            VFINT_ICR0_ENA1 => self.icr0_ena,
            VFINT_DYN_CTL01 => self.dyn_ctl0,
            o if (VFINT_DYN_CTLN1..VFINT_DYN_CTLN1 + 64).contains(&o) => {
                self.dyn_ctln[((o - VFINT_DYN_CTLN1) / 4) as usize]
            }
            o if (QRX_TAIL1..QRX_TAIL1 + 64).contains(&o) => self
                .rxq
                .get(((o - QRX_TAIL1) / 4) as usize)
                .map_or(0, |q| q.tail),
            o => self.other_regs.get(&o).copied().unwrap_or(0),
        }
    }

    /// A register write (32-bit).
    pub fn write_reg(&mut self, off: u64, v: u32, now: Instant, p: &mut Platform) {
        use reg::*;
        match off {
            VF_ATQBAL1 => self.atq.bal = v,
            VF_ATQBAH1 => self.atq.bah = v,
            VF_ATQLEN1 => self.atq.len = v,
            VF_ATQH1 => self.atq.head = v & QLEN_MASK,
            VF_ATQT1 => {
                self.atq.tail = v & QLEN_MASK;
                self.process_atq(p, now);
            }
            VF_ARQBAL1 => self.arq.bal = v,
            VF_ARQBAH1 => self.arq.bah = v,
            VF_ARQLEN1 => self.arq.len = v,
            VF_ARQH1 => self.arq.head = v & QLEN_MASK,
            VF_ARQT1 => {
                self.arq.tail = v & QLEN_MASK;
                self.deliver_pending(now, p);
            }
            VFINT_ICR0_ENA1 => self.icr0_ena = v,
            VFINT_DYN_CTL01 => self.write_dyn_ctl(0, v, p),
            o if (VFINT_DYN_CTLN1..VFINT_DYN_CTLN1 + 64).contains(&o) => {
                self.write_dyn_ctl(((o - VFINT_DYN_CTLN1) / 4) as usize + 1, v, p)
            }
            o if (QRX_TAIL1..QRX_TAIL1 + 64).contains(&o) => {
                let i = ((o - QRX_TAIL1) / 4) as usize;
                if let Some(q) = self.rxq.get_mut(i) {
                    q.tail = q.info.map_or(v, |i| v % i.ring_len.max(1));
                }
            }
            o if (QTX_TAIL1..QTX_TAIL1 + 64).contains(&o) => {
                let sent = self.transmit(((o - QTX_TAIL1) / 4) as usize, v, p);
                self.tx_out.extend(sent);
            }
            VFGEN_RSTAT => {}
            o => {
                self.other_regs.insert(o, v);
            }
        }
    }
}

#[cfg(test)]
mod tests;
