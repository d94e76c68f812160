// SPDX-License-Identifier: MIT
//! hpcapctl against the software source: numbers agree with what the
//! source and hpcapdd report, the Prometheus output parses, configuration
//! (snaplen, BPF filter) takes effect, listeners can be killed.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
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
    // A software source has no NIC: what it receives is not reported
    // (null), never a made-up "promiscuous".
    assert_eq!(st["promisc"], serde_json::Value::Null);
    // Nor does it have RX descriptors.
    assert_eq!(st["rx_desc_bytes"], serde_json::Value::Null);
    let text = run(Command::new(bin("hpcapctl")).args(["status", shm.0.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("receives    not reported"), "{text}");
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

/// Named listeners in `status` (text and JSON) and in the Prometheus
/// output; a lingering one is listed as such and `kill NAME` frees it.
#[test]
fn named_and_lingering_listeners_are_listed_and_killed_by_name() {
    let shm = ShmPath::new("ctlnamed");
    let dir = TempDir::new("ctlnamed");
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            "64:100000000",
            "--pps",
            "20000",
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
        ],
    );
    let p = shm.0.to_str().unwrap();
    let mut dd = Command::new(bin("hpcapdd"))
        .args(["--name", "ctl-test.1", "--linger", "1h"])
        .arg(&shm.0)
        .arg(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let listener = |want_lingering: bool| {
        for _ in 0..500 {
            let st = ctl(&["status", p]);
            if let Some(l) = st["listener"].as_array().and_then(|a| a.first()) {
                if l["lingering"] == want_lingering {
                    return l.clone();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no listener with lingering = {want_lingering}");
    };
    let l = listener(false);
    assert_eq!(l["name"], "ctl-test.1");
    assert_eq!(l["linger_ms"], 3_600_000);
    assert_eq!(l["linger_left_ms"], serde_json::Value::Null);
    assert_eq!(l["pid"], dd.id());
    // SIGKILL: it lingers, still named, with its time left.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(dd.id() as i32, libc::SIGKILL) };
    let _ = dd.wait();
    let l = listener(true);
    assert_eq!(l["name"], "ctl-test.1");
    let left = l["linger_left_ms"].as_u64().unwrap();
    assert!(left > 3_000_000 && left <= 3_600_000, "{left}");
    let text = run(Command::new(bin("hpcapctl")).args(["status", p]));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("name ctl-test.1") && text.contains("LINGERING"),
        "{text}"
    );
    let prom = run(Command::new(bin("hpcapctl")).args(["stats", "--prometheus", p]));
    let prom = String::from_utf8_lossy(&prom.stdout);
    let m = parse_prometheus(&prom).unwrap();
    assert!(
        m.iter()
            .any(|(k, v)| k.starts_with("hpcap_listeners_lingering{") && *v == 1.0),
        "{prom}"
    );
    assert!(prom.contains("name=\"ctl-test.1\""), "{prom}");
    assert!(prom.contains("stage=\"lingering\""), "{prom}");
    // Unknown names are an error; the right one frees it at once.
    let o = Command::new(bin("hpcapctl"))
        .args(["kill", p, "nobody"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let k = ctl(&["kill", p, "ctl-test.1"]);
    assert_eq!(k["killed"], l["id"]);
    assert_eq!(ctl(&["status", p])["listener"], serde_json::json!([]));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(sim.id() as i32, libc::SIGTERM) };
    assert!(wait_timeout(&mut sim, 20).success());
}

// ------------------------------------------------------------ hpcapctl serve

/// A child process killed (SIGTERM, then SIGKILL) when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let t = std::time::Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hpcapctl serve --listen 127.0.0.1:0 ARGS`; returns it and the
/// address it printed.
fn start_serve(args: &[&std::ffi::OsStr]) -> (Reaped, String) {
    use std::io::BufRead;
    let mut child = Command::new(bin("hpcapctl"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning hpcapctl serve");
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.strip_suffix("/metrics\n"))
        .unwrap_or_else(|| panic!("hpcapctl serve printed {line:?}"))
        .to_string();
    // Keep reading its log so it never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut l = String::new();
        while err.read_line(&mut l).is_ok_and(|n| n > 0) {
            eprint!("[serve] {l}");
            l.clear();
        }
    });
    (Reaped(child), addr)
}

/// One HTTP/1.0 request; returns the status code, headers and body.
fn http(addr: &str, method: &str, path: &str) -> (u32, String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad response {resp:?}"));
    (code, head.to_string(), body.to_string())
}

/// The directory of Debian's `prometheus` and `promtool`:
/// $HPCAP_PROMETHEUS_DIR, else what tools/deps/prometheus extracts. None
/// (with the reason printed) when neither gives them; with
/// HPCAP_REQUIRE_PROMETHEUS=1 (tests/run, `make test`) that is a failure.
fn prometheus_dir() -> Option<PathBuf> {
    let why = match std::env::var_os("HPCAP_PROMETHEUS_DIR") {
        Some(d) if PathBuf::from(&d).join("promtool").is_file() => return Some(d.into()),
        Some(d) => format!("HPCAP_PROMETHEUS_DIR={d:?} holds no promtool"),
        None => {
            let script =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/deps/prometheus");
            match Command::new(&script).stderr(Stdio::piped()).output() {
                Ok(o) if o.status.success() => {
                    let d = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
                    if d.join("promtool").is_file() && d.join("prometheus").is_file() {
                        return Some(d);
                    }
                    format!(
                        "{} printed {}, which holds no prometheus/promtool",
                        script.display(),
                        d.display()
                    )
                }
                Ok(o) => format!(
                    "{} failed: {}",
                    script.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => format!("running {}: {e}", script.display()),
            }
        }
    };
    assert!(
        std::env::var_os("HPCAP_REQUIRE_PROMETHEUS").is_none_or(|v| v != "1"),
        "Prometheus is required here (HPCAP_REQUIRE_PROMETHEUS=1) but unavailable: {why}"
    );
    eprintln!("SKIP: Debian's prometheus/promtool are unavailable: {why}");
    None
}

/// A software source that saw `n` frames while nobody listened, and a
/// lossy listener attached to it afterwards (so per-listener series exist).
fn idle_source(tag: &str, n: u32) -> (ShmPath, hpcap::BlockReader) {
    let shm = ShmPath::new(tag);
    let mut sim = start_sim(
        &shm.0,
        &[
            "--synthetic",
            &format!("64:{n}"),
            "--block-size",
            "64K",
            "--buffer-size",
            "256K",
        ],
    );
    assert!(wait_timeout(&mut sim, 30).success());
    let src = hpcap::Source::open(&shm.0).unwrap();
    let r = hpcap::BlockReader::new(src, hpcap::ListenerMode::Lossy).unwrap();
    (shm, r)
}

#[test]
fn serve_answers_what_stats_prints_and_reports_lost_sources() {
    let (shm, _reader) = idle_source("serve", 4000);
    let (_serve, addr) = start_serve(&[shm.0.as_os_str()]);
    let (code, head, body) = http(&addr, "GET", "/metrics");
    assert_eq!(code, 200, "{head}\n{body}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let served = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    // The same generator as `stats --prometheus`: the same series and
    // values (uptime and the up gauge aside).
    let o = run(Command::new(bin("hpcapctl"))
        .args(["stats", "--prometheus"])
        .arg(&shm.0));
    let printed = parse_prometheus(&String::from_utf8(o.stdout).unwrap()).unwrap();
    let keys = |m: &HashMap<String, f64>| {
        let mut k: Vec<_> = m
            .keys()
            .filter(|k| !k.starts_with("hpcap_uptime_seconds"))
            .cloned()
            .collect();
        k.sort();
        k
    };
    assert_eq!(keys(&served), keys(&printed));
    for k in keys(&printed) {
        assert_eq!(served[&k], printed[&k], "{k}");
    }
    let path = shm.0.display().to_string();
    let labels = format!("device=\"sim0\",path=\"{path}\"");
    assert_eq!(served[&format!("hpcap_source_up{{path=\"{path}\"}}")], 1.0);
    assert_eq!(
        served[&format!("hpcap_frames_seen_total{{{labels}}}")],
        4000.0
    );
    assert_eq!(
        served[&format!("hpcap_frames_dropped_total{{{labels},stage=\"no_listener\"}}")],
        4000.0
    );
    assert_eq!(
        served[&format!("hpcap_buffer_size_bytes{{{labels}}}")],
        262144.0
    );
    assert_eq!(served[&format!("hpcap_listeners{{{labels}}}")], 1.0);
    assert!(served
        .keys()
        .any(|k| k.starts_with("hpcap_listener_lag_bytes{") && k.contains("mode=\"lossy\"")));
    assert!(served
        .keys()
        .any(|k| k.starts_with("hpcap_listener_lost_bytes_total{")));
    // HEAD: headers only; other paths and methods are refused.
    let (code, _, body) = http(&addr, "HEAD", "/metrics");
    assert_eq!((code, body.as_str()), (200, ""));
    assert_eq!(http(&addr, "GET", "/nothing").0, 404);
    let (code, head, _) = http(&addr, "POST", "/metrics");
    assert_eq!(code, 405);
    assert!(head.contains("Allow: GET, HEAD"), "{head}");
    // The source goes away: the next scrape says so instead of failing.
    drop(_reader);
    std::fs::remove_file(&shm.0).unwrap();
    let (code, _, body) = http(&addr, "GET", "/metrics");
    assert_eq!(code, 200);
    let m = parse_prometheus(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        m[&format!("hpcap_source_up{{path=\"{path}\"}}")],
        0.0,
        "{body}"
    );
    assert!(
        !m.keys().any(|k| k.starts_with("hpcap_frames_seen_total")),
        "{body}"
    );
}

#[test]
fn serve_refuses_bad_listen_addresses_and_missing_sources() {
    for bad in ["nonsense", "127.0.0.1", "127.0.0.1:99999"] {
        let o = Command::new(bin("hpcapctl"))
            .args(["serve", "--listen", bad])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("--listen"),
            "{bad}"
        );
    }
    let o = Command::new(bin("hpcapctl"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "/dev/shm/hpcap-test-no-such-source",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such source"));
    // A port in use: a clear error, not a panic.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let o = Command::new(bin("hpcapctl"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("listening on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn promtool_accepts_the_metrics() {
    let Some(dir) = prometheus_dir() else {
        return;
    };
    let (shm, _reader) = idle_source("promtool", 1000);
    let (_serve, addr) = start_serve(&[shm.0.as_os_str()]);
    let (code, _, body) = http(&addr, "GET", "/metrics");
    assert_eq!(code, 200);
    let mut p = Command::new(dir.join("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    }
    let o = p.wait_with_output().unwrap();
    // promtool prints lint findings and fails on them.
    assert!(
        o.status.success() && o.stdout.is_empty() && o.stderr.is_empty(),
        "promtool check metrics: {}\n{}\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // An oracle that can fail: promtool rejects a counter without `_total`.
    let mut p = Command::new(dir.join("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let bad = "# HELP hpcap_frames counted\n# TYPE hpcap_frames counter\nhpcap_frames 1\n";
        p.stdin.take().unwrap().write_all(bad.as_bytes()).unwrap();
    }
    assert!(!p.wait_with_output().unwrap().status.success());
}

/// `s` percent-encoded for a URL query.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_serve_and_answers_queries() {
    let Some(dir) = prometheus_dir() else {
        return;
    };
    let (shm, _reader) = idle_source("promscrape", 2345);
    let (_serve, addr) = start_serve(&[shm.0.as_os_str()]);
    let tmp = TempDir::new("prometheus");
    let cfg = tmp.path().join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: hpcap\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    // A free loopback port for Prometheus's own API (it cannot report one
    // it picked itself).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let web = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(tmp.path().join("prometheus.log")).unwrap();
    let _prom = Reaped(
        Command::new(dir.join("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                tmp.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting prometheus"),
    );
    let path = shm.0.display().to_string();
    let query = |q: &str| -> Option<f64> {
        let mut s = std::net::TcpStream::connect(&web).ok()?;
        use std::io::{Read, Write};
        s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
        write!(
            s,
            "GET /api/v1/query?query={} HTTP/1.0\r\nHost: {web}\r\n\r\n",
            urlencode(q)
        )
        .ok()?;
        let mut resp = String::new();
        s.read_to_string(&mut resp).ok()?;
        let body = resp.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        assert_eq!(v["status"], "success", "{q}: {body}");
        let r = v["data"]["result"].as_array()?;
        assert!(r.len() <= 1, "{q}: {body}");
        r.first()?["value"][1].as_str()?.parse().ok()
    };
    let seen_q = format!("hpcap_frames_seen_total{{job=\"hpcap\",path=\"{path}\"}}");
    // Prometheus starts, scrapes every second: allow a loaded machine a
    // couple of minutes.
    let t = std::time::Instant::now();
    let seen = loop {
        if let Some(v) = query(&seen_q) {
            break v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(180),
            "Prometheus never returned {seen_q}; its log:\n{}",
            std::fs::read_to_string(tmp.path().join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(seen, 2345.0);
    assert_eq!(query("up{job=\"hpcap\"}"), Some(1.0));
    assert_eq!(
        query(&format!(
            "hpcap_frames_dropped_total{{path=\"{path}\",stage=\"no_listener\"}}"
        )),
        Some(2345.0)
    );
    assert_eq!(
        query(&format!("hpcap_buffer_size_bytes{{path=\"{path}\"}}")),
        Some(262144.0)
    );
    assert_eq!(
        query(&format!(
            "sum(hpcap_listeners{{device=\"sim0\",path=\"{path}\"}})"
        )),
        Some(1.0)
    );
    // A series that does not exist gives no value (the query helper can
    // tell "absent" from a number).
    assert_eq!(query("hpcap_no_such_metric"), None);
}

#[test]
fn a_missing_device_node_gets_a_hint() {
    let o = Command::new(bin("hpcapctl"))
        .args(["status", "/dev/hpcap-test-no-such-node"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("No such file or directory"), "{err}");
    assert!(
        err.contains("hpcapctl: hint: no such device node") && err.contains("--device"),
        "{err}"
    );
}
