// SPDX-License-Identifier: MIT
//! The LAN block: RX and TX queues (contexts read from the HMC when the
//! driver enables a queue), the PF VSI's filters (MAC perfect filters,
//! promiscuous modes, VLAN stripping) and the port's receive counters.

use hpcap_core::desc::{I40e16, RxDone, RxFormat};

use super::hmc::{self, HmcError, RxContext, TxContext};
use super::regs::*;
use super::Pf;
use crate::transport::Platform;
use crate::xl710_queues::walk_tx_ring;

/// An RX queue.
#[derive(Debug, Default, Clone, Copy)]
pub struct RxQueue {
    /// The context read at enable time.
    pub ctx: Option<RxContext>,
    /// QENA_REQ as the driver wrote it.
    pub req: bool,
    /// The queue runs (QENA_STAT).
    pub enabled: bool,
    /// The tail the driver wrote.
    pub tail: u32,
    /// The next descriptor the device fills.
    pub next: u32,
}

impl RxQueue {
    /// QRX_ENA as read.
    pub fn ena_reg(&self) -> u32 {
        (u32::from(self.req) * QENA_REQ) | (u32::from(self.enabled) * QENA_STAT)
    }

    /// QRX_TAIL written.
    pub fn write_tail(&mut self, v: u32) {
        self.tail = match self.ctx {
            Some(c) if c.qlen > 0 => v % u32::from(c.qlen),
            _ => v,
        };
    }

    /// Descriptors the driver has given the device.
    fn free(&self, qlen: u32) -> u32 {
        (self.tail + qlen - self.next) % qlen
    }
}

/// A TX queue.
#[derive(Debug, Default, Clone, Copy)]
pub struct TxQueue {
    /// The context read at enable time.
    pub ctx: Option<TxContext>,
    /// QENA_REQ.
    pub req: bool,
    /// QENA_STAT.
    pub enabled: bool,
    /// Next descriptor the device reads.
    pub head: u32,
}

impl TxQueue {
    /// QTX_ENA as read.
    pub fn ena_reg(&self) -> u32 {
        (u32::from(self.req) * QENA_REQ) | (u32::from(self.enabled) * QENA_STAT)
    }
}

/// The PF's main VSI as the firmware's switch sees it.
#[derive(Debug, Default, Clone)]
pub struct Vsi {
    /// MAC perfect filters (`ADD_MACVLAN`).
    pub macs: Vec<[u8; 6]>,
    /// Unicast promiscuous.
    pub unicast_promisc: bool,
    /// Multicast promiscuous.
    pub multicast_promisc: bool,
    /// Broadcast accepted.
    pub broadcast: bool,
    /// The VSI is the port's default VSI (receives what no filter matched).
    pub default_port: bool,
    /// VLAN tags are stripped into the descriptor (`port_vlan_flags`
    /// EMOD other than NOTHING).
    pub strip_vlan: bool,
    /// `port_vlan_flags` as last configured.
    pub port_vlan_flags: u8,
}

impl Vsi {
    /// The VSI after a reset: the firmware's filter for the port MAC,
    /// broadcast accepted, tags left in the frame.
    pub fn reset(mac: [u8; 6]) -> Self {
        Vsi {
            macs: vec![mac],
            broadcast: true,
            port_vlan_flags: 0x03 | 0x18, // MODE_ALL | EMOD_NOTHING
            ..Vsi::default()
        }
    }

    /// Whether a frame to `dst` reaches the VSI.
    pub fn accepts(&self, dst: &[u8; 6]) -> bool {
        if self.default_port || self.unicast_promisc && dst[0] & 1 == 0 {
            return true;
        }
        if *dst == [0xff; 6] {
            return self.broadcast;
        }
        if dst[0] & 1 != 0 && self.multicast_promisc {
            return true;
        }
        self.macs.contains(dst)
    }
}

