// SPDX-License-Identifier: MIT
//! Packet dissection for the index: which keys a frame carries, and its
//! outer flow (5-tuple, VLAN, TCP flags).
//!
//! The index must be a **superset** of what tcpdump's filters match: a page
//! that holds a packet `tcpdump 'host X'` would accept must be in the page
//! set of the key for X. The dissector therefore reads fields at the
//! offsets libpcap's generated code loads them from, with no more validation
//! than libpcap does: an IPv4 address is indexed whenever the ether type is
//! 0x0800, whatever the version nibble; the ports sit `4 * IHL` bytes into
//! the IPv4 header whatever IHL says; ARP and RARP sender and target
//! protocol addresses count as hosts (`host X` matches them in tcpdump).
//! Every VLAN tag of a stack, every ether type after it, and every IPv6
//! next-header value along the extension-header chain are keys, so a
//! filter that looks at any of those positions is covered.
//!
//! Tunnels: the inner addresses of GRE (IPv4, IPv6 and transparent
//! Ethernet payloads) and VXLAN (UDP port 4789) are indexed under their own
//! key kinds ([`Key::InnerIp4`], [`Key::InnerIp6`]): tcpdump's `host` does
//! not look inside tunnels, so they must not widen its page sets.

/// An index key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// An Ethernet type, outside or after any VLAN tag.
    EtherType(u16),
    /// A VLAN ID of any tag of the stack.
    Vlan(u16),
    /// Any VLAN tag present.
    VlanAny,
    /// An IP protocol (IPv4 protocol, or any IPv6 next header of the chain).
    Proto(u8),
    /// A TCP, UDP or SCTP port (source or destination).
    Port(u16),
    /// An IPv4 address (source, destination, ARP/RARP sender or target).
    Ip4([u8; 4]),
    /// An IPv6 address (source or destination).
    Ip6([u8; 16]),
    /// An IPv4 address inside a GRE or VXLAN tunnel.
    InnerIp4([u8; 4]),
    /// An IPv6 address inside a GRE or VXLAN tunnel.
    InnerIp6([u8; 16]),
}

/// Tag bytes of the key encoding (the first byte of a key in the index).
pub mod tag {
    /// [`super::Key::EtherType`].
    pub const ETHERTYPE: u8 = 1;
    /// [`super::Key::Vlan`] and [`super::Key::VlanAny`].
    pub const VLAN: u8 = 2;
    /// [`super::Key::Proto`].
    pub const PROTO: u8 = 3;
    /// [`super::Key::Port`].
    pub const PORT: u8 = 4;
    /// [`super::Key::Ip4`].
    pub const IP4: u8 = 5;
    /// [`super::Key::Ip6`].
    pub const IP6: u8 = 6;
    /// [`super::Key::InnerIp4`].
    pub const INNER_IP4: u8 = 7;
    /// [`super::Key::InnerIp6`].
    pub const INNER_IP6: u8 = 8;
}

/// The VLAN value that encodes [`Key::VlanAny`] (IDs are 12 bits).
const VLAN_ANY: u16 = 0xFFFF;

impl Key {
    /// The key's bytes in the index: a tag byte, then the value big-endian,
    /// so that byte order is numeric order and a CIDR is a key range.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.clear();
        match *self {
            Key::EtherType(v) => {
                out.push(tag::ETHERTYPE);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Key::Vlan(v) => {
                out.push(tag::VLAN);
                out.extend_from_slice(&(v & 0xFFF).to_be_bytes());
            }
            Key::VlanAny => {
                out.push(tag::VLAN);
                out.extend_from_slice(&VLAN_ANY.to_be_bytes());
            }
            Key::Proto(p) => out.extend_from_slice(&[tag::PROTO, p]),
            Key::Port(v) => {
                out.push(tag::PORT);
                out.extend_from_slice(&v.to_be_bytes());
            }
            Key::Ip4(a) => {
                out.push(tag::IP4);
                out.extend_from_slice(&a);
            }
            Key::Ip6(a) => {
                out.push(tag::IP6);
                out.extend_from_slice(&a);
            }
            Key::InnerIp4(a) => {
                out.push(tag::INNER_IP4);
                out.extend_from_slice(&a);
            }
            Key::InnerIp6(a) => {
                out.push(tag::INNER_IP6);
                out.extend_from_slice(&a);
            }
        }
    }

