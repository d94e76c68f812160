// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The Intel XL710's LAN RX queue context, as the PF driver writes it into
//! the Host Memory Cache (HMC: host memory the PF lends the device for its
//! queue contexts; datasheet 8.3.3 "Receive Queue Context", Linux's
//! `i40e_hmc_obj_rxq` and the bit positions of `i40e_rxq_ce_info`), and the
//! wrap-aware difference of the port's statistics counters.
//!
//! The one encoder: hpcap's i40e backend writes a context with it; the
//! XL710 PF model (`tools/model`) decodes it with its own reader of the same
//! bit positions, and a test there checks that the two agree.

/// Bytes of a LAN RX queue context (`GLHMC_LANRXOBJSZ` = 5: 2^5).
pub const RX_CONTEXT_LEN: usize = 32;
/// Base address and buffer sizes are in units of 128 bytes.
pub const UNIT: u64 = 128;

/// The fields of a LAN RX queue context hpcap sets (every other field,
/// e.g. header split and TPH hints, is 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxQueueContext {
    /// Bus address of descriptor 0 (128-byte aligned).
    pub base: u64,
    /// Descriptors in the ring (`qlen`, 13 bits).
    pub qlen: u16,
    /// Data buffer bytes per descriptor (`dbuff`, in 128-byte units).
    pub dbuff: u32,
    /// 32-byte descriptors (`dsize`); else 16.
    pub dsize32: bool,
    /// Strip the Ethernet CRC (`crcstrip`).
    pub crcstrip: bool,
    /// L2TAG1 is the outer tag (`l2tsel`).
    pub l2tsel: bool,
    /// Report a stripped tag in the descriptor (`showiv`).
    pub showiv: bool,
    /// Largest frame accepted, FCS included (`rxmax`, 14 bits).
    pub rxmax: u16,
    /// Descriptor prefetch (`prefena`).
    pub prefena: bool,
    /// Low RX queue threshold in units of 64 descriptors (`lrxqthresh`).
    pub lrxqthresh: u8,
}

/// Sets `width` bits at bit `lsb` of the little-endian context.
fn put(ctx: &mut [u8; RX_CONTEXT_LEN], lsb: usize, width: usize, v: u64) {
    for i in 0..width {
        let bit = lsb + i;
        if let Some(byte) = ctx.get_mut(bit / 8) {
            if (v >> i) & 1 != 0 {
                *byte |= 1 << (bit % 8);
            } else {
                *byte &= !(1 << (bit % 8));
            }
        }
    }
}

impl RxQueueContext {
    /// The context as the device reads it. `None` if a field does not fit
    /// (base not 128-byte aligned, buffer not a multiple of 128 bytes or
    /// above 127 units, more than 8191 descriptors, rxmax above 16383).
    pub fn encode(&self) -> Option<[u8; RX_CONTEXT_LEN]> {
        if self.base % UNIT != 0
            || u64::from(self.dbuff) % UNIT != 0
            || u64::from(self.dbuff) / UNIT > 0x7F
            || self.qlen > 0x1FFF
            || self.rxmax > 0x3FFF
            || self.lrxqthresh > 7
        {
            return None;
        }
        let mut c = [0u8; RX_CONTEXT_LEN];
        // head (0, 13 bits) starts at 0.
        put(&mut c, 32, 57, self.base / UNIT);
        put(&mut c, 89, 13, u64::from(self.qlen));
        put(&mut c, 102, 7, u64::from(self.dbuff) / UNIT);
        // hbuff (109, 5) and dtype (114, 2) are 0: one buffer, no split.
        put(&mut c, 116, 1, u64::from(self.dsize32));
        put(&mut c, 117, 1, u64::from(self.crcstrip));
        put(&mut c, 119, 1, u64::from(self.l2tsel));
        put(&mut c, 127, 1, u64::from(self.showiv));
        put(&mut c, 174, 14, u64::from(self.rxmax));
        put(&mut c, 198, 3, u64::from(self.lrxqthresh));
        put(&mut c, 201, 1, u64::from(self.prefena));
        Some(c)
    }
}

/// How far a `bits`-wide free-running counter moved from `prev` to `now`
/// (the port statistics are 48 bits, `GLPRT_RDPC` 32; they wrap).
pub fn counter_delta(prev: u64, now: u64, bits: u32) -> u64 {
    let mask = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    now.wrapping_sub(prev) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(c: &[u8], lsb: usize, width: usize) -> u64 {
        (0..width).fold(0, |v, i| {
            let b = lsb + i;
            v | (u64::from(c[b / 8] >> (b % 8) & 1) << i)
        })
    }

    #[test]
    fn fields_at_their_bits() {
        let ctx = RxQueueContext {
            base: 0x1_2345_6780,
            qlen: 4096,
            dbuff: 2048,
            dsize32: false,
            crcstrip: true,
            l2tsel: true,
            showiv: false,
            rxmax: 9728,
            prefena: true,
            lrxqthresh: 1,
        };
        let c = ctx.encode().unwrap();
        assert_eq!(bits(&c, 0, 13), 0, "head");
        assert_eq!(bits(&c, 32, 57) * 128, 0x1_2345_6780);
        assert_eq!(bits(&c, 89, 13), 4096);
        assert_eq!(bits(&c, 102, 7) * 128, 2048);
        assert_eq!(bits(&c, 114, 2), 0, "dtype");
        assert_eq!(
            (
                bits(&c, 116, 1),
                bits(&c, 117, 1),
                bits(&c, 119, 1),
                bits(&c, 127, 1)
            ),
            (0, 1, 1, 0)
        );
        assert_eq!(bits(&c, 174, 14), 9728);
        assert_eq!((bits(&c, 198, 3), bits(&c, 201, 1)), (1, 1));
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let ok = RxQueueContext {
            base: 0x1000,
            qlen: 512,
            dbuff: 2048,
            ..RxQueueContext::default()
        };
        assert!(ok.encode().is_some());
        for bad in [
            RxQueueContext { base: 0x1040, ..ok },
            RxQueueContext { dbuff: 2000, ..ok },
            RxQueueContext {
                dbuff: 128 * 128,
                ..ok
            },
            RxQueueContext { qlen: 8192, ..ok },
            RxQueueContext { rxmax: 16384, ..ok },
        ] {
            assert_eq!(bad.encode(), None, "{bad:?}");
        }
    }

    #[test]
    fn counters_wrap() {
        assert_eq!(counter_delta(10, 15, 48), 5);
        assert_eq!(counter_delta((1 << 48) - 2, 3, 48), 5);
        assert_eq!(counter_delta(u64::from(u32::MAX), 1, 32), 2);
    }
}
