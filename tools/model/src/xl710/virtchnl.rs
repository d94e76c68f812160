// SPDX-License-Identifier: MIT
//! virtchnl 1.1, the VF <-> PF message protocol of the XL710 (and E810)
//! VF: opcodes, status codes, capability bits and the little-endian layouts
//! of the messages the model reads and writes. Layouts follow Linux's
//! `include/linux/net/intel/virtchnl.h` (facts, not code).

/// VIRTCHNL_OP_* opcodes the model knows by name.
pub mod op {
    /// Version negotiation (always 1).
    pub const VERSION: u32 = 1;
    /// The VF asks the PF to reset it.
    pub const RESET_VF: u32 = 2;
    /// Capabilities and the VSI.
    pub const GET_VF_RESOURCES: u32 = 3;
    /// TX and RX queue contexts.
    pub const CONFIG_VSI_QUEUES: u32 = 6;
    /// Vectors to queues.
    pub const CONFIG_IRQ_MAP: u32 = 7;
    /// Enable queues.
    pub const ENABLE_QUEUES: u32 = 8;
    /// Disable queues.
    pub const DISABLE_QUEUES: u32 = 9;
    /// Add MAC filters.
    pub const ADD_ETH_ADDR: u32 = 10;
    /// Remove MAC filters.
    pub const DEL_ETH_ADDR: u32 = 11;
    /// Unicast/multicast promiscuous mode.
    pub const CONFIG_PROMISCUOUS_MODE: u32 = 14;
    /// VSI statistics.
    pub const GET_STATS: u32 = 15;
    /// PF -> VF events (always 17).
    pub const EVENT: u32 = 17;
}

/// VIRTCHNL_STATUS_* values (the cookie_low of a PF reply).
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Bad parameter.
    pub const ERR_PARAM: i32 = -5;
    /// Opcode mismatch / unknown.
    pub const ERR_OPCODE_MISMATCH: i32 = -38;
    /// Not supported by this PF.
    pub const ERR_NOT_SUPPORTED: i32 = -64;
}

/// VIRTCHNL_VF_OFFLOAD_* capability bits.
pub mod cap {
    /// Base L2 offloads (always granted).
    pub const L2: u32 = 1 << 0;
    /// RSS configured through the VF's own registers.
    pub const RSS_REG: u32 = 1 << 4;
}

/// VIRTCHNL_EVENT_* codes.
pub mod event {
    /// Link up/down and speed.
    pub const LINK_CHANGE: i32 = 1;
    /// The PF is about to reset the VF.
    pub const RESET_IMPENDING: i32 = 2;
}

/// VIRTCHNL_LINK_SPEED_40GB (legacy link event encoding).
pub const LINK_SPEED_40GB: u32 = 1 << 4;
/// VIRTCHNL_VSI_SRIOV.
pub const VSI_SRIOV: i32 = 6;
/// FLAG_VF_UNICAST_PROMISC.
pub const FLAG_UNICAST_PROMISC: u16 = 1;
/// FLAG_VF_MULTICAST_PROMISC.
pub const FLAG_MULTICAST_PROMISC: u16 = 2;
/// The legacy 32-byte RX descriptor id (rxdid).
pub const RXDID_LEGACY_1: u8 = 1;

// Message lengths as Linux's `virtchnl_vc_validate_vf_msg` checks them:
// the list messages keep their pre-flexible-array ("LEGACY") size, which
// counted one element, and add every element on top of it.
/// `virtchnl_vf_resource_LEGACY_SIZEOF`.
pub const VF_RESOURCE_LEGACY: usize = 36;
/// `virtchnl_vsi_queue_config_info_LEGACY_SIZEOF`.
pub const VSI_QUEUE_CONFIG_LEGACY: usize = 72;
/// `virtchnl_irq_map_info_LEGACY_SIZEOF`.
pub const IRQ_MAP_LEGACY: usize = 14;
/// `virtchnl_ether_addr_list_LEGACY_SIZEOF`.
pub const ETHER_ADDR_LIST_LEGACY: usize = 12;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `struct virtchnl_version_info`.
pub fn version(major: u32, minor: u32) -> Vec<u8> {
    let mut v = major.to_le_bytes().to_vec();
    v.extend_from_slice(&minor.to_le_bytes());
    v
}

/// What GET_VF_RESOURCES answers (one VSI of type SR-IOV).
#[derive(Debug, Clone)]
pub struct VfResource {
    /// Queue pairs of the VSI.
    pub num_queue_pairs: u16,
    /// MSI-X vectors.
    pub max_vectors: u16,
    /// Largest MTU the PF allows.
    pub max_mtu: u16,
    /// Granted capabilities.
    pub caps: u32,
    /// RSS key and lookup table sizes.
    pub rss_key_size: u32,
    /// RSS lookup table size.
    pub rss_lut_size: u32,
    /// The VSI's id.
    pub vsi_id: u16,
    /// The MAC the PF assigned.
    pub mac: [u8; 6],
}

