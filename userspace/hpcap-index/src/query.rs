// SPDX-License-Identifier: MIT
//! The query language of `hpcap-query`: a subset of tcpdump's filter
//! language that the index can answer, plus Stenographer's `before` and
//! `after`, and `inner host`/`inner net` for tunnel payloads.
//!
//! ```text
//! expr   := term { ("or" | "||") term }
//! term   := factor { ("and" | "&&") factor }
//! factor := ("not" | "!") factor | "(" expr ")" | prim
//! prim   := [ip|ip6] [src|dst] host ADDR
//!         | [src|dst] net ADDR/BITS | [src|dst] net ADDR mask MASK
//!         | [tcp|udp|sctp] [src|dst] port N
//!         | tcp | udp | sctp | icmp | icmp6 | ip | ip6 | arp
//!         | [ip|ip6] proto N|tcp|udp|sctp|icmp|icmp6
//!         | vlan [N]
//!         | before TIME | after TIME
//!         | inner host ADDR | inner net ADDR/BITS
//! TIME   := 2026-11-27T10:00:00[.frac]Z | "YYYY-MM-DD HH:MM[:SS]" | EPOCH[.frac] | N(s|m|h|d) ago
//! ```
//!
//! Semantics: everything but the time and inner primitives means exactly
//! what tcpdump makes of it (the exact test is libpcap's compiled program
//! run by the core's interpreter, as `tcpdump -r` runs it); `after T` keeps
//! packets with `ts >= T`, `before T` those with `ts < T`; `inner host X`
//! keeps packets whose GRE or VXLAN payload has IP address X.
//!
//! The index answers each primitive with a superset of the pages holding
//! matching packets ([`Expr::pages`]); [`Matcher`] then decides exactly.

use std::collections::HashMap;
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use hpcap_core::bpf::{self, Program, SockFilter};
use roaring::RoaringBitmap;

use crate::dissect::{dissect, Key};
use crate::reader::Index;

/// Direction qualifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Source or destination.
    Any,
    /// Source.
    Src,
    /// Destination.
    Dst,
}

impl Dir {
    fn word(self) -> &'static str {
        match self {
            Dir::Any => "",
            Dir::Src => "src ",
            Dir::Dst => "dst ",
        }
    }
}

/// A primitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prim {
    /// `[ip|ip6] [src|dst] host ADDR` (`family`: "ip", "ip6" or "").
    Host {
        /// Protocol qualifier as written ("", "ip", "ip6").
        family: &'static str,
        /// Direction.
        dir: Dir,
        /// Address.
        addr: IpAddr,
    },
    /// `[src|dst] net ADDR/BITS`.
    Net {
        /// Direction.
        dir: Dir,
        /// Network address (host bits zero).
        addr: IpAddr,
        /// Prefix length.
        bits: u8,
    },
    /// `[tcp|udp|sctp] [src|dst] port N`.
    Port {
        /// Transport qualifier ("", "tcp", "udp", "sctp").
        l4: &'static str,
        /// Direction.
        dir: Dir,
        /// Port.
        port: u16,
    },
    /// `tcp`, `udp`, `sctp`, `icmp`, `icmp6`, `ip`, `ip6`, `arp`.
    Named(&'static str),
    /// `[ip|ip6] proto N`.
    Proto {
        /// "", "ip" or "ip6".
        family: &'static str,
        /// Protocol number.
        proto: u8,
    },
    /// `vlan [N]`.
    Vlan(Option<u16>),
    /// `before T`: `ts < T`.
    Before(u64),
    /// `after T`: `ts >= T`.
    After(u64),
    /// `inner host ADDR`.
    InnerHost(IpAddr),
    /// `inner net ADDR/BITS`.
    InnerNet(IpAddr, u8),
}

/// A query expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Both.
    And(Box<Expr>, Box<Expr>),
    /// Either.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A primitive.
    P(Prim),
    /// A constant (after substituting time and inner primitives).
    Const(bool),
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            continue;
        }
        if !quoted && (c.is_whitespace() || c == '(' || c == ')') {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            if c == '(' || c == ')' {
                out.push(c.to_string());
            }
        } else if !quoted && c == '!' && cur.is_empty() {
            out.push("!".into());
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

struct Parser<'a> {
    t: &'a [String],
    i: usize,
    now_ns: u64,
}