    /// The encoded bytes as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(17);
        self.encode(&mut v);
        v
    }

    /// Decodes [`Key::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Option<Key> {
        let (&t, v) = b.split_first()?;
        let u16v = || Some(u16::from_be_bytes(v.try_into().ok()?));
        Some(match t {
            tag::ETHERTYPE => Key::EtherType(u16v()?),
            tag::VLAN => match u16v()? {
                VLAN_ANY => Key::VlanAny,
                id => Key::Vlan(id),
            },
            tag::PROTO if v.len() == 1 => Key::Proto(v[0]),
            tag::PORT => Key::Port(u16v()?),
            tag::IP4 => Key::Ip4(v.try_into().ok()?),
            tag::IP6 => Key::Ip6(v.try_into().ok()?),
            tag::INNER_IP4 => Key::InnerIp4(v.try_into().ok()?),
            tag::INNER_IP6 => Key::InnerIp6(v.try_into().ok()?),
            _ => return None,
        })
    }
}

/// An IP address of either family, as 16 bytes (IPv4 in the first four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    /// IPv6 (else IPv4 in `bytes[..4]`).
    pub v6: bool,
    /// The address bytes.
    pub bytes: [u8; 16],
}

impl Addr {
    fn v4(a: [u8; 4]) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..4].copy_from_slice(&a);
        Self { v6: false, bytes }
    }

    /// As a standard library address.
    pub fn ip(&self) -> std::net::IpAddr {
        if self.v6 {
            std::net::IpAddr::from(self.bytes)
        } else {
            let a: [u8; 4] = self.bytes[..4].try_into().expect("4 bytes");
            std::net::IpAddr::from(a)
        }
    }

    /// The address bytes (4 or 16).
    pub fn octets(&self) -> &[u8] {
        if self.v6 {
            &self.bytes
        } else {
            &self.bytes[..4]
        }
    }
}

/// The outer flow of a frame: the first IP header after any VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlowInfo {
    /// Source address.
    pub src: Addr,
    /// Destination address.
    pub dst: Addr,
    /// IP protocol (IPv6: the last next header of the chain).
    pub proto: u8,
    /// Source port (TCP, UDP, SCTP; 0 otherwise).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// The outermost VLAN ID, if tagged.
    pub vlan: Option<u16>,
    /// TCP flags (0 when not TCP).
    pub tcp_flags: u8,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(f.get(at..at + 2)?.try_into().ok()?))
}

fn arr4(f: &[u8], at: usize) -> Option<[u8; 4]> {
    f.get(at..at + 4)?.try_into().ok()
}

fn arr16(f: &[u8], at: usize) -> Option<[u8; 16]> {
    f.get(at..at + 16)?.try_into().ok()
}

const ET_IP4: u16 = 0x0800;
const ET_IP6: u16 = 0x86DD;
const ET_ARP: u16 = 0x0806;
const ET_RARP: u16 = 0x8035;
const ET_TEB: u16 = 0x6558;
const VXLAN_PORT: u16 = 4789;
/// Tunnel nesting followed at most.
const MAX_DEPTH: u32 = 2;
/// VLAN tags followed at most.
const MAX_TAGS: usize = 8;

fn is_vlan_tpid(et: u16) -> bool {
    matches!(et, 0x8100 | 0x88A8 | 0x9100)
}

/// Calls `sink` with every key of `frame` (an Ethernet frame as captured)
/// and returns its outer flow, if it has an IP header. Keys may repeat.
pub fn dissect(frame: &[u8], sink: &mut impl FnMut(Key)) -> Option<FlowInfo> {
    let mut flow = None;
    ethernet(frame, 0, 0, sink, &mut flow);
    flow
}

