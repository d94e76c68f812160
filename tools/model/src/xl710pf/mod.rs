// SPDX-License-Identifier: MIT
//! The Intel XL710 physical function (8086:1583, XL710 QSFP+), as Linux's
//! own `i40e` driver probes and opens it.
//!
//! One file per hardware block: [`regs`] (offsets and the register file),
//! [`nvm`] (shadow RAM), [`adminq`] (the firmware's admin-queue commands),
//! [`hmc`] (segment descriptors and queue contexts in host memory), [`lan`]
//! (RX and TX queues, the port's filters and counters). This file ties them
//! to the PCI function: BAR0 registers, MSI-X in BAR3, reset.
//!
//! Frames arrive through [`Pf::receive`]; a frame the VSI accepts goes to
//! LAN queue 0 (the model has no RSS hashing: every frame takes the lookup
//! table's first entry); a frame that finds no free descriptor is dropped
//! and counted in the port's discard counter `GLPRT_RDPC`.

pub mod adminq;
pub mod hmc;
pub mod lan;
pub mod nvm;
pub mod regs;

use std::collections::VecDeque;
use std::time::Instant;

use crate::pci::{ConfigSpace, Identity, MsixLayout, Registers};
use crate::transport::Platform;
use crate::xl710::ModelStats;
use crate::xl710_queues::AdminQueue;
use hpcap_core::adminq::{self as aq, Desc};

use self::hmc::Hmc;
use self::lan::{PortStats, RxQueue, TxQueue, Vsi};
use self::nvm::ShadowRam;
use self::regs::*;

/// XL710 QSFP+ (`I40E_DEV_ID_QSFP_A`).
pub const DEVICE_QSFP: u16 = 0x1583;
/// X710 SFP+ (`I40E_DEV_ID_SFP_XL710`).
pub const DEVICE_SFP: u16 = 0x1572;

/// The port's and firmware's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// PCI device id ([`DEVICE_QSFP`] or [`DEVICE_SFP`]).
    pub device: u16,
    /// The port's MAC address (what the NVM and `MAC_ADDRESS_READ` give).
    pub mac: [u8; 6],
    /// LAN queue pairs of this PF.
    pub queues: u16,
    /// MSI-X vectors of this PF.
    pub vectors: u16,
    /// Largest frame the MAC accepts.
    pub max_frame: u16,
    /// Firmware version (major, minor).
    pub fw: (u16, u16),
    /// Admin-queue API version (major, minor).
    pub api: (u16, u16),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            device: DEVICE_QSFP,
            mac: [0x02, 0, 0, 0, 0, 0x20],
            queues: 8,
            vectors: 17,
            max_frame: 9728,
            // Firmware 4.2: below 4.3 Linux stops the firmware's LLDP agent
            // and below 4.33 it restarts autonegotiation and assumes no DCB.
            fw: (4, 2),
            // API 1.5: NVM reads take the NVM resource lock.
            api: (1, 5),
        }
    }
}

/// An event for the driver's ARQ: a descriptor (opcode, parameters) and
/// its data.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub desc: Desc,
    pub data: Vec<u8>,
}

/// The XL710 PF.
pub struct Pf {
    cfg_space: ConfigSpace,
    /// Settings.
    pub config: Config,
    regs: RegFile,
    pub(crate) atq: AdminQueue,
    pub(crate) arq: AdminQueue,
    /// The shadow RAM.
    pub nvm: ShadowRam,
    /// The HMC segment table.
    pub hmc: Hmc,
    pub(crate) events: VecDeque<Event>,
    icr0: u32,
    dyn_ctl: Vec<u32>,
    pending_irq: Vec<bool>,
    pub(crate) rxq: Vec<RxQueue>,
    pub(crate) txq: Vec<TxQueue>,
    /// The PF's main VSI (filters, promiscuous modes, VLAN stripping).
    pub vsi: Vsi,
    /// The link is up.
    pub link_up: bool,
    /// Link status events are enabled (`GET_LINK_STATUS` with LSE_ENABLE).
    pub(crate) lse: bool,
    /// The NVM resource lock is held.
    pub(crate) nvm_locked: bool,
    /// Port statistics (`GLPRT_*`).
    pub port: PortStats,
    /// Model-side counters.
    pub stats: ModelStats,
    /// Admin-queue opcodes answered without a model (logged once each).
    pub(crate) unknown_opcodes: Vec<u16>,
    pub(crate) tx_out: Vec<Vec<u8>>,
}

