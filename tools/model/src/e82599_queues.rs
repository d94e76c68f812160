// SPDX-License-Identifier: MIT
//! What the 82599 PF ([`crate::ixgbe`]) and VF ([`crate::ixgbevf`]) models
//! share because the device does the same thing in both: the transmit
//! queue's walk over advanced data descriptors (82599 datasheet 7.2.3.2.4).
//! The register blocks around it differ (the PF has 128 queues and its own
//! statistics, the VF's registers are the VF's view) and stay with each
//! model.

use crate::transport::GuestMemory;

/// `DTYP` of an advanced data descriptor (a context descriptor is 2).
const DTYP_DATA: u32 = 3;
/// `DCMD.EOP`: the last descriptor of a frame.
const DCMD_EOP: u32 = 0x01;
/// `DCMD.RS`: report status (write back DD).
const DCMD_RS: u32 = 0x08;
/// `STA.DD` in the write-back's status dword.
const STA_DD: u32 = 1;

/// What one walk of a transmit ring did.
#[derive(Debug, Default)]
pub(crate) struct TxWalk {
    /// The head after the walk: the first descriptor not processed.
    pub head: u32,
    /// Whole frames (`EOP` seen), in ring order.
    pub frames: Vec<Vec<u8>>,
    /// Descriptor or buffer accesses that failed.
    pub dma_errors: u64,
}

/// Processes the descriptors of the ring at `base` (`entries` of 16 bytes)
/// from `head` up to (not including) `tail`: the buffers of advanced data
/// descriptors are gathered into frames until `EOP`, `DD` is written back
/// where `RS` asks, context descriptors are skipped. A descriptor that
/// cannot be read stops the walk there.
pub(crate) fn transmit(mem: &GuestMemory, base: u64, entries: u32, head: u32, tail: u32) -> TxWalk {
    let mut w = TxWalk::default();
    if entries == 0 {
        return w;
    }
    let mut head = head % entries;
    let tail = tail % entries;
    let mut frame = Vec::new();
    let mut guard = 0;
    while head != tail && guard < entries {
        guard += 1;
        let at = base + u64::from(head) * 16;
        let mut d = [0u8; 16];
        if mem.read(at, &mut d).is_err() {
            w.dma_errors += 1;
            break;
        }
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or([0; 8]));
        let cmd_type_len = u32::from_le_bytes(d[8..12].try_into().unwrap_or([0; 4]));
        let dtyp = (cmd_type_len >> 20) & 0xF;
        let dcmd = cmd_type_len >> 24;
        if dtyp == DTYP_DATA {
            let mut b = vec![0u8; (cmd_type_len & 0xFFFF) as usize];
            if mem.read(addr, &mut b).is_ok() {
                frame.extend_from_slice(&b);
            } else {
                w.dma_errors += 1;
            }
            if dcmd & DCMD_RS != 0 && mem.write(at + 12, &STA_DD.to_le_bytes()).is_err() {
                w.dma_errors += 1;
            }
            if dcmd & DCMD_EOP != 0 && !frame.is_empty() {
                w.frames.push(std::mem::take(&mut frame));
            }
        }
        head = (head + 1) % entries;
    }
    w.head = head;
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Platform;

    const IOVA: u64 = 0x10_0000;

    fn data_desc(addr: u64, len: u32, dcmd: u32) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&(len | DTYP_DATA << 20 | dcmd << 24).to_le_bytes());
        d
    }

    #[test]
    fn frames_are_gathered_until_eop_and_dd_is_written_where_rs_asks() {
        let p = Platform::for_tests(IOVA, 1 << 16, 1);
        let ring = IOVA;
        let buf = IOVA + 0x1000;
        p.mem.write(buf, &[1; 100]).unwrap();
        p.mem.write(buf + 100, &[2; 60]).unwrap();
        // A context descriptor (DTYP 2), a frame in two buffers, a frame
        // in one; RS on the last descriptor of each frame only.
        let mut ctx = [0u8; 16];
        ctx[8..12].copy_from_slice(&(2u32 << 20).to_le_bytes());
        p.mem.write(ring, &ctx).unwrap();
        p.mem.write(ring + 16, &data_desc(buf, 40, 0)).unwrap();
        p.mem
            .write(ring + 32, &data_desc(buf + 40, 60, DCMD_EOP | DCMD_RS))
            .unwrap();
        p.mem
            .write(ring + 48, &data_desc(buf + 100, 60, DCMD_EOP | DCMD_RS))
            .unwrap();
        // The ring has 8 entries; the walk starts at 7 and wraps to 0.
        p.mem
            .write(ring + 7 * 16, &data_desc(buf + 100, 20, DCMD_EOP))
            .unwrap();
        let w = transmit(&p.mem, ring, 8, 7, 4);
        assert_eq!(w.head, 4);
        assert_eq!(w.dma_errors, 0);
        assert_eq!(w.frames, vec![vec![2; 20], vec![1; 100], vec![2; 60]]);
        let sta = |i: u64| {
            let mut s = [0u8; 4];
            p.mem.read(ring + i * 16 + 12, &mut s).unwrap();
            u32::from_le_bytes(s)
        };
        assert_eq!((sta(1), sta(2), sta(3), sta(7)), (0, STA_DD, STA_DD, 0));
    }

    #[test]
    fn an_unreadable_descriptor_stops_the_walk_there() {
        let p = Platform::for_tests(IOVA, 1 << 16, 1);
        // The ring's second descriptor lies outside guest memory.
        let ring = IOVA + (1 << 16) - 16;
        p.mem.write(ring, &data_desc(IOVA, 64, DCMD_EOP)).unwrap();
        let w = transmit(&p.mem, ring, 4, 0, 3);
        assert_eq!((w.head, w.dma_errors, w.frames.len()), (1, 1, 1));
    }
}
