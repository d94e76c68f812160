// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! RX descriptor formats of the supported NICs: how to arm a descriptor with
//! a buffer and how to decode the NIC's write-back.
//!
//! Descriptors are little-endian 64-bit words in DMA memory. The driver reads
//! them with volatile loads (after seeing the done bit, with a read barrier)
//! and hands the words to [`RxFormat::decode`]; everything about bit layouts
//! lives here, tested without hardware.

/// A completed RX descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxDone {
    /// Bytes the NIC wrote into this descriptor's buffer.
    pub len: u32,
    /// Last descriptor of the frame.
    pub eop: bool,
    /// The NIC flagged a receive error (CRC, symbol, length...).
    pub error: bool,
    /// Not a frame (e.g. an XL710 programming status descriptor): recycle it.
    pub skip: bool,
    /// The 802.1Q TCI the NIC reports for this frame (igb `VP` with the
    /// `vlan` field; i40e `L2TAG1P` with `l2tag1`). Whether the tag was also
    /// stripped from the bytes depends on the queue's configuration, which
    /// the NIC backend knows (`Nic::RX_VLAN_STRIPPED`).
    pub vlan: Option<u16>,
}

/// One NIC family's RX descriptor layout.
pub trait RxFormat {
    /// Descriptor size in 64-bit words.
    const WORDS: usize;
    /// Largest buffer size (bytes) the format can describe.
    const MAX_BUFFER: u32;
    /// Words of a descriptor armed with a receive buffer at `dma`: the
    /// "read" format, which also clears the done bit.
    fn arm(dma: u64) -> [u64; 4];
    /// Decodes a write-back; `None` while the NIC has not completed it.
    fn decode(words: &[u64]) -> Option<RxDone>;
    /// A completed descriptor that holds no frame (decodes with `skip`),
    /// if the format has one: what a driver writes into descriptors the
    /// NIC will never complete, to bring its ring back in step with a NIC
    /// that was reset (`segment::RingLayout::realign`).
    const NOT_A_FRAME: Option<[u64; 4]>;
    /// The write-back a NIC leaves in a descriptor it completed as `done`
    /// (the inverse of [`Self::decode`]), for software NICs: the simulator,
    /// the benchmark and device models write descriptors exactly as the
    /// hardware does, so the decoding measured and tested is the driver's.
    #[cfg(not(hpcap_kernel))]
    fn write_back(done: &RxDone) -> [u64; 4];
}

/// Intel 82576 (igb) and its VF (igbvf): 16-byte advanced one-buffer
/// descriptors (82576 datasheet 7.1.5; same union in the VF).
pub struct IgbAdv;

/// igb write-back `status_error` bits (upper dword of word 1's low half).
pub mod igb {
    /// Descriptor done.
    pub const STAT_DD: u32 = 1 << 0;
    /// End of packet.
    pub const STAT_EOP: u32 = 1 << 1;
    /// VLAN packet: the `vlan` field (bits 63:48 of word 1) holds its TCI.
    pub const STAT_VP: u32 = 1 << 3;
    /// Frame errors: CE, SE, SEQ, CXE, RXE (`E1000_RXDEXT_ERR_FRAME_ERR_MASK`).
    pub const ERR_FRAME: u32 = (1 << 24) | (1 << 25) | (1 << 26) | (1 << 28) | (1 << 31);
}

/// The advanced one-buffer write-back the 82576 and the 82599 share
/// (82576 datasheet 7.1.5.2, 82599 datasheet 7.1.6.2): `status_error` in
/// word 1's low dword, the length in bits 47:32 and the VLAN tag in 63:48.
/// Only which error bits mean "the frame is bad" differs.
mod adv {
    use super::{igb, RxDone};

