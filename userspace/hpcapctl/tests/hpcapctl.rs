// SPDX-License-Identifier: MIT
//! hpcapctl against the software source: numbers agree with what the
//! source and hpcapdd report, the Prometheus output parses, configuration
//! (snaplen, BPF filter) takes effect, listeners can be killed.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use hpcap_testutil::*;

fn ctl(args: &[&str]) -> serde_json::Value {
    let o = run(Command::new(bin("hpcapctl")).arg("--json").args(args));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn stats_agree_with_source_and_hpcapdd() {
    let shm = ShmPath::new("ctlstats");
    let dir = TempDir::new("ctlstats");
    let simjson = dir.path().join("sim.json");
    let ddjson = dir.path().join("dd.json");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "imix:40000",
            "--wait-listener",
            "--on-full",
            "wait",
            "--block-size",
            "64K",
            "--buffer-size",
            "512K",
            "--stats-json",
            simjson.to_str().unwrap(),
        ],
    );
    run(Command::new(bin("hpcapdd"))
        .args(["--stats-json", ddjson.to_str().unwrap()])
        .arg(&shm.0)
        .arg(dir.path().join("out")));
    assert!(wait_timeout(&mut sim, 30).success());
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&simjson).unwrap()).unwrap();
    let ddl = std::fs::read_to_string(&ddjson).unwrap();
    let d: serde_json::Value = serde_json::from_str(ddl.lines().last().unwrap()).unwrap();
    let c = ctl(&["stats", shm.0.to_str().unwrap()]);
    let cc = &c["counters"];
    for k in [
        "frames_seen",
        "frames_stored",
        "bytes_stored",
        "dropped_no_space",
        "filtered",
    ] {
        assert_eq!(cc[k], s[k], "{k}: hpcapctl vs hpcap-sim");
    }
    assert_eq!(cc["frames_stored"], d["source"]["frames_stored"]);
    assert_eq!(
        d["packets"], s["frames_stored"],
        "hpcapdd packets vs source"
    );
    assert_eq!(c["commit"], s["commit"]);
    let files = files_under(&dir.path().join("out"));
    let n: usize = files.iter().map(|f| seqs(f).len()).sum();
    assert_eq!(n as u64, s["frames_stored"].as_u64().unwrap());
    // list and status see it.
    let l = ctl(&["list", shm.0.to_str().unwrap()]);
    assert!(l
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == shm.0.to_str().unwrap()));
    let st = ctl(&["status", shm.0.to_str().unwrap()]);
    assert_eq!(st["block_size"], 65536);
    assert_eq!(st["end_of_stream"], true);
}