/// Parses a query. `now_ns` anchors relative times (`5m ago`).
pub fn parse(q: &str, now_ns: u64) -> Result<Expr> {
    let toks = tokenize(q);
    if toks.is_empty() {
        bail!("empty query");
    }
    let mut p = Parser {
        t: &toks,
        i: 0,
        now_ns,
    };
    let e = p.expr()?;
    if p.i != toks.len() {
        bail!("unexpected {:?} in the query", toks[p.i]);
    }
    Ok(e)
}

impl Parser<'_> {
    fn peek(&self) -> Option<&str> {
        self.t.get(self.i).map(|s| s.as_str())
    }

    fn next(&mut self) -> Result<&str> {
        let s = self
            .t
            .get(self.i)
            .ok_or_else(|| anyhow!("the query ends too early"))?;
        self.i += 1;
        Ok(s.as_str())
    }

    fn expr(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.i += 1;
            e = Expr::Or(Box::new(e), Box::new(self.term()?));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr> {
        let mut e = self.factor()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.i += 1;
            e = Expr::And(Box::new(e), Box::new(self.factor()?));
        }
        Ok(e)
    }

    fn factor(&mut self) -> Result<Expr> {
        match self.peek() {
            Some("not" | "!") => {
                self.i += 1;
                Ok(Expr::Not(Box::new(self.factor()?)))
            }
            Some("(") => {
                self.i += 1;
                let e = self.expr()?;
                if self.next()? != ")" {
                    bail!("missing ')'");
                }
                Ok(e)
            }
            Some(_) => Ok(Expr::P(self.prim()?)),
            None => bail!("the query ends too early"),
        }
    }

    fn dir(&mut self) -> Dir {
        match self.peek() {
            Some("src") => {
                self.i += 1;
                Dir::Src
            }
            Some("dst") => {
                self.i += 1;
                Dir::Dst
            }
            _ => Dir::Any,
        }
    }

    fn prim(&mut self) -> Result<Prim> {
        let w = self.next()?.to_ascii_lowercase();
        match w.as_str() {
            "ip" | "ip6" => {
                let fam: &'static str = if w == "ip" { "ip" } else { "ip6" };
                match self.peek() {
                    Some("proto") => {
                        self.i += 1;
                        Ok(Prim::Proto {
                            family: fam,
                            proto: proto_num(self.next()?)?,
                        })
                    }
                    Some("host" | "src" | "dst") => {
                        let dir = self.dir();
                        if self.next()? != "host" {
                            bail!("expected 'host' after '{fam} src/dst'");
                        }
                        let addr = parse_addr(self.next()?)?;
                        if (fam == "ip") != addr.is_ipv4() {
                            bail!(
                                "{fam} host needs an IPv{} address",
                                if fam == "ip" { 4 } else { 6 }
                            );
                        }
                        Ok(Prim::Host {
                            family: fam,
                            dir,
                            addr,
                        })
                    }
                    _ => Ok(Prim::Named(fam)),
                }
            }
            "tcp" | "udp" | "sctp" => {
                let l4: &'static str = match w.as_str() {
                    "tcp" => "tcp",
                    "udp" => "udp",
                    _ => "sctp",
                };
                let save = self.i;
                let dir = self.dir();
                if self.peek() == Some("port") {
                    self.i += 1;
                    return Ok(Prim::Port {
                        l4,
                        dir,
                        port: port_num(self.next()?)?,
                    });
                }
                self.i = save;
                Ok(Prim::Named(l4))
            }
            "icmp" => Ok(Prim::Named("icmp")),
            "icmp6" => Ok(Prim::Named("icmp6")),
            "arp" => Ok(Prim::Named("arp")),
            "proto" => Ok(Prim::Proto {
                family: "",
                proto: proto_num(self.next()?)?,
            }),
            "src" | "dst" => {
                self.i -= 1;
                let dir = self.dir();
                match self.next()? {
                    "host" => Ok(Prim::Host {
                        family: "",
                        dir,
                        addr: parse_addr(self.next()?)?,
                    }),
                    "net" => self.net(dir),
                    "port" => Ok(Prim::Port {
                        l4: "",
                        dir,
                        port: port_num(self.next()?)?,
                    }),
                    o => bail!("expected host, net or port after src/dst, found {o:?}"),
                }
            }
            "host" => Ok(Prim::Host {
                family: "",
                dir: Dir::Any,
                addr: parse_addr(self.next()?)?,
            }),
            "net" => self.net(Dir::Any),
            "port" => Ok(Prim::Port {
                l4: "",
                dir: Dir::Any,
                port: port_num(self.next()?)?,
            }),
            "vlan" => {
                if let Some(n) = self.peek().and_then(|s| s.parse::<u16>().ok()) {
                    self.i += 1;
                    if n > 4095 {
                        bail!("VLAN ID {n} out of range (0..4095)");
                    }
                    Ok(Prim::Vlan(Some(n)))
                } else {
                    Ok(Prim::Vlan(None))
                }
            }
            "before" => Ok(Prim::Before(self.time()?)),
            "after" => Ok(Prim::After(self.time()?)),
            "inner" => match self.next()? {
                "host" => Ok(Prim::InnerHost(parse_addr(self.next()?)?)),
                "net" => match self.net(Dir::Any)? {
                    Prim::Net { addr, bits, .. } => Ok(Prim::InnerNet(addr, bits)),
                    _ => unreachable!("net() returns Net"),
                },
                o => bail!("expected host or net after 'inner', found {o:?}"),
            },
            o => bail!(
                "unknown primitive {o:?} (host, net, port, proto, tcp, udp, sctp, icmp, icmp6, \
                 ip, ip6, arp, vlan, before, after, inner host, inner net)"
            ),
        }
    }

    fn net(&mut self, dir: Dir) -> Result<Prim> {
        let s = self.next()?.to_string();
        let (addr, bits) = if let Some((a, b)) = s.split_once('/') {
            let addr = parse_addr(a)?;
            let bits: u8 = b
                .parse()
                .map_err(|_| anyhow!("bad prefix length in {s:?}"))?;
            (addr, bits)
        } else if self.peek() == Some("mask") {
            self.i += 1;
            let m = parse_addr(self.next()?)?;
            let IpAddr::V4(m) = m else {
                bail!("mask must be an IPv4 netmask");
            };
            let v = u32::from(m);
            if v.leading_ones() + v.trailing_zeros() != 32 {
                bail!("{m} is not a contiguous netmask");
            }
            (parse_addr(&s)?, v.leading_ones() as u8)
        } else {
            let addr = parse_addr(&s)?;
            (addr, if addr.is_ipv4() { 32 } else { 128 })
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if bits > max {
            bail!("prefix length {bits} too long for {addr}");
        }
        let (lo, _) = range_of(addr, bits);
        if lo != addr {
            bail!("{addr}/{bits} has host bits set (use {lo}/{bits})");
        }
        Ok(Prim::Net { dir, addr, bits })
    }

    fn time(&mut self) -> Result<u64> {
        let s = self.next()?.to_string();
        if self.peek() == Some("ago") {
            self.i += 1;
            let secs = hpcap::util::parse_duration_s(&s).map_err(|e| anyhow!(e))?;
            return Ok(self.now_ns.saturating_sub(secs * 1_000_000_000));
        }
        hpcap::util::parse_time(&s).map_err(|e| anyhow!(e))
    }
}