    // The engine's gather loop runs decode once per descriptor: every
    // format's decode is forced inline (out of line, IgbAdv's cost 44
    // instructions per 64-byte packet: engine 122 -> 166 under
    // tests/bench/callgrind-64b).
    #[inline(always)]
    pub(super) fn decode(words: &[u64], frame_errors: u32) -> Option<RxDone> {
        let w1 = *words.get(1)?;
        let status = w1 as u32;
        if status & igb::STAT_DD == 0 {
            return None;
        }
        Some(RxDone {
            len: ((w1 >> 32) & 0xFFFF) as u32,
            eop: status & igb::STAT_EOP != 0,
            error: status & frame_errors != 0,
            skip: false,
            vlan: (status & igb::STAT_VP != 0).then_some((w1 >> 48) as u16),
        })
    }

    #[cfg(not(hpcap_kernel))]
    #[inline(always)]
    pub(super) fn write_back(done: &RxDone) -> [u64; 4] {
        let mut status = igb::STAT_DD;
        if done.eop {
            status |= igb::STAT_EOP;
        }
        if done.error {
            // CE: CRC error, a frame error bit in both families.
            status |= 1 << 24;
        }
        let mut w1 = u64::from(status) | (u64::from(done.len & 0xFFFF) << 32);
        if let Some(tci) = done.vlan {
            w1 |= u64::from(igb::STAT_VP) | (u64::from(tci) << 48);
        }
        [0, w1, 0, 0]
    }
}

impl RxFormat for IgbAdv {
    const WORDS: usize = 2;
    // SRRCTL.BSIZEPKT is 7 bits of 1 KiB units.
    const MAX_BUFFER: u32 = 127 * 1024;
    // No status says "not a frame".
    const NOT_A_FRAME: Option<[u64; 4]> = None;

    fn arm(dma: u64) -> [u64; 4] {
        // pkt_addr, hdr_addr = 0 (no header split); the zero also clears
        // the write-back status, so DD reads 0 until the NIC fills it.
        [dma, 0, 0, 0]
    }

    #[inline(always)]
    fn decode(words: &[u64]) -> Option<RxDone> {
        adv::decode(words, igb::ERR_FRAME)
    }

    #[cfg(not(hpcap_kernel))]
    fn write_back(done: &RxDone) -> [u64; 4] {
        adv::write_back(done)
    }
}

/// Intel 82599 (ixgbe) and its VF (ixgbevf): the same 16-byte advanced
/// one-buffer descriptors as [`IgbAdv`], but bits 31:30 of `status_error`
/// are IP and L4 checksum errors there (`IXGBE_RXDADV_ERR_IPE`/`TCPE`): a
/// frame with a bad IP checksum is a frame to capture, not a receive error.
pub struct IxgbeAdv;

/// ixgbe write-back error bits.
pub mod ixgbe {
    /// Frame errors: CE, LE, PE, OSE, USE (`IXGBE_RXDADV_ERR_FRAME_ERR_MASK`).
    pub const ERR_FRAME: u32 = (1 << 24) | (1 << 25) | (1 << 27) | (1 << 28) | (1 << 29);
}

impl RxFormat for IxgbeAdv {
    const WORDS: usize = 2;
    // SRRCTL.BSIZEPACKET: 1 KiB units, 1 to 16 KiB (82599 8.2.3.8.7).
    const MAX_BUFFER: u32 = 16 * 1024;
    const NOT_A_FRAME: Option<[u64; 4]> = None;

    fn arm(dma: u64) -> [u64; 4] {
        IgbAdv::arm(dma)
    }

    #[inline(always)]
    fn decode(words: &[u64]) -> Option<RxDone> {
        adv::decode(words, ixgbe::ERR_FRAME)
    }

    #[cfg(not(hpcap_kernel))]
    fn write_back(done: &RxDone) -> [u64; 4] {
        adv::write_back(done)
    }
}

/// XL710 (i40e PF): 16-byte descriptors as the PF driver programs them
/// (HMC `dsize` = 0); write-back `status_error_len` in word 1.
// Used once the XL710 backends are in.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub struct I40e16;

/// XL710 VF (iavf with an i40e PF): 32-byte legacy descriptors; word 1 has
/// the same `status_error_len` layout as the 16-byte format.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub struct Iavf32;

/// XL710 PF (i40e) with HMC `dsize` = 1: the 32-byte descriptors are the
/// VF's layout (the VF's queues are PF queues its PF programs that way).
pub type I40e32 = Iavf32;

