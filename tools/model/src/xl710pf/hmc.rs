// SPDX-License-Identifier: MIT
//! The Host Memory Cache (HMC): the XL710 keeps its queue contexts in host
//! memory that the PF driver provides. The driver describes that memory
//! with segment descriptors (`PFHMC_SDCMD`/`SDDATALOW`/`SDDATAHIGH`; each
//! segment covers 2 MiB of the HMC address space) and places each object
//! type at a base (`GLHMC_LANTXBASE`/`LANRXBASE`, 512-byte units). A queue's
//! context is read from guest memory when the driver enables the queue.
//!
//! Linux configures direct segments only (`I40E_HMC_MODEL_DIRECT_ONLY`);
//! paged segments are refused as an access error.

use crate::transport::{DmaError, GuestMemory};

/// Bytes one segment descriptor covers.
pub const SEGMENT: u64 = 2 << 20;
/// Segment descriptors per PF the model keeps.
pub const MAX_SEGMENTS: usize = 64;
/// Bytes of an RX queue context (`GLHMC_LANRXOBJSZ` = 5).
pub const RX_CONTEXT_LEN: usize = 32;
/// Bytes of a TX queue context (`GLHMC_LANTXOBJSZ` = 7).
pub const TX_CONTEXT_LEN: usize = 128;

/// One segment descriptor.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Guest address of the segment (4 KiB aligned).
    pub addr: u64,
    /// Backing pages (BPCOUNT).
    pub pages: u32,
    /// Valid.
    pub valid: bool,
    /// Direct (else paged).
    pub direct: bool,
}

/// Why an HMC access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmcError {
    /// The HMC address lies in a segment that is not valid.
    InvalidSegment(u64),
    /// A paged segment (not modelled: Linux uses direct segments).
    Paged(u64),
    /// The object crosses a segment boundary.
    Crosses(u64),
    /// Guest memory refused the access.
    Dma(DmaError),
}

/// The PF's segment table and its registers.
#[derive(Debug, Clone)]
pub struct Hmc {
    segments: Vec<Segment>,
    /// PFHMC_SDDATALOW as last written (or read back by a read command).
    pub data_low: u32,
    /// PFHMC_SDDATAHIGH.
    pub data_high: u32,
    /// PFHMC_SDCMD as last written.
    pub cmd: u32,
}

impl Default for Hmc {
    fn default() -> Self {
        Hmc {
            segments: vec![Segment::default(); MAX_SEGMENTS],
            data_low: 0,
            data_high: 0,
            cmd: 0,
        }
    }
}

impl Hmc {
    /// A write of PFHMC_SDCMD: PMSDWR stores DATALOW/HIGH into segment
    /// PMSDIDX, else the segment is read back into them.
    pub fn write_cmd(&mut self, v: u32) {
        self.cmd = v;
        let idx = (v & 0xfff) as usize;
        let Some(seg) = self.segments.get_mut(idx) else {
            return;
        };
        if v & super::regs::PFHMC_SDCMD_WR != 0 {
            *seg = Segment {
                addr: (u64::from(self.data_high) << 32) | u64::from(self.data_low & !0xfff),
                pages: (self.data_low >> 2) & 0x3ff,
                valid: self.data_low & 1 != 0,
                direct: self.data_low & 2 != 0,
            };
        } else {
            self.data_low = (seg.addr as u32 & !0xfff)
                | (seg.pages << 2)
                | u32::from(seg.direct) << 1
                | u32::from(seg.valid);
            self.data_high = (seg.addr >> 32) as u32;
        }
    }

    /// Segment `i`.
    pub fn segment(&self, i: usize) -> Option<Segment> {
        self.segments.get(i).copied()
    }