impl Pf {
    /// A PF after power-on.
    pub fn new(config: Config) -> Self {
        let cfg_space = ConfigSpace::new(
            Identity {
                vendor: 0x8086,
                device: config.device,
                subsys_vendor: 0x8086,
                subsys: 0x0001,
                revision: 2,
                class: 0x020000,
            },
            [BAR0_SIZE, 0, 0, BAR3_SIZE, 0, 0],
            MsixLayout {
                vectors: config.vectors,
                bar: 3,
                table: 0,
                pba: 0x1000,
            },
        )
        // As the real PF: MSI and INTx when MSI-X cannot be had.
        .with_msi_and_intx();
        let n = usize::from(config.queues);
        let v = usize::from(config.vectors);
        let mut pf = Pf {
            cfg_space,
            regs: RegFile::power_on(config.queues, config.vectors),
            atq: AdminQueue::default(),
            arq: AdminQueue::default(),
            nvm: ShadowRam::new(),
            hmc: Hmc::default(),
            events: VecDeque::new(),
            icr0: 0,
            dyn_ctl: vec![0; v],
            pending_irq: vec![false; v],
            rxq: vec![RxQueue::default(); n],
            txq: vec![TxQueue::default(); n],
            vsi: Vsi::default(),
            link_up: true,
            lse: false,
            nvm_locked: false,
            port: PortStats::default(),
            stats: ModelStats::default(),
            unknown_opcodes: Vec::new(),
            tx_out: Vec::new(),
            config,
        };
        pf.pf_reset();
        pf.stats.resets = 0; // power-on is not a reset the driver asked for
        pf
    }

    /// A PF reset (PFSWR, or a function-level reset): queues, interrupts,
    /// the HMC segment table and the PF's VSI go back to their reset state.
    /// The admin queue registers survive (they reset with the EMP).
    pub fn pf_reset(&mut self) {
        self.stats.resets += 1;
        self.hmc = Hmc::default();
        self.rxq.iter_mut().for_each(|q| *q = RxQueue::default());
        self.txq.iter_mut().for_each(|q| *q = TxQueue::default());
        self.icr0 = 0;
        self.dyn_ctl.iter_mut().for_each(|c| *c = 0);
        self.pending_irq.iter_mut().for_each(|p| *p = false);
        self.vsi = Vsi::reset(self.config.mac);
        self.lse = false;
        self.nvm_locked = false;
        self.events.clear();
        self.regs.clear_range(QINT_RQCTL, QINT_RQCTL + 0x2000);
        self.regs.clear_range(QINT_TQCTL, QINT_TQCTL + 0x2000);
        self.regs.set(PFINT_ICR0_ENA, 0);
    }

    /// A core reset (GLGEN_RTRIG): a PF reset that also stops the admin queue.
    fn core_reset(&mut self) {
        self.pf_reset();
        self.atq = AdminQueue::default();
        self.arq = AdminQueue::default();
    }

    /// Time-driven work (the model's frame pump calls it every ms).
    pub fn tick(&mut self, _now: Instant, p: &mut Platform) {
        self.deliver_events(p);
    }

    /// Queues an event for the ARQ and delivers what fits.
    pub(crate) fn post_event(&mut self, ev: Event, p: &mut Platform) {
        self.events.push_back(ev);
        self.deliver_events(p);
    }