impl VfResource {
    /// `struct virtchnl_vf_resource` with one `virtchnl_vsi_resource`, at
    /// the length Linux's PF sends (legacy size + one VSI).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(VF_RESOURCE_LEGACY + 16);
        v.extend_from_slice(&1u16.to_le_bytes()); // num_vsis
        v.extend_from_slice(&self.num_queue_pairs.to_le_bytes());
        v.extend_from_slice(&self.max_vectors.to_le_bytes());
        v.extend_from_slice(&self.max_mtu.to_le_bytes());
        v.extend_from_slice(&self.caps.to_le_bytes());
        v.extend_from_slice(&self.rss_key_size.to_le_bytes());
        v.extend_from_slice(&self.rss_lut_size.to_le_bytes());
        v.extend_from_slice(&self.vsi_id.to_le_bytes());
        v.extend_from_slice(&self.num_queue_pairs.to_le_bytes());
        v.extend_from_slice(&VSI_SRIOV.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes()); // qset_handle
        v.extend_from_slice(&self.mac);
        v.resize(VF_RESOURCE_LEGACY + 16, 0);
        v
    }
}

/// One RX queue's context from CONFIG_VSI_QUEUES (`virtchnl_rxq_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxqInfo {
    /// VSI id.
    pub vsi_id: u16,
    /// Queue index.
    pub queue_id: u16,
    /// Descriptors in the ring.
    pub ring_len: u32,
    /// Receive buffer size.
    pub databuffer_size: u32,
    /// Largest frame.
    pub max_pkt_size: u32,
    /// CRC stripping disabled (keep the FCS).
    pub crc_disable: bool,
    /// Descriptor format.
    pub rxdid: u8,
    /// Ring base (guest address).
    pub ring_addr: u64,
}

/// `virtchnl_vsi_queue_config_info`: the VSI and its RX queue contexts.
pub fn parse_vsi_queues(b: &[u8]) -> Option<(u16, Vec<RxqInfo>)> {
    let vsi = u16_at(b, 0)?;
    let n = u16_at(b, 2)? as usize;
    if n == 0 || b.len() != VSI_QUEUE_CONFIG_LEGACY + 64 * n {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let r = 8 + 64 * i + 24;
        out.push(RxqInfo {
            vsi_id: u16_at(b, r)?,
            queue_id: u16_at(b, r + 2)?,
            ring_len: u32_at(b, r + 4)?,
            databuffer_size: u32_at(b, r + 12)?,
            max_pkt_size: u32_at(b, r + 16)?,
            crc_disable: *b.get(r + 20)? != 0,
            rxdid: *b.get(r + 21)?,
            ring_addr: u64_at(b, r + 24)?,
        });
    }
    Some((vsi, out))
}

/// `virtchnl_irq_map_info`: (vector, rx queue bitmap) pairs.
pub fn parse_irq_map(b: &[u8]) -> Option<Vec<(u16, u16, u16)>> {
    let n = u16_at(b, 0)? as usize;
    if n == 0 || b.len() != IRQ_MAP_LEGACY + 12 * n {
        return None;
    }
    (0..n)
        .map(|i| {
            let at = 2 + 12 * i;
            Some((u16_at(b, at)?, u16_at(b, at + 2)?, u16_at(b, at + 4)?))
        })
        .collect()
}

/// `virtchnl_queue_select`: (vsi, rx bitmap, tx bitmap).
pub fn parse_queue_select(b: &[u8]) -> Option<(u16, u32, u32)> {
    if b.len() != 12 {
        return None;
    }
    Some((u16_at(b, 0)?, u32_at(b, 4)?, u32_at(b, 8)?))
}

/// `virtchnl_ether_addr_list`: the VSI and its addresses.
pub fn parse_addr_list(b: &[u8]) -> Option<(u16, Vec<[u8; 6]>)> {
    let vsi = u16_at(b, 0)?;
    let n = u16_at(b, 2)? as usize;
    if n == 0 || b.len() != ETHER_ADDR_LIST_LEGACY + 8 * n {
        return None;
    }
    let list = (0..n)
        .map(|i| b[4 + 8 * i..10 + 8 * i].try_into().ok())
        .collect::<Option<Vec<[u8; 6]>>>()?;
    Some((vsi, list))
}

/// `virtchnl_promisc_info`: (vsi, flags).
pub fn parse_promisc(b: &[u8]) -> Option<(u16, u16)> {
    if b.len() != 4 {
        return None;
    }
    Some((u16_at(b, 0)?, u16_at(b, 2)?))
}

