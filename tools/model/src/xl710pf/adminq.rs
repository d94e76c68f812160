// SPDX-License-Identifier: MIT
//! The firmware's side of the PF admin queue: the commands Linux's i40e
//! issues at probe and open (`i40e_probe`, `i40e_open`), in that order.
//!
//! A command is a 32-byte descriptor (`hpcap_core::adminq::Desc`): direct
//! commands answer in the descriptor's parameters, indirect ones in the
//! driver's buffer. Opcodes the model does not know are completed with OK
//! and nothing changed (and logged once), as a firmware that accepts a
//! setting it has no use for.

use hpcap_core::adminq::{self as aq, Desc};

use super::{Event, Pf};
use crate::transport::Platform;

/// Admin-queue opcodes (`i40e_admin_queue_opc`).
pub mod opc {
    /// Firmware and API versions (direct).
    pub const GET_VERSION: u16 = 0x0001;
    /// The driver's version (indirect).
    pub const DRIVER_VERSION: u16 = 0x0002;
    /// The driver stops using the queue (direct).
    pub const QUEUE_SHUTDOWN: u16 = 0x0003;
    /// Take a resource lock, e.g. the NVM (direct).
    pub const REQUEST_RESOURCE: u16 = 0x0008;
    /// Release a resource lock (direct).
    pub const RELEASE_RESOURCE: u16 = 0x0009;
    /// Function capabilities (indirect).
    pub const LIST_FUNC_CAPS: u16 = 0x000A;
    /// Device capabilities (indirect).
    pub const LIST_DEV_CAPS: u16 = 0x000B;
    /// MAC addresses (indirect).
    pub const MAC_ADDRESS_READ: u16 = 0x0107;
    /// Leave PXE mode (direct).
    pub const CLEAR_PXE_MODE: u16 = 0x0110;
    /// Switch elements (indirect).
    pub const GET_SWITCH_CONFIG: u16 = 0x0200;
    /// Update a VSI's properties (indirect).
    pub const UPDATE_VSI: u16 = 0x0211;
    /// A VSI's properties (indirect).
    pub const GET_VSI: u16 = 0x0212;
    /// Add MAC/VLAN filters (indirect).
    pub const ADD_MACVLAN: u16 = 0x0250;
    /// Remove MAC/VLAN filters (indirect).
    pub const REMOVE_MACVLAN: u16 = 0x0251;
    /// A VSI's promiscuous modes (direct).
    pub const SET_VSI_PROMISC: u16 = 0x0254;
    /// A VSI's bandwidth configuration (indirect).
    pub const QUERY_VSI_BW: u16 = 0x0408;
    /// A VSI's ETS configuration (indirect).
    pub const QUERY_VSI_ETS_SLA: u16 = 0x040A;
    /// PHY abilities (indirect).
    pub const GET_PHY_ABILITIES: u16 = 0x0600;
    /// Link status (direct; also the link event's opcode on the ARQ).
    pub const GET_LINK_STATUS: u16 = 0x0607;
    /// Which PHY events raise an ARQ event (direct).
    pub const SET_PHY_INT_MASK: u16 = 0x0613;
    /// Stop the firmware's LLDP agent (direct).
    pub const LLDP_STOP: u16 = 0x0A05;
}

/// Capability ids (`LIBIE_AQC_CAPS_*`).
mod caps {
    pub(super) const VALID_FUNCTIONS: u16 = 0x0005;
    pub(super) const VSI: u16 = 0x0017;
    pub(super) const RSS: u16 = 0x0040;
    pub(super) const RXQS: u16 = 0x0041;
    pub(super) const TXQS: u16 = 0x0042;
    pub(super) const MSIX: u16 = 0x0043;
    pub(super) const MAX_MTU: u16 = 0x0047;
}

/// Return codes beyond `hpcap_core::adminq::rc`.
mod rc {
    /// No memory: the buffer is too small (`datalen` says how much is needed).
    pub(super) const ENOMEM: u16 = 9;
    /// Busy (a lock held by someone else).
    pub(super) const EBUSY: u16 = 12;
}