fn parse_addr(s: &str) -> Result<IpAddr> {
    s.parse()
        .map_err(|_| anyhow!("{s:?} is not an IP address (host names are not resolved)"))
}

fn port_num(s: &str) -> Result<u16> {
    s.parse().map_err(|_| anyhow!("bad port {s:?}"))
}

fn proto_num(s: &str) -> Result<u8> {
    Ok(match s {
        "tcp" => 6,
        "udp" => 17,
        "icmp" => 1,
        "icmp6" => 58,
        "sctp" => 132,
        "gre" => 47,
        _ => s.parse().map_err(|_| anyhow!("bad protocol {s:?}"))?,
    })
}

/// First and last address of `addr/bits`.
pub fn range_of(addr: IpAddr, bits: u8) -> (IpAddr, IpAddr) {
    match addr {
        IpAddr::V4(a) => {
            let v = u32::from(a);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(bits))
            };
            (
                IpAddr::from(std::net::Ipv4Addr::from(v & mask)),
                IpAddr::from(std::net::Ipv4Addr::from((v & mask) | !mask)),
            )
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(bits))
            };
            (
                IpAddr::from(std::net::Ipv6Addr::from(v & mask)),
                IpAddr::from(std::net::Ipv6Addr::from((v & mask) | !mask)),
            )
        }
    }
}

