// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! virtchnl 1.1, the message protocol between an Intel XL710 (or E810)
//! virtual function and its PF: opcodes, status codes, capability bits and
//! the little-endian layouts of the messages, as Linux's
//! `include/linux/net/intel/virtchnl.h` defines them (facts, not code).
//!
//! The one definition for both sides: hpcap's iavf backend encodes
//! requests and decodes replies and events (the kernel subset), and the VF
//! model's embedded PF (`tools/model`) decodes requests and encodes replies
//! (userspace only). Messages travel as the buffer of an admin-queue
//! descriptor (see [`super::adminq`]).
//!
//! # Message lengths
//!
//! The list messages (`CONFIG_VSI_QUEUES`, `CONFIG_IRQ_MAP`,
//! `ADD_ETH_ADDR`/`DEL_ETH_ADDR`, the resources reply) are sized the way
//! Linux has always sized them: the old structure size, which counted one
//! element, plus every element (`virtchnl_struct_size`). A PF checks the
//! length exactly ([`valid_request`], as `virtchnl_vc_validate_vf_msg`), so
//! an encoder here produces exactly that length, with the surplus bytes
//! zero. Encoders write into a caller's buffer and return the length, or
//! `None` if it is too small; parsers return `None` for anything malformed.

/// `VIRTCHNL_OP_*` opcodes.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod op {
    /// Version negotiation.
    pub const VERSION: u32 = 1;
    /// The VF asks the PF to reset it (no reply: the VF watches
    /// `VFGEN_RSTAT`).
    pub const RESET_VF: u32 = 2;
    /// Capabilities and the VSI.
    pub const GET_VF_RESOURCES: u32 = 3;
    /// TX queue configuration (obsolete; part of `CONFIG_VSI_QUEUES`).
    pub const CONFIG_TX_QUEUE: u32 = 4;
    /// RX queue configuration (obsolete; part of `CONFIG_VSI_QUEUES`).
    pub const CONFIG_RX_QUEUE: u32 = 5;
    /// TX and RX queue contexts.
    pub const CONFIG_VSI_QUEUES: u32 = 6;
    /// Interrupt vectors to queues.
    pub const CONFIG_IRQ_MAP: u32 = 7;
    /// Enable queues.
    pub const ENABLE_QUEUES: u32 = 8;
    /// Disable queues.
    pub const DISABLE_QUEUES: u32 = 9;
    /// Add MAC filters.
    pub const ADD_ETH_ADDR: u32 = 10;
    /// Remove MAC filters.
    pub const DEL_ETH_ADDR: u32 = 11;
    /// Add VLAN filters.
    pub const ADD_VLAN: u32 = 12;
    /// Remove VLAN filters.
    pub const DEL_VLAN: u32 = 13;
    /// Unicast/multicast promiscuous mode.
    pub const CONFIG_PROMISCUOUS_MODE: u32 = 14;
    /// VSI statistics.
    pub const GET_STATS: u32 = 15;
    /// PF -> VF events.
    pub const EVENT: u32 = 17;
}

/// `VIRTCHNL_STATUS_*`: the PF's answer, in the reply's `cookie_low`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod status {
    /// Success.
    pub const SUCCESS: i32 = 0;
    /// Bad parameter.
    pub const ERR_PARAM: i32 = -5;
    /// No memory.
    pub const ERR_NO_MEMORY: i32 = -18;
    /// Bad opcode or message length.
    pub const ERR_OPCODE_MISMATCH: i32 = -38;
    /// Command failed.
    pub const ERR_CQP_COMPL_ERROR: i32 = -39;
    /// Invalid VF id.
    pub const ERR_INVALID_VF_ID: i32 = -40;
    /// Admin queue error.
    pub const ERR_ADMIN_QUEUE_ERROR: i32 = -53;
    /// Not supported by this PF.
    pub const ERR_NOT_SUPPORTED: i32 = -64;
}

/// The name of virtchnl status `s` (`VIRTCHNL_STATUS_*`), for logs.
pub fn status_name(s: i32) -> &'static str {
    match s {
        status::SUCCESS => "VIRTCHNL_STATUS_SUCCESS",
        status::ERR_PARAM => "VIRTCHNL_STATUS_ERR_PARAM",
        status::ERR_NO_MEMORY => "VIRTCHNL_STATUS_ERR_NO_MEMORY",
        status::ERR_OPCODE_MISMATCH => "VIRTCHNL_STATUS_ERR_OPCODE_MISMATCH",
        status::ERR_CQP_COMPL_ERROR => "VIRTCHNL_STATUS_ERR_CQP_COMPL_ERROR",
        status::ERR_INVALID_VF_ID => "VIRTCHNL_STATUS_ERR_INVALID_VF_ID",
        status::ERR_ADMIN_QUEUE_ERROR => "VIRTCHNL_STATUS_ERR_ADMIN_QUEUE_ERROR",
        status::ERR_NOT_SUPPORTED => "VIRTCHNL_STATUS_ERR_NOT_SUPPORTED",
        _ => "an unknown VIRTCHNL_STATUS",
    }
}

/// The name of virtchnl opcode `o` (`VIRTCHNL_OP_*`), for logs.
pub fn op_name(o: u32) -> &'static str {
    match o {
        op::VERSION => "VERSION",
        op::RESET_VF => "RESET_VF",
        op::GET_VF_RESOURCES => "GET_VF_RESOURCES",
        op::CONFIG_TX_QUEUE => "CONFIG_TX_QUEUE",
        op::CONFIG_RX_QUEUE => "CONFIG_RX_QUEUE",
        op::CONFIG_VSI_QUEUES => "CONFIG_VSI_QUEUES",
        op::CONFIG_IRQ_MAP => "CONFIG_IRQ_MAP",
        op::ENABLE_QUEUES => "ENABLE_QUEUES",
        op::DISABLE_QUEUES => "DISABLE_QUEUES",
        op::ADD_ETH_ADDR => "ADD_ETH_ADDR",
        op::DEL_ETH_ADDR => "DEL_ETH_ADDR",
        op::ADD_VLAN => "ADD_VLAN",
        op::DEL_VLAN => "DEL_VLAN",
        op::CONFIG_PROMISCUOUS_MODE => "CONFIG_PROMISCUOUS_MODE",
        op::GET_STATS => "GET_STATS",
        op::EVENT => "EVENT",
        _ => "an unknown opcode",
    }
}