fn ethernet(
    f: &[u8],
    off: usize,
    depth: u32,
    sink: &mut impl FnMut(Key),
    flow: &mut Option<FlowInfo>,
) {
    let inner = depth > 0;
    let Some(mut et) = be16(f, off + 12) else {
        return;
    };
    let mut l3 = off + 14;
    let mut vlan = None;
    if !inner {
        sink(Key::EtherType(et));
    }
    let mut tags = 0;
    while is_vlan_tpid(et) && tags < MAX_TAGS {
        let Some(tci) = be16(f, l3) else {
            return;
        };
        let Some(next) = be16(f, l3 + 2) else {
            if !inner {
                sink(Key::VlanAny);
                sink(Key::Vlan(tci & 0xFFF));
            }
            return;
        };
        if !inner {
            if tags == 0 {
                sink(Key::VlanAny);
            }
            sink(Key::Vlan(tci & 0xFFF));
            sink(Key::EtherType(next));
        }
        vlan.get_or_insert(tci & 0xFFF);
        et = next;
        l3 += 4;
        tags += 1;
    }
    match et {
        ET_IP4 => ipv4(f, l3, depth, vlan, sink, flow),
        ET_IP6 => ipv6(f, l3, depth, vlan, sink, flow),
        ET_ARP | ET_RARP if !inner => {
            // libpcap's `arp host`/`rarp host`: sender at 14, target at 24.
            for at in [l3 + 14, l3 + 24] {
                if let Some(a) = arr4(f, at) {
                    sink(Key::Ip4(a));
                }
            }
        }
        _ => {}
    }
}

fn ipv4(
    f: &[u8],
    l3: usize,
    depth: u32,
    vlan: Option<u16>,
    sink: &mut impl FnMut(Key),
    flow: &mut Option<FlowInfo>,
) {
    let inner = depth > 0;
    let src = arr4(f, l3 + 12);
    let dst = arr4(f, l3 + 16);
    for a in [src, dst].into_iter().flatten() {
        sink(if inner { Key::InnerIp4(a) } else { Key::Ip4(a) });
    }
    let Some(&proto) = f.get(l3 + 9) else {
        return;
    };
    if !inner {
        sink(Key::Proto(proto));
    }
    let frag = be16(f, l3 + 6).unwrap_or(0) & 0x1FFF;
    let ihl = usize::from(f.get(l3).copied().unwrap_or(0) & 0xF) * 4;
    let l4 = l3 + ihl;
    let mut fi = FlowInfo {
        src: src.map(Addr::v4).unwrap_or_default(),
        dst: dst.map(Addr::v4).unwrap_or_default(),
        proto,
        vlan,
        ..FlowInfo::default()
    };
    if frag == 0 {
        transport(f, l4, proto, depth, sink, &mut fi);
    }
    if !inner && src.is_some() && dst.is_some() {
        *flow = Some(fi);
    }
}