/// The port's receive counters (`GLPRT_*`, one port) and the VSI's.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PortStats {
    /// GLPRT_GORC: good octets received (FCS included).
    pub rx_bytes: u64,
    /// GLPRT_UPRC.
    pub rx_unicast: u64,
    /// GLPRT_MPRC.
    pub rx_multicast: u64,
    /// GLPRT_BPRC.
    pub rx_broadcast: u64,
    /// GLPRT_RDPC (and the VSI's GLV_RDPC, which Linux reports as
    /// `rx_missed_errors`): received, dropped for lack of a descriptor.
    pub rx_discards: u64,
}

impl PortStats {
    /// Reads a statistics register (L: low 32 bits, H: bits 47:32).
    pub fn read(&self, off: u64) -> u32 {
        let counter = |base: u64, v: u64| -> Option<u32> {
            match off.checked_sub(base)? {
                0 => Some(v as u32),
                4 => Some((v >> 32) as u32 & 0xffff),
                _ => None,
            }
        };
        // The PF's VSI (statistics block 0) sees every frame of the port.
        counter(GLPRT_GORCL, self.rx_bytes)
            .or_else(|| counter(GLPRT_UPRCL, self.rx_unicast))
            .or_else(|| counter(GLPRT_MPRCL, self.rx_multicast))
            .or_else(|| counter(GLPRT_BPRCL, self.rx_broadcast))
            .or_else(|| counter(GLPRT_RDPC, self.rx_discards).filter(|_| off == GLPRT_RDPC))
            .or_else(|| counter(GLV_GORCL, self.rx_bytes))
            .or_else(|| counter(GLV_UPRCL, self.rx_unicast))
            .or_else(|| counter(GLV_MPRCL, self.rx_multicast))
            .or_else(|| counter(GLV_BPRCL, self.rx_broadcast))
            .or_else(|| counter(GLV_RDPC, self.rx_discards).filter(|_| off == GLV_RDPC))
            .unwrap_or(0)
    }
}

fn log_hmc(what: &str, q: usize, e: HmcError) {
    eprintln!("hpcap-model: i40e {what} queue {q}: HMC access failed: {e:?}");
}

impl Pf {
    /// QRX_ENA written: a request to start reads the queue's context.
    pub(crate) fn rx_enable(&mut self, q: usize, on: bool, p: &mut Platform) {
        let at = self.hmc_base(true) + (q * hmc::RX_CONTEXT_LEN) as u64;
        let rq = &mut self.rxq[q];
        rq.req = on;
        if !on {
            rq.enabled = false;
            return;
        }
        let mut ctx = [0u8; hmc::RX_CONTEXT_LEN];
        match self.hmc.read(&p.mem, at, &mut ctx) {
            Ok(()) => {
                let c = RxContext::decode(&ctx);
                let rq = &mut self.rxq[q];
                rq.ctx = Some(c);
                rq.next = u32::from(c.head);
                rq.tail %= u32::from(c.qlen.max(1));
                rq.enabled = c.qlen > 0;
            }
            Err(e) => {
                self.stats.dma_errors += 1;
                log_hmc("RX", q, e);
            }
        }
    }

    /// QTX_ENA written.
    pub(crate) fn tx_enable(&mut self, q: usize, on: bool, p: &mut Platform) {
        let at = self.hmc_base(false) + (q * hmc::TX_CONTEXT_LEN) as u64;
        let tq = &mut self.txq[q];
        tq.req = on;
        if !on {
            tq.enabled = false;
            return;
        }
        let mut ctx = [0u8; hmc::TX_CONTEXT_LEN];
        match self.hmc.read(&p.mem, at, &mut ctx) {
            Ok(()) => {
                let c = TxContext::decode(&ctx);
                let tq = &mut self.txq[q];
                tq.ctx = Some(c);
                tq.head = u32::from(c.head);
                tq.enabled = c.qlen > 0;
            }
            Err(e) => {
                self.stats.dma_errors += 1;
                log_hmc("TX", q, e);
            }
        }
    }