    /// The guest address of `len` bytes at HMC address `at`.
    pub fn translate(&self, at: u64, len: usize) -> Result<u64, HmcError> {
        let idx = (at / SEGMENT) as usize;
        let seg = self
            .segments
            .get(idx)
            .copied()
            .filter(|s| s.valid)
            .ok_or(HmcError::InvalidSegment(at))?;
        if !seg.direct {
            return Err(HmcError::Paged(at));
        }
        if (at + len as u64 - 1) / SEGMENT != idx as u64 {
            return Err(HmcError::Crosses(at));
        }
        Ok(seg.addr + at % SEGMENT)
    }

    /// Reads an object of `buf.len()` bytes at HMC address `at`.
    pub fn read(&self, mem: &GuestMemory, at: u64, buf: &mut [u8]) -> Result<(), HmcError> {
        let addr = self.translate(at, buf.len())?;
        mem.read(addr, buf).map_err(HmcError::Dma)
    }
}

/// `width` bits at bit `lsb` of a little-endian context.
fn bits(ctx: &[u8], lsb: usize, width: usize) -> u64 {
    let mut v = 0u64;
    for i in 0..width {
        let b = lsb + i;
        if ctx.get(b / 8).is_some_and(|byte| byte >> (b % 8) & 1 != 0) {
            v |= 1 << i;
        }
    }
    v
}

/// A LAN RX queue context (`i40e_hmc_obj_rxq`), as the device uses it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RxContext {
    /// Head (the device's next descriptor when the queue starts).
    pub head: u16,
    /// Ring base address (bytes; 128-byte aligned).
    pub base: u64,
    /// Descriptors in the ring.
    pub qlen: u16,
    /// Data buffer size in bytes (`dbuff` is in 128-byte units).
    pub dbuff: u32,
    /// Descriptor type (0: one buffer, no header split).
    pub dtype: u8,
    /// 32-byte descriptors (else 16).
    pub dsize32: bool,
    /// Strip the CRC.
    pub crcstrip: bool,
    /// L2TAG1 is the first (outer) tag.
    pub l2tsel: bool,
    /// Show the stripped tag in the descriptor.
    pub showiv: bool,
    /// Largest frame accepted (bytes).
    pub rxmax: u16,
}

impl RxContext {
    /// Decodes the 32 bytes Linux's `i40e_set_lan_rx_queue_context` wrote
    /// (`i40e_hmc_rxq_ce_info`: field widths and bit positions).
    pub fn decode(ctx: &[u8]) -> Self {
        RxContext {
            head: bits(ctx, 0, 13) as u16,
            base: bits(ctx, 32, 57) * 128,
            qlen: bits(ctx, 89, 13) as u16,
            dbuff: bits(ctx, 102, 7) as u32 * 128,
            dtype: bits(ctx, 114, 2) as u8,
            dsize32: bits(ctx, 116, 1) != 0,
            crcstrip: bits(ctx, 117, 1) != 0,
            l2tsel: bits(ctx, 119, 1) != 0,
            showiv: bits(ctx, 127, 1) != 0,
            rxmax: bits(ctx, 174, 14) as u16,
        }
    }

    /// Bytes per descriptor.
    pub fn desc_len(&self) -> u64 {
        if self.dsize32 {
            32
        } else {
            16
        }
    }
}

/// A LAN TX queue context (`i40e_hmc_obj_txq`), the fields the device uses.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TxContext {
    /// Head.
    pub head: u16,
    /// Ring base address (bytes).
    pub base: u64,
    /// Descriptors in the ring.
    pub qlen: u16,
    /// Head write-back enabled.
    pub head_wb_ena: bool,
    /// Head write-back address.
    pub head_wb_addr: u64,
}