fn ipv6(
    f: &[u8],
    l3: usize,
    depth: u32,
    vlan: Option<u16>,
    sink: &mut impl FnMut(Key),
    flow: &mut Option<FlowInfo>,
) {
    let inner = depth > 0;
    let src = arr16(f, l3 + 8);
    let dst = arr16(f, l3 + 24);
    for a in [src, dst].into_iter().flatten() {
        sink(if inner { Key::InnerIp6(a) } else { Key::Ip6(a) });
    }
    let Some(&first) = f.get(l3 + 6) else {
        return;
    };
    let mut nh = first;
    if !inner {
        sink(Key::Proto(nh));
    }
    let mut off = l3 + 40;
    let mut l4_ok = true;
    for _ in 0..8 {
        let len = match nh {
            0 | 43 | 60 => match f.get(off + 1) {
                Some(&l) => (usize::from(l) + 1) * 8,
                None => {
                    l4_ok = false;
                    break;
                }
            },
            51 => match f.get(off + 1) {
                Some(&l) => (usize::from(l) + 2) * 4,
                None => {
                    l4_ok = false;
                    break;
                }
            },
            44 => {
                if be16(f, off + 2).unwrap_or(1) & 0xFFF8 != 0 {
                    // Not the first fragment: no transport header here.
                    l4_ok = false;
                }
                8
            }
            _ => break,
        };
        let Some(&next) = f.get(off) else {
            l4_ok = false;
            break;
        };
        nh = next;
        if !inner {
            sink(Key::Proto(nh));
        }
        off += len;
        if !l4_ok {
            break;
        }
    }
    let mut fi = FlowInfo {
        src: Addr {
            v6: true,
            bytes: src.unwrap_or_default(),
        },
        dst: Addr {
            v6: true,
            bytes: dst.unwrap_or_default(),
        },
        proto: nh,
        vlan,
        ..FlowInfo::default()
    };
    if l4_ok {
        transport(f, off, nh, depth, sink, &mut fi);
    }
    // libpcap's `ip6 port` looks right after the fixed header when the
    // first next header is TCP, UDP or SCTP: covered above (no chain).
    if !inner && src.is_some() && dst.is_some() {
        *flow = Some(fi);
    }
}