fn host_key(a: IpAddr, inner: bool) -> Key {
    match (a, inner) {
        (IpAddr::V4(v), false) => Key::Ip4(v.octets()),
        (IpAddr::V6(v), false) => Key::Ip6(v.octets()),
        (IpAddr::V4(v), true) => Key::InnerIp4(v.octets()),
        (IpAddr::V6(v), true) => Key::InnerIp6(v.octets()),
    }
}

impl Expr {
    /// The tcpdump expression of a constant-free expression.
    pub fn to_tcpdump(&self) -> String {
        match self {
            Expr::And(a, b) => format!("({} and {})", a.to_tcpdump(), b.to_tcpdump()),
            Expr::Or(a, b) => format!("({} or {})", a.to_tcpdump(), b.to_tcpdump()),
            Expr::Not(a) => format!("not {}", a.to_tcpdump()),
            Expr::Const(true) => "(len >= 0)".into(),
            Expr::Const(false) => "(len < 0)".into(),
            Expr::P(p) => match p {
                Prim::Host { family, dir, addr } => {
                    let f = if family.is_empty() {
                        String::new()
                    } else {
                        format!("{family} ")
                    };
                    format!("{f}{}host {addr}", dir.word())
                }
                Prim::Net { dir, addr, bits } => format!("{}net {addr}/{bits}", dir.word()),
                Prim::Port { l4, dir, port } => {
                    let f = if l4.is_empty() {
                        String::new()
                    } else {
                        format!("{l4} ")
                    };
                    format!("{f}{}port {port}", dir.word())
                }
                Prim::Named(n) => (*n).to_string(),
                Prim::Proto { family, proto } => {
                    if family.is_empty() {
                        format!("proto {proto}")
                    } else {
                        format!("{family} proto {proto}")
                    }
                }
                Prim::Vlan(Some(v)) => format!("vlan {v}"),
                Prim::Vlan(None) => "vlan".into(),
                Prim::Before(_) | Prim::After(_) | Prim::InnerHost(_) | Prim::InnerNet(..) => {
                    unreachable!("substituted before translation")
                }
            },
        }
    }

    /// Is this primitive decided outside BPF (time, tunnel payload)?
    fn special(p: &Prim) -> bool {
        matches!(
            p,
            Prim::Before(_) | Prim::After(_) | Prim::InnerHost(_) | Prim::InnerNet(..)
        )
    }

