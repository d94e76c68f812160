// SPDX-License-Identifier: MIT
//! XL710 PF register offsets in BAR0 and their fields, with the names of
//! Linux's `i40e_register.h` (the datasheet's names), and the register file
//! that holds every register the model gives no behaviour of its own.

use std::collections::HashMap;

/// BAR0 size: the driver refuses a BAR below `GLGEN_STAT_CLEAR` + 4.
pub const BAR0_SIZE: u64 = 0x40_0000;
/// BAR3: MSI-X table and PBA (QEMU emulates them).
pub const BAR3_SIZE: u64 = 0x8000;

/// Admin send queue (ATQ) registers.
pub const PF_ATQBAL: u64 = 0x0008_0000;
/// ATQ base high.
pub const PF_ATQBAH: u64 = 0x0008_0100;
/// ATQ length and enable.
pub const PF_ATQLEN: u64 = 0x0008_0200;
/// ATQ head (the device advances it).
pub const PF_ATQH: u64 = 0x0008_0300;
/// ATQ tail (the driver advances it).
pub const PF_ATQT: u64 = 0x0008_0400;
/// Admin receive queue (ARQ) base low.
pub const PF_ARQBAL: u64 = 0x0008_0080;
/// ARQ base high.
pub const PF_ARQBAH: u64 = 0x0008_0180;
/// ARQ length and enable.
pub const PF_ARQLEN: u64 = 0x0008_0280;
/// ARQ head (the device advances it).
pub const PF_ARQH: u64 = 0x0008_0380;
/// ARQ tail (the driver advances it).
pub const PF_ARQT: u64 = 0x0008_0480;
pub use crate::xl710_queues::{QLEN_ENABLE, QLEN_MASK};

/// Global reset status: DEVSTATE (bits 1:0) is 0 when no reset runs.
pub const GLGEN_RSTAT: u64 = 0x000B_8188;
/// Global reset control: GRSTDEL in 100 ms units.
pub const GLGEN_RSTCTL: u64 = 0x000B_8180;
/// Global reset trigger (CORER, GLOBR, EMPFWR).
pub const GLGEN_RTRIG: u64 = 0x000B_8190;
/// PF control: PFSWR (bit 0) requests a PF software reset.
pub const PFGEN_CTRL: u64 = 0x0009_2400;
/// PFSWR.
pub const PFGEN_CTRL_PFSWR: u32 = 1 << 0;
/// Firmware status: FWS1B (bits 7:0) non-zero means recovery/EMP reset.
pub const GL_FWSTS: u64 = 0x0008_3048;
/// The port this PF owns.
pub const PFGEN_PORTNUM: u64 = 0x001C_0480;
/// ARI capability (0: PF number from the low 3 bits of PF_FUNC_RID).
pub const GLPCI_CAPSUP: u64 = 0x000B_E4A8;
/// The PF's requester id.
pub const PF_FUNC_RID: u64 = 0x0009_C000;
/// MSI-X vectors per PF (bits 12:2) and per VF (bits 23:13).
pub const GLPCI_CNF2: u64 = 0x000B_E494;
/// The PF's LAN queues: FIRSTQ 10:0, LASTQ 26:16, VALID 31.
pub const PFLAN_QALLOC: u64 = 0x001C_0400;
/// The PF's VFs (0: none).
pub const PF_VT_PFALLOC: u64 = 0x001C_0500;
/// LAN RX control: PXE_MODE (bit 5).
pub const GLLAN_RCTL_0: u64 = 0x0012_A500;

/// NVM: module-load status; CONF_CORE_DONE (3) and CONF_GLOBAL_DONE (4).
pub const GLNVM_ULD: u64 = 0x000B_6008;
/// Every `*_DONE` bit of GLNVM_ULD (PCIR .. PCIALT).
pub const GLNVM_ULD_ALL_DONE: u32 = 0x3ff;
/// NVM: NVM_PRES (bit 0), SR_SIZE (bits 7:5, 2^n KB).
pub const GLNVM_GENS: u64 = 0x000B_6100;
/// GLNVM_GENS.NVM_PRES.
pub const GLNVM_GENS_NVM_PRES: u32 = 1 << 0;
/// GLNVM_GENS.SR_SIZE shift.
pub const GLNVM_GENS_SR_SIZE_SHIFT: u32 = 5;
/// NVM flash access: LOCKED (bit 6) = normal programming mode.
pub const GLNVM_FLA: u64 = 0x000B_6108;
/// GLNVM_FLA.LOCKED.
pub const GLNVM_FLA_LOCKED: u32 = 1 << 6;
/// Shadow RAM control: ADDR 28:14, WRITE 29, START 30, DONE 31.
pub const GLNVM_SRCTL: u64 = 0x000B_6110;
/// Shadow RAM data: WRDATA 15:0, RDDATA 31:16.
pub const GLNVM_SRDATA: u64 = 0x000B_6114;