    /// Writes queued events into the ARQ while it has free descriptors.
    fn deliver_events(&mut self, p: &mut Platform) {
        let mut wrote = false;
        while let Some(ev) = self.events.front() {
            if !self.arq.can_post() {
                break;
            }
            let posted = self
                .arq
                .post(&p.mem, &ev.data, &mut self.stats.dma_errors, |d, len| {
                    // The event's descriptor, completed in the driver's buffer
                    // (its address stays the buffer's when data was written).
                    let keep_addr = len > 0;
                    Desc {
                        flags: d.flags | aq::flag::DD | aq::flag::CMP,
                        datalen: len,
                        retval: 0,
                        addr_high: if keep_addr {
                            d.addr_high
                        } else {
                            ev.desc.addr_high
                        },
                        addr_low: if keep_addr {
                            d.addr_low
                        } else {
                            ev.desc.addr_low
                        },
                        ..ev.desc
                    }
                });
            if posted.is_err() {
                break;
            }
            self.events.pop_front();
            wrote = true;
        }
        if wrote {
            self.icr0 |= ICR0_ADMINQ | ICR0_INTEVENT;
            if self.regs.get(PFINT_ICR0_ENA) & ICR0_ADMINQ != 0 {
                self.cause(0, p);
            }
        }
    }

    /// An interrupt cause for MSI-X vector `v`: fires now if the vector is
    /// enabled (and masks it until the driver enables it again), else waits.
    pub(crate) fn cause(&mut self, v: usize, p: &mut Platform) {
        let Some(ctl) = self.dyn_ctl.get_mut(v) else {
            return;
        };
        if *ctl & DYN_INTENA != 0 {
            *ctl &= !DYN_INTENA;
            self.pending_irq[v] = false;
            p.irq.raise(v);
        } else {
            self.pending_irq[v] = true;
        }
    }

    fn write_dyn_ctl(&mut self, v: usize, val: u32, p: &mut Platform) {
        let Some(ctl) = self.dyn_ctl.get_mut(v) else {
            return;
        };
        *ctl = val & !DYN_SWINT_TRIG;
        if val & DYN_SWINT_TRIG != 0 {
            p.irq.raise(v);
        } else if val & DYN_INTENA != 0 && self.pending_irq[v] {
            self.cause(v, p);
        }
    }

    /// The MSI-X vector of a queue's cause register (`QINT_RQCTL`/`TQCTL`),
    /// if its cause is enabled.
    pub(crate) fn queue_vector(&self, ctl_base: u64, q: usize) -> Option<usize> {
        let v = self.regs.get(ctl_base + 4 * q as u64);
        (v & QINT_CAUSE_ENA != 0).then_some((v & 0xff) as usize)
    }

    /// A queue's interrupt cause (`QINT_RQCTL`/`TQCTL` of queue `q`), if
    /// enabled: on vector 0 (the only one with MSI or INTx) it also shows
    /// in `PFINT_ICR0` as `QUEUE_n`, n being the register's `MSIX0_INDX`,
    /// which is how Linux's i40e finds queue work in MSI and legacy mode.
    pub(crate) fn queue_cause(&mut self, ctl_base: u64, q: usize, p: &mut Platform) {
        let Some(v) = self.queue_vector(ctl_base, q) else {
            return;
        };
        if v == 0 {
            let ctl = self.regs.get(ctl_base + 4 * q as u64);
            self.icr0 |= ICR0_INTEVENT | ICR0_QUEUE_0 << ((ctl >> QINT_MSIX0_INDX_SHIFT) & 0x7);
        }
        self.cause(v, p);
    }

