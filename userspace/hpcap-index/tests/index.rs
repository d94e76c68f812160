// SPDX-License-Identifier: MIT
//! The index against a brute-force scan of the same files: every key's page
//! set, the page directory, the block table, random CIDR ranges, random
//! time ranges and random query page sets; in pcap, pcapng and RAW files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hpcap::core::capfile::Packets;
use hpcap::files::{OutFormat, PacketWriter};
use hpcap_index::dissect::{dissect, Key};
use hpcap_index::files::{index_file, write_atomic};
use hpcap_index::format::NO_RECORD;
use hpcap_index::query::{parse, range_of, Matcher};
use hpcap_index::reader::{index_path, read_run, runs, Index, ReadStats};
use hpcap_index::synth::{host4, host6, Mix, Rng, Spec, Traffic};
use proptest::prelude::*;

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmpdir(tag: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!(
        "hpcap-index-test-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    Tmp(p)
}

fn write_corpus(path: &Path, fmt: OutFormat, spec: Spec, n: usize) {
    let f = File::create(path).unwrap();
    let mut w = PacketWriter::new(BufWriter::new(f), fmt, 0, "t").unwrap();
    let mut t = Traffic::new(spec);
    let mut buf = Vec::new();
    for i in 0..n {
        let ts = t.next_frame(&mut buf);
        // Some truncated captures (snaplen): keys must come from what is there.
        let cap = if i % 97 == 0 {
            buf.len().min(40)
        } else {
            buf.len()
        };
        w.write(ts, buf.len() as u32, &buf[..cap]).unwrap();
    }
    w.finish(None).unwrap();
}

/// (record offset, ts, frame) of every packet.
fn all_packets(path: &Path, raw: bool) -> Vec<(u64, u64, Vec<u8>)> {
    let data = std::fs::read(path).unwrap();
    let mut it = if raw {
        Packets::new_raw(&data)
    } else {
        Packets::new(&data).unwrap()
    };
    let mut v = Vec::new();
    while let Some(p) = it.next() {
        let p = p.unwrap();
        v.push((it.record_offset() as u64, p.ts_ns, p.data.to_vec()));
    }
    v
}

fn brute_keys(pk: &[(u64, u64, Vec<u8>)]) -> BTreeMap<Key, BTreeSet<u32>> {
    let mut m: BTreeMap<Key, BTreeSet<u32>> = BTreeMap::new();
    for (rec, _, f) in pk {
        dissect(f, &mut |k| {
            m.entry(k).or_default().insert((rec >> 12) as u32);
        });
    }
    m
}

fn corpus(dir: &Path, fmt: OutFormat, mix: Mix, seed: u64) -> (PathBuf, Vec<(u64, u64, Vec<u8>)>) {
    let ext = match fmt {
        OutFormat::Raw => "raw",
        OutFormat::Pcapng => "pcapng",
        _ => "pcap",
    };
    let p = dir.join(format!("c{seed}.{ext}"));
    let spec = Spec {
        hosts: 300,
        flows: 900,
        mix,
        seed,
        ..Spec::default()
    };
    write_corpus(&p, fmt, spec, 6000);
    let fi = index_file(&p, 12, false).unwrap();
    assert!(fi.stopped.is_none(), "{:?}", fi.stopped);
    write_atomic(&index_path(&p), &fi.built.bytes).unwrap();
    let pk = all_packets(&p, fmt == OutFormat::Raw);
    (p, pk)
}

#[test]
fn every_key_page_directory_and_blocks_match_a_brute_force_scan() {
    let d = tmpdir("keys");
    for (fmt, mix) in [
        (OutFormat::Pcap, Mix::Even),
        (OutFormat::Pcapng, Mix::Zipf(1.0)),
        (OutFormat::Raw, Mix::Even),
        (OutFormat::PcapUs, Mix::Zipf(1.2)),
    ] {
        let (p, pk) = corpus(&d.0, fmt, mix, 7);
        let ix = Index::open(&index_path(&p)).unwrap();
        assert_eq!(ix.header.packets, pk.len() as u64);
        assert_eq!(ix.header.data_len, std::fs::metadata(&p).unwrap().len());
        // Every key, exactly.
        let want = brute_keys(&pk);
        let got: BTreeMap<Key, BTreeSet<u32>> = ix
            .all_keys()
            .unwrap()
            .into_iter()
            .map(|(k, b)| (k, b.iter().collect()))
            .collect();
        assert_eq!(got.len(), want.len(), "{fmt:?}: number of keys");
        assert_eq!(got, want, "{fmt:?}: key page sets");
        for (k, pages) in want.iter().take(200) {
            let l: BTreeSet<u32> = ix.lookup(k).unwrap().iter().collect();
            assert_eq!(&l, pages, "{fmt:?}: lookup {k:?}");
        }
        // A key that is not there.
        assert!(ix.lookup(&Key::Ip4([192, 0, 2, 99])).unwrap().is_empty());
        // Page directory: first record start of each page.
        let dir = ix.pagedir().unwrap();
        let mut first: BTreeMap<u32, u16> = BTreeMap::new();
        for (rec, _, _) in &pk {
            first
                .entry((rec >> 12) as u32)
                .or_insert((rec & 4095) as u16);
        }
        for (i, v) in dir.iter().enumerate() {
            assert_eq!(
                *v,
                first.get(&(i as u32)).copied().unwrap_or(NO_RECORD),
                "{fmt:?} page {i}"
            );
        }
        // Block table: time bounds and counts.
        let blocks = ix.blocks().unwrap();
        let total: u64 = blocks.iter().map(|b| u64::from(b.packets)).sum();
        assert_eq!(total, pk.len() as u64);
        for (rec, ts, _) in &pk {
            let b = blocks
                .iter()
                .find(|b| *rec >= b.start && *rec < b.end)
                .unwrap();
            assert!(b.min_ts <= *ts && *ts <= b.max_ts);
        }
        // Reading every page returns every packet once, in order.
        let f = File::open(&p).unwrap();
        assert!(!ix.contexts().unwrap().is_empty());
        let mut seen = Vec::new();
        let mut st = ReadStats::default();
        for (a, b) in runs(&ix.all_pages().unwrap(), 3) {
            read_run(&f, &ix, a, b, &mut st, &mut |p| {
                seen.push((p.record, p.ts_ns, p.data));
                true
            })
            .unwrap();
        }
        assert_eq!(seen, pk, "{fmt:?}: pages read back");
        // And page by page (runs ending inside records that continue on
        // the next page, as when long runs are split).
        let mut seen1 = Vec::new();
        for p in &ix.all_pages().unwrap() {
            read_run(&f, &ix, p, p, &mut st, &mut |x| {
                seen1.push((x.record, x.ts_ns, x.data));
                true
            })
            .unwrap();
        }
        assert_eq!(seen1, pk, "{fmt:?}: pages read back one by one");
        ix.check_data(&f).unwrap();
    }
}

#[test]
fn a_changed_data_file_is_refused() {
    let d = tmpdir("changed");
    let (p, _) = corpus(&d.0, OutFormat::Pcap, Mix::Even, 3);
    let ix = Index::open(&index_path(&p)).unwrap();
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len - 100).unwrap();
    assert!(ix.check_data(&f).is_err(), "shorter");
    f.set_len(len).unwrap(); // zeros where data was
    assert!(ix.check_data(&f).is_err(), "different tail");
}

