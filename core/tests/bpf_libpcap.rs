// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! The BPF interpreter against libpcap: for a table of tcpdump filter
//! expressions, the program tcpdump compiles (`tcpdump -r trace -dd EXPR`)
//! must pass our verifier, and our verdict on every packet of a mixed trace
//! must equal libpcap's (`tcpdump -r trace -w - EXPR`). Skips without tcpdump.

use hpcap_core::bpf::{verify, SockFilter};
use hpcap_core::capfile::Packets;
use hpcap_core::raw::{write_pcap_header, write_pcap_record};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

const EXPRS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "arp",
    "ip",
    "ip6",
    "vlan",
    "vlan 100",
    "vlan and tcp",
    "tcp port 80",
    "udp port 53",
    "port 443",
    "portrange 1000-2000",
    "host 10.0.0.1",
    "src host 10.0.0.2",
    "dst net 192.168.0.0/16",
    "net 10.0.0.0/8",
    "ether host 02:00:00:00:00:01",
    "ether broadcast",
    "ether multicast",
    "ether proto 0x88cc",
    "ip proto 47",
    "ip multicast",
    "ip6 multicast",
    "ip6 and tcp",
    "ip6 and udp port 53",
    "icmp[icmptype] == icmp-echo",
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "ip[6:2] & 0x1fff != 0",
    "ip[0] & 0xf > 5",
    "ip[8] < 64",
    "ip[2:2] > 200",
    "less 100",
    "greater 1000",
    "len > 500",
    "len * 2 > 3000",
    "ip[1] % 4 == 0",
    "ip[1] * 3 / 2 > 100",
    "ip[1] ^ 0xff == 0xf0",
    "udp[8:4] = 0xdeadbeef",
    "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
    "(ip[2:2] - ((ip[0]&0xf)<<2)) - ((tcp[12]&0xf0)>>2) != 0",
    "tcp dst port 22 and not src net 10.0.0.0/8",
    "ip and (tcp or udp) and not port 22",
    "tcp port 80 or udp port 53 or icmp",
    "ip6 proto 58",
    "not ip and not ip6",
];

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.next() as usize % v.len()]
    }
}

fn frame(r: &mut Lcg) -> Vec<u8> {
    let macs: [[u8; 6]; 4] = [
        [2, 0, 0, 0, 0, 1],
        [2, 0, 0, 0, 0, 2],
        [0xff; 6],
        [1, 0, 0x5e, 0, 0, 1],
    ];
    let mut f = Vec::new();
    f.extend_from_slice(&r.pick(&macs));
    f.extend_from_slice(&r.pick(&macs[..2]));
    let vlan = r.next() % 5 == 0;
    if vlan {
        f.extend_from_slice(&[0x81, 0x00]);
        f.extend_from_slice(&(r.pick(&[100u16, 200]).to_be_bytes()));
    }
    let ports = [22u16, 53, 80, 443, 1500, 5000];
    let l4 = |r: &mut Lcg, f: &mut Vec<u8>, proto: u8| match proto {
        6 => {
            f.extend_from_slice(&r.pick(&ports).to_be_bytes());
            f.extend_from_slice(&r.pick(&ports).to_be_bytes());
            f.extend_from_slice(&r.next().to_be_bytes());
            f.extend_from_slice(&r.next().to_be_bytes());
            let doff = r.pick(&[5u8, 8]);
            f.push(doff << 4);
            f.push(r.pick(&[0x02u8, 0x12, 0x10, 0x18, 0x11]));
            f.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
            f.resize(f.len() + (doff as usize - 5) * 4, 1);
            if r.next() % 2 == 0 {
                f.extend_from_slice(b"GET / HTTP/1.1\r\n");
            }
        }
        17 => {
            f.extend_from_slice(&r.pick(&ports).to_be_bytes());
            f.extend_from_slice(&r.pick(&ports).to_be_bytes());
            f.extend_from_slice(&[0, 20, 0, 0]);
            let w = r.pick(&[0xdead_beefu32, 0x1234_5678]);
            f.extend_from_slice(&w.to_be_bytes());
        }
        1 | 58 => {
            f.push(r.pick(&[8u8, 0, 3, 128]));
            f.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0]);
        }
        _ => f.extend_from_slice(&[0u8; 8]),
    };
    match r.next() % 10 {
        0..=5 => {
            f.extend_from_slice(&[0x08, 0x00]);
            let opts = r.next() % 4 == 0;
            let ip = f.len();
            f.push(if opts { 0x46 } else { 0x45 });
            f.push(r.next() as u8);
            f.extend_from_slice(&[0, 0, 0, 0]);
            f.extend_from_slice(&r.pick(&[0u16, 0x2000, 0x0010, 0x4000]).to_be_bytes());
            f.push(r.pick(&[1u8, 63, 64, 128]));
            let proto = r.pick(&[6u8, 17, 1, 47]);
            f.push(proto);
            f.extend_from_slice(&[0, 0]);
            let addrs = [
                [10, 0, 0, 1],
                [10, 0, 0, 2],
                [192, 168, 1, 1],
                [224, 0, 0, 5],
                [8, 8, 8, 8],
            ];
            f.extend_from_slice(&r.pick(&addrs));
            f.extend_from_slice(&r.pick(&addrs));
            if opts {
                f.extend_from_slice(&[1, 1, 1, 0]);
            }
            l4(r, &mut f, proto);
            let tot = (f.len() - ip) as u16;
            f[ip + 2..ip + 4].copy_from_slice(&tot.to_be_bytes());
        }
        6..=7 => {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 0]);
            let proto = r.pick(&[6u8, 17, 58]);
            f.push(proto);
            f.push(64);
            let a6 = [[0x20u8, 1, 0xd, 0xb8], [0xff, 2, 0, 0]];
            for _ in 0..2 {
                f.extend_from_slice(&r.pick(&a6));
                f.extend_from_slice(&[0; 11]);
                f.push(1);
            }
            l4(r, &mut f, proto);
        }
        8 => {
            f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
            f.extend_from_slice(&[0; 20]);
        }
        _ => {
            f.extend_from_slice(&[0x88, 0xcc]);
            f.extend_from_slice(&[0; 20]);
        }
    }
    let pad = r.pick(&[0usize, 0, 10, 600, 1400]);
    f.resize((f.len() + pad).max(60), 0);
    f
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hpcap-core-bpf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn parse_dd(text: &str) -> Vec<SockFilter> {
    text.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: Vec<u32> = l
                .trim_matches(|c| "{}, ".contains(c))
                .split(',')
                .map(|x| {
                    let x = x.trim();
                    match x.strip_prefix("0x") {
                        Some(h) => u32::from_str_radix(h, 16).unwrap(),
                        None => x.parse().unwrap(),
                    }
                })
                .collect();
            SockFilter {
                code: v[0] as u16,
                jt: v[1] as u8,
                jf: v[2] as u8,
                k: v[3],
            }
        })
        .collect()
}