/// `VIRTCHNL_VF_OFFLOAD_*` capability bits (GET_VF_RESOURCES).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod cap {
    /// Base L2 function (always granted).
    pub const L2: u32 = 1 << 0;
    /// RSS configured through admin-queue commands.
    pub const RSS_AQ: u32 = 1 << 3;
    /// RSS configured through the VF's own registers.
    pub const RSS_REG: u32 = 1 << 4;
    /// Writeback on ITR.
    pub const WB_ON_ITR: u32 = 1 << 5;
    /// The VF may ask for more queues.
    pub const REQ_QUEUES: u32 = 1 << 6;
    /// Link speeds in Mb/s rather than the legacy bit encoding.
    pub const ADV_LINK_SPEED: u32 = 1 << 7;
    /// VLAN offloads (version 2).
    pub const VLAN_V2: u32 = 1 << 15;
    /// VLAN filtering and stripping.
    pub const VLAN: u32 = 1 << 16;
    /// The VF polls its queues (no interrupts).
    pub const RX_POLLING: u32 = 1 << 17;
    /// RSS configured by the PF.
    pub const RSS_PF: u32 = 1 << 19;
}

/// `VIRTCHNL_EVENT_*` codes of a PF event.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod event {
    /// Link up/down and speed.
    pub const LINK_CHANGE: i32 = 1;
    /// The PF is about to reset the VF.
    pub const RESET_IMPENDING: i32 = 2;
    /// The PF's driver is going away.
    pub const PF_DRIVER_CLOSE: i32 = 3;
    /// `PF_EVENT_SEVERITY_INFO`.
    pub const SEVERITY_INFO: i32 = 0;
    /// `PF_EVENT_SEVERITY_CERTAIN_DOOM`: sent with a reset.
    pub const SEVERITY_CERTAIN_DOOM: i32 = 255;
}

/// The protocol version both sides speak (`VIRTCHNL_VERSION_MAJOR/MINOR`).
pub const VERSION: VersionInfo = VersionInfo { major: 1, minor: 1 };
/// `VIRTCHNL_VSI_SRIOV`: the VSI type of a VF.
pub const VSI_SRIOV: i32 = 6;
/// `FLAG_VF_UNICAST_PROMISC`.
pub const FLAG_UNICAST_PROMISC: u16 = 1 << 0;
/// `FLAG_VF_MULTICAST_PROMISC`.
pub const FLAG_MULTICAST_PROMISC: u16 = 1 << 1;
/// `VIRTCHNL_RXDID_1_32B_BASE`: the legacy 32-byte RX descriptor.
pub const RXDID_LEGACY_32B: u8 = 1;
/// `VIRTCHNL_ETHER_ADDR_PRIMARY`: the VF's own (primary) MAC address.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const ETHER_ADDR_PRIMARY: u8 = 1;
/// Most queue pairs a VSI may configure in one message
/// (`VIRTCHNL_OP_CONFIG_VSI_QUEUES_MAX`).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const MAX_QUEUE_PAIRS: usize = 256;
/// Largest receive buffer a PF accepts (`databuffer_size`, 16 KiB - 128).
pub const MAX_RX_BUFFER: u32 = 16 * 1024 - 128;
/// Receive buffers are programmed in units of this many bytes.
pub const RX_BUFFER_UNIT: u32 = 128;
/// Smallest and (exclusive) largest `max_pkt_size` a PF accepts.
pub const MIN_PKT_SIZE: u32 = 64;
/// See [`MIN_PKT_SIZE`].
pub const MAX_PKT_SIZE: u32 = 16 * 1024;

// Lengths of the fixed parts (bytes).
/// `virtchnl_version_info`.
pub const VERSION_INFO_LEN: usize = 8;
/// Fixed part of `virtchnl_vf_resource`.
const VF_RESOURCE_HDR: usize = 20;
/// `virtchnl_vf_resource_LEGACY_SIZEOF`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const VF_RESOURCE_LEGACY: usize = 36;
/// `virtchnl_vsi_resource`.
pub const VSI_RESOURCE_LEN: usize = 16;
/// Fixed part of `virtchnl_vsi_queue_config_info`.
const VSI_QUEUE_CONFIG_HDR: usize = 8;
/// `virtchnl_vsi_queue_config_info_LEGACY_SIZEOF`.
pub const VSI_QUEUE_CONFIG_LEGACY: usize = 72;
/// `virtchnl_queue_pair_info` (TX 24 + RX 40).
pub const QUEUE_PAIR_LEN: usize = 64;
/// `virtchnl_txq_info`.
const TXQ_LEN: usize = 24;
/// Fixed part of `virtchnl_irq_map_info`.
const IRQ_MAP_HDR: usize = 2;
/// `virtchnl_irq_map_info_LEGACY_SIZEOF`.
pub const IRQ_MAP_LEGACY: usize = 14;
/// `virtchnl_vector_map`.
pub const VECTOR_MAP_LEN: usize = 12;
/// `virtchnl_queue_select`.
pub const QUEUE_SELECT_LEN: usize = 12;
/// Fixed part of `virtchnl_ether_addr_list`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
const ETHER_ADDR_LIST_HDR: usize = 4;
/// `virtchnl_ether_addr_list_LEGACY_SIZEOF`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const ETHER_ADDR_LIST_LEGACY: usize = 12;
/// `virtchnl_ether_addr`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub const ETHER_ADDR_LEN: usize = 8;
/// `virtchnl_promisc_info`.
pub const PROMISC_INFO_LEN: usize = 4;
/// `virtchnl_eth_stats`.
pub const ETH_STATS_LEN: usize = 96;
/// `virtchnl_pf_event`.
pub const PF_EVENT_LEN: usize = 16;

fn get<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    get::<2>(b, at).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    get::<4>(b, at).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    get::<8>(b, at).map(u64::from_le_bytes)
}

/// Writes little-endian fields into a buffer, failing (once, at the end)
/// if any falls outside it.
struct Writer<'a> {
    buf: &'a mut [u8],
    ok: bool,
}

impl<'a> Writer<'a> {
    /// Zeroes `buf[..len]` (surplus and padding bytes are zero) and starts
    /// writing; `len` must fit.
    fn new(buf: &'a mut [u8], len: usize) -> Self {
        let ok = match buf.get_mut(..len) {
            Some(b) => {
                b.fill(0);
                true
            }
            None => false,
        };
        Self { buf, ok }
    }

    fn bytes(&mut self, at: usize, v: &[u8]) -> &mut Self {
        match at
            .checked_add(v.len())
            .and_then(|end| self.buf.get_mut(at..end))
        {
            Some(d) => d.copy_from_slice(v),
            None => self.ok = false,
        }
        self
    }

    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.bytes(at, &v.to_le_bytes())
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.bytes(at, &v.to_le_bytes())
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.bytes(at, &v.to_le_bytes())
    }

    fn done(&self, len: usize) -> Option<usize> {
        self.ok.then_some(len)
    }
}