fn in_cidr(k: &Key, a: IpAddr, bits: u8) -> bool {
    let (lo, hi) = range_of(a, bits);
    match (k, lo, hi) {
        (Key::Ip4(x), IpAddr::V4(l), IpAddr::V4(h)) => *x >= l.octets() && *x <= h.octets(),
        (Key::Ip6(x), IpAddr::V6(l), IpAddr::V6(h)) => *x >= l.octets() && *x <= h.octets(),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn random_cidrs_time_ranges_and_queries(seed in 1u64..1000, host in 0usize..320, bits in 0u8..=32, bits6 in 96u8..=128, t0 in 0u64..6000, dt in 0u64..4000) {
        let d = tmpdir("prop");
        let (p, pk) = corpus(&d.0, OutFormat::Pcapng, Mix::Zipf(1.0), seed);
        let ix = Index::open(&index_path(&p)).unwrap();
        let bk = brute_keys(&pk);
        // CIDR ranges, IPv4 and IPv6.
        for (a, b) in [(IpAddr::from(host4(host)), bits), (IpAddr::from(host6(host)), bits6)] {
            let (net, _) = range_of(a, b);
            let (lo, hi) = range_of(net, b);
            let (klo, khi) = match (lo, hi) {
                (IpAddr::V4(l), IpAddr::V4(h)) => (Key::Ip4(l.octets()), Key::Ip4(h.octets())),
                (IpAddr::V6(l), IpAddr::V6(h)) => (Key::Ip6(l.octets()), Key::Ip6(h.octets())),
                _ => unreachable!(),
            };
            let got: BTreeSet<u32> = ix.lookup_range(&klo.to_bytes(), &khi.to_bytes()).unwrap().iter().collect();
            let want: BTreeSet<u32> = bk.iter().filter(|(k, _)| in_cidr(k, net, b)).flat_map(|(_, s)| s.iter().copied()).collect();
            prop_assert_eq!(got, want, "{}/{}", net, b);
        }
        // Time ranges: every page with a packet in range is in the set.
        let ts0 = pk[0].1;
        let (lo, hi) = (ts0 + t0 * 1000, ts0 + (t0 + dt) * 1000);
        let tp = ix.time_pages(lo, hi).unwrap();
        for (rec, ts, _) in &pk {
            if *ts >= lo && *ts < hi {
                prop_assert!(tp.contains((rec >> 12) as u32));
            }
        }
        // Query page sets are supersets of the exact matches.
        let qs = [
            format!("host {}", IpAddr::from(host4(host))),
            format!("net {}/{} and not port 80", range_of(IpAddr::from(host4(host)), bits.max(8)).0, bits.max(8)),
            format!("(tcp and port 443) or vlan {}", 1 + host % 20),
            format!("host {} or (udp and after {}.{:09} and before {}.{:09})", IpAddr::from(host6(host)), lo / 1_000_000_000, lo % 1_000_000_000, hi / 1_000_000_000, hi % 1_000_000_000),
            format!("inner host {}", IpAddr::from(host4(host + 7000))),
        ];
        for q in &qs {
            let e = parse(q, 0).unwrap();
            let pages = e.pages(&ix).unwrap();
            let mut m = Matcher::new(&e, None).unwrap();
            for (rec, ts, f) in &pk {
                if m.matches(*ts, f.len() as u32, f).unwrap() {
                    prop_assert!(pages.contains((rec >> 12) as u32), "{}: page of a match missing", q);
                }
            }
        }
    }
}

#[test]
fn inner_host_matches_tunnel_payloads_only() {
    let d = tmpdir("inner");
    let (p, pk) = corpus(&d.0, OutFormat::Pcap, Mix::Even, 11);
    let ix = Index::open(&index_path(&p)).unwrap();
    let mut rng = Rng::new(5);
    let mut hits = 0;
    for _ in 0..20 {
        let h = rng.below(300) as usize;
        for (inner, off) in [(true, 7000), (true, 9000), (false, 0)] {
            let a = IpAddr::from(host4(h + off));
            let q = if inner {
                format!("inner host {a}")
            } else {
                format!("host {a}")
            };
            let e = parse(&q, 0).unwrap();
            let mut m = Matcher::new(&e, None).unwrap();
            let want: Vec<u64> = pk
                .iter()
                .filter(|(_, _, f)| {
                    let mut ks = Vec::new();
                    dissect(f, &mut |k| ks.push(k));
                    let k = if inner {
                        Key::InnerIp4(host4(h + off))
                    } else {
                        Key::Ip4(host4(h + off))
                    };
                    ks.contains(&k)
                })
                .map(|x| x.0)
                .collect();
            let got: Vec<u64> = pk
                .iter()
                .filter(|(_, ts, f)| m.matches(*ts, f.len() as u32, f).unwrap())
                .map(|x| x.0)
                .collect();
            if inner {
                assert_eq!(got, want, "{q}");
                hits += got.len();
            }
            let pages = e.pages(&ix).unwrap();
            for r in &got {
                assert!(pages.contains((r >> 12) as u32));
            }
        }
    }
    assert!(hits > 0, "the corpus has tunnels");
}