/// i40e/iavf `status_error_len` fields (word 1).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod i40e {
    /// Descriptor done.
    pub const DD: u64 = 1 << 0;
    /// End of frame.
    pub const EOF: u64 = 1 << 1;
    /// L2TAG1P: `l2tag1` (bits 31:16 of word 0) holds the stripped tag.
    pub const L2TAG1P: u64 = 1 << 2;
    /// RXE: MAC error (CRC, alignment, over/undersize).
    pub const RXE: u64 = 1 << 19;
    /// Packet buffer length: bits 51:38.
    pub const LEN_SHIFT: u32 = 38;
    /// Mask of the packet buffer length after shifting.
    pub const LEN_MASK: u64 = 0x3FFF;
    /// Marks a programming status descriptor (not a frame).
    pub const PROG_STATUS: u64 = 1 << 63;
}

/// A done programming-status descriptor: no frame.
const I40E_NOT_A_FRAME: [u64; 4] = [0, i40e::DD | i40e::PROG_STATUS, 0, 0];

#[cfg(not(hpcap_kernel))]
fn write_back_i40e(done: &RxDone) -> [u64; 4] {
    let mut w1 = i40e::DD | ((u64::from(done.len) & i40e::LEN_MASK) << i40e::LEN_SHIFT);
    let mut w0 = 0;
    if done.eop {
        w1 |= i40e::EOF;
    }
    if done.error {
        w1 |= i40e::RXE;
    }
    if done.skip {
        w1 |= i40e::PROG_STATUS;
    }
    if let Some(tci) = done.vlan {
        w1 |= i40e::L2TAG1P;
        w0 = u64::from(tci) << 16;
    }
    [w0, w1, 0, 0]
}

#[cfg_attr(hpcap_kernel, allow(dead_code))]
#[inline(always)]
fn decode_i40e(words: &[u64]) -> Option<RxDone> {
    let w0 = *words.first()?;
    let w1 = *words.get(1)?;
    if w1 & i40e::DD == 0 {
        return None;
    }
    Some(RxDone {
        len: ((w1 >> i40e::LEN_SHIFT) & i40e::LEN_MASK) as u32,
        eop: w1 & i40e::EOF != 0,
        error: w1 & i40e::RXE != 0,
        skip: w1 & i40e::PROG_STATUS != 0,
        vlan: (w1 & i40e::L2TAG1P != 0).then_some((w0 >> 16) as u16),
    })
}

impl RxFormat for I40e16 {
    const WORDS: usize = 2;
    // HMC `dbuff` is 7 bits of 128-byte units.
    const MAX_BUFFER: u32 = 127 * 128;
    const NOT_A_FRAME: Option<[u64; 4]> = Some(I40E_NOT_A_FRAME);

    fn arm(dma: u64) -> [u64; 4] {
        [dma, 0, 0, 0]
    }

    #[inline(always)]
    fn decode(words: &[u64]) -> Option<RxDone> {
        decode_i40e(words)
    }

    #[cfg(not(hpcap_kernel))]
    fn write_back(done: &RxDone) -> [u64; 4] {
        write_back_i40e(done)
    }
}

impl RxFormat for Iavf32 {
    const WORDS: usize = 4;
    // The PF refuses `databuffer_size` above 16 KiB - 128.
    const MAX_BUFFER: u32 = 16 * 1024 - 128;
    const NOT_A_FRAME: Option<[u64; 4]> = Some(I40E_NOT_A_FRAME);

    fn arm(dma: u64) -> [u64; 4] {
        [dma, 0, 0, 0]
    }

    #[inline(always)]
    fn decode(words: &[u64]) -> Option<RxDone> {
        decode_i40e(words)
    }