    /// A frame arrives at the port (without its FCS). Returns true when it
    /// was written into the guest's ring.
    pub fn receive(&mut self, frame: &[u8], p: &mut Platform) -> bool {
        self.stats.frames_in += 1;
        let Ok(dst) = <[u8; 6]>::try_from(frame.get(0..6).unwrap_or(&[])) else {
            self.stats.filtered += 1;
            return false;
        };
        if !self.link_up || !self.vsi.accepts(&dst) {
            self.stats.filtered += 1;
            return false;
        }
        let q = 0;
        let rq = self.rxq[q];
        let ctx = match rq.ctx {
            Some(c) if rq.enabled && self.bus_master() && c.qlen > 0 && c.dbuff > 0 => c,
            _ => {
                self.stats.not_ready += 1;
                return false;
            }
        };
        let tagged = frame.len() >= 18 && frame[12] == 0x81 && frame[13] == 0x00;
        let (data, vlan) = if tagged && self.vsi.strip_vlan {
            let tci = u16::from_be_bytes([frame[14], frame[15]]);
            ([&frame[..12], &frame[16..]].concat(), Some(tci))
        } else {
            (frame.to_vec(), None)
        };
        let qlen = u32::from(ctx.qlen);
        let need = data.len().div_ceil(ctx.dbuff as usize).max(1) as u32;
        if ctx.rxmax > 0 && data.len() > usize::from(ctx.rxmax) {
            // Longer than the queue accepts: the MAC drops it (oversize).
            self.stats.filtered += 1;
            return false;
        }
        if rq.free(qlen) < need {
            self.port.rx_discards += 1;
            self.stats.no_descriptor += 1;
            return false;
        }
        let mut next = rq.next;
        for (k, chunk) in data.chunks(ctx.dbuff as usize).enumerate() {
            let at = ctx.base + u64::from(next) * ctx.desc_len();
            let Ok(pkt_addr) = p.mem.read_u64(at) else {
                self.stats.dma_errors += 1;
                return false;
            };
            if p.mem.write(pkt_addr, chunk).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            let eop = k as u32 + 1 == need;
            let mut wb = I40e16::write_back(&RxDone {
                len: chunk.len() as u32,
                eop,
                error: false,
                skip: false,
                vlan: if eop { vlan } else { None },
            });
            wb[1] |= 1 << 30; // packet type 1: L2 payload
            let words = (ctx.desc_len() / 8) as usize;
            let bytes: Vec<u8> = wb[..words].iter().flat_map(|w| w.to_le_bytes()).collect();
            if p.mem.write(at, &bytes).is_err() {
                self.stats.dma_errors += 1;
                return false;
            }
            next = (next + 1) % qlen;
        }
        self.rxq[q].next = next;
        // GORC counts the octets on the wire, FCS included (the injected
        // frames come without it).
        self.port.rx_bytes += frame.len() as u64 + 4;
        if dst == [0xff; 6] {
            self.port.rx_broadcast += 1;
        } else if dst[0] & 1 != 0 {
            self.port.rx_multicast += 1;
        } else {
            self.port.rx_unicast += 1;
        }
        self.stats.delivered += 1;
        self.stats.last_delivery_unix_ns = crate::unix_ns();
        self.queue_cause(QINT_RQCTL, q, p);
        true
    }

    /// The driver advanced a TX tail: send its descriptors (frames are kept
    /// for the host side) and write back DTYPE 0xF where RS asks for it.
    pub(crate) fn transmit(&mut self, q: usize, tail: u32, p: &mut Platform) {
        let t = self.txq[q];
        let Some(ctx) = t.ctx.filter(|c| t.enabled && c.qlen > 0) else {
            return;
        };
        if !self.bus_master() {
            return;
        }
        let qlen = u32::from(ctx.qlen);
        let mut sent = Vec::new();
        let head = walk_tx_ring(
            &p.mem,
            ctx.base,
            qlen,
            t.head,
            tail,
            &mut self.stats.dma_errors,
            |frame| sent.push(frame),
        );
        self.stats.tx_frames += sent.len() as u64;
        self.tx_out.extend(sent);
        self.txq[q].head = head;
        self.queue_cause(QINT_TQCTL, q, p);
    }
}
