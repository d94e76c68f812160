// SPDX-License-Identifier: MIT
//! Synthetic traffic for tests and benchmarks: Ethernet frames from a pool
//! of flows between hosts drawn evenly or by a Zipf law, with IPv4 and IPv6,
//! TCP, UDP, ICMP, ARP, 802.1Q and QinQ tags, IPv4 fragments, VXLAN and GRE
//! tunnels, and IMIX-like sizes. Deterministic for a seed.

use std::net::IpAddr;

/// A small deterministic PRNG (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How hosts are picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mix {
    /// Every host equally likely.
    Even,
    /// Host k with probability proportional to 1/(k+1)^s.
    Zipf(f64),
}

/// Traffic settings.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Distinct hosts.
    pub hosts: usize,
    /// Flows in the pool.
    pub flows: usize,
    /// Host mix.
    pub mix: Mix,
    /// Seed.
    pub seed: u64,
    /// First timestamp (ns).
    pub ts_start: u64,
    /// Mean gap between packets (ns).
    pub ts_step: u64,
    /// Include the rarer kinds (IPv6, VLAN, tunnels, ARP, fragments, ICMP).
    pub variety: bool,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            hosts: 5000,
            flows: 20000,
            mix: Mix::Even,
            seed: 1,
            ts_start: 1_764_237_600_000_000_000, // 2025-11-27T10:00:00Z
            ts_step: 1000,
            variety: true,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp4,
    Udp4,
    Tcp6,
    Udp6,
    Icmp4,
    Arp,
    Vlan,
    QinQ,
    Vxlan,
    Gre,
    Frag4,
}

#[derive(Debug, Clone, Copy)]
struct FlowSpec {
    a: usize,
    b: usize,
    ap: u16,
    bp: u16,
    kind: Kind,
    vlan: u16,
}

/// A generator of frames.
#[derive(Debug, Clone)]
pub struct Traffic {
    spec: Spec,
    rng: Rng,
    cdf: Vec<f64>,
    flows: Vec<FlowSpec>,
    ts: u64,
}

/// IPv4 address of host `i` (10.x.y.z).
pub fn host4(i: usize) -> [u8; 4] {
    let v = 0x0A00_0000u32 + 1 + i as u32;
    v.to_be_bytes()
}

/// IPv6 address of host `i` (2001:db8::/64).
pub fn host6(i: usize) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[12..].copy_from_slice(&(i as u32 + 1).to_be_bytes());
    a
}

/// Host `i` as an address of the family used by flows of IPv6 kinds.
pub fn host_addr(i: usize, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::from(host6(i))
    } else {
        IpAddr::from(host4(i))
    }
}

