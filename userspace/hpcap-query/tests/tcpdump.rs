// SPDX-License-Identifier: MIT
//! hpcap-query against tcpdump: over a directory of generated captures
//! (pcap and pcapng, with indexes, plus one file without), the packets
//! `hpcap-query` writes are exactly those `tcpdump -r FILE 'EXPR'` returns
//! from every file, cut to the query's time window and merged in time order
//! (ties in file order). Fixed queries and random ones (proptest), and
//! `--flows-csv` restricting the search to a flow-table answer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::BufWriter;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use hpcap::core::capfile::Packets;
use hpcap::files::{OutFormat, PacketWriter};
use hpcap_index::files::{index_file, write_atomic};
use hpcap_index::reader::index_path;
use hpcap_index::synth::{host4, host6, Mix, Spec, Traffic};
use hpcap_testutil::{bin, TempDir};
use proptest::prelude::*;

type Pkt = (u64, u32, Vec<u8>);

struct Corpus {
    dir: TempDir,
    t0: u64,
    t1: u64,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let dir = TempDir::new("query");
        let base = Spec::default().ts_start;
        // Three "probes' files" one after the other, plus an overlapping one.
        let layout = [
            (
                "a/2025-11-27/10/20251127-100000.000000000-hpcap0.pcapng",
                OutFormat::Pcapng,
                0,
                Mix::Zipf(1.0),
                true,
            ),
            (
                "a/2025-11-27/10/20251127-100000.010000000-hpcap0.pcapng",
                OutFormat::Pcapng,
                10_000_000,
                Mix::Even,
                true,
            ),
            (
                "a/2025-11-27/10/20251127-100000.005000000-hpcap1.pcap",
                OutFormat::Pcap,
                5_000_000,
                Mix::Even,
                true,
            ),
            (
                "b/x/other.pcap",
                OutFormat::Pcap,
                2_000_000,
                Mix::Zipf(1.0),
                false,
            ),
        ];
        for (i, (rel, fmt, off, mix, indexed)) in layout.into_iter().enumerate() {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let mut w =
                PacketWriter::new(BufWriter::new(File::create(&p).unwrap()), fmt, 0, "t").unwrap();
            let mut t = Traffic::new(Spec {
                hosts: 200,
                flows: 600,
                mix,
                seed: 100 + i as u64,
                ts_start: base + off,
                ts_step: 1000,
                ..Spec::default()
            });
            let mut f = Vec::new();
            for _ in 0..8000 {
                let ts = t.next_frame(&mut f);
                w.write(ts, f.len() as u32, &f).unwrap();
            }
            w.finish(None).unwrap();
            if indexed {
                let fi = index_file(&p, 12, false).unwrap();
                write_atomic(&index_path(&p), &fi.built.bytes).unwrap();
            }
        }
        Corpus {
            dir,
            t0: base,
            t1: base + 20_000_000,
        }
    })
}

fn read_pkts(p: &Path) -> Vec<Pkt> {
    let data = std::fs::read(p).unwrap();
    Packets::new(&data)
        .unwrap()
        .map(|r| {
            let r = r.unwrap();
            (r.ts_ns, r.orig_len, r.data.to_vec())
        })
        .collect()
}