/// A parser of the Prometheus text exposition format (0.0.4), strict
/// enough to catch what promtool would reject: metric and label names,
/// quoting and escapes, values, HELP/TYPE before samples, no duplicate
/// series, counters named *_total.
fn parse_prometheus(text: &str) -> Result<HashMap<String, f64>, String> {
    let name_ok = |n: &str| {
        let mut ch = n.chars();
        ch.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && ch.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: HashMap<String, String> = HashMap::new();
    let mut seen = HashSet::new();
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let ln = i + 1;
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut it = rest.splitn(3, ' ');
            match (it.next(), it.next(), it.next()) {
                (Some("HELP"), Some(n), Some(_)) if name_ok(n) => {}
                (Some("TYPE"), Some(n), Some(t)) if name_ok(n) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(format!("line {ln}: bad type {t}"));
                    }
                    if types.insert(n.to_string(), t.to_string()).is_some() {
                        return Err(format!("line {ln}: second TYPE for {n}"));
                    }
                }
                _ => return Err(format!("line {ln}: bad comment {line:?}")),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or(format!("line {ln}: no value"))?;
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v
                .parse()
                .map_err(|_| format!("line {ln}: bad value {v:?}"))?,
        };
        let (name, labels) = match series.find('{') {
            Some(p) => {
                if !series.ends_with('}') {
                    return Err(format!("line {ln}: unterminated labels"));
                }
                (&series[..p], &series[p + 1..series.len() - 1])
            }
            None => (series, ""),
        };
        if !name_ok(name) {
            return Err(format!("line {ln}: bad metric name {name:?}"));
        }
        let ty = types
            .get(name)
            .ok_or(format!("line {ln}: sample of {name} before its TYPE"))?;
        if ty == "counter" && !name.ends_with("_total") {
            return Err(format!("line {ln}: counter {name} not named *_total"));
        }
        // Labels: name="value" separated by commas, with \\ \" \n escapes.
        let b = labels.as_bytes();
        let mut k = 0;
        let mut names = HashSet::new();
        while k < b.len() {
            let eq = labels[k..]
                .find('=')
                .ok_or(format!("line {ln}: label without ="))?
                + k;
            let lname = &labels[k..eq];
            if !name_ok(lname) || lname.contains(':') || !names.insert(lname) {
                return Err(format!("line {ln}: bad or repeated label name {lname:?}"));
            }
            if b.get(eq + 1) != Some(&b'"') {
                return Err(format!("line {ln}: label value not quoted"));
            }
            let mut j = eq + 2;
            loop {
                match b.get(j) {
                    None => return Err(format!("line {ln}: unterminated label value")),
                    Some(b'\\') => {
                        if !matches!(b.get(j + 1), Some(b'\\' | b'"' | b'n')) {
                            return Err(format!("line {ln}: bad escape"));
                        }
                        j += 2;
                    }
                    Some(b'"') => break,
                    Some(b'\n') => return Err(format!("line {ln}: raw newline")),
                    Some(_) => j += 1,
                }
            }
            k = j + 1;
            if k < b.len() {
                if b[k] != b',' {
                    return Err(format!("line {ln}: expected , between labels"));
                }
                k += 1;
            }
        }
        if !seen.insert(series.to_string()) {
            return Err(format!("line {ln}: duplicate series {series}"));
        }
        out.insert(series.to_string(), v);
    }
    Ok(out)
}

#[test]
fn prometheus_parser_rejects_bad_input() {
    assert!(parse_prometheus("# TYPE a_total counter\na_total{x=\"1\"} 3\n").is_ok());
    assert!(parse_prometheus("a 1\n").is_err());
    assert!(parse_prometheus("# TYPE a counter\na 1\n").is_err());
    assert!(parse_prometheus("# TYPE a gauge\na{x=1} 1\n").is_err());
    assert!(parse_prometheus("# TYPE a gauge\na{x=\"\\q\"} 1\n").is_err());
    assert!(parse_prometheus("# TYPE a gauge\na 1\na 2\n").is_err());
}

#[test]
fn prometheus_output_parses_and_matches_json() {
    let shm = ShmPath::new("prom");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "64:5000",
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
        ],
    );
    assert!(wait_timeout(&mut sim, 30).success());
    // A listener, so per-listener series appear.
    let src = hpcap::Source::open(&shm.0).unwrap();
    let _r = hpcap::BlockReader::new(src, hpcap::ListenerMode::Lossy).unwrap();
    let o = run(Command::new(bin("hpcapctl"))
        .args(["stats", "--prometheus"])
        .arg(&shm.0));
    let text = String::from_utf8(o.stdout).unwrap();
    let m = parse_prometheus(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    // Nobody listened while the simulator ran (as on a device, frames are
    // then counted, not stored): one loss family, told apart by stage.
    let labels = format!("device=\"sim0\",path=\"{}\"", shm.0.display());
    let seen = format!("hpcap_frames_seen_total{{{labels}}}");
    assert_eq!(m.get(&seen).copied(), Some(5000.0), "{text}");
    let lost = format!("hpcap_frames_dropped_total{{{labels},stage=\"no_listener\"}}");
    assert_eq!(m.get(&lost).copied(), Some(5000.0), "{text}");
    let nic = format!("hpcap_frames_dropped_total{{{labels},stage=\"nic\"}}");
    assert_eq!(m.get(&nic).copied(), Some(0.0), "{text}");
    assert!(m
        .keys()
        .any(|k| k.starts_with("hpcap_listener_lag_bytes{") && k.contains("mode=\"lossy\"")));
    let j = ctl(&["stats", shm.0.to_str().unwrap()]);
    assert_eq!(j["counters"]["frames_seen"], 5000);
}