    fn collect_special<'a>(&'a self, out: &mut Vec<&'a Prim>) {
        match self {
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_special(out);
                b.collect_special(out);
            }
            Expr::Not(a) => a.collect_special(out),
            Expr::P(p) if Self::special(p) && !out.contains(&p) => out.push(p),
            _ => {}
        }
    }

    /// Replaces special primitive `specials[i]` by the constant bit `i` of
    /// `bits` and folds constants.
    fn substitute(&self, specials: &[&Prim], bits: u64) -> Expr {
        match self {
            Expr::And(a, b) => match (a.substitute(specials, bits), b.substitute(specials, bits)) {
                (Expr::Const(false), _) | (_, Expr::Const(false)) => Expr::Const(false),
                (Expr::Const(true), x) | (x, Expr::Const(true)) => x,
                (x, y) => Expr::And(Box::new(x), Box::new(y)),
            },
            Expr::Or(a, b) => match (a.substitute(specials, bits), b.substitute(specials, bits)) {
                (Expr::Const(true), _) | (_, Expr::Const(true)) => Expr::Const(true),
                (Expr::Const(false), x) | (x, Expr::Const(false)) => x,
                (x, y) => Expr::Or(Box::new(x), Box::new(y)),
            },
            Expr::Not(a) => match a.substitute(specials, bits) {
                Expr::Const(c) => Expr::Const(!c),
                x => Expr::Not(Box::new(x)),
            },
            Expr::P(p) if Self::special(p) => {
                let i = specials.iter().position(|s| *s == p).expect("collected");
                Expr::Const(bits >> i & 1 != 0)
            }
            e => e.clone(),
        }
    }

    /// The time window `[lo, hi)` outside which the expression is false
    /// (from `after`/`before` in its top-level conjunction).
    pub fn time_window(&self) -> (u64, u64) {
        match self {
            Expr::And(a, b) => {
                let (l1, h1) = a.time_window();
                let (l2, h2) = b.time_window();
                (l1.max(l2), h1.min(h2))
            }
            Expr::P(Prim::After(t)) => (*t, u64::MAX),
            Expr::P(Prim::Before(t)) => (0, *t),
            _ => (0, u64::MAX),
        }
    }

    /// The operands of a chain of `and`s.
    fn conjuncts<'a>(&'a self, out: &mut Vec<&'a Expr>) {
        match self {
            Expr::And(a, b) => {
                a.conjuncts(out);
                b.conjuncts(out);
            }
            e => out.push(e),
        }
    }

    /// A superset of the pages of `ix` holding packets that match.
    pub fn pages(&self, ix: &Index) -> Result<RoaringBitmap> {
        if self.vlan_shifts_unguarded() {
            return ix.all_pages();
        }
        // Every page with a record: only needed by negations and constants.
        let all = std::cell::OnceCell::new();
        self.pages_neg(ix, &all, false)
    }

    /// libpcap's `vlan` moves the offsets of every primitive written after
    /// it, wherever that primitive sits in the expression: in
    /// `(host A and vlan 1) or icmp` tcpdump tests `icmp` four bytes further
    /// into every frame, tagged or not, and untagged frames can match on
    /// bytes that are not their protocol fields. The exact test runs that
    /// same program, so it agrees with tcpdump; the index keys frames by
    /// what they are, so its pages are a superset only where every frame
    /// that can match is tagged: a plain conjunction of primitives. Any
    /// other expression with a primitive after a `vlan` is answered from
    /// every page (found by `random_queries_equal_tcpdump`).
    fn vlan_shifts_unguarded(&self) -> bool {
        fn after_vlan(e: &Expr, seen: &mut bool) -> bool {
            match e {
                Expr::And(a, b) | Expr::Or(a, b) => after_vlan(a, seen) | after_vlan(b, seen),
                Expr::Not(a) => after_vlan(a, seen),
                Expr::P(p) => {
                    let shifted = *seen;
                    *seen |= matches!(p, Prim::Vlan(_));
                    shifted
                }
                Expr::Const(_) => false,
            }
        }
        let mut parts = Vec::new();
        self.conjuncts(&mut parts);
        let plain = parts
            .iter()
            .all(|e| matches!(e, Expr::P(_) | Expr::Const(_)));
        !plain && after_vlan(self, &mut false)
    }

    fn pages_neg(
        &self,
        ix: &Index,
        all: &std::cell::OnceCell<RoaringBitmap>,
        neg: bool,
    ) -> Result<RoaringBitmap> {
        let every = || -> Result<&RoaringBitmap> {
            if all.get().is_none() {
                let _ = all.set(ix.all_pages()?);
            }
            Ok(all.get().expect("set above"))
        };
        Ok(match (self, neg) {
            (Expr::And(..), false) => {
                // The conjuncts, most selective first (by the page counts
                // of their keys, which cost a key-map look-up, not a
                // posting). Once the pages found are few, a conjunct whose
                // key is on many more pages is not intersected: the result
                // stays a superset (the exact test decides), and the large
                // posting is neither read nor decoded.
                let mut parts = Vec::new();
                self.conjuncts(&mut parts);
                let mut est: Vec<(u64, &Expr)> = Vec::with_capacity(parts.len());
                for e in parts {
                    let n = match e {
                        Expr::P(p) => match prim_key(p) {
                            Some(k) => ix.key_pages(&k)?,
                            None => u64::MAX,
                        },
                        _ => u64::MAX,
                    };
                    est.push((n, e));
                }
                est.sort_by_key(|x| x.0);
                let mut acc: Option<RoaringBitmap> = None;
                for (n, e) in est {
                    if let Some(a) = &acc {
                        if a.is_empty() {
                            break;
                        }
                        if a.len() <= FEW_PAGES && n > a.len().saturating_mul(SKIP_RATIO) {
                            continue;
                        }
                    }
                    let x = e.pages_neg(ix, all, false)?;
                    acc = Some(match acc {
                        None => x,
                        Some(a) => a & x,
                    });
                }
                acc.unwrap_or_default()
            }
            (Expr::Or(a, b), true) => {
                let x = a.pages_neg(ix, all, neg)?;
                if x.is_empty() {
                    return Ok(x);
                }
                x & b.pages_neg(ix, all, neg)?
            }
            (Expr::And(a, b), true) | (Expr::Or(a, b), false) => {
                a.pages_neg(ix, all, neg)? | b.pages_neg(ix, all, neg)?
            }
            (Expr::Not(a), n) => a.pages_neg(ix, all, !n)?,
            (Expr::Const(c), n) => {
                if *c != n {
                    every()?.clone()
                } else {
                    RoaringBitmap::new()
                }
            }
            (Expr::P(Prim::Before(t)), false) | (Expr::P(Prim::After(t)), true) => {
                ix.time_pages(0, *t)? & every()?
            }
            (Expr::P(Prim::After(t)), false) | (Expr::P(Prim::Before(t)), true) => {
                ix.time_pages(*t, u64::MAX)? & every()?
            }
            (Expr::P(_), true) => every()?.clone(),
            (Expr::P(p), false) => prim_pages(p, ix)?,
        })
    }
}