/// HMC: LAN TX context object size (2^n bytes).
pub const GLHMC_LANTXOBJSZ: u64 = 0x000C_2004;
/// HMC: LAN queues per function.
pub const GLHMC_LANQMAX: u64 = 0x000C_2008;
/// HMC: LAN RX context object size (2^n bytes).
pub const GLHMC_LANRXOBJSZ: u64 = 0x000C_200C;
/// HMC: FCoE DDP contexts.
pub const GLHMC_FCOEMAX: u64 = 0x000C_2014;
/// HMC: FCoE DDP object size.
pub const GLHMC_FCOEDDPOBJSZ: u64 = 0x000C_2010;
/// HMC: FCoE filters.
pub const GLHMC_FCOEFMAX: u64 = 0x000C_20D0;
/// HMC: FCoE filter object size.
pub const GLHMC_FCOEFOBJSZ: u64 = 0x000C_2018;
/// HMC: LAN TX object base of function i (512-byte units).
pub const GLHMC_LANTXBASE: u64 = 0x000C_6200;
/// HMC: LAN RX object base of function i (512-byte units).
pub const GLHMC_LANRXBASE: u64 = 0x000C_6400;
/// HMC segment descriptor command: PMSDIDX 11:0, PMSDWR 31.
pub const PFHMC_SDCMD: u64 = 0x000C_0000;
/// PMSDWR.
pub const PFHMC_SDCMD_WR: u32 = 1 << 31;
/// HMC segment descriptor data low: VALID 0, TYPE 1 (1 = direct),
/// BPCOUNT 11:2, address bits 31:12.
pub const PFHMC_SDDATALOW: u64 = 0x000C_0100;
/// HMC segment descriptor data high: address bits 63:32.
pub const PFHMC_SDDATAHIGH: u64 = 0x000C_0200;

/// Interrupt control of vector 0 (admin queue, other causes).
pub const PFINT_DYN_CTL0: u64 = 0x0003_8480;
/// Interrupt control of vector n + 1.
pub const PFINT_DYN_CTLN: u64 = 0x0003_4800;
/// Causes of vector 0 (read clears).
pub const PFINT_ICR0: u64 = 0x0003_8780;
/// Enabled causes of vector 0.
pub const PFINT_ICR0_ENA: u64 = 0x0003_8800;
/// ICR0: the admin queue has news.
pub const ICR0_ADMINQ: u32 = 1 << 30;
/// ICR0: some cause is set (INTEVENT).
pub const ICR0_INTEVENT: u32 = 1 << 0;
/// DYN_CTL: interrupt enable.
pub const DYN_INTENA: u32 = 1 << 0;
/// DYN_CTL: software interrupt trigger.
pub const DYN_SWINT_TRIG: u32 = 1 << 2;
/// Queue interrupt control of RX queue q: MSIX_INDX 7:0, CAUSE_ENA 30.
pub const QINT_RQCTL: u64 = 0x0003_A000;
/// Queue interrupt control of TX queue q.
pub const QINT_TQCTL: u64 = 0x0003_C000;
/// QINT_*CTL.CAUSE_ENA.
pub const QINT_CAUSE_ENA: u32 = 1 << 30;
/// `QINT_RQCTL`/`TQCTL.MSIX0_INDX`: the cause's bit in `PFINT_ICR0`
/// (`QUEUE_n`) when it is mapped to vector 0.
pub const QINT_MSIX0_INDX_SHIFT: u32 = 11;
/// `PFINT_ICR0.QUEUE_0`: the first queue cause of vector 0.
pub const ICR0_QUEUE_0: u32 = 1 << 1;