/// The switch elements the firmware reports: the PF's VSI (seid 512) under
/// the port's MAC (seid 2) and the PF (seid 16).
pub const MAIN_VSI_SEID: u16 = 512;
const MAC_SEID: u16 = 2;
const PF_SEID: u16 = 16;
/// The VSI number the firmware gives the PF's VSI.
const MAIN_VSI_NUMBER: u16 = 0;
/// `I40E_AQ_VSI_PROP_VLAN_VALID`.
const VSI_PROP_VLAN_VALID: u16 = 0x0004;
/// Promiscuous flags (`I40E_AQC_SET_VSI_*`).
mod promisc {
    pub(super) const UNICAST: u16 = 0x01;
    pub(super) const MULTICAST: u16 = 0x02;
    pub(super) const BROADCAST: u16 = 0x04;
    pub(super) const DEFAULT: u16 = 0x08;
}
/// Link status fields (`i40e_aqc_get_link_status`).
mod link {
    pub(super) const LSE_IS_ENABLED: u16 = 0x1;
    pub(super) const LSE_DISABLE: u16 = 0x2;
    pub(super) const LSE_ENABLE: u16 = 0x3;
    pub(super) const PHY_40GBASE_CR4_CU: u8 = 0x0A;
    pub(super) const SPEED_40GB: u8 = 0x10;
    pub(super) const LINK_UP: u8 = 0x01;
    pub(super) const MEDIA_AVAILABLE: u8 = 0x40;
    pub(super) const AN_COMPLETED: u8 = 0x01;
    pub(super) const QUALIFIED_MODULE: u8 = 0x80;
    pub(super) const CONFIG_CRC_ENA: u8 = 0x04;
}

/// The 16 parameter bytes of a descriptor.
fn params(d: &Desc) -> [u8; 16] {
    let b = d.to_bytes();
    let mut p = [0u8; 16];
    p.copy_from_slice(&b[16..32]);
    p
}