/// The one index key a primitive looks up, if it is that simple.
fn prim_key(p: &Prim) -> Option<Key> {
    Some(match p {
        Prim::Host { addr, .. } => host_key(*addr, false),
        Prim::InnerHost(addr) => host_key(*addr, true),
        Prim::Net { addr, bits, .. } | Prim::InnerNet(addr, bits) => {
            let inner = matches!(p, Prim::InnerNet(..));
            let (lo, hi) = range_of(*addr, *bits);
            if lo != hi {
                return None;
            }
            host_key(lo, inner)
        }
        Prim::Port { port, .. } => Key::Port(*port),
        Prim::Proto { proto, .. } => Key::Proto(*proto),
        Prim::Named(n) => match *n {
            "tcp" => Key::Proto(6),
            "udp" => Key::Proto(17),
            "sctp" => Key::Proto(132),
            "icmp" => Key::Proto(1),
            "icmp6" => Key::Proto(58),
            "ip" => Key::EtherType(0x0800),
            "ip6" => Key::EtherType(0x86DD),
            "arp" => Key::EtherType(0x0806),
            _ => return None,
        },
        Prim::Vlan(Some(v)) => Key::Vlan(*v),
        Prim::Vlan(None) => Key::VlanAny,
        Prim::Before(_) | Prim::After(_) => return None,
    })
}

fn prim_pages(p: &Prim, ix: &Index) -> Result<RoaringBitmap> {
    if let Some(k) = prim_key(p) {
        return ix.lookup(&k);
    }
    match p {
        Prim::Net { addr, bits, .. } => net_pages(ix, *addr, *bits, false),
        Prim::InnerNet(addr, bits) => net_pages(ix, *addr, *bits, true),
        Prim::Named(o) => bail!("no index key for {o}"),
        _ => unreachable!("single-key primitives and time are handled before"),
    }
}

fn net_pages(ix: &Index, addr: IpAddr, bits: u8, inner: bool) -> Result<RoaringBitmap> {
    let (lo, hi) = range_of(addr, bits);
    if lo == hi {
        return ix.lookup(&host_key(lo, inner));
    }
    ix.lookup_range(
        &host_key(lo, inner).to_bytes(),
        &host_key(hi, inner).to_bytes(),
    )
}