/// `LEGACY + elem * n`, the length of a list message of `n` elements.
fn list_len(legacy: usize, elem: usize, n: usize) -> Option<usize> {
    legacy.checked_add(elem.checked_mul(n)?)
}

/// `struct virtchnl_version_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionInfo {
    /// Major version (1).
    pub major: u32,
    /// Minor version (1: capabilities in GET_VF_RESOURCES).
    pub minor: u32,
}

impl VersionInfo {
    /// Encodes into `buf`; the message length.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        Writer::new(buf, VERSION_INFO_LEN)
            .u32(0, self.major)
            .u32(4, self.minor)
            .done(VERSION_INFO_LEN)
    }

    /// Decodes a message of exactly [`VERSION_INFO_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != VERSION_INFO_LEN {
            return None;
        }
        Some(Self {
            major: u32_at(b, 0)?,
            minor: u32_at(b, 4)?,
        })
    }
}

/// The GET_VF_RESOURCES request of a version 1.1 VF: the capabilities it
/// asks for (`u32`); the message length.
pub fn encode_caps(caps: u32, buf: &mut [u8]) -> Option<usize> {
    Writer::new(buf, 4).u32(0, caps).done(4)
}

/// `struct virtchnl_vsi_resource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsiResource {
    /// The VSI's id (used in every later request).
    pub vsi_id: u16,
    /// Queue pairs of the VSI.
    pub num_queue_pairs: u16,
    /// `VIRTCHNL_VSI_*` ([`VSI_SRIOV`] for a VF).
    pub vsi_type: i32,
    /// Queue set handle.
    pub qset_handle: u16,
    /// The MAC address the PF assigned.
    pub default_mac: [u8; 6],
}

impl VsiResource {
    fn parse(b: &[u8], at: usize) -> Option<Self> {
        Some(Self {
            vsi_id: u16_at(b, at)?,
            num_queue_pairs: u16_at(b, at + 2)?,
            // CAST: the C enum is an `int`.
            vsi_type: u32_at(b, at + 4)? as i32,
            qset_handle: u16_at(b, at + 8)?,
            default_mac: get::<6>(b, at + 10)?,
        })
    }
}

/// The fixed part of `struct virtchnl_vf_resource` (GET_VF_RESOURCES'
/// reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfResource {
    /// VSIs that follow.
    pub num_vsis: u16,
    /// Queue pairs of the VF.
    pub num_queue_pairs: u16,
    /// MSI-X vectors.
    pub max_vectors: u16,
    /// Largest MTU (and `max_pkt_size`) the PF accepts.
    pub max_mtu: u16,
    /// Granted capabilities (`cap::*`).
    pub vf_cap_flags: u32,
    /// RSS key size.
    pub rss_key_size: u32,
    /// RSS lookup table size.
    pub rss_lut_size: u32,
}

/// A decoded GET_VF_RESOURCES reply: the resources and the VSI list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VfResourceMsg<'a> {
    /// The fixed part.
    pub res: VfResource,
    bytes: &'a [u8],
}

impl<'a> VfResourceMsg<'a> {
    /// Decodes a reply: at least the fixed part and `num_vsis` (>= 1)
    /// VSIs; a PF adds the legacy surplus, which is ignored.
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let res = VfResource {
            num_vsis: u16_at(b, 0)?,
            num_queue_pairs: u16_at(b, 2)?,
            max_vectors: u16_at(b, 4)?,
            max_mtu: u16_at(b, 6)?,
            vf_cap_flags: u32_at(b, 8)?,
            rss_key_size: u32_at(b, 12)?,
            rss_lut_size: u32_at(b, 16)?,
        };
        let need = list_len(VF_RESOURCE_HDR, VSI_RESOURCE_LEN, usize::from(res.num_vsis))?;
        if res.num_vsis == 0 || b.len() < need {
            return None;
        }
        Some(Self { res, bytes: b })
    }

    /// VSI `i` of the list.
    pub fn vsi(&self, i: u16) -> Option<VsiResource> {
        if i >= self.res.num_vsis {
            return None;
        }
        VsiResource::parse(
            self.bytes,
            VF_RESOURCE_HDR + VSI_RESOURCE_LEN * usize::from(i),
        )
    }

    /// The first VSI of type SR-IOV (the one a VF drives).
    pub fn sriov_vsi(&self) -> Option<VsiResource> {
        (0..self.res.num_vsis)
            .filter_map(|i| self.vsi(i))
            .find(|v| v.vsi_type == VSI_SRIOV)
    }

    /// Encodes a reply with `vsis` at the length Linux's PF sends
    /// (legacy size plus every VSI); the message length.
    #[cfg(not(hpcap_kernel))]
    pub fn encode(res: &VfResource, vsis: &[VsiResource], buf: &mut [u8]) -> Option<usize> {
        let len = list_len(VF_RESOURCE_LEGACY, VSI_RESOURCE_LEN, vsis.len())?;
        let n = u16::try_from(vsis.len()).ok()?;
        let mut w = Writer::new(buf, len);
        w.u16(0, n)
            .u16(2, res.num_queue_pairs)
            .u16(4, res.max_vectors)
            .u16(6, res.max_mtu)
            .u32(8, res.vf_cap_flags)
            .u32(12, res.rss_key_size)
            .u32(16, res.rss_lut_size);
        for (i, v) in vsis.iter().enumerate() {
            let at = VF_RESOURCE_HDR + VSI_RESOURCE_LEN * i;
            // CAST: the C enum is an `int`.
            w.u16(at, v.vsi_id)
                .u16(at + 2, v.num_queue_pairs)
                .u32(at + 4, v.vsi_type as u32)
                .u16(at + 8, v.qset_handle)
                .bytes(at + 10, &v.default_mac);
        }
        w.done(len)
    }
}

/// `struct virtchnl_txq_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxqInfo {
    /// VSI id.
    pub vsi_id: u16,
    /// Queue index in the VSI.
    pub queue_id: u16,
    /// Descriptors in the ring.
    pub ring_len: u16,
    /// Head write-back (deprecated; 0).
    pub headwb_enabled: u16,
    /// Ring base (bus address).
    pub dma_ring_addr: u64,
    /// Head write-back address (deprecated; 0).
    pub dma_headwb_addr: u64,
}