impl TxContext {
    /// Decodes a TX context (`i40e_hmc_txq_ce_info`).
    pub fn decode(ctx: &[u8]) -> Self {
        TxContext {
            head: bits(ctx, 0, 13) as u16,
            base: bits(ctx, 32, 57) * 128,
            qlen: bits(ctx, 128 + 33, 13) as u16,
            head_wb_ena: bits(ctx, 128 + 32, 1) != 0,
            head_wb_addr: bits(ctx, 128 + 64, 64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sets `width` bits at `lsb` (what Linux's context writer does).
    fn put(ctx: &mut [u8], lsb: usize, width: usize, v: u64) {
        for i in 0..width {
            let b = lsb + i;
            if v >> i & 1 != 0 {
                ctx[b / 8] |= 1 << (b % 8);
            }
        }
    }

    #[test]
    fn rx_context_fields() {
        let mut c = [0u8; RX_CONTEXT_LEN];
        put(&mut c, 32, 57, 0x1234_5680 / 128);
        put(&mut c, 89, 13, 512);
        put(&mut c, 102, 7, 2048 / 128);
        put(&mut c, 116, 1, 1);
        put(&mut c, 117, 1, 1);
        put(&mut c, 127, 1, 1);
        put(&mut c, 174, 14, 9728);
        let r = RxContext::decode(&c);
        assert_eq!(r.base, 0x1234_5680);
        assert_eq!((r.qlen, r.dbuff, r.rxmax), (512, 2048, 9728));
        assert!(r.dsize32 && r.crcstrip && r.showiv && !r.l2tsel);
        assert_eq!(r.desc_len(), 32);
    }

    #[test]
    fn reads_what_hpcaps_encoder_writes() {
        // hpcap's i40e backend writes its context with the core's encoder;
        // the model's own reader must see the same fields.
        let ctx = hpcap_core::hmc::RxQueueContext {
            base: 0x7654_3200,
            qlen: 4064,
            dbuff: 9728,
            dsize32: false,
            crcstrip: true,
            l2tsel: true,
            showiv: false,
            rxmax: 9732,
            prefena: true,
            lrxqthresh: 1,
        };
        let r = RxContext::decode(&ctx.encode().unwrap());
        assert_eq!(
            (r.head, r.base, r.qlen, r.dbuff),
            (0, 0x7654_3200, 4064, 9728)
        );
        assert_eq!((r.dtype, r.dsize32, r.crcstrip), (0, false, true));
        assert_eq!((r.l2tsel, r.showiv, r.rxmax), (true, false, 9732));
        assert_eq!(r.desc_len(), 16);
    }

    #[test]
    fn tx_context_fields() {
        let mut c = [0u8; TX_CONTEXT_LEN];
        put(&mut c, 32, 57, 0x8000_0000 / 128);
        put(&mut c, 161, 13, 1024);
        let t = TxContext::decode(&c);
        assert_eq!((t.base, t.qlen, t.head_wb_ena), (0x8000_0000, 1024, false));
    }

    #[test]
    fn segments_translate_direct_only() {
        // What I40E_SET_PF_SD_ENTRY writes for a direct segment 1.
        let mut h = Hmc {
            data_high: 0x1,
            data_low: 0x2345_6000 | (512 << 2) | 2 | 1,
            ..Hmc::default()
        };
        h.write_cmd(1 | super::super::regs::PFHMC_SDCMD_WR);
        assert_eq!(h.translate(SEGMENT + 0x40, 32), Ok(0x1_2345_6040));
        assert_eq!(h.translate(0x40, 32), Err(HmcError::InvalidSegment(0x40)));
        assert_eq!(
            h.translate(2 * SEGMENT - 16, 32),
            Err(HmcError::Crosses(2 * SEGMENT - 16))
        );
        // Read back.
        h.data_low = 0;
        h.write_cmd(1);
        assert_eq!(h.data_low & 3, 3);
        assert_eq!(h.data_high, 1);
        // A paged segment.
        h.data_low = 0x1000 | 1;
        h.write_cmd(2 | super::super::regs::PFHMC_SDCMD_WR);
        assert_eq!(
            h.translate(2 * SEGMENT, 8),
            Err(HmcError::Paged(2 * SEGMENT))
        );
    }
}