impl Traffic {
    /// A generator for `spec`.
    pub fn new(spec: Spec) -> Self {
        let mut rng = Rng::new(spec.seed);
        let cdf = match spec.mix {
            Mix::Even => Vec::new(),
            Mix::Zipf(s) => {
                let mut acc = 0.0;
                let mut v: Vec<f64> = (0..spec.hosts)
                    .map(|k| {
                        acc += 1.0 / ((k + 1) as f64).powf(s);
                        acc
                    })
                    .collect();
                for x in &mut v {
                    *x /= acc;
                }
                v
            }
        };
        let mut t = Self {
            spec: spec.clone(),
            rng: rng.clone(),
            cdf,
            flows: Vec::new(),
            ts: spec.ts_start,
        };
        let kinds: &[(Kind, u64)] = if spec.variety {
            &[
                (Kind::Tcp4, 50),
                (Kind::Udp4, 20),
                (Kind::Tcp6, 8),
                (Kind::Udp6, 4),
                (Kind::Icmp4, 3),
                (Kind::Arp, 2),
                (Kind::Vlan, 5),
                (Kind::QinQ, 2),
                (Kind::Vxlan, 2),
                (Kind::Gre, 2),
                (Kind::Frag4, 2),
            ]
        } else {
            &[(Kind::Tcp4, 70), (Kind::Udp4, 30)]
        };
        let total: u64 = kinds.iter().map(|k| k.1).sum();
        for _ in 0..spec.flows {
            let a = t.host(&mut rng);
            let mut b = t.host(&mut rng);
            if b == a {
                b = (a + 1) % spec.hosts.max(2);
            }
            let mut r = rng.below(total);
            let kind = kinds
                .iter()
                .find(|(_, w)| {
                    if r < *w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
                .map_or(Kind::Tcp4, |k| k.0);
            let well_known = [80u16, 443, 53, 22, 25, 123, 8080, 3306];
            t.flows.push(FlowSpec {
                a,
                b,
                ap: 1024 + rng.below(64000) as u16,
                bp: well_known[rng.below(well_known.len() as u64) as usize],
                kind,
                vlan: 1 + rng.below(20) as u16,
            });
        }
        t.rng = rng;
        t
    }

    fn host(&self, rng: &mut Rng) -> usize {
        match self.spec.mix {
            Mix::Even => rng.below(self.spec.hosts as u64) as usize,
            Mix::Zipf(_) => {
                let u = rng.unit();
                self.cdf
                    .partition_point(|c| *c < u)
                    .min(self.spec.hosts - 1)
            }
        }
    }

    /// The next frame and its timestamp (ns).
    pub fn next_frame(&mut self, out: &mut Vec<u8>) -> u64 {
        let fi = match self.spec.mix {
            // Flows are picked like hosts: popular flows first.
            Mix::Zipf(_) => {
                let h = self.host(&mut self.rng.clone());
                let _ = self.rng.next_u64();
                (h * 7919 + self.rng.below(4) as usize) % self.flows.len()
            }
            Mix::Even => self.rng.below(self.flows.len() as u64) as usize,
        };
        let f = self.flows[fi];
        let fwd = self.rng.below(2) == 0;
        let size = match self.rng.below(12) {
            0..=6 => 64,
            7..=10 => 594,
            _ => 1514,
        };
        self.ts += 1 + self.rng.below(self.spec.ts_step * 2);
        build(out, &f, fwd, size, &mut self.rng);
        self.ts
    }
}

fn eth_hdr(out: &mut Vec<u8>, et: u16) {
    out.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]);
    out.extend_from_slice(&et.to_be_bytes());
}

fn ip4_hdr(out: &mut Vec<u8>, src: [u8; 4], dst: [u8; 4], proto: u8, payload: usize, frag: u16) {
    let tot = (20 + payload) as u16;
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&tot.to_be_bytes());
    out.extend_from_slice(&[0x12, 0x34]);
    out.extend_from_slice(&frag.to_be_bytes());
    out.extend_from_slice(&[64, proto, 0, 0]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

fn ip6_hdr(out: &mut Vec<u8>, src: [u8; 16], dst: [u8; 16], nh: u8, payload: usize) {
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload as u16).to_be_bytes());
    out.extend_from_slice(&[nh, 64]);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
}

fn l4(out: &mut Vec<u8>, tcp: bool, sp: u16, dp: u16, rng: &mut Rng) {
    out.extend_from_slice(&sp.to_be_bytes());
    out.extend_from_slice(&dp.to_be_bytes());
    if tcp {
        out.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0x50]);
        out.push([0x02, 0x10, 0x18, 0x11, 0x12][rng.below(5) as usize]);
        out.extend_from_slice(&[0xFF, 0xFF, 0, 0, 0, 0]);
    } else {
        out.extend_from_slice(&[0, 8, 0, 0]);
    }
}

fn pad_to(out: &mut Vec<u8>, size: usize, rng: &mut Rng) {
    let fill = rng.next_u64() as u8;
    while out.len() < size {
        out.push(fill);
    }
}