/// `struct virtchnl_rxq_info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RxqInfo {
    /// VSI id.
    pub vsi_id: u16,
    /// Queue index in the VSI.
    pub queue_id: u16,
    /// Descriptors in the ring (a multiple of 32).
    pub ring_len: u32,
    /// Header buffer size (header split; 0).
    pub hdr_size: u16,
    /// Header split (0).
    pub splithdr_enabled: u16,
    /// Receive buffer bytes (a multiple of 128, at most 16 KiB - 128).
    pub databuffer_size: u32,
    /// Largest frame.
    pub max_pkt_size: u32,
    /// Keep the FCS (1) instead of stripping it (0).
    pub crc_disable: u8,
    /// Descriptor format ([`RXDID_LEGACY_32B`]).
    pub rxdid: u8,
    /// `VIRTCHNL_PTP_RX_TSTAMP` and the like.
    pub flags: u8,
    /// Ring base (bus address).
    pub dma_ring_addr: u64,
    /// Header split position (deprecated; 0).
    pub rx_split_pos: u32,
}

/// `struct virtchnl_queue_pair_info`: one TX and one RX queue context.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueuePairInfo {
    /// The TX queue.
    pub txq: TxqInfo,
    /// The RX queue.
    pub rxq: RxqInfo,
}

impl QueuePairInfo {
    fn write(&self, w: &mut Writer<'_>, at: usize) {
        let t = &self.txq;
        w.u16(at, t.vsi_id)
            .u16(at + 2, t.queue_id)
            .u16(at + 4, t.ring_len)
            .u16(at + 6, t.headwb_enabled)
            .u64(at + 8, t.dma_ring_addr)
            .u64(at + 16, t.dma_headwb_addr);
        let r = &self.rxq;
        let at = at + TXQ_LEN;
        w.u16(at, r.vsi_id)
            .u16(at + 2, r.queue_id)
            .u32(at + 4, r.ring_len)
            .u16(at + 8, r.hdr_size)
            .u16(at + 10, r.splithdr_enabled)
            .u32(at + 12, r.databuffer_size)
            .u32(at + 16, r.max_pkt_size)
            .bytes(at + 20, &[r.crc_disable, r.rxdid, r.flags])
            .u64(at + 24, r.dma_ring_addr)
            .u32(at + 32, r.rx_split_pos);
    }

    #[cfg(not(hpcap_kernel))]
    fn parse(b: &[u8], at: usize) -> Option<Self> {
        let txq = TxqInfo {
            vsi_id: u16_at(b, at)?,
            queue_id: u16_at(b, at + 2)?,
            ring_len: u16_at(b, at + 4)?,
            headwb_enabled: u16_at(b, at + 6)?,
            dma_ring_addr: u64_at(b, at + 8)?,
            dma_headwb_addr: u64_at(b, at + 16)?,
        };
        let r = at + TXQ_LEN;
        let [crc_disable, rxdid, flags] = get::<3>(b, r + 20)?;
        let rxq = RxqInfo {
            vsi_id: u16_at(b, r)?,
            queue_id: u16_at(b, r + 2)?,
            ring_len: u32_at(b, r + 4)?,
            hdr_size: u16_at(b, r + 8)?,
            splithdr_enabled: u16_at(b, r + 10)?,
            databuffer_size: u32_at(b, r + 12)?,
            max_pkt_size: u32_at(b, r + 16)?,
            crc_disable,
            rxdid,
            flags,
            dma_ring_addr: u64_at(b, r + 24)?,
            rx_split_pos: u32_at(b, r + 32)?,
        };
        Some(Self { txq, rxq })
    }
}

/// `struct virtchnl_vsi_queue_config_info` (CONFIG_VSI_QUEUES).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VsiQueueConfig<'a> {
    /// VSI id.
    pub vsi_id: u16,
    /// Queue pairs that follow.
    pub num_queue_pairs: u16,
    bytes: &'a [u8],
}

impl<'a> VsiQueueConfig<'a> {
    /// Encodes a request for `pairs`; the message length
    /// ([`VSI_QUEUE_CONFIG_LEGACY`] + 64 per pair).
    pub fn encode(vsi_id: u16, pairs: &[QueuePairInfo], buf: &mut [u8]) -> Option<usize> {
        let len = list_len(VSI_QUEUE_CONFIG_LEGACY, QUEUE_PAIR_LEN, pairs.len())?;
        let mut w = Writer::new(buf, len);
        w.u16(0, vsi_id).u16(2, u16::try_from(pairs.len()).ok()?);
        for (i, p) in pairs.iter().enumerate() {
            p.write(&mut w, VSI_QUEUE_CONFIG_HDR + QUEUE_PAIR_LEN * i);
        }
        w.done(len)
    }

    /// Decodes a request of exactly the length Linux checks.
    #[cfg(not(hpcap_kernel))]
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let vsi_id = u16_at(b, 0)?;
        let n = u16_at(b, 2)?;
        let len = list_len(VSI_QUEUE_CONFIG_LEGACY, QUEUE_PAIR_LEN, usize::from(n))?;
        if n == 0 || usize::from(n) > MAX_QUEUE_PAIRS || b.len() != len {
            return None;
        }
        Some(Self {
            vsi_id,
            num_queue_pairs: n,
            bytes: b,
        })
    }

    /// Queue pair `i`.
    #[cfg(not(hpcap_kernel))]
    pub fn pair(&self, i: u16) -> Option<QueuePairInfo> {
        if i >= self.num_queue_pairs {
            return None;
        }
        QueuePairInfo::parse(
            self.bytes,
            VSI_QUEUE_CONFIG_HDR + QUEUE_PAIR_LEN * usize::from(i),
        )
    }

    /// Every queue pair, in order.
    #[cfg(not(hpcap_kernel))]
    pub fn pairs(&self) -> impl Iterator<Item = QueuePairInfo> + '_ {
        (0..self.num_queue_pairs).filter_map(|i| self.pair(i))
    }
}

/// `struct virtchnl_vector_map`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VectorMap {
    /// VSI id.
    pub vsi_id: u16,
    /// MSI-X vector.
    pub vector_id: u16,
    /// RX queues (bitmap) on this vector.
    pub rxq_map: u16,
    /// TX queues (bitmap) on this vector.
    pub txq_map: u16,
    /// RX ITR index.
    pub rxitr_idx: u16,
    /// TX ITR index.
    pub txitr_idx: u16,
}

/// `struct virtchnl_irq_map_info` (CONFIG_IRQ_MAP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IrqMapInfo<'a> {
    /// Vector maps that follow.
    pub num_vectors: u16,
    bytes: &'a [u8],
}