/// Page sets at most this large are not intersected with conjuncts whose
/// keys are on [`SKIP_RATIO`] times as many pages or more.
const FEW_PAGES: u64 = 256;
/// See [`FEW_PAGES`].
const SKIP_RATIO: u64 = 16;

/// Compiles a tcpdump expression to classic BPF.
pub type Compiler = Box<dyn Fn(&str) -> Result<Vec<SockFilter>>>;

enum Verdict {
    Accept,
    Reject,
    Bpf(Program<'static>),
}

/// The exact per-packet test of a query (and of an optional extra BPF
/// filter, run separately as `hpcapctl` runs filters).
pub struct Matcher {
    expr: Expr,
    specials: Vec<Prim>,
    cache: HashMap<u64, Verdict>,
    extra: Option<Program<'static>>,
    compile: Compiler,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matcher").field("expr", &self.expr).finish()
    }
}

fn leak_verified(insns: Vec<SockFilter>) -> Result<Program<'static>> {
    // A handful of programs per run (one per combination of time and tunnel
    // primitives that occurs): leaked to get a 'static verified program.
    let insns: &'static [SockFilter] = Box::leak(insns.into_boxed_slice());
    bpf::verify(insns).map_err(|e| anyhow!("the compiled filter does not verify: {e:?}"))
}

impl Matcher {
    /// A matcher for `expr`, with `extra` (a tcpdump expression) compiled
    /// as its own program, compiling with libpcap (as hpcapctl does).
    pub fn new(expr: &Expr, extra: Option<&str>) -> Result<Self> {
        Self::with_compiler(
            expr,
            extra,
            Box::new(|s: &str| hpcap::bpfc::compile(s).map_err(|e| anyhow!("{e}"))),
        )
    }

    /// As [`Matcher::new`] with another compiler (tests).
    pub fn with_compiler(expr: &Expr, extra: Option<&str>, compile: Compiler) -> Result<Self> {
        let mut sp = Vec::new();
        expr.collect_special(&mut sp);
        if sp.len() > 16 {
            bail!("too many time and inner primitives in one query (at most 16)");
        }
        let specials: Vec<Prim> = sp.into_iter().cloned().collect();
        let extra = match extra {
            Some(s) => Some(leak_verified(compile(s)?)?),
            None => None,
        };
        let mut m = Self {
            expr: expr.clone(),
            specials,
            cache: HashMap::new(),
            extra,
            compile,
        };
        // Compile every variant up front when there are few, so that errors
        // show before any file is read.
        if m.specials.len() <= 4 {
            for bits in 0..(1u64 << m.specials.len()) {
                m.verdict(bits)?;
            }
        }
        Ok(m)
    }

    /// The tcpdump expression the query means when every time and inner
    /// primitive is true (for `--explain` and tests).
    pub fn tcpdump_expr(&self) -> Option<String> {
        let refs: Vec<&Prim> = self.specials.iter().collect();
        let bits = (1u64 << refs.len()) - 1;
        match self.expr.substitute(&refs, bits) {
            Expr::Const(_) => None,
            e => Some(e.to_tcpdump()),
        }
    }

    fn verdict(&mut self, bits: u64) -> Result<&Verdict> {
        if !self.cache.contains_key(&bits) {
            let refs: Vec<&Prim> = self.specials.iter().collect();
            let v = match self.expr.substitute(&refs, bits) {
                Expr::Const(true) => Verdict::Accept,
                Expr::Const(false) => Verdict::Reject,
                e => match (self.compile)(&e.to_tcpdump()) {
                    Ok(insns) => Verdict::Bpf(leak_verified(insns)?),
                    // libpcap's optimizer refuses programs that are always
                    // false (tcpdump then exits with this message).
                    Err(err) if format!("{err:#}").contains("expression rejects all packets") => {
                        Verdict::Reject
                    }
                    Err(err) => return Err(err),
                },
            };
            self.cache.insert(bits, v);
        }
        Ok(&self.cache[&bits])
    }