fn transport(
    f: &[u8],
    l4: usize,
    proto: u8,
    depth: u32,
    sink: &mut impl FnMut(Key),
    fi: &mut FlowInfo,
) {
    let inner = depth > 0;
    match proto {
        6 | 17 | 132 => {
            let sp = be16(f, l4);
            let dp = be16(f, l4 + 2);
            if !inner {
                for p in [sp, dp].into_iter().flatten() {
                    sink(Key::Port(p));
                }
            }
            fi.sport = sp.unwrap_or(0);
            fi.dport = dp.unwrap_or(0);
            if proto == 6 {
                fi.tcp_flags = f.get(l4 + 13).copied().unwrap_or(0);
            }
            if proto == 17 && dp == Some(VXLAN_PORT) && depth < MAX_DEPTH {
                // UDP header (8), VXLAN header (8, flag I set), Ethernet.
                if f.get(l4 + 8).is_some_and(|fl| fl & 0x08 != 0) {
                    ethernet(f, l4 + 16, depth + 1, sink, &mut None);
                }
            }
        }
        47 if depth < MAX_DEPTH => {
            let Some(fl) = be16(f, l4) else {
                return;
            };
            if fl & 0x7 != 0 || fl & 0x4000 != 0 {
                return; // GRE version 1 (PPTP) or source routing: not followed
            }
            let Some(pt) = be16(f, l4 + 2) else {
                return;
            };
            let mut hl = 4;
            for bit in [0x8000u16, 0x2000, 0x1000] {
                if fl & bit != 0 {
                    hl += 4;
                }
            }
            let at = l4 + hl;
            match pt {
                ET_IP4 => ipv4(f, at, depth + 1, None, sink, &mut None),
                ET_IP6 => ipv6(f, at, depth + 1, None, sink, &mut None),
                ET_TEB => ethernet(f, at, depth + 1, sink, &mut None),
                _ => {}
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(f: &[u8]) -> Vec<Key> {
        let mut v = Vec::new();
        dissect(f, &mut |k| v.push(k));
        v.sort();
        v.dedup();
        v
    }

    fn eth(et: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&et.to_be_bytes());
        f
    }

    fn ip4_udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        let mut f = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0];
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sp.to_be_bytes());
        f.extend_from_slice(&dp.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn key_encoding_roundtrips_and_orders_numerically() {
        for k in [
            Key::EtherType(0x0800),
            Key::Vlan(100),
            Key::VlanAny,
            Key::Proto(6),
            Key::Port(443),
            Key::Ip4([10, 1, 2, 3]),
            Key::Ip6([0xfe; 16]),
            Key::InnerIp4([1, 2, 3, 4]),
            Key::InnerIp6([1; 16]),
        ] {
            assert_eq!(Key::decode(&k.to_bytes()), Some(k));
        }
        assert!(Key::Ip4([10, 0, 0, 255]).to_bytes() < Key::Ip4([10, 0, 1, 0]).to_bytes());
        assert!(Key::Port(255).to_bytes() < Key::Port(256).to_bytes());
    }

    #[test]
    fn vlan_stack_ipv4_udp() {
        let mut f = eth(0x8100);
        f.extend_from_slice(&[0x20, 100, 0x88, 0xA8]);
        f.extend_from_slice(&[0, 200, 0x08, 0x00]);
        f.extend(ip4_udp([10, 0, 0, 1], [10, 0, 0, 2], 1234, 53));
        let k = keys(&f);
        for want in [
            Key::VlanAny,
            Key::Vlan(100),
            Key::Vlan(200),
            Key::EtherType(0x8100),
            Key::EtherType(0x88A8),
            Key::EtherType(0x0800),
            Key::Ip4([10, 0, 0, 1]),
            Key::Ip4([10, 0, 0, 2]),
            Key::Proto(17),
            Key::Port(1234),
            Key::Port(53),
        ] {
            assert!(k.contains(&want), "{want:?} missing from {k:?}");
        }
        let fl = dissect(&f, &mut |_| {}).unwrap();
        assert_eq!(
            (fl.sport, fl.dport, fl.vlan, fl.proto),
            (1234, 53, Some(100), 17)
        );
    }

    #[test]
    fn vxlan_and_gre_inner_addresses_have_their_own_keys() {
        let inner = {
            let mut e = eth(0x0800);
            e.extend(ip4_udp([192, 168, 0, 1], [192, 168, 0, 2], 1, 2));
            e
        };
        let mut f = eth(0x0800);
        let mut outer = ip4_udp([10, 0, 0, 1], [10, 0, 0, 2], 5555, 4789);
        outer.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 1, 0]);
        outer.extend(&inner);
        f.extend(outer);
        let k = keys(&f);
        assert!(k.contains(&Key::InnerIp4([192, 168, 0, 1])));
        assert!(!k.contains(&Key::Ip4([192, 168, 0, 1])));
        assert!(!k.contains(&Key::Port(1)), "inner ports are not indexed");
        // GRE with a key field, IPv4 payload.
        let mut g = eth(0x0800);
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 47, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2,
        ];
        ip.extend_from_slice(&[0x20, 0, 0x08, 0x00, 0, 0, 0, 7]);
        ip.extend(ip4_udp([172, 16, 0, 1], [172, 16, 0, 2], 1, 2));
        g.extend(ip);
        let k = keys(&g);
        assert!(k.contains(&Key::InnerIp4([172, 16, 0, 2])));
        assert!(k.contains(&Key::Proto(47)));
    }

    #[test]
    fn arp_addresses_and_ipv6_extension_chain() {
        let mut a = eth(0x0806);
        a.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7]);
        a.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 9, 8, 6]);
        let k = keys(&a);
        assert!(k.contains(&Key::Ip4([10, 9, 8, 7])) && k.contains(&Key::Ip4([10, 9, 8, 6])));
        // IPv6, hop-by-hop (8 bytes), fragment (first), TCP.
        let mut f = eth(0x86DD);
        let mut h = vec![0x60, 0, 0, 0, 0, 0, 0, 64];
        h.extend_from_slice(&[1; 16]);
        h.extend_from_slice(&[2; 16]);
        h.extend_from_slice(&[44, 0, 0, 0, 0, 0, 0, 0]);
        h.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x01, 0xBB, 0x30, 0x39]);
        h.extend_from_slice(&[0; 9]);
        h.push(0x12);
        f.extend(h);
        let k = keys(&f);
        for want in [
            Key::Proto(0),
            Key::Proto(44),
            Key::Proto(6),
            Key::Port(443),
            Key::Port(12345),
        ] {
            assert!(k.contains(&want), "{want:?}");
        }
        let fl = dissect(&f, &mut |_| {}).unwrap();
        assert_eq!((fl.proto, fl.tcp_flags), (6, 0x12));
    }
}
