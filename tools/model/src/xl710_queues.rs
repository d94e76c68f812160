// SPDX-License-Identifier: MIT
//! Queue machinery the XL710 PF and VF models share: an admin queue as the
//! driver programs it (the PF's `PF_ATQ*`/`PF_ARQ*` and the VF's
//! `VF_ATQ*1`/`VF_ARQ*1` have the same layout), posting into its receive
//! queue, and the walk over a LAN TX ring of 16-byte data descriptors.
//!
//! The two models differ in what they post (the PF writes admin events,
//! the VF's embedded PF writes virtchnl messages) and in what they do with
//! a transmitted frame; both are left to the caller.

use crate::transport::{DmaError, GuestMemory};
use hpcap_core::adminq::{self, Desc};

/// `*_ATQLEN`/`*_ARQLEN`: the queue enable bit.
pub const QLEN_ENABLE: u32 = 1 << 31;
/// `*_ATQLEN`/`*_ARQLEN`: the ring length field (descriptors).
pub const QLEN_MASK: u32 = 0x3ff;

/// An admin queue (ATQ or ARQ) as the driver programmed it.
#[derive(Debug, Default, Clone, Copy)]
pub struct AdminQueue {
    /// `*_BAL`: ring base, low 32 bits.
    pub bal: u32,
    /// `*_BAH`: ring base, high 32 bits.
    pub bah: u32,
    /// `*_LEN`: length and enable.
    pub len: u32,
    /// `*_H`: the next descriptor the device uses.
    pub head: u32,
    /// `*_T`: the driver's tail.
    pub tail: u32,
}

impl AdminQueue {
    /// The ring's guest-physical address.
    pub fn base(&self) -> u64 {
        u64::from(self.bah) << 32 | u64::from(self.bal)
    }

    /// The ring's length in descriptors.
    pub fn entries(&self) -> u32 {
        self.len & QLEN_MASK
    }

    /// Whether the driver enabled a ring of non-zero length.
    pub fn enabled(&self) -> bool {
        self.len & QLEN_ENABLE != 0 && self.entries() > 0
    }

    /// Whether the receive queue has a buffer the driver posted: the
    /// descriptors from head up to (not including) the tail are free.
    pub fn can_post(&self) -> bool {
        self.enabled() && self.head != self.tail
    }

    /// Writes `data` into the receive queue's descriptor at head and its
    /// buffer (cut to the buffer's size), with the write-back `complete`
    /// makes of the posted descriptor and the length written; then moves
    /// head on. The caller checks [`AdminQueue::can_post`] first.
    ///
    /// An error reading the posted descriptor leaves head where it is (the
    /// message stays the caller's); errors writing the buffer or the
    /// write-back are counted in `dma_errors` and the descriptor is used
    /// up, as the device would.
    pub fn post(
        &mut self,
        mem: &GuestMemory,
        data: &[u8],
        dma_errors: &mut u64,
        complete: impl FnOnce(&Desc, u16) -> Desc,
    ) -> Result<(), DmaError> {
        let at = self.base() + u64::from(self.head) * adminq::DESC_LEN as u64;
        let mut d = [0u8; adminq::DESC_LEN];
        if let Err(e) = mem.read(at, &mut d) {
            *dma_errors += 1;
            return Err(e);
        }
        let posted = Desc::from_bytes(&d);
        let len = data.len().min(usize::from(posted.datalen));
        if len > 0 && mem.write(posted.buffer(), &data[..len]).is_err() {
            *dma_errors += 1;
        }
        // CAST: len <= posted.datalen, a u16.
        let wb = complete(&posted, len as u16);
        if mem.write(at, &wb.to_bytes()).is_err() {
            *dma_errors += 1;
        }
        self.head = adminq::next_index(self.head, self.entries());
        Ok(())
    }
}