    /// Does the packet match?
    pub fn matches(&mut self, ts: u64, orig_len: u32, data: &[u8]) -> Result<bool> {
        let mut bits = 0u64;
        let mut inner: Option<Vec<Key>> = None;
        for (i, p) in self.specials.iter().enumerate() {
            let v = match p {
                Prim::Before(t) => ts < *t,
                Prim::After(t) => ts >= *t,
                Prim::InnerHost(a) => {
                    let keys = inner.get_or_insert_with(|| inner_keys(data));
                    keys.contains(&host_key(*a, true))
                }
                Prim::InnerNet(a, b) => {
                    let keys = inner.get_or_insert_with(|| inner_keys(data));
                    let (lo, hi) = range_of(*a, *b);
                    let (lo, hi) = (host_key(lo, true), host_key(hi, true));
                    keys.iter().any(|k| {
                        std::mem::discriminant(k) == std::mem::discriminant(&lo)
                            && *k >= lo
                            && *k <= hi
                    })
                }
                _ => unreachable!("only special primitives"),
            };
            if v {
                bits |= 1 << i;
            }
        }
        let ok = match self.verdict(bits)? {
            Verdict::Accept => true,
            Verdict::Reject => false,
            Verdict::Bpf(p) => p.matches(data, orig_len),
        };
        Ok(ok
            && self
                .extra
                .as_ref()
                .is_none_or(|p| p.matches(data, orig_len)))
    }
}

fn inner_keys(data: &[u8]) -> Vec<Key> {
    let mut v = Vec::new();
    dissect(data, &mut |k| {
        if matches!(k, Key::InnerIp4(_) | Key::InnerIp6(_)) {
            v.push(k);
        }
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_translates() {
        let e = parse(
            "host 10.1.2.3 and (tcp port 443 or udp dst port 53) and not vlan 7 and after 2026-11-27T10:00:00Z",
            0,
        )
        .unwrap();
        let m = Matcher::with_compiler(
            &e,
            None,
            Box::new(|_| {
                Ok(vec![SockFilter {
                    code: 6,
                    jt: 0,
                    jf: 0,
                    k: 1,
                }])
            }),
        )
        .unwrap();
        assert_eq!(
            m.tcpdump_expr().unwrap(),
            "((host 10.1.2.3 and (tcp port 443 or udp dst port 53)) and not vlan 7)"
        );
        let (lo, hi) = e.time_window();
        assert_eq!(hi, u64::MAX);
        assert_eq!(lo, hpcap::util::parse_time("2026-11-27 10:00:00").unwrap());
        assert_eq!(
            parse("net 10.0.0.0 mask 255.255.0.0", 0).unwrap(),
            Expr::P(Prim::Net {
                dir: Dir::Any,
                addr: "10.0.0.0".parse().unwrap(),
                bits: 16
            })
        );
        assert_eq!(
            parse("after 5m ago", 1_000_000_000_000).unwrap(),
            Expr::P(Prim::After(1_000_000_000_000 - 300_000_000_000))
        );
        for bad in [
            "",
            "host",
            "host foo.example",
            "net 10.0.0.1/8",
            "port 99999",
            "(host 1.2.3.4",
            "frobnicate",
            "vlan 5000",
        ] {
            assert!(parse(bad, 0).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn time_only_queries_need_no_bpf() {
        let e = parse("after 100 and before 200", 0).unwrap();
        let mut m =
            Matcher::with_compiler(&e, None, Box::new(|_| bail!("no compiler needed"))).unwrap();
        assert!(m.tcpdump_expr().is_none());
        assert!(!m.matches(99_999_999_999, 60, &[0; 60]).unwrap());
        assert!(m.matches(100_000_000_000, 60, &[0; 60]).unwrap());
        assert!(!m.matches(200_000_000_000, 60, &[0; 60]).unwrap());
    }

    #[test]
    fn cidr_ranges() {
        let (lo, hi) = range_of("10.1.2.0".parse().unwrap(), 23);
        assert_eq!(
            (lo.to_string(), hi.to_string()),
            ("10.1.2.0".into(), "10.1.3.255".into())
        );
        let (lo, hi) = range_of("2001:db8::".parse().unwrap(), 32);
        assert_eq!(hi.to_string(), "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(lo.to_string(), "2001:db8::");
        assert_eq!(
            range_of("1.2.3.4".parse().unwrap(), 0).1.to_string(),
            "255.255.255.255"
        );
    }
}