impl<'a> IrqMapInfo<'a> {
    /// Encodes a request; the message length ([`IRQ_MAP_LEGACY`] + 12 per
    /// vector).
    #[cfg_attr(hpcap_kernel, allow(dead_code))]
    pub fn encode(maps: &[VectorMap], buf: &mut [u8]) -> Option<usize> {
        let len = list_len(IRQ_MAP_LEGACY, VECTOR_MAP_LEN, maps.len())?;
        let mut w = Writer::new(buf, len);
        w.u16(0, u16::try_from(maps.len()).ok()?);
        for (i, m) in maps.iter().enumerate() {
            let at = IRQ_MAP_HDR + VECTOR_MAP_LEN * i;
            w.u16(at, m.vsi_id)
                .u16(at + 2, m.vector_id)
                .u16(at + 4, m.rxq_map)
                .u16(at + 6, m.txq_map)
                .u16(at + 8, m.rxitr_idx)
                .u16(at + 10, m.txitr_idx);
        }
        w.done(len)
    }

    /// Decodes a request of exactly the length Linux checks.
    #[cfg(not(hpcap_kernel))]
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let n = u16_at(b, 0)?;
        let len = list_len(IRQ_MAP_LEGACY, VECTOR_MAP_LEN, usize::from(n))?;
        if n == 0 || b.len() != len {
            return None;
        }
        Some(Self {
            num_vectors: n,
            bytes: b,
        })
    }

    /// Every vector map, in order.
    #[cfg(not(hpcap_kernel))]
    pub fn maps(&self) -> impl Iterator<Item = VectorMap> + '_ {
        (0..usize::from(self.num_vectors)).filter_map(|i| {
            let at = IRQ_MAP_HDR + VECTOR_MAP_LEN * i;
            Some(VectorMap {
                vsi_id: u16_at(self.bytes, at)?,
                vector_id: u16_at(self.bytes, at + 2)?,
                rxq_map: u16_at(self.bytes, at + 4)?,
                txq_map: u16_at(self.bytes, at + 6)?,
                rxitr_idx: u16_at(self.bytes, at + 8)?,
                txitr_idx: u16_at(self.bytes, at + 10)?,
            })
        })
    }
}

/// `struct virtchnl_queue_select` (ENABLE_QUEUES, DISABLE_QUEUES,
/// GET_STATS).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueSelect {
    /// VSI id.
    pub vsi_id: u16,
    /// RX queues (bitmap).
    pub rx_queues: u32,
    /// TX queues (bitmap).
    pub tx_queues: u32,
}

impl QueueSelect {
    /// Encodes; the message length.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        Writer::new(buf, QUEUE_SELECT_LEN)
            .u16(0, self.vsi_id)
            .u32(4, self.rx_queues)
            .u32(8, self.tx_queues)
            .done(QUEUE_SELECT_LEN)
    }

    /// Decodes a message of exactly [`QUEUE_SELECT_LEN`] bytes.
    #[cfg(not(hpcap_kernel))]
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != QUEUE_SELECT_LEN {
            return None;
        }
        Some(Self {
            vsi_id: u16_at(b, 0)?,
            rx_queues: u32_at(b, 4)?,
            tx_queues: u32_at(b, 8)?,
        })
    }
}

/// `struct virtchnl_ether_addr`.
#[cfg_attr(hpcap_kernel, allow(dead_code))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EtherAddr {
    /// The address.
    pub addr: [u8; 6],
    /// `VIRTCHNL_ETHER_ADDR_*` ([`ETHER_ADDR_PRIMARY`] for the VF's own).
    pub kind: u8,
}

/// `struct virtchnl_ether_addr_list` (ADD_ETH_ADDR, DEL_ETH_ADDR).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EtherAddrList<'a> {
    /// VSI id.
    pub vsi_id: u16,
    /// Addresses that follow.
    pub num_elements: u16,
    bytes: &'a [u8],
}

#[cfg_attr(hpcap_kernel, allow(dead_code))]
impl<'a> EtherAddrList<'a> {
    /// Encodes a request; the message length
    /// ([`ETHER_ADDR_LIST_LEGACY`] + 8 per address).
    pub fn encode(vsi_id: u16, addrs: &[EtherAddr], buf: &mut [u8]) -> Option<usize> {
        let len = list_len(ETHER_ADDR_LIST_LEGACY, ETHER_ADDR_LEN, addrs.len())?;
        let mut w = Writer::new(buf, len);
        w.u16(0, vsi_id).u16(2, u16::try_from(addrs.len()).ok()?);
        for (i, a) in addrs.iter().enumerate() {
            let at = ETHER_ADDR_LIST_HDR + ETHER_ADDR_LEN * i;
            w.bytes(at, &a.addr).bytes(at + 6, &[a.kind]);
        }
        w.done(len)
    }

    /// Decodes a request of exactly the length Linux checks.
    #[cfg(not(hpcap_kernel))]
    pub fn parse(b: &'a [u8]) -> Option<Self> {
        let vsi_id = u16_at(b, 0)?;
        let n = u16_at(b, 2)?;
        let len = list_len(ETHER_ADDR_LIST_LEGACY, ETHER_ADDR_LEN, usize::from(n))?;
        if n == 0 || b.len() != len {
            return None;
        }
        Some(Self {
            vsi_id,
            num_elements: n,
            bytes: b,
        })
    }

    /// Every address, in order.
    #[cfg(not(hpcap_kernel))]
    pub fn addrs(&self) -> impl Iterator<Item = EtherAddr> + '_ {
        (0..usize::from(self.num_elements)).filter_map(|i| {
            let at = ETHER_ADDR_LIST_HDR + ETHER_ADDR_LEN * i;
            Some(EtherAddr {
                addr: get::<6>(self.bytes, at)?,
                kind: *self.bytes.get(at + 6)?,
            })
        })
    }
}

/// `struct virtchnl_promisc_info` (CONFIG_PROMISCUOUS_MODE).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromiscInfo {
    /// VSI id.
    pub vsi_id: u16,
    /// [`FLAG_UNICAST_PROMISC`] | [`FLAG_MULTICAST_PROMISC`].
    pub flags: u16,
}

impl PromiscInfo {
    /// Encodes; the message length.
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        Writer::new(buf, PROMISC_INFO_LEN)
            .u16(0, self.vsi_id)
            .u16(2, self.flags)
            .done(PROMISC_INFO_LEN)
    }

    /// Decodes a message of exactly [`PROMISC_INFO_LEN`] bytes.
    #[cfg(not(hpcap_kernel))]
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != PROMISC_INFO_LEN {
            return None;
        }
        Some(Self {
            vsi_id: u16_at(b, 0)?,
            flags: u16_at(b, 2)?,
        })
    }
}