/// RX queue enable: QENA_REQ 0, QENA_STAT 2.
pub const QRX_ENA: u64 = 0x0012_0000;
/// RX queue tail.
pub const QRX_TAIL: u64 = 0x0012_8000;
/// TX queue enable: QENA_REQ 0, QENA_STAT 2.
pub const QTX_ENA: u64 = 0x0010_0000;
/// TX queue tail.
pub const QTX_TAIL: u64 = 0x0010_8000;
/// QENA_REQ.
pub const QENA_REQ: u32 = 1 << 0;
/// QENA_STAT.
pub const QENA_STAT: u32 = 1 << 2;

/// The MAC's link state of port i: LINK_UP (bits 30 and 7), MAC_LINK_SPEED
/// (bits 29:27; 3 = 40 Gb/s unless `PRTMAC_MACC` says 25).
pub const PRTMAC_LINKSTA: u64 = 0x001E_2420;
/// PRTMAC_LINKSTA with the link up at 40 Gb/s.
pub const LINKSTA_UP_40G: u32 = 0x4000_0080 | (3 << 27);

/// Port statistics of port i (stride 8; 48-bit counters read as L/H).
pub const GLPRT_GORCL: u64 = 0x0030_0000;
/// Port: unicast packets received.
pub const GLPRT_UPRCL: u64 = 0x0030_05A0;
/// Port: multicast packets received.
pub const GLPRT_MPRCL: u64 = 0x0030_05C0;
/// Port: broadcast packets received.
pub const GLPRT_BPRCL: u64 = 0x0030_05E0;
/// Port: receive discards (no descriptor).
pub const GLPRT_RDPC: u64 = 0x0030_0600;
/// VSI statistics of counter block i (stride 8).
pub const GLV_GORCL: u64 = 0x0035_8000;
/// VSI: unicast packets received.
pub const GLV_UPRCL: u64 = 0x0036_C000;
/// VSI: multicast packets received.
pub const GLV_MPRCL: u64 = 0x0036_CC00;
/// VSI: broadcast packets received.
pub const GLV_BPRCL: u64 = 0x0036_D800;
/// VSI: receive discards (no descriptor on the VSI's queue).
pub const GLV_RDPC: u64 = 0x0031_0000;

/// Number of a per-queue register (`base + 4 * q`), if `off` is one of
/// `count` of them.
pub fn indexed(off: u64, base: u64, count: usize, stride: u64) -> Option<usize> {
    if off < base || !(off - base).is_multiple_of(stride) {
        return None;
    }
    let i = usize::try_from((off - base) / stride).ok()?;
    (i < count).then_some(i)
}

/// Registers the model has no behaviour for: what the driver wrote reads
/// back (a register never written reads its reset value, else 0).
#[derive(Debug, Default, Clone)]
pub struct RegFile {
    values: HashMap<u64, u32>,
}

impl RegFile {
    /// The register file after a power-on reset, with the values the
    /// firmware leaves in the registers Linux's i40e reads at probe.
    pub fn power_on(queues: u16, vectors: u16) -> Self {
        let mut r = RegFile::default();
        let q = u32::from(queues);
        r.set(GLGEN_RSTCTL, 1); // GRSTDEL: 100 ms
        r.set(GLNVM_ULD, GLNVM_ULD_ALL_DONE);
        r.set(GLNVM_FLA, GLNVM_FLA_LOCKED);
        r.set(
            GLPCI_CNF2,
            (u32::from(vectors) << 2 & 0x1ffc) | (4 << 13), // VFs: 4 vectors
        );
        r.set(PFLAN_QALLOC, ((q - 1) << 16) | (1 << 31));
        r.set(GLHMC_LANTXOBJSZ, 7); // 128-byte TX contexts
        r.set(GLHMC_LANRXOBJSZ, 5); // 32-byte RX contexts
        r.set(GLHMC_LANQMAX, q);
        r.set(GLHMC_FCOEFMAX, 0x1000);
        r
    }

    /// Reads a register.
    pub fn get(&self, off: u64) -> u32 {
        self.values.get(&off).copied().unwrap_or(0)
    }

    /// Writes a register.
    pub fn set(&mut self, off: u64, v: u32) {
        self.values.insert(off, v);
    }

    /// Forgets the registers in `[from, to)` (a reset of that block).
    pub fn clear_range(&mut self, from: u64, to: u64) {
        self.values.retain(|&o, _| !(from..to).contains(&o));
    }
}