fn build(out: &mut Vec<u8>, f: &FlowSpec, fwd: bool, size: usize, rng: &mut Rng) {
    out.clear();
    let (s, d, sp, dp) = if fwd {
        (f.a, f.b, f.ap, f.bp)
    } else {
        (f.b, f.a, f.bp, f.ap)
    };
    match f.kind {
        Kind::Tcp4 | Kind::Udp4 => {
            let tcp = matches!(f.kind, Kind::Tcp4);
            eth_hdr(out, 0x0800);
            let pl = size.saturating_sub(34).max(if tcp { 20 } else { 8 });
            ip4_hdr(out, host4(s), host4(d), if tcp { 6 } else { 17 }, pl, 0);
            l4(out, tcp, sp, dp, rng);
        }
        Kind::Frag4 => {
            eth_hdr(out, 0x0800);
            // Alternate first fragments (MF, offset 0) and later ones.
            let frag = if rng.below(2) == 0 { 0x2000 } else { 0x00B9 };
            ip4_hdr(out, host4(s), host4(d), 17, size.saturating_sub(34), frag);
            l4(out, false, sp, dp, rng);
        }
        Kind::Tcp6 | Kind::Udp6 => {
            let tcp = matches!(f.kind, Kind::Tcp6);
            eth_hdr(out, 0x86DD);
            let pl = size.saturating_sub(54).max(20);
            ip6_hdr(out, host6(s), host6(d), if tcp { 6 } else { 17 }, pl);
            l4(out, tcp, sp, dp, rng);
        }
        Kind::Icmp4 => {
            eth_hdr(out, 0x0800);
            ip4_hdr(out, host4(s), host4(d), 1, 8, 0);
            out.extend_from_slice(&[8, 0, 0, 0, 0, 1, 0, 1]);
        }
        Kind::Arp => {
            eth_hdr(out, 0x0806);
            out.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
            out.extend_from_slice(&host4(s));
            out.extend_from_slice(&[0; 6]);
            out.extend_from_slice(&host4(d));
        }
        Kind::Vlan | Kind::QinQ => {
            if matches!(f.kind, Kind::QinQ) {
                eth_hdr(out, 0x88A8);
                out.extend_from_slice(&(f.vlan + 100).to_be_bytes());
                out.extend_from_slice(&0x8100u16.to_be_bytes());
            } else {
                eth_hdr(out, 0x8100);
            }
            out.extend_from_slice(&f.vlan.to_be_bytes());
            out.extend_from_slice(&0x0800u16.to_be_bytes());
            ip4_hdr(
                out,
                host4(s),
                host4(d),
                6,
                size.saturating_sub(42).max(20),
                0,
            );
            l4(out, true, sp, dp, rng);
        }
        Kind::Vxlan => {
            eth_hdr(out, 0x0800);
            let inner_len = 14 + 20 + 8;
            ip4_hdr(out, host4(s), host4(d), 17, 8 + 8 + inner_len, 0);
            l4(out, false, 40000 + sp % 1000, 4789, rng);
            out.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0x2A, 0]);
            eth_hdr(out, 0x0800);
            let (is, id) = (host4(s + 7000), host4(d + 7000));
            ip4_hdr(out, is, id, 17, 8, 0);
            l4(out, false, sp, dp, rng);
        }
        Kind::Gre => {
            eth_hdr(out, 0x0800);
            ip4_hdr(out, host4(s), host4(d), 47, 8 + 40, 0);
            out.extend_from_slice(&[0x20, 0, 0x08, 0x00, 0, 0, 0, 9]);
            let (is, id) = (host4(s + 9000), host4(d + 9000));
            ip4_hdr(out, is, id, 6, 20, 0);
            l4(out, true, sp, dp, rng);
        }
    }
    pad_to(out, size.max(out.len()), rng);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let mut a = Traffic::new(Spec::default());
        let mut b = Traffic::new(Spec::default());
        let (mut fa, mut fb) = (Vec::new(), Vec::new());
        let mut ets = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            assert_eq!(a.next_frame(&mut fa), b.next_frame(&mut fb));
            assert_eq!(fa, fb);
            ets.insert(u16::from_be_bytes([fa[12], fa[13]]));
        }
        assert!(ets.len() >= 5, "{ets:?}");
        let mut z = Traffic::new(Spec {
            mix: Mix::Zipf(1.0),
            ..Spec::default()
        });
        let mut hot = 0;
        for _ in 0..2000 {
            z.next_frame(&mut fa);
            if fa[12..14] == [8, 0] && (fa[26..30] == host4(0) || fa[30..34] == host4(0)) {
                hot += 1;
            }
        }
        assert!(hot > 50, "Zipf: host 0 is hot ({hot})");
    }
}