/// Walks a LAN TX ring of `qlen` 16-byte descriptors at `base` from `head`
/// to `tail`: gathers each frame's data descriptors (DTYPE 0) up to EOP,
/// hands every whole frame to `sent`, writes DTYPE 0xF (DESC_DONE) back
/// where RS asks for it, and returns the new head. A descriptor that cannot
/// be read stops the walk there (counted in `dma_errors`).
pub fn walk_tx_ring(
    mem: &GuestMemory,
    base: u64,
    qlen: u32,
    mut head: u32,
    tail: u32,
    dma_errors: &mut u64,
    mut sent: impl FnMut(Vec<u8>),
) -> u32 {
    const DTYPE_DATA: u64 = 0x0;
    const DTYPE_DESC_DONE: u64 = 0xf;
    const CMD_EOP: u64 = 0x1;
    const CMD_RS: u64 = 0x2;
    let mut frame = Vec::new();
    let mut guard = 0;
    while head != tail % qlen && guard < qlen {
        guard += 1;
        let at = base + u64::from(head) * 16;
        let mut d = [0u8; 16];
        if mem.read(at, &mut d).is_err() {
            *dma_errors += 1;
            break;
        }
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or([0; 8]));
        let qw1 = u64::from_le_bytes(d[8..16].try_into().unwrap_or([0; 8]));
        let data = qw1 & 0xf == DTYPE_DATA;
        let cmd = (qw1 >> 4) & 0x3ff;
        let size = ((qw1 >> 34) & 0x3fff) as usize;
        if data && size > 0 {
            let mut b = vec![0u8; size];
            if mem.read(addr, &mut b).is_ok() {
                frame.extend_from_slice(&b);
            }
        }
        if data && cmd & CMD_RS != 0 {
            let done = (qw1 & !0xf) | DTYPE_DESC_DONE;
            if mem.write(at + 8, &done.to_le_bytes()).is_err() {
                *dma_errors += 1;
            }
        }
        if data && cmd & CMD_EOP != 0 && !frame.is_empty() {
            sent(std::mem::take(&mut frame));
        }
        head = (head + 1) % qlen;
    }
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    const RING: u64 = 0x1_0000;
    const DATA: u64 = 0x2_0000;

    fn tx_desc(mem: &GuestMemory, i: u64, addr: u64, size: u64, cmd: u64, dtype: u64) {
        let qw1 = dtype | cmd << 4 | size << 34;
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..].copy_from_slice(&qw1.to_le_bytes());
        mem.write(RING + i * 16, &d).unwrap();
    }

    #[test]
    fn a_frame_spans_descriptors_up_to_eop_and_rs_is_written_back() {
        let mem = GuestMemory::anonymous(0, 0x4_0000);
        mem.write(DATA, b"head").unwrap();
        mem.write(DATA + 0x100, b"tail").unwrap();
        mem.write(DATA + 0x200, b"one").unwrap();
        tx_desc(&mem, 0, DATA, 4, 0, 0);
        tx_desc(&mem, 1, DATA + 0x100, 4, 0x1 | 0x2, 0);
        // A context descriptor (DTYPE 1) carries no data and ends nothing.
        tx_desc(&mem, 2, 0, 0, 0x1, 1);
        tx_desc(&mem, 3, DATA + 0x200, 3, 0x1, 0);
        let mut sent = Vec::new();
        let mut errors = 0;
        let head = walk_tx_ring(&mem, RING, 8, 0, 4, &mut errors, |f| sent.push(f));
        assert_eq!(head, 4);
        assert_eq!(errors, 0);
        assert_eq!(sent, vec![b"headtail".to_vec(), b"one".to_vec()]);
        let qw1 = |i: u64| mem.read_u64(RING + i * 16 + 8).unwrap();
        assert_eq!(qw1(0) & 0xf, 0, "no RS, no write-back");
        assert_eq!(qw1(1) & 0xf, 0xf, "RS: DESC_DONE");
        assert_eq!(qw1(2) & 0xf, 1, "not a data descriptor: left alone");
    }

    #[test]
    fn an_unreadable_descriptor_stops_the_walk_and_is_counted() {
        let mem = GuestMemory::anonymous(0, 0x4_0000);
        let mut errors = 0;
        let head = walk_tx_ring(&mem, 0x10_0000, 8, 0, 3, &mut errors, |_| {
            panic!("no frame")
        });
        assert_eq!((head, errors), (0, 1));
    }

    #[test]
    fn posting_fills_the_buffer_and_moves_head_only_when_the_descriptor_was_read() {
        let mem = GuestMemory::anonymous(0, 0x4_0000);
        let posted = Desc::receive_buffer(DATA, 4);
        mem.write(RING, &posted.to_bytes()).unwrap();
        let mut q = AdminQueue {
            bal: RING as u32,
            len: 4 | QLEN_ENABLE,
            tail: 3,
            ..AdminQueue::default()
        };
        assert!(q.can_post());
        let mut errors = 0;
        q.post(&mem, b"longer than four", &mut errors, |d, len| Desc {
            datalen: len,
            ..d.complete(0)
        })
        .unwrap();
        assert_eq!((q.head, errors), (1, 0));
        let mut b = [0u8; 5];
        mem.read(DATA, &mut b).unwrap();
        assert_eq!(&b, b"long\0", "cut to the posted buffer");
        let mut d = [0u8; adminq::DESC_LEN];
        mem.read(RING, &mut d).unwrap();
        assert_eq!(Desc::from_bytes(&d).datalen, 4);

        let mut far = AdminQueue {
            bal: 0x10_0000,
            ..q
        };
        far.head = 0;
        assert!(far.post(&mem, b"x", &mut errors, |d, _| *d).is_err());
        assert_eq!((far.head, errors), (0, 1));
    }
}