/// `struct virtchnl_eth_stats`: the PF's counters of the VF's VSI
/// (GET_STATS' reply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EthStats {
    /// Bytes received (`GLV_GORC`).
    pub rx_bytes: u64,
    /// Unicast frames received (`GLV_UPRC`).
    pub rx_unicast: u64,
    /// Multicast frames received (`GLV_MPRC`).
    pub rx_multicast: u64,
    /// Broadcast frames received (`GLV_BPRC`).
    pub rx_broadcast: u64,
    /// Frames for the VSI dropped for lack of a descriptor (`GLV_RDPC`).
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
    /// The fields in wire order.
    #[cfg(not(hpcap_kernel))]
    fn fields(&self) -> [u64; 12] {
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
    }

    /// Encodes; the message length.
    #[cfg(not(hpcap_kernel))]
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        let mut w = Writer::new(buf, ETH_STATS_LEN);
        for (i, v) in self.fields().iter().enumerate() {
            w.u64(8 * i, *v);
        }
        w.done(ETH_STATS_LEN)
    }

    /// Decodes a reply of exactly [`ETH_STATS_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != ETH_STATS_LEN {
            return None;
        }
        let f = |i: usize| u64_at(b, 8 * i);
        Some(Self {
            rx_bytes: f(0)?,
            rx_unicast: f(1)?,
            rx_multicast: f(2)?,
            rx_broadcast: f(3)?,
            rx_discards: f(4)?,
            rx_unknown_protocol: f(5)?,
            tx_bytes: f(6)?,
            tx_unicast: f(7)?,
            tx_multicast: f(8)?,
            tx_broadcast: f(9)?,
            tx_discards: f(10)?,
            tx_errors: f(11)?,
        })
    }

    /// Frames the VSI received (unicast + multicast + broadcast).
    pub fn rx_frames(&self) -> u64 {
        self.rx_unicast
            .wrapping_add(self.rx_multicast)
            .wrapping_add(self.rx_broadcast)
    }
}

/// `struct virtchnl_pf_event` (opcode [`op::EVENT`]), with the legacy
/// link-speed encoding (the VF did not ask for [`cap::ADV_LINK_SPEED`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PfEvent {
    /// `event::*`.
    pub event: i32,
    /// Link events: `VIRTCHNL_LINK_SPEED_*` (one bit; see
    /// [`link_speed_mbps`]).
    pub link_speed: u32,
    /// Link events: link up.
    pub link_up: bool,
    /// `event::SEVERITY_*`.
    pub severity: i32,
}

impl PfEvent {
    /// Decodes an event of exactly [`PF_EVENT_LEN`] bytes.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != PF_EVENT_LEN {
            return None;
        }
        Some(Self {
            // CAST: C `int`s.
            event: u32_at(b, 0)? as i32,
            link_speed: u32_at(b, 4)?,
            link_up: *b.get(8)? != 0,
            severity: u32_at(b, 12)? as i32,
        })
    }

    /// Encodes; the message length.
    #[cfg(not(hpcap_kernel))]
    pub fn encode(&self, buf: &mut [u8]) -> Option<usize> {
        // CAST: C `int`s.
        Writer::new(buf, PF_EVENT_LEN)
            .u32(0, self.event as u32)
            .u32(4, self.link_speed)
            .bytes(8, &[u8::from(self.link_up)])
            .u32(12, self.severity as u32)
            .done(PF_EVENT_LEN)
    }

    /// A link event (legacy speed encoding).
    #[cfg(not(hpcap_kernel))]
    pub fn link(up: bool, link_speed: u32) -> Self {
        Self {
            event: event::LINK_CHANGE,
            link_speed,
            link_up: up,
            severity: event::SEVERITY_INFO,
        }
    }

    /// The announcement of a VF reset.
    #[cfg(not(hpcap_kernel))]
    pub fn reset_impending() -> Self {
        Self {
            event: event::RESET_IMPENDING,
            severity: event::SEVERITY_CERTAIN_DOOM,
            ..Self::default()
        }
    }
}

/// `VIRTCHNL_LINK_SPEED_*` (legacy encoding, one bit per speed).
#[cfg_attr(hpcap_kernel, allow(dead_code))]
pub mod speed {
    /// 2.5 Gb/s.
    pub const S2_5GB: u32 = 1 << 0;
    /// 100 Mb/s.
    pub const S100MB: u32 = 1 << 1;
    /// 1 Gb/s.
    pub const S1GB: u32 = 1 << 2;
    /// 10 Gb/s.
    pub const S10GB: u32 = 1 << 3;
    /// 40 Gb/s.
    pub const S40GB: u32 = 1 << 4;
    /// 20 Gb/s.
    pub const S20GB: u32 = 1 << 5;
    /// 25 Gb/s.
    pub const S25GB: u32 = 1 << 6;
    /// 5 Gb/s.
    pub const S5GB: u32 = 1 << 7;
}

/// Mb/s of a legacy link-speed code; 0 if unknown.
pub fn link_speed_mbps(code: u32) -> u32 {
    match code {
        speed::S100MB => 100,
        speed::S1GB => 1000,
        speed::S2_5GB => 2500,
        speed::S5GB => 5000,
        speed::S10GB => 10_000,
        speed::S20GB => 20_000,
        speed::S25GB => 25_000,
        speed::S40GB => 40_000,
        _ => 0,
    }
}