    /// Processes the ATQ from head to tail.
    fn process_atq(&mut self, p: &mut Platform) {
        if !self.atq.enabled() {
            return;
        }
        let n = self.atq.entries();
        let mut guard = 0;
        while self.atq.head != self.atq.tail % n && guard < n {
            guard += 1;
            let at = self.atq.base() + u64::from(self.atq.head) * aq::DESC_LEN as u64;
            let mut d = [0u8; aq::DESC_LEN];
            if p.mem.read(at, &mut d).is_err() {
                self.stats.dma_errors += 1;
                return;
            }
            let desc = Desc::from_bytes(&d);
            let wb = self.execute(desc, p);
            if p.mem.write(at, &wb.to_bytes()).is_err() {
                self.stats.dma_errors += 1;
            }
            self.atq.head = aq::next_index(self.atq.head, n);
        }
        self.deliver_events(p);
    }

    /// A register read (32-bit).
    pub fn read_reg(&mut self, off: u64) -> u32 {
        match off {
            PF_ATQBAL => self.atq.bal,
            PF_ATQBAH => self.atq.bah,
            PF_ATQLEN => self.atq.len,
            PF_ATQH => self.atq.head,
            PF_ATQT => self.atq.tail,
            PF_ARQBAL => self.arq.bal,
            PF_ARQBAH => self.arq.bah,
            PF_ARQLEN => self.arq.len,
            PF_ARQH => self.arq.head,
            PF_ARQT => self.arq.tail,
            GLGEN_RSTAT | PFGEN_CTRL | GL_FWSTS | PFGEN_PORTNUM | GLPCI_CAPSUP | PF_FUNC_RID => 0,
            GLNVM_GENS => GLNVM_GENS_NVM_PRES | (nvm::SR_SIZE_LOG2_KB << GLNVM_GENS_SR_SIZE_SHIFT),
            PRTMAC_LINKSTA => {
                if self.link_up {
                    LINKSTA_UP_40G
                } else {
                    0
                }
            }
            GLNVM_SRCTL => self.nvm.read_srctl(),
            GLNVM_SRDATA => self.nvm.read_srdata(),
            PFHMC_SDCMD => self.hmc.cmd,
            PFHMC_SDDATALOW => self.hmc.data_low,
            PFHMC_SDDATAHIGH => self.hmc.data_high,
            PFINT_ICR0 => std::mem::take(&mut self.icr0),
            PFINT_DYN_CTL0 => self.dyn_ctl[0],
            o if indexed(o, PFINT_DYN_CTLN, self.dyn_ctl.len() - 1, 4).is_some() => {
                self.dyn_ctl[indexed(o, PFINT_DYN_CTLN, usize::MAX, 4).unwrap_or(0) + 1]
            }
            o if indexed(o, QRX_ENA, self.rxq.len(), 4).is_some() => {
                let q = &self.rxq[indexed(o, QRX_ENA, usize::MAX, 4).unwrap_or(0)];
                q.ena_reg()
            }
            o if indexed(o, QTX_ENA, self.txq.len(), 4).is_some() => {
                let q = &self.txq[indexed(o, QTX_ENA, usize::MAX, 4).unwrap_or(0)];
                q.ena_reg()
            }
            o if indexed(o, QRX_TAIL, self.rxq.len(), 4).is_some() => {
                self.rxq[indexed(o, QRX_TAIL, usize::MAX, 4).unwrap_or(0)].tail
            }
            o if (GLPRT_GORCL..GLPRT_GORCL + 0x1000).contains(&o)
                || [GLV_RDPC, GLV_GORCL, GLV_UPRCL, GLV_MPRCL, GLV_BPRCL]
                    .iter()
                    .any(|&b| (b..b + 8).contains(&o)) =>
            {
                self.port.read(o)
            }
            o => self.regs.get(o),
        }
    }