/// A descriptor with new parameter bytes.
fn with_params(d: Desc, p: &[u8; 16]) -> Desc {
    let mut b = d.to_bytes();
    b[16..32].copy_from_slice(p);
    Desc::from_bytes(&b)
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// What a command produced: return code, new parameters, buffer data.
struct Answer {
    rc: u16,
    params: Option<[u8; 16]>,
    data: Option<Vec<u8>>,
    /// A buffer too small: the size needed.
    need: Option<u16>,
}

impl Answer {
    fn ok() -> Self {
        Answer {
            rc: aq::rc::OK,
            params: None,
            data: None,
            need: None,
        }
    }
    fn rc(rc: u16) -> Self {
        Answer { rc, ..Self::ok() }
    }
    fn params(p: [u8; 16]) -> Self {
        Answer {
            params: Some(p),
            ..Self::ok()
        }
    }
    fn data(d: Vec<u8>) -> Self {
        Answer {
            data: Some(d),
            ..Self::ok()
        }
    }
}

impl Pf {
    /// Executes one ATQ command; returns the descriptor to write back.
    pub(crate) fn execute(&mut self, desc: Desc, p: &mut Platform) -> Desc {
        let len = usize::from(desc.datalen);
        let has_buf = desc.flags & aq::flag::BUF != 0 && len > 0;
        let mut buf = vec![0u8; if has_buf { len } else { 0 }];
        if has_buf && desc.flags & aq::flag::RD != 0 && p.mem.read(desc.buffer(), &mut buf).is_err()
        {
            self.stats.dma_errors += 1;
            return desc.complete(aq::rc::EIO);
        }
        let a = self.command(&desc, &buf, p);
        let mut wb = desc;
        if let Some(pr) = a.params {
            wb = with_params(wb, &pr);
        }
        if let Some(data) = a.data {
            if has_buf {
                let n = data.len().min(len);
                if p.mem.write(desc.buffer(), &data[..n]).is_err() {
                    self.stats.dma_errors += 1;
                }
                wb.datalen = n as u16;
            }
        }
        if let Some(n) = a.need {
            wb.datalen = n;
        }
        wb.complete(a.rc)
    }

    fn command(&mut self, desc: &Desc, buf: &[u8], p: &mut Platform) -> Answer {
        let mut pr = params(desc);
        match desc.opcode {
            opc::GET_VERSION => {
                // rom_ver, fw_build, fw_major, fw_minor, api_major, api_minor.
                pr = [0; 16];
                pr[4..8].copy_from_slice(&0x4850u32.to_le_bytes());
                pr[8..10].copy_from_slice(&self.config.fw.0.to_le_bytes());
                pr[10..12].copy_from_slice(&self.config.fw.1.to_le_bytes());
                pr[12..14].copy_from_slice(&self.config.api.0.to_le_bytes());
                pr[14..16].copy_from_slice(&self.config.api.1.to_le_bytes());
                Answer::params(pr)
            }
            opc::REQUEST_RESOURCE => {
                // res_id 1 = NVM. The model has one PF: a second request
                // while the lock is held means the driver lost track of it.
                if le16(&pr, 0) == 1 {
                    if self.nvm_locked {
                        return Answer::rc(rc::EBUSY);
                    }
                    self.nvm_locked = true;
                }
                pr[4..8].copy_from_slice(&3000u32.to_le_bytes()); // timeout, ms
                Answer::params(pr)
            }
            opc::RELEASE_RESOURCE => {
                if le16(&pr, 0) == 1 {
                    self.nvm_locked = false;
                }
                Answer::ok()
            }
            opc::LIST_FUNC_CAPS | opc::LIST_DEV_CAPS => self.capabilities(desc, pr),
            opc::MAC_ADDRESS_READ => {
                pr[0..2].copy_from_slice(&0x50u16.to_le_bytes()); // LAN + port valid
                let mut d = vec![0u8; 24];
                d[0..6].copy_from_slice(&self.config.mac); // pf_lan_mac
                d[12..18].copy_from_slice(&self.config.mac); // port_mac
                Answer {
                    params: Some(pr),
                    ..Answer::data(d)
                }
            }
            opc::CLEAR_PXE_MODE => {
                let v = self.regs.get(super::regs::GLLAN_RCTL_0);
                self.regs.set(super::regs::GLLAN_RCTL_0, v & !(1 << 5));
                Answer::ok()
            }
            opc::GET_SWITCH_CONFIG => {
                // Header (num_reported, num_total) then one 16-byte element.
                let mut d = vec![0u8; 32];
                d[0..2].copy_from_slice(&1u16.to_le_bytes());
                d[2..4].copy_from_slice(&1u16.to_le_bytes());
                d[16] = 19; // element type VSI
                d[17] = 1; // revision
                d[18..20].copy_from_slice(&MAIN_VSI_SEID.to_le_bytes());
                d[20..22].copy_from_slice(&MAC_SEID.to_le_bytes());
                d[22..24].copy_from_slice(&PF_SEID.to_le_bytes());
                pr[0..2].copy_from_slice(&0u16.to_le_bytes()); // nothing more
                Answer {
                    params: Some(pr),
                    ..Answer::data(d)
                }
            }
            opc::GET_VSI => {
                if le16(&pr, 0) != MAIN_VSI_SEID {
                    return Answer::rc(aq::rc::EINVAL);
                }
                pr[2..4].copy_from_slice(&MAIN_VSI_NUMBER.to_le_bytes());
                pr[4..6].copy_from_slice(&1u16.to_le_bytes()); // used
                pr[6..8].copy_from_slice(&383u16.to_le_bytes()); // free
                let mut d = vec![0u8; 128];
                d[0..2].copy_from_slice(&VSI_PROP_VLAN_VALID.to_le_bytes());
                d[12] = self.vsi.port_vlan_flags;
                Answer {
                    params: Some(pr),
                    ..Answer::data(d)
                }
            }
            opc::UPDATE_VSI => {
                if le16(&pr, 0) != MAIN_VSI_SEID || buf.len() < 128 {
                    return Answer::rc(aq::rc::EINVAL);
                }
                if le16(buf, 0) & VSI_PROP_VLAN_VALID != 0 {
                    self.vsi.port_vlan_flags = buf[12];
                    // EMOD (bits 4:3): 11 = leave the tag in the frame.
                    self.vsi.strip_vlan = buf[12] & 0x18 != 0x18;
                }
                pr[2..4].copy_from_slice(&MAIN_VSI_NUMBER.to_le_bytes());
                Answer::params(pr)
            }
            opc::ADD_MACVLAN | opc::REMOVE_MACVLAN => {
                let n = usize::from(le16(&pr, 0));
                let add = desc.opcode == opc::ADD_MACVLAN;
                let mut d = buf.to_vec();
                for e in d.chunks_mut(16).take(n) {
                    let Ok(mac) = <[u8; 6]>::try_from(&e[0..6]) else {
                        continue;
                    };
                    if add {
                        if !self.vsi.macs.contains(&mac) {
                            self.vsi.macs.push(mac);
                        }
                        e[12] = 0x01; // match method: perfect
                    } else {
                        let had = self.vsi.macs.contains(&mac);
                        self.vsi.macs.retain(|m| *m != mac);
                        e[12] = if had { 0 } else { 1 }; // error_code: not found
                    }
                }
                Answer::data(d)
            }
            opc::SET_VSI_PROMISC => {
                let (flags, valid) = (le16(&pr, 0), le16(&pr, 2));
                let v = &mut self.vsi;
                let set = |bit: u16, field: &mut bool| {
                    if valid & bit != 0 {
                        *field = flags & bit != 0;
                    }
                };
                set(promisc::UNICAST, &mut v.unicast_promisc);
                set(promisc::MULTICAST, &mut v.multicast_promisc);
                set(promisc::BROADCAST, &mut v.broadcast);
                set(promisc::DEFAULT, &mut v.default_port);
                Answer::ok()
            }
            opc::QUERY_VSI_BW => {
                // tc_valid_bits: TC0; qs_handles[8] at 16.
                let mut d = vec![0u8; 64];
                d[0] = 1;
                Answer::data(d)
            }
            opc::QUERY_VSI_ETS_SLA => {
                let mut d = vec![0u8; 64];
                d[0] = 1;
                Answer::data(d)
            }
            opc::GET_PHY_ABILITIES => {
                let mut d = vec![0u8; 32];
                d[0..4].copy_from_slice(&(1u32 << link::PHY_40GBASE_CR4_CU).to_le_bytes());
                d[4] = link::SPEED_40GB;
                d[5] = 0x08 | 0x10; // link enabled, autoneg enabled
                pr[0..8].fill(0);
                Answer {
                    params: Some(pr),
                    ..Answer::data(d)
                }
            }
            opc::GET_LINK_STATUS => {
                match le16(&pr, 0) & 0x3 {
                    link::LSE_ENABLE => self.lse = true,
                    link::LSE_DISABLE => self.lse = false,
                    _ => {}
                }
                Answer::params(self.link_params())
            }
            opc::QUEUE_SHUTDOWN => {
                self.nvm_locked = false;
                Answer::ok()
            }
            op => {
                if !self.unknown_opcodes.contains(&op) {
                    self.unknown_opcodes.push(op);
                    eprintln!(
                        "hpcap-model: i40e admin queue opcode {op:#06x} accepted without effect"
                    );
                }
                let _ = p;
                Answer::ok()
            }
        }
    }

    /// The parameters of a link status answer or event.
    fn link_params(&self) -> [u8; 16] {
        let mut pr = [0u8; 16];
        let flags = if self.lse { link::LSE_IS_ENABLED } else { 0 };
        pr[0..2].copy_from_slice(&flags.to_le_bytes());
        pr[2] = link::PHY_40GBASE_CR4_CU;
        if self.link_up {
            pr[3] = link::SPEED_40GB;
            pr[4] = link::LINK_UP | link::MEDIA_AVAILABLE;
            pr[5] = link::AN_COMPLETED | link::QUALIFIED_MODULE;
        } else {
            pr[4] = link::MEDIA_AVAILABLE;
            pr[5] = link::QUALIFIED_MODULE;
        }
        pr[8..10].copy_from_slice(&self.config.max_frame.to_le_bytes());
        pr[10] = link::CONFIG_CRC_ENA;
        pr
    }

    /// The link goes up or down: a link status event when the driver
    /// enabled them.
    pub fn set_link(&mut self, up: bool, p: &mut Platform) {
        if self.link_up == up {
            return;
        }
        self.link_up = up;
        if self.lse {
            let d = with_params(
                Desc {
                    opcode: opc::GET_LINK_STATUS,
                    ..Desc::default()
                },
                &self.link_params(),
            );
            self.post_event(
                Event {
                    desc: d,
                    data: Vec::new(),
                },
                p,
            );
        }
    }

    fn capabilities(&self, desc: &Desc, mut pr: [u8; 16]) -> Answer {
        let q = u32::from(self.config.queues);
        let list: [(u16, u32, u32, u32); 7] = [
            // (id, number, logical_id, phys_id)
            (caps::VALID_FUNCTIONS, 1, 0, 0),
            (caps::VSI, 32, 0, 0),
            (caps::RSS, 512, 6, 0),
            (caps::RXQS, q, 0, 0),
            (caps::TXQS, q, 0, 0),
            (caps::MSIX, u32::from(self.config.vectors), 0, 0),
            (caps::MAX_MTU, u32::from(self.config.max_frame), 0, 0),
        ];
        let mut d = Vec::with_capacity(32 * list.len());
        for (id, number, logical, phys) in list {
            let mut e = [0u8; 32];
            e[0..2].copy_from_slice(&id.to_le_bytes());
            e[2] = 1; // major version
            e[4..8].copy_from_slice(&number.to_le_bytes());
            e[8..12].copy_from_slice(&logical.to_le_bytes());
            e[12..16].copy_from_slice(&phys.to_le_bytes());
            d.extend_from_slice(&e);
        }
        pr[4..8].copy_from_slice(&(list.len() as u32).to_le_bytes());
        if usize::from(desc.datalen) < d.len() {
            // Linux retries with a buffer of the size `datalen` names.
            return Answer {
                rc: rc::ENOMEM,
                params: Some(pr),
                data: None,
                need: Some(d.len() as u16),
            };
        }
        Answer {
            params: Some(pr),
            ..Answer::data(d)
        }
    }
}