/// Whether a request from a version 1.1 VF has the length Linux's PF
/// requires (`virtchnl_vc_validate_vf_msg`); `None` for an opcode this
/// table does not know (a PF answers NOT_SUPPORTED).
#[cfg(not(hpcap_kernel))]
pub fn valid_request(opcode: u32, msg: &[u8]) -> Option<bool> {
    let n16 = |at| u16_at(msg, at).map(usize::from);
    let list = |legacy, elem, count: Option<usize>, max: usize| match count {
        Some(n) if n > 0 && n <= max => list_len(legacy, elem, n) == Some(msg.len()),
        _ => false,
    };
    Some(match opcode {
        op::VERSION => msg.len() == VERSION_INFO_LEN,
        op::RESET_VF => msg.is_empty(),
        // A 1.1 VF sends its capabilities.
        op::GET_VF_RESOURCES => msg.len() == 4,
        op::CONFIG_VSI_QUEUES => list(
            VSI_QUEUE_CONFIG_LEGACY,
            QUEUE_PAIR_LEN,
            n16(2),
            MAX_QUEUE_PAIRS,
        ),
        op::CONFIG_IRQ_MAP => list(IRQ_MAP_LEGACY, VECTOR_MAP_LEN, n16(0), usize::MAX),
        op::ENABLE_QUEUES | op::DISABLE_QUEUES | op::GET_STATS => msg.len() == QUEUE_SELECT_LEN,
        op::ADD_ETH_ADDR | op::DEL_ETH_ADDR => {
            list(ETHER_ADDR_LIST_LEGACY, ETHER_ADDR_LEN, n16(2), usize::MAX)
        }
        op::CONFIG_PROMISCUOUS_MODE => msg.len() == PROMISC_INFO_LEN,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_and_opcodes_have_names() {
        assert_eq!(status_name(status::ERR_PARAM), "VIRTCHNL_STATUS_ERR_PARAM");
        assert_eq!(
            status_name(status::ERR_NOT_SUPPORTED),
            "VIRTCHNL_STATUS_ERR_NOT_SUPPORTED"
        );
        assert_eq!(status_name(-1234), "an unknown VIRTCHNL_STATUS");
        assert_eq!(
            op_name(op::CONFIG_PROMISCUOUS_MODE),
            "CONFIG_PROMISCUOUS_MODE"
        );
        assert_eq!(op_name(0xdead), "an unknown opcode");
        // Every status constant has its own name.
        let all = [
            status::SUCCESS,
            status::ERR_PARAM,
            status::ERR_NO_MEMORY,
            status::ERR_OPCODE_MISMATCH,
            status::ERR_CQP_COMPL_ERROR,
            status::ERR_INVALID_VF_ID,
            status::ERR_ADMIN_QUEUE_ERROR,
            status::ERR_NOT_SUPPORTED,
        ];
        for (k, a) in all.iter().enumerate() {
            assert!(status_name(*a).starts_with("VIRTCHNL_STATUS_"));
            for b in &all[k + 1..] {
                assert_ne!(status_name(*a), status_name(*b));
            }
        }
    }

    extern crate std;

    use super::*;
    use proptest::prelude::*;

    fn enc(f: impl FnOnce(&mut [u8]) -> Option<usize>) -> std::vec::Vec<u8> {
        let mut b = [0xAAu8; 4096];
        let n = f(&mut b).expect("fits");
        b[..n].to_vec()
    }

    #[test]
    fn lengths_are_linuxs() {
        assert_eq!(enc(|b| VERSION.encode(b)), [1, 0, 0, 0, 1, 0, 0, 0]);
        let vsi = VsiResource {
            vsi_id: 3,
            num_queue_pairs: 4,
            vsi_type: VSI_SRIOV,
            qset_handle: 0,
            default_mac: [2, 0, 0, 0, 0, 0x10],
        };
        let res = VfResource {
            num_vsis: 1,
            num_queue_pairs: 4,
            max_vectors: 5,
            max_mtu: 9706,
            vf_cap_flags: cap::L2,
            rss_key_size: 52,
            rss_lut_size: 64,
        };
        let r = enc(|b| VfResourceMsg::encode(&res, &[vsi], b));
        assert_eq!(r.len(), 36 + 16, "what Linux's PF sends for one VSI");
        let m = VfResourceMsg::parse(&r).unwrap();
        assert_eq!((m.res, m.sriov_vsi()), (res, Some(vsi)));
        assert_eq!(m.vsi(1), None);
        let q = QueuePairInfo::default();
        assert_eq!(enc(|b| VsiQueueConfig::encode(3, &[q], b)).len(), 72 + 64);
        assert_eq!(
            enc(|b| VsiQueueConfig::encode(3, &[q; 4], b)).len(),
            72 + 4 * 64
        );
        assert_eq!(
            enc(|b| IrqMapInfo::encode(&[VectorMap::default(); 3], b)).len(),
            50
        );
        let a = EtherAddr {
            addr: [2, 0, 0, 0, 0, 0x10],
            kind: ETHER_ADDR_PRIMARY,
        };
        assert_eq!(enc(|b| EtherAddrList::encode(3, &[a], b)).len(), 12 + 8);
        assert_eq!(enc(|b| QueueSelect::default().encode(b)).len(), 12);
        assert_eq!(enc(|b| PromiscInfo::default().encode(b)).len(), 4);
        assert_eq!(enc(|b| EthStats::default().encode(b)).len(), 96);
        assert_eq!(enc(|b| PfEvent::reset_impending().encode(b)).len(), 16);
        // Too small a buffer: None, not a short message.
        assert_eq!(VsiQueueConfig::encode(3, &[q], &mut [0u8; 135]), None);
        assert_eq!(VERSION.encode(&mut [0u8; 7]), None);
    }

    #[test]
    fn queue_config_fields_sit_where_linux_puts_them() {
        let p = QueuePairInfo {
            txq: TxqInfo {
                vsi_id: 3,
                queue_id: 0,
                ring_len: 64,
                dma_ring_addr: 0xAB_CD00,
                ..TxqInfo::default()
            },
            rxq: RxqInfo {
                vsi_id: 3,
                queue_id: 0,
                ring_len: 512,
                databuffer_size: 2048,
                max_pkt_size: 1522,
                rxdid: RXDID_LEGACY_32B,
                dma_ring_addr: 0x1234_5000,
                ..RxqInfo::default()
            },
        };
        let b = enc(|b| VsiQueueConfig::encode(3, &[p], b));
        let r = 8 + 24;
        assert_eq!(u32_at(&b, r + 4), Some(512));
        assert_eq!(u32_at(&b, r + 12), Some(2048));
        assert_eq!(u32_at(&b, r + 16), Some(1522));
        assert_eq!(b[r + 21], RXDID_LEGACY_32B);
        assert_eq!(u64_at(&b, r + 24), Some(0x1234_5000));
        assert_eq!(u64_at(&b, 8 + 8), Some(0xAB_CD00), "TX ring address");
        assert!(
            b[72..].iter().all(|&x| x == 0),
            "the legacy surplus is zero"
        );
        let q = VsiQueueConfig::parse(&b).unwrap();
        assert_eq!((q.vsi_id, q.pair(0)), (3, Some(p)));
        assert!(VsiQueueConfig::parse(&b[..8 + 64]).is_none(), "72 + 64 n");
    }

    #[test]
    fn requests_validate_as_linux_checks_them() {
        let q = QueuePairInfo::default();
        let cfg = enc(|b| VsiQueueConfig::encode(3, &[q, q], b));
        assert_eq!(valid_request(op::CONFIG_VSI_QUEUES, &cfg), Some(true));
        assert_eq!(
            valid_request(op::CONFIG_VSI_QUEUES, &cfg[..cfg.len() - 1]),
            Some(false)
        );
        let mut zero = cfg.clone();
        zero[2] = 0;
        assert_eq!(valid_request(op::CONFIG_VSI_QUEUES, &zero), Some(false));
        assert_eq!(valid_request(op::VERSION, &[0; 8]), Some(true));
        assert_eq!(valid_request(op::GET_VF_RESOURCES, &[0; 4]), Some(true));
        assert_eq!(
            valid_request(op::GET_VF_RESOURCES, &[]),
            Some(false),
            "1.1 sends caps"
        );
        assert_eq!(valid_request(op::RESET_VF, &[]), Some(true));
        assert_eq!(
            valid_request(op::CONFIG_IRQ_MAP, &[0; 50][..]),
            Some(false),
            "0 vectors"
        );
        let mut m = [0u8; 50];
        m[0] = 3;
        assert_eq!(valid_request(op::CONFIG_IRQ_MAP, &m), Some(true));
        assert_eq!(valid_request(op::CONFIG_IRQ_MAP, &m[..38]), Some(false));
        assert_eq!(
            valid_request(
                op::ADD_ETH_ADDR,
                &[3, 0, 1, 0, 2, 0, 0, 0, 0, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
            ),
            Some(true)
        );
        assert_eq!(
            valid_request(op::CONFIG_PROMISCUOUS_MODE, &[3, 0, 3, 0]),
            Some(true)
        );
        assert_eq!(valid_request(op::GET_STATS, &[0; 12]), Some(true));
        assert_eq!(valid_request(99, &[]), None);
    }

    #[test]
    fn events_and_speeds() {
        let b = enc(|b| PfEvent::link(true, speed::S40GB).encode(b));
        let e = PfEvent::parse(&b).unwrap();
        assert_eq!(
            (e.event, e.link_up, link_speed_mbps(e.link_speed)),
            (event::LINK_CHANGE, true, 40_000)
        );
        let b = enc(|b| PfEvent::reset_impending().encode(b));
        assert_eq!(PfEvent::parse(&b).unwrap().event, event::RESET_IMPENDING);
        assert_eq!(PfEvent::parse(&b[..15]), None);
        assert_eq!(link_speed_mbps(0), 0);
        assert_eq!(
            link_speed_mbps(speed::S10GB | speed::S40GB),
            0,
            "one bit only"
        );
    }

    proptest! {
        /// Every parser accepts what the matching encoder wrote and reads
        /// back the same values.
        #[test]
        fn encode_parse_round_trip(
            vsi in any::<u16>(),
            n in 1usize..6,
            ring in any::<u32>(), buf in any::<u32>(), addr in any::<u64>(), flags in any::<u16>(),
            mac in any::<[u8; 6]>(),
            stats in any::<[u64; 12]>(),
        ) {
            let mut p = QueuePairInfo::default();
            p.rxq = RxqInfo { vsi_id: vsi, ring_len: ring, databuffer_size: buf, dma_ring_addr: addr, ..p.rxq };
            p.txq.dma_ring_addr = addr.rotate_left(7);
            let pairs = std::vec![p; n];
            let b = enc(|b| VsiQueueConfig::encode(vsi, &pairs, b));
            let q = VsiQueueConfig::parse(&b).unwrap();
            prop_assert_eq!(q.pairs().collect::<std::vec::Vec<_>>(), pairs);
            let maps = std::vec![VectorMap { vsi_id: vsi, rxq_map: flags, ..VectorMap::default() }; n];
            let b = enc(|b| IrqMapInfo::encode(&maps, b));
            prop_assert_eq!(IrqMapInfo::parse(&b).unwrap().maps().collect::<std::vec::Vec<_>>(), maps);
            let addrs = std::vec![EtherAddr { addr: mac, kind: 1 }; n];
            let b = enc(|b| EtherAddrList::encode(vsi, &addrs, b));
            let l = EtherAddrList::parse(&b).unwrap();
            prop_assert_eq!((l.vsi_id, l.addrs().collect::<std::vec::Vec<_>>()), (vsi, addrs));
            let s = QueueSelect { vsi_id: vsi, rx_queues: ring, tx_queues: buf };
            prop_assert_eq!(QueueSelect::parse(&enc(|b| s.encode(b))), Some(s));
            let pi = PromiscInfo { vsi_id: vsi, flags };
            prop_assert_eq!(PromiscInfo::parse(&enc(|b| pi.encode(b))), Some(pi));
            let e = EthStats {
                rx_bytes: stats[0], rx_unicast: stats[1], rx_multicast: stats[2], rx_broadcast: stats[3],
                rx_discards: stats[4], rx_unknown_protocol: stats[5], tx_bytes: stats[6], tx_unicast: stats[7],
                tx_multicast: stats[8], tx_broadcast: stats[9], tx_discards: stats[10], tx_errors: stats[11],
            };
            prop_assert_eq!(EthStats::parse(&enc(|b| e.encode(b))), Some(e));
        }

        /// No parser panics on arbitrary bytes, and what one accepts
        /// re-encodes to a message it accepts again with the same values.
        #[test]
        fn parsers_take_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..400)) {
            check_any(&b);
        }
    }

    /// The fuzz target's property (see `fuzz/fuzz_targets/virtchnl.rs`).
    fn check_any(b: &[u8]) {
        for opcode in 0..20 {
            let _ = valid_request(opcode, b);
        }
        let _ = VersionInfo::parse(b);
        if let Some(m) = VfResourceMsg::parse(b) {
            let _ = (m.sriov_vsi(), m.vsi(m.res.num_vsis));
        }
        if let Some(q) = VsiQueueConfig::parse(b) {
            let pairs: std::vec::Vec<_> = q.pairs().collect();
            assert_eq!(pairs.len(), usize::from(q.num_queue_pairs));
            let again = enc(|o| VsiQueueConfig::encode(q.vsi_id, &pairs, o));
            assert_eq!(
                VsiQueueConfig::parse(&again)
                    .unwrap()
                    .pairs()
                    .collect::<std::vec::Vec<_>>(),
                pairs
            );
        }
        if let Some(m) = IrqMapInfo::parse(b) {
            assert_eq!(m.maps().count(), usize::from(m.num_vectors));
        }
        if let Some(l) = EtherAddrList::parse(b) {
            assert_eq!(l.addrs().count(), usize::from(l.num_elements));
        }
        let _ = (
            QueueSelect::parse(b),
            PromiscInfo::parse(b),
            EthStats::parse(b),
        );
        if let Some(e) = PfEvent::parse(b) {
            let _ = link_speed_mbps(e.link_speed);
        }
    }
}