/// The VSI counters GET_STATS returns (`struct virtchnl_eth_stats`, the
/// PF's view of the VF's VSI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct EthStats {
    /// Bytes received (GLV_GORC).
    pub rx_bytes: u64,
    /// Unicast frames received.
    pub rx_unicast: u64,
    /// Multicast frames received.
    pub rx_multicast: u64,
    /// Broadcast frames received.
    pub rx_broadcast: u64,
    /// Frames received for the VSI but dropped: no free descriptor (GLV_RDPC).
    pub rx_discards: u64,
    /// Frames of an unknown protocol.
    pub rx_unknown_protocol: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Unicast frames sent.
    pub tx_unicast: u64,
    /// Multicast frames sent.
    pub tx_multicast: u64,
    /// Broadcast frames sent.
    pub tx_broadcast: u64,
    /// Frames sent but dropped.
    pub tx_discards: u64,
    /// Send errors.
    pub tx_errors: u64,
}

impl EthStats {
    /// The wire layout.
    pub fn encode(&self) -> Vec<u8> {
        [
            self.rx_bytes,
            self.rx_unicast,
            self.rx_multicast,
            self.rx_broadcast,
            self.rx_discards,
            self.rx_unknown_protocol,
            self.tx_bytes,
            self.tx_unicast,
            self.tx_multicast,
            self.tx_broadcast,
            self.tx_discards,
            self.tx_errors,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }
}

/// `struct virtchnl_pf_event` for a link change (legacy speed encoding).
pub fn link_event(up: bool) -> Vec<u8> {
    let mut v = event::LINK_CHANGE.to_le_bytes().to_vec();
    v.extend_from_slice(&LINK_SPEED_40GB.to_le_bytes());
    v.extend_from_slice(&[u8::from(up), 0, 0, 0]);
    v.extend_from_slice(&0i32.to_le_bytes()); // severity
    v
}

/// `struct virtchnl_pf_event` announcing a reset.
pub fn reset_impending_event() -> Vec<u8> {
    let mut v = event::RESET_IMPENDING.to_le_bytes().to_vec();
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&2i32.to_le_bytes()); // PF_EVENT_SEVERITY_CERTAIN_DOOM
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_have_the_kernel_sizes() {
        let r = VfResource {
            num_queue_pairs: 4,
            max_vectors: 5,
            max_mtu: 9706,
            caps: cap::L2,
            rss_key_size: 52,
            rss_lut_size: 64,
            vsi_id: 3,
            mac: [2, 0, 0, 0, 0, 0x10],
        };
        assert_eq!(
            r.encode().len(),
            36 + 16,
            "what Linux's PF sends for one VSI"
        );
        assert_eq!(link_event(true).len(), 16);
        assert_eq!(reset_impending_event().len(), 16);
        assert_eq!(EthStats::default().encode().len(), 96);
        assert_eq!(version(1, 1), [1, 0, 0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn parses_queue_config_and_rejects_bad_lengths() {
        let mut b = vec![0u8; 72 + 64];
        b[0] = 3;
        b[2] = 1;
        let r = 8 + 24;
        b[r] = 3;
        b[r + 4..r + 8].copy_from_slice(&512u32.to_le_bytes());
        b[r + 12..r + 16].copy_from_slice(&2048u32.to_le_bytes());
        b[r + 16..r + 20].copy_from_slice(&1522u32.to_le_bytes());
        b[r + 21] = RXDID_LEGACY_1;
        b[r + 24..r + 32].copy_from_slice(&0x1234_5000u64.to_le_bytes());
        let (vsi, q) = parse_vsi_queues(&b).unwrap();
        assert_eq!(vsi, 3);
        assert_eq!(q[0].ring_len, 512);
        assert_eq!(q[0].databuffer_size, 2048);
        assert_eq!(q[0].ring_addr, 0x1234_5000);
        assert!(
            parse_vsi_queues(&b[..8 + 64]).is_none(),
            "Linux's length is 72 + 64 n"
        );
        let mut a = vec![3, 0, 1, 0, 2, 0, 0, 0, 0, 0x10, 0, 0];
        a.resize(12 + 8, 0);
        assert_eq!(
            parse_addr_list(&a).unwrap(),
            (3, vec![[2, 0, 0, 0, 0, 0x10]])
        );
        assert!(parse_addr_list(&a[..12]).is_none());
        a[2] = 0;
        assert!(parse_addr_list(&a[..12]).is_none(), "zero elements");
        // iavf's IRQ map for 3 vectors: 14 + 3 * 12 = 50 bytes.
        let mut m = vec![0u8; 50];
        m[0] = 3;
        assert_eq!(parse_irq_map(&m).unwrap().len(), 3);
        assert!(parse_irq_map(&m[..38]).is_none());
        assert_eq!(parse_promisc(&[3, 0, 3, 0]), Some((3, 3)));
    }
}