#[test]
fn interpreter_agrees_with_libpcap() {
    if !Command::new("tcpdump")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("tcpdump not installed: skipped");
        return;
    }
    // The trace: 600 frames, some cut short (caplen < wire length) so that
    // out-of-bounds loads happen.
    let mut r = Lcg(42);
    let mut file = vec![0u8; 24];
    write_pcap_header(&mut file, 0, true, 0).unwrap();
    let mut frames = Vec::new();
    for i in 0..600u64 {
        let f = frame(&mut r);
        let cap = if i % 7 == 3 {
            (r.next() as usize % f.len()).max(1)
        } else {
            f.len()
        };
        let at = file.len();
        file.resize(at + 16 + cap, 0);
        write_pcap_record(
            &mut file,
            at,
            true,
            1_000_000_000 + i * 1000,
            f.len() as u32,
            &f[..cap],
        )
        .unwrap();
        frames.push((f[..cap].to_vec(), f.len() as u32));
    }
    let trace = tmp("trace.pcap");
    std::fs::write(&trace, &file).unwrap();
    let tr = trace.to_str().unwrap();
    let mut nonzero = 0;
    for expr in EXPRS {
        let dd = Command::new("tcpdump")
            .args(["-r", tr, "-dd", expr])
            .output()
            .unwrap();
        assert!(
            dd.status.success(),
            "{expr}: {}",
            String::from_utf8_lossy(&dd.stderr)
        );
        let prog = parse_dd(&String::from_utf8(dd.stdout).unwrap());
        let p = verify(&prog).unwrap_or_else(|e| panic!("{expr}: {e:?}"));
        let ours: BTreeSet<u64> = frames
            .iter()
            .enumerate()
            .filter(|(_, (data, wire))| p.matches(data, *wire))
            .map(|(i, _)| 1_000_000_000 + i as u64 * 1000)
            .collect();
        let out = Command::new("tcpdump")
            .args(["-r", tr, "-w", "-", expr])
            .output()
            .unwrap();
        assert!(out.status.success(), "{expr}");
        let theirs: BTreeSet<u64> = Packets::new(&out.stdout)
            .unwrap()
            .map(|p| p.unwrap().ts_ns)
            .collect();
        assert_eq!(ours, theirs, "{expr}");
        if !ours.is_empty() && ours.len() < frames.len() {
            nonzero += 1;
        }
    }
    // The trace discriminates: most expressions match some but not all frames.
    assert!(nonzero >= EXPRS.len() - 4, "{nonzero}");
    std::fs::remove_file(trace).ok();
}