#[test]
fn snaplen_and_filter_take_effect() {
    let shm = ShmPath::new("cfg");
    let dir = TempDir::new("cfg");
    // Paced, so the configuration lands before most frames.
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "200:3000",
            "--pps",
            "20000",
            "--wait-listener",
            "--on-full",
            "wait",
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
            "--flush-ms",
            "20",
        ],
    );
    let p = shm.0.to_str().unwrap();
    ctl(&[
        "config",
        "--snaplen",
        "100",
        "--filter",
        "udp dst port 4001",
        p,
    ]);
    let mut dd = Command::new(bin("hpcapdd"))
        .arg(&shm.0)
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_timeout(&mut sim, 30).success());
    assert!(wait_timeout(&mut dd, 30).success());
    let c = ctl(&["stats", p]);
    assert_eq!(c["counters"]["frames_stored"], 3000);
    assert_eq!(c["counters"]["truncated_by_snaplen"], 3000);
    let files = files_under(dir.path());
    let f = hpcap::files::CaptureFile::open(&files[0]).unwrap();
    for pk in f.packets().unwrap() {
        let pk = pk.unwrap();
        assert_eq!(pk.data.len(), 100);
        assert_eq!(pk.orig_len, 200);
    }
    // Now a filter that rejects everything (a fresh run).
    let shm2 = ShmPath::new("cfg2");
    let mut sim = start_sim(
        &shm2.0,
        &[
            "--synthetic",
            "200:3000",
            "--pps",
            "20000",
            "--wait-listener",
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
        ],
    );
    let p2 = shm2.0.to_str().unwrap();
    ctl(&["config", "--filter", "tcp", p2]);
    let src = hpcap::Source::open(&shm2.0).unwrap();
    let _r = hpcap::BlockReader::new(src, hpcap::ListenerMode::Blocking).unwrap();
    assert!(wait_timeout(&mut sim, 30).success());
    let c = ctl(&["stats", p2]);
    let cc = &c["counters"];
    assert_eq!(cc["frames_seen"], 3000);
    // The producer polls the control area every 100 ms: a few frames may
    // pass before the filter lands; every frame is accounted for once.
    let filtered = cc["filtered"].as_u64().unwrap();
    assert!(filtered > 2500, "{cc}");
    assert_eq!(cc["frames_stored"].as_u64().unwrap() + filtered, 3000);
    // A bad expression is a clear error.
    let o = Command::new(bin("hpcapctl"))
        .args(["config", "--filter", "no such thing", p2])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("filter"));
}

#[test]
fn kill_listener_releases_the_producer() {
    let shm = ShmPath::new("kill");
    let dir = TempDir::new("kill");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "64:100000000",
            "--pps",
            "50000",
            "--wait-listener",
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
            "--flush-ms",
            "20",
        ],
    );
    let mut dd = Command::new(bin("hpcapdd"))
        .arg(&shm.0)
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = shm.0.to_str().unwrap();
    let mut id = None;
    for _ in 0..200 {
        let st = ctl(&["status", p]);
        if let Some(l) = st["listener"].as_array().and_then(|a| a.first()) {
            assert_eq!(l["mode"], "blocking");
            assert_eq!(l["pid"], dd.id());
            id = l["id"].as_u64();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let id = id.expect("hpcapdd attached").to_string();
    std::thread::sleep(Duration::from_millis(200));
    ctl(&["kill", p, &id]);
    // hpcapdd learns it was killed, closes its files and exits.
    assert!(wait_timeout(&mut dd, 20).success());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sim.id() as i32, libc::SIGTERM) };
    assert!(wait_timeout(&mut sim, 20).success());
    for f in files_under(dir.path()) {
        assert!(!f.file_name().unwrap().to_string_lossy().starts_with('.'));
        if have("capinfos") {
            capinfos_count(&f);
        }
    }
}