    /// A register write (32-bit).
    pub fn write_reg(&mut self, off: u64, v: u32, p: &mut Platform) {
        match off {
            PF_ATQBAL => self.atq.bal = v,
            PF_ATQBAH => self.atq.bah = v,
            PF_ATQLEN => self.atq.len = v,
            PF_ATQH => self.atq.head = v & QLEN_MASK,
            PF_ATQT => {
                self.atq.tail = v & QLEN_MASK;
                self.process_atq(p);
            }
            PF_ARQBAL => self.arq.bal = v,
            PF_ARQBAH => self.arq.bah = v,
            PF_ARQLEN => self.arq.len = v,
            PF_ARQH => self.arq.head = v & QLEN_MASK,
            PF_ARQT => {
                self.arq.tail = v & QLEN_MASK;
                self.deliver_events(p);
            }
            PFGEN_CTRL => {
                if v & PFGEN_CTRL_PFSWR != 0 {
                    // The reset is over at once: PFSWR reads back 0.
                    self.pf_reset();
                }
            }
            GLGEN_RTRIG => {
                if v & 0x3 != 0 {
                    // CORER or GLOBR.
                    self.core_reset();
                }
            }
            GLGEN_RSTAT | GL_FWSTS | GLNVM_GENS | GLNVM_ULD | GLNVM_FLA => {}
            GLLAN_RCTL_0 => {
                // Writing PXE_MODE clears it.
                let cur = self.regs.get(GLLAN_RCTL_0);
                self.regs.set(GLLAN_RCTL_0, cur & !(v & (1 << 5)));
            }
            GLNVM_SRCTL => self.nvm.write_srctl(v),
            GLNVM_SRDATA => self.nvm.write_srdata(v),
            PFHMC_SDCMD => self.hmc.write_cmd(v),
            PFHMC_SDDATALOW => self.hmc.data_low = v,
            PFHMC_SDDATAHIGH => self.hmc.data_high = v,
            PFINT_ICR0 => self.icr0 = v,
            PFINT_DYN_CTL0 => self.write_dyn_ctl(0, v, p),
            o if indexed(o, PFINT_DYN_CTLN, self.dyn_ctl.len() - 1, 4).is_some() => {
                let i = indexed(o, PFINT_DYN_CTLN, usize::MAX, 4).unwrap_or(0);
                self.write_dyn_ctl(i + 1, v, p);
            }
            o if indexed(o, QRX_ENA, self.rxq.len(), 4).is_some() => {
                let q = indexed(o, QRX_ENA, usize::MAX, 4).unwrap_or(0);
                self.rx_enable(q, v & QENA_REQ != 0, p);
            }
            o if indexed(o, QTX_ENA, self.txq.len(), 4).is_some() => {
                let q = indexed(o, QTX_ENA, usize::MAX, 4).unwrap_or(0);
                self.tx_enable(q, v & QENA_REQ != 0, p);
            }
            o if indexed(o, QRX_TAIL, self.rxq.len(), 4).is_some() => {
                let q = indexed(o, QRX_TAIL, usize::MAX, 4).unwrap_or(0);
                self.rxq[q].write_tail(v);
            }
            o if indexed(o, QTX_TAIL, self.txq.len(), 4).is_some() => {
                let q = indexed(o, QTX_TAIL, usize::MAX, 4).unwrap_or(0);
                self.transmit(q, v, p);
            }
            o => self.regs.set(o, v),
        }
    }

    /// Whether the function may master the bus.
    pub fn bus_master(&self) -> bool {
        self.cfg_space.bus_master()
    }

    /// Frames the guest sent since the last call.
    pub fn take_tx(&mut self) -> Vec<Vec<u8>> {
        std::mem::take(&mut self.tx_out)
    }

    /// The HMC address space base of LAN RX (`rx` true) or TX contexts.
    pub(crate) fn hmc_base(&self, rx: bool) -> u64 {
        let reg = if rx { GLHMC_LANRXBASE } else { GLHMC_LANTXBASE };
        u64::from(self.regs.get(reg) & 0xff_ffff) * 512
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
        u32::from(self.config.vectors)
    }

    fn reg_read(&mut self, off: u64) -> u32 {
        self.read_reg(off)
    }

    fn reg_write(&mut self, off: u64, v: u32, p: &mut Platform) {
        self.write_reg(off, v, p)
    }

    fn function_reset(&mut self, _p: &mut Platform) {
        self.core_reset();
    }
}

#[cfg(test)]
mod tests;