/// What tcpdump returns for `expr` over every file (in the order
/// hpcap-query sorts them: by directory argument, then path), cut to
/// `lo <= ts < hi`, merged by (timestamp, file rank).
fn expected(dirs: &[PathBuf], expr: &str, lo: u64, hi: u64) -> Vec<Pkt> {
    let mut per_file = Vec::new();
    for d in dirs {
        for f in hpcap_index::files::data_files(d, false).unwrap() {
            let out = corpus().dir.path().join(format!(
                "tcpdump-{}-{:?}.pcap",
                std::process::id(),
                std::thread::current().id()
            ));
            let mut cmd = Command::new("tcpdump");
            cmd.arg("--time-stamp-precision=nano")
                .arg("-r")
                .arg(&f)
                .arg("-w")
                .arg(&out);
            if !expr.is_empty() {
                cmd.arg(expr);
            }
            let o = cmd.output().expect("tcpdump");
            if String::from_utf8_lossy(&o.stderr).contains("expression rejects all packets") {
                per_file.push(Vec::new());
                continue;
            }
            assert!(
                o.status.success(),
                "tcpdump {expr:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let v: Vec<Pkt> = read_pkts(&out)
                .into_iter()
                .filter(|p| p.0 >= lo && p.0 < hi)
                .collect();
            std::fs::remove_file(&out).unwrap();
            per_file.push(v);
        }
    }
    let mut heap = BinaryHeap::new();
    let mut pos = vec![0usize; per_file.len()];
    for (i, v) in per_file.iter().enumerate() {
        if let Some(p) = v.first() {
            heap.push(Reverse((p.0, i)));
        }
    }
    let mut out = Vec::new();
    while let Some(Reverse((_, i))) = heap.pop() {
        out.push(per_file[i][pos[i]].clone());
        pos[i] += 1;
        if let Some(p) = per_file[i].get(pos[i]) {
            heap.push(Reverse((p.0, i)));
        }
    }
    out
}

/// What `tcpdump -r FILE EXPR` returns.
fn tcpdump_file(f: &Path, expr: &str) -> Vec<Pkt> {
    let out = corpus().dir.path().join(format!(
        "tcpdump1-{}-{:?}.pcap",
        std::process::id(),
        std::thread::current().id()
    ));
    let o = Command::new("tcpdump")
        .arg("--time-stamp-precision=nano")
        .arg("-r")
        .arg(f)
        .arg("-w")
        .arg(&out)
        .arg(expr)
        .output()
        .expect("tcpdump");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v = read_pkts(&out);
    std::fs::remove_file(&out).unwrap();
    v
}

fn query(dirs: &[PathBuf], q: &str, extra: &[&str]) -> Vec<Pkt> {
    let out = corpus().dir.path().join(format!(
        "q-{}-{:?}.pcapng",
        std::process::id(),
        std::thread::current().id()
    ));
    let o = Command::new(bin("hpcap-query"))
        .args(extra)
        .arg("-w")
        .arg(&out)
        .arg(q)
        .args(dirs)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "hpcap-query {q:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = read_pkts(&out);
    std::fs::remove_file(&out).unwrap();
    v
}

fn ts_arg(t: u64) -> String {
    format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000)
}

fn check(tcpdump_expr: &str, lo: Option<u64>, hi: Option<u64>) {
    let c = corpus();
    let dirs = vec![c.dir.path().join("a"), c.dir.path().join("b")];
    let mut q = if tcpdump_expr.is_empty() {
        String::new()
    } else {
        format!("({tcpdump_expr})")
    };
    for (w, t) in [("after", lo), ("before", hi)] {
        if let Some(t) = t {
            if !q.is_empty() {
                q.push_str(" and ");
            }
            q.push_str(&format!("{w} {}", ts_arg(t)));
        }
    }
    let want = expected(&dirs, tcpdump_expr, lo.unwrap_or(0), hi.unwrap_or(u64::MAX));
    let got = query(&dirs, &q, &[]);
    assert_eq!(got.len(), want.len(), "{q}: packet count");
    assert!(got == want, "{q}: packets differ");
    // Through read-ahead advice and pread instead of the io_uring: the
    // same.
    let adv = query(&dirs, &q, &["--io", "advise"]);
    assert!(adv == want, "{q}: --io advise differs");
    // Without indexes: the same.
    let scan = query(&dirs, &q, &["--no-index"]);
    assert!(scan == want, "{q}: --no-index differs");
}

#[test]
fn fixed_queries_equal_tcpdump() {
    let c = corpus();
    let h = |i: usize| IpAddr::from(host4(i)).to_string();
    let h6 = |i: usize| IpAddr::from(host6(i)).to_string();
    let mid = (c.t0 + c.t1) / 2;
    for (e, lo, hi) in [
        (format!("host {}", h(0)), None, None),
        (format!("host {} and port 443", h(3)), Some(mid), None),
        (
            format!("src host {} or dst host {}", h(5), h(6)),
            None,
            Some(mid),
        ),
        ("net 10.0.0.0/24 and not tcp".to_string(), None, None),
        (format!("host {}", h6(4)), None, None),
        (
            "net 2001:db8::/120 and udp".to_string(),
            Some(c.t0 + 3_000_000),
            Some(c.t0 + 12_000_000),
        ),
        ("vlan 7".to_string(), None, None),
        (format!("vlan and host {}", h(2)), None, None),
        ("arp".to_string(), None, None),
        // libpcap tests what follows a `vlan` four bytes further in, even in
        // another branch (see `Expr::vlan_shifts_unguarded`).
        (format!("(host {} and vlan 1) or icmp", h(1)), None, None),
        ("not vlan and icmp".to_string(), None, None),
        ("(vlan or arp) and not tcp".to_string(), None, None),
        ("icmp or ip6 proto 17".to_string(), None, None),
        ("tcp dst port 22".to_string(), None, None),
        ("not ip and not ip6".to_string(), None, None),
        (String::new(), Some(mid), Some(mid + 1_000_000)),
        ("host 192.0.2.1".to_string(), None, None),
    ] {
        check(&e, lo, hi);
    }
}