    #[cfg(not(hpcap_kernel))]
    fn write_back(done: &RxDone) -> [u64; 4] {
        write_back_i40e(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip<F: RxFormat>(done: RxDone) -> Option<RxDone> {
        let words = F::write_back(&done);
        F::decode(&words[..F::WORDS])
    }

    proptest! {
        /// What a software NIC writes decodes to what it meant, in every
        /// format (the igb format has no "skip" descriptors).
        #[test]
        fn write_back_decodes(
            len in 0u32..16384,
            eop: bool,
            error: bool,
            skip: bool,
            vlan in proptest::option::of(any::<u16>()),
        ) {
            let done = RxDone { len, eop, error, skip: false, vlan };
            prop_assert_eq!(round_trip::<IgbAdv>(done), Some(done));
            prop_assert_eq!(round_trip::<IxgbeAdv>(done), Some(done));
            let done = RxDone { skip, ..done };
            prop_assert_eq!(round_trip::<I40e16>(done), Some(done));
            prop_assert_eq!(round_trip::<Iavf32>(done), Some(done));
        }
    }

    #[test]
    fn igb_write_back() {
        assert_eq!(IgbAdv::decode(&IgbAdv::arm(0x1234_5000)[..2]), None);
        let wb = [0u64, (60u64 << 32) | 0x3];
        assert_eq!(
            IgbAdv::decode(&wb),
            Some(RxDone {
                len: 60,
                eop: true,
                error: false,
                skip: false,
                vlan: None,
            })
        );
        let wb = [0u64, (1514u64 << 32) | 0x1 | (1 << 24)];
        let d = IgbAdv::decode(&wb).unwrap();
        assert!(!d.eop && d.error && d.len == 1514);
        // VLAN field (bits 63:48) must not leak into the length.
        let wb = [0u64, (0xABCDu64 << 48) | (64u64 << 32) | 0x3];
        let d = IgbAdv::decode(&wb).unwrap();
        assert_eq!(
            (d.len, d.vlan),
            (64, None),
            "no VP: the field means nothing"
        );
        let d = IgbAdv::decode(&[0, wb[1] | u64::from(igb::STAT_VP)]).unwrap();
        assert_eq!((d.len, d.vlan), (64, Some(0xABCD)));
        assert_eq!(IgbAdv::decode(&[0]), None, "short slice is not done");
    }

    #[test]
    fn ixgbe_checksum_errors_are_not_frame_errors() {
        // IPE (bit 31) is a frame error for no 82599 driver; for the 82576
        // bit 31 is RXE.
        let wb = [0u64, (60u64 << 32) | 0x3 | 1 << 31];
        assert!(!IxgbeAdv::decode(&wb).unwrap().error);
        assert!(IgbAdv::decode(&wb).unwrap().error);
        for bit in [24, 25, 27, 28, 29] {
            let wb = [0u64, (60u64 << 32) | 0x3 | 1 << bit];
            assert!(IxgbeAdv::decode(&wb).unwrap().error, "bit {bit}");
        }
        let done = IxgbeAdv::decode(&[
            0,
            (64u64 << 32) | 0x3 | u64::from(igb::STAT_VP) | 0x6064u64 << 48,
        ]);
        assert_eq!(
            done.map(|d| (d.len, d.eop, d.vlan)),
            Some((64, true, Some(0x6064)))
        );
    }

    #[test]
    fn i40e_write_back() {
        assert_eq!(I40e16::decode(&I40e16::arm(0x1000)[..2]), None);
        let w1 = i40e::DD | i40e::EOF | (9000u64 << i40e::LEN_SHIFT) | (0x3F << 52);
        assert_eq!(
            I40e16::decode(&[0, w1]),
            Some(RxDone {
                len: 9000,
                eop: true,
                error: false,
                skip: false,
                vlan: None,
            })
        );
        let w0 = 0xDEAD_BEEF_6064_0000u64;
        assert_eq!(I40e16::decode(&[w0, w1]).unwrap().vlan, None);
        assert_eq!(
            I40e16::decode(&[w0, w1 | i40e::L2TAG1P]).unwrap().vlan,
            Some(0x6064)
        );
        let w1 = i40e::DD | i40e::RXE | i40e::PROG_STATUS;
        let d = Iavf32::decode(&[0, w1, 0, 0]).unwrap();
        assert!(d.error && d.skip && !d.eop);
    }
}