#[test]
fn extra_bpf_is_applied_on_top() {
    let c = corpus();
    let dirs = vec![c.dir.path().join("a")];
    let h = IpAddr::from(host4(1)).to_string();
    let got = query(&dirs, &format!("host {h}"), &["--bpf", "tcp[13] & 2 != 0"]);
    let all = expected(&dirs, &format!("host {h}"), 0, u64::MAX);
    let bpf = expected(&dirs, "tcp[13] & 2 != 0", 0, u64::MAX);
    let want: Vec<Pkt> = all.into_iter().filter(|p| bpf.contains(p)).collect();
    assert!(!want.is_empty());
    assert!(got == want);
}

/// `--flows-csv`: the answer of a flow-table query (here computed from the
/// flow tables hpcap-index builds) restricts hpcap-query to the listed
/// files and page ranges, and what it returns is still exactly tcpdump's
/// answer for those files; files not listed are pruned and counted.
#[test]
fn flows_csv_restricts_files_and_pages() {
    let c = corpus();
    let dir = c.dir.path().join("a");
    let files = hpcap_index::files::data_files(&dir, false).unwrap();
    assert_eq!(files.len(), 3);
    let host: IpAddr = IpAddr::from(host4(3));
    let expr = format!("ip host {host}");
    // probe = the directory's name (it has no flows/probe=NAME inside).
    let mut csv = String::from("probe,file,first_page,last_page\n");
    let mut ranges = 0;
    for f in &files {
        let fi = index_file(f, 12, true).unwrap();
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        for fl in fi.built.flows.unwrap().rows() {
            if fl.src.ip() == host || fl.dst.ip() == host {
                csv.push_str(&format!("a,{rel},{},{}\n", fl.first_page, fl.last_page));
                ranges += 1;
            }
        }
    }
    assert!(ranges > 3, "the host has flows");
    let path = c
        .dir
        .path()
        .join(format!("hits-{}.csv", std::process::id()));
    std::fs::write(&path, &csv).unwrap();
    let csv_arg = path.to_string_lossy().into_owned();
    let got = query(
        std::slice::from_ref(&dir),
        &expr,
        &["--flows-csv", &csv_arg],
    );
    let want = expected(std::slice::from_ref(&dir), &expr, 0, u64::MAX);
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len(), "--flows-csv: packet count");
    assert!(got == want, "--flows-csv: packets differ");

    // Only `file` (whole files), one of three: the others are pruned.
    let rel = files[1]
        .strip_prefix(&dir)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    std::fs::write(&path, format!("file\n\"{rel}\"\n")).unwrap();
    let o = Command::new(bin("hpcap-query"))
        .args(["--stats", "--flows-csv", &csv_arg, "-w"])
        .arg(
            c.dir
                .path()
                .join(format!("one-{}.pcapng", std::process::id())),
        )
        .arg(&expr)
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("2 by flows"), "{err}");
    let got = read_pkts(
        &c.dir
            .path()
            .join(format!("one-{}.pcapng", std::process::id())),
    );
    assert!(
        got == tcpdump_file(&files[1], &expr),
        "--flows-csv, one file"
    );

    // A CSV without a `file` column is refused with a clear message.
    std::fs::write(&path, "probe,first_page\na,1\n").unwrap();
    let o = Command::new(bin("hpcap-query"))
        .args(["--flows-csv", &csv_arg, "-w", "/dev/null", &expr])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no 'file' column"));
    std::fs::remove_file(&path).unwrap();
}

fn prim() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..220).prop_map(|i| format!("host {}", IpAddr::from(host4(i)))),
        (0usize..220).prop_map(|i| format!("src host {}", IpAddr::from(host4(i)))),
        (0usize..220).prop_map(|i| format!("host {}", IpAddr::from(host6(i)))),
        (0usize..220, 16u8..=32).prop_map(|(i, b)| {
            let (n, _) = hpcap_index::query::range_of(IpAddr::from(host4(i)), b);
            format!("net {n}/{b}")
        }),
        prop::sample::select(vec![80u16, 443, 53, 22, 25, 123, 8080, 3306, 4789, 1500])
            .prop_map(|p| format!("port {p}")),
        prop::sample::select(vec![
            "tcp",
            "udp",
            "icmp",
            "arp",
            "ip6",
            "vlan",
            "ip proto 47"
        ])
        .prop_map(String::from),
        (1u16..25).prop_map(|v| format!("vlan {v}")),
    ]
}

fn expr() -> impl Strategy<Value = String> {
    prim().prop_recursive(3, 8, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_queries_equal_tcpdump(e in expr(), a in 0u64..20, span in 1u64..20, timed in any::<bool>()) {
        let c = corpus();
        let (lo, hi) = if timed {
            (Some(c.t0 + a * 1_000_000), Some(c.t0 + (a + span) * 1_000_000))
        } else {
            (None, None)
        };
        check(&e, lo, hi);
    }
}
