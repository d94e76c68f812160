// SPDX-License-Identifier: MIT
//! `hpcapctl`: lists hpcap devices and software sources, shows their status
//! and statistics (also as JSON and in the Prometheus text format), changes
//! their configuration (snaplen, BPF filter, format, block size) and kills
//! listeners.

mod metrics;
mod serve;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use hpcap::core::abi::{self, Stats};
use hpcap::core::stats::{Source as CounterSource, COUNTERS};
use hpcap::util::parse_size;
use hpcap::{Source, SourceKind};
use serde_json::{json, Value};

/// Inspect and configure hpcap capture sources.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Inspects and configures hpcap capture sources: kernel devices /dev/hpcapN and \
hpcap-sim software sources (give their PATH wherever a SOURCE is expected). Opening a source \
for inspection never attaches a listener, so it never holds the capture back.",
    after_help = "\
EXIT STATUS: 0 on success, 1 on errors (source missing, permission denied, bad filter), 2 on
bad usage.

EXAMPLES:
  hpcapctl list
  hpcapctl status /dev/hpcap0
  hpcapctl stats --watch 1 /dev/hpcap0
  hpcapctl stats --prometheus /dev/hpcap0 > /var/lib/node_exporter/hpcap.prom
  hpcapctl serve --listen 127.0.0.1:9977
  hpcapctl config --snaplen 128 --filter 'tcp port 443' /dev/hpcap0
  hpcapctl kill /dev/hpcap0 2
  hpcapctl kill /dev/hpcap0 raid0      (a named listener, lingering or not)"
)]
struct Args {
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List /dev/hpcap* devices, software sources in /dev/shm, and PATHs.
    List {
        /// Extra software source paths to include.
        paths: Vec<PathBuf>,
    },
    /// Link, backend, buffer geometry and occupancy, listeners.
    Status {
        /// /dev/hpcapN or a software source path.
        source: PathBuf,
    },
    /// Capture counters (per stage) and listener positions.
    Stats {
        /// Print rates every N seconds until interrupted (or --count times).
        #[arg(long, value_name = "N")]
        watch: Option<f64>,
        /// With --watch: stop after this many reports.
        #[arg(long, value_name = "K")]
        count: Option<u64>,
        /// Prometheus text format (for node_exporter's textfile collector).
        #[arg(long, conflicts_with = "watch")]
        prometheus: bool,
        /// Sources (all listed by `hpcapctl list` if none given).
        sources: Vec<PathBuf>,
    },
    /// Change the configuration (needs CAP_NET_ADMIN on devices).
    Config {
        /// Snapshot length (0 = whole frames, else at least 14).
        #[arg(long, value_name = "N")]
        snaplen: Option<u32>,
        /// BPF filter as a tcpdump expression (compiled for Ethernet).
        #[arg(long, value_name = "EXPR", conflicts_with = "no_filter")]
        filter: Option<String>,
        /// Remove the filter.
        #[arg(long)]
        no_filter: bool,
        /// Stream format (only while no listener is attached).
        #[arg(long, value_enum)]
        format: Option<Fmt>,
        /// Block size (power of two 64K..256M; only while no listener is attached).
        #[arg(long, value_parser = parse_size, value_name = "B")]
        block_size: Option<u64>,
        /// /dev/hpcapN or a software source path.
        source: PathBuf,
    },
    /// Serve the metrics of `stats --prometheus` over HTTP for Prometheus.
    #[command(
        long_about = "Serves /metrics over HTTP for Prometheus: the text `hpcapctl stats \
--prometheus` prints, read afresh at every scrape from every hpcap device and software source found \
(or the SOURCEs named). Opening a source attaches no listener, so scraping never holds the capture \
back, and read permission on the nodes is all it needs (group hpcap). A source that cannot be read \
shows as hpcap_source_up 0 and is logged once. Stops on SIGINT or SIGTERM.",
        after_help = "EXAMPLES:
  hpcapctl serve                                  # every source, on 127.0.0.1:9977
  hpcapctl serve --listen :9977 /dev/hpcap0       # one device, on every IPv4 address
  curl -s http://127.0.0.1:9977/metrics | grep hpcap_frames_dropped_total

Prometheus: scrape_configs: [{job_name: hpcap, static_configs: [{targets: ['HOST:9977']}]}]"
    )]
    Serve {
        /// Address to listen on: HOST:PORT, [IPV6]:PORT, or :PORT for every
        /// IPv4 address ([::]:PORT: every address, IPv6 too). Port 0: any
        /// free port, printed at start.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9977", value_parser = serve::parse_listen)]
        listen: std::net::SocketAddr,
        /// Sources (every one found at each scrape if none given).
        sources: Vec<PathBuf>,
    },
    /// Kill a listener: it stops holding the capture back and gets a
    /// hang-up; a lingering named listener is freed at once.
    Kill {
        /// /dev/hpcapN or a software source path.
        source: PathBuf,
        /// Listener id, or the name of a named listener (see `hpcapctl
        /// status`).
        #[arg(value_name = "ID|NAME")]
        listener: String,
        /// LISTENER is a name even if it is a number.
        #[arg(long)]
        by_name: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fmt {
    Pcapng,
    Raw,
}

fn cstr(b: &[u8]) -> String {
    String::from_utf8_lossy(abi::get_cstr(b)).into_owned()
}

fn nic_name(n: u32) -> &'static str {
    match n {
        abi::NIC_IGB => "igb (82576 PF)",
        abi::NIC_IGBVF => "igbvf (82576 VF)",
        abi::NIC_I40E => "i40e (XL710 PF)",
        abi::NIC_IAVF => "iavf (XL710/E810 VF)",
        abi::NIC_IXGBE => "ixgbe (82599 PF)",
        abi::NIC_IXGBEVF => "ixgbevf (82599 VF)",
        abi::NIC_SOFT => "software (hpcap-sim)",
        _ => "unknown",
    }
}

fn format_name(f: u32) -> &'static str {
    if f == abi::FORMAT_PCAPNG {
        "pcapng"
    } else {
        "raw"
    }
}

fn mode_name(m: u32) -> &'static str {
    if m == abi::MODE_LOSSY {
        "lossy"
    } else {
        "blocking"
    }
}

/// Every source we can find: /dev/hpcap*, hpcap-sim files in /dev/shm, extras.
fn discover(extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for dir in ["/dev", "/dev/shm"] {
        let Ok(rd) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut found: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if dir == "/dev" {
                    // /dev/hpcapN character devices; /dev/hpcap/ holds the
                    // by-pci aliases of the same devices.
                    use std::os::unix::fs::FileTypeExt;
                    n.starts_with("hpcap")
                        && std::fs::metadata(p).is_ok_and(|m| m.file_type().is_char_device())
                } else {
                    !n.starts_with('.') && is_software_source(p)
                }
            })
            .collect();
        found.sort();
        v.extend(found);
    }
    for p in extra {
        if !v.contains(p) {
            v.push(p.clone());
        }
    }
    v
}

fn is_software_source(p: &Path) -> bool {
    use std::io::Read;
    let mut m = [0u8; 8];
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut m))
        .is_ok()
        && m == hpcap::shm::SHM_MAGIC
}

fn open(p: &Path) -> Result<Source> {
    Source::open(p).with_context(|| format!("opening {}", p.display()))
}

/// `hpcap_info.promisc` as a word for JSON (`null`: not reported) and a
/// phrase for people.
fn promisc_name(v: u32) -> Value {
    match v {
        abi::PROMISC_ALL => json!("all"),
        abi::PROMISC_MULTICAST => json!("multicast"),
        abi::PROMISC_ACKED => json!("acknowledged"),
        abi::PROMISC_REFUSED => json!("refused"),
        abi::PROMISC_UNKNOWN => Value::Null,
        _ => json!(format!("unknown ({v})")),
    }
}

/// What `hpcapctl status` prints for a `promisc` value of [`promisc_name`].
fn promisc_text(v: &Value) -> &'static str {
    match v.as_str() {
        Some("all") => "promiscuous: every frame on the wire",
        Some("multicast") => {
            "multicast promiscuous: frames to this function's MAC, all multicast, broadcast"
        }
        Some("acknowledged") => {
            "promiscuous requested and acknowledged by the PF (granted only if the host \
             trusts the VF: `ip link set <PF> vf <N> trust on`)"
        }
        Some("refused") => {
            "NOT promiscuous: the PF refused; only frames to this VF's MAC, broadcast and its \
             multicast groups (trust the VF on the host: `ip link set <PF> vf <N> trust on`, \
             then rebind)"
        }
        Some(_) => "unknown",
        None => "not reported",
    }
}

fn info_json(p: &Path, s: &Source) -> Result<Value> {
    let i = s.info()?;
    Ok(json!({
        "path": p,
        "kind": s.kind(),
        "name": cstr(&i.name),
        "bus": cstr(&i.bus_addr),
        "nic": nic_name(i.nic),
        "format": format_name(i.format),
        "buffer_size": i.buffer_size,
        "block_size": i.block_size,
        "snaplen": i.snaplen,
        "ring_size": i.ring_size,
        // 0: not reported (a software source).
        "rx_desc_bytes": (i.rx_desc_bytes != 0).then_some(i.rx_desc_bytes),
        "consumers": i.consumers,
        "link_up": i.link_up != 0,
        "link_mbps": i.link_mbps,
        "promisc": promisc_name(i.promisc),
        "listeners": i.listeners,
        "commit": i.commit,
    }))
}

/// Every counter of the core's table, by name; a NIC counter this NIC does
/// not have is `null` (unknown), never 0.
fn counters_json(st: &Stats) -> Value {
    let mut m = serde_json::Map::new();
    for c in COUNTERS {
        let v = match c.source {
            CounterSource::Nic(bit) if st.nic_valid & bit == 0 => Value::Null,
            _ => json!((c.get)(&st.counters)),
        };
        m.insert(c.name.into(), v);
    }
    Value::Object(m)
}

/// A listener's name, if it has one.
fn listener_name(l: &abi::Listener) -> Option<String> {
    (l.flags & abi::LISTENER_NAMED != 0).then(|| cstr(&l.name))
}

fn listeners_json(st: &Stats) -> Value {
    Value::Array(
        st.listener[..(st.nlisteners as usize).min(abi::MAX_LISTENERS)]
            .iter()
            .map(|l| {
                let lingering = l.flags & abi::LISTENER_LINGERING != 0;
                json!({
                    "id": l.id,
                    "name": listener_name(l),
                    "mode": mode_name(l.mode),
                    "pid": l.pid,
                    "killed": l.flags & abi::LISTENER_KILLED != 0,
                    "lingering": lingering,
                    "linger_ms": (l.flags & abi::LISTENER_NAMED != 0).then_some(l.linger_ms),
                    "linger_left_ms": lingering.then_some(l.linger_left_ms),
                    "cursor": l.cursor,
                    "lag": l.lag,
                    "lost_bytes": l.lost_bytes,
                    "lost_blocks": l.lost_blocks,
                })
            })
            .collect(),
    )
}

fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

fn cmd_list(json_out: bool, extra: &[PathBuf]) -> Result<()> {
    let mut rows = Vec::new();
    for p in discover(extra) {
        match open(&p).and_then(|s| info_json(&p, &s)) {
            Ok(v) => rows.push(v),
            Err(e) => rows.push(json!({"path": p, "error": format!("{e:#}")})),
        }
    }
    if json_out {
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    if rows.is_empty() {
        println!("no hpcap devices or software sources found");
    }
    for r in rows {
        if let Some(e) = r.get("error") {
            println!(
                "{}  error: {}",
                r["path"].as_str().unwrap_or_default(),
                e.as_str().unwrap_or_default()
            );
            continue;
        }
        println!(
            "{}  {}  {}  {}  buffer {} block {}  {} listener(s)  link {}",
            r["path"].as_str().unwrap_or_default(),
            r["name"].as_str().unwrap_or_default(),
            r["nic"].as_str().unwrap_or_default(),
            r["format"].as_str().unwrap_or_default(),
            human(r["buffer_size"].as_u64().unwrap_or(0)),
            human(r["block_size"].as_u64().unwrap_or(0)),
            r["listeners"],
            if r["link_up"].as_bool().unwrap_or(false) {
                "up"
            } else {
                "down"
            },
        );
    }
    Ok(())
}

fn cmd_status(json_out: bool, p: &Path) -> Result<()> {
    let s = open(p)?;
    let mut v = info_json(p, &s)?;
    let st = s.stats()?;
    let used = s
        .buffer_size()
        .saturating_sub(st.free_bytes.min(s.buffer_size()));
    v["occupancy_bytes"] = json!(used);
    v["occupancy_pct"] = json!(used as f64 / s.buffer_size() as f64 * 100.0);
    v["free_bytes"] = json!(st.free_bytes);
    v["uptime_s"] = json!(st.uptime_ns as f64 / 1e9);
    v["listener"] = listeners_json(&st);
    if let Some(shm) = s.shm() {
        v["end_of_stream"] = json!(shm.control().ended());
        v["filter_insns"] = json!(shm.control().filter().0.len());
    }
    if json_out {
        println!("{v}");
        return Ok(());
    }
    println!(
        "{}  ({})",
        p.display(),
        v["name"].as_str().unwrap_or_default()
    );
    println!(
        "  backend     {}  {}{}",
        v["nic"].as_str().unwrap_or_default(),
        v["bus"].as_str().unwrap_or_default(),
        match v["rx_desc_bytes"].as_u64() {
            Some(n) => format!("  {n}-byte RX descriptors"),
            None => String::new(),
        }
    );
    println!(
        "  link        {}{}",
        if v["link_up"].as_bool().unwrap_or(false) {
            "up"
        } else {
            "down"
        },
        match v["link_mbps"].as_u64() {
            Some(0) | None => String::new(),
            Some(m) => format!(" {m} Mb/s"),
        }
    );
    println!("  receives    {}", promisc_text(&v["promisc"]));
    println!(
        "  stream      {}  buffer {}  block {}  snaplen {}",
        v["format"].as_str().unwrap_or_default(),
        human(s.buffer_size()),
        human(s.block_size()),
        match v["snaplen"].as_u64() {
            Some(0) => "whole frames".to_string(),
            Some(n) => n.to_string(),
            None => "?".into(),
        }
    );
    println!(
        "  occupancy   {} of {} ({:.1}%)  commit {}",
        human(used),
        human(s.buffer_size()),
        v["occupancy_pct"].as_f64().unwrap_or(0.0),
        st.commit
    );
    if s.kind() == SourceKind::Software {
        println!("  ended       {}", v["end_of_stream"]);
    }
    println!("  listeners   {}", st.nlisteners);
    for l in &st.listener[..st.nlisteners as usize] {
        let mut state = String::new();
        if l.flags & abi::LISTENER_KILLED != 0 {
            state += "  KILLED";
        }
        if l.flags & abi::LISTENER_LINGERING != 0 {
            state += &format!(
                "  LINGERING (process gone; freed in {:.1} s unless `hpcapdd --name` resumes it)",
                f64::from(l.linger_left_ms) / 1000.0
            );
        }
        println!(
            "    id {:<6}  {:8}  {:16}  pid {:7}  cursor {:14}  lag {:>10}  lost {} in {} blocks{state}",
            l.id,
            mode_name(l.mode),
            listener_name(l).map_or("-".to_string(), |n| format!("name {n}")),
            l.pid,
            l.cursor,
            human(l.lag),
            human(l.lost_bytes),
            l.lost_blocks,
        );
    }
    Ok(())
}

fn cmd_stats(
    json_out: bool,
    sources: &[PathBuf],
    watch: Option<f64>,
    count: Option<u64>,
    prom: bool,
) -> Result<()> {
    let paths = if sources.is_empty() {
        discover(&[])
    } else {
        sources.to_vec()
    };
    if paths.is_empty() {
        bail!("no hpcap devices or software sources found");
    }
    let srcs: Vec<(PathBuf, Source)> = paths
        .iter()
        .map(|p| open(p).map(|s| (p.clone(), s)))
        .collect::<Result<_>>()?;
    if prom {
        let readings = srcs
            .iter()
            .map(|(p, s)| {
                metrics::Reading::of(p, s).with_context(|| format!("reading {}", p.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        print!("{}", metrics::render(&readings, &[]));
        return Ok(());
    }
    let Some(every) = watch else {
        let mut all = Vec::new();
        for (p, s) in &srcs {
            let st = s.stats()?;
            let v = json!({
                "path": p,
                "name": s.name(),
                "counters": counters_json(&st),
                "commit": st.commit,
                "free_bytes": st.free_bytes,
                "nic_resets": st.nic_resets,
                "uptime_s": st.uptime_ns as f64 / 1e9,
                "listener": listeners_json(&st),
            });
            if !json_out {
                println!("{}  ({})", p.display(), s.name());
                if let Some(m) = v["counters"].as_object() {
                    for (k, val) in m {
                        // A NIC counter this NIC does not have.
                        let shown = if val.is_null() {
                            "n/a".to_string()
                        } else {
                            val.to_string()
                        };
                        println!("  {k:22} {shown}");
                    }
                }
                println!("  {:22} {}", "commit", st.commit);
                println!("  {:22} {}", "free_bytes", st.free_bytes);
                println!("  {:22} {}", "nic_resets", st.nic_resets);
            }
            all.push(v);
        }
        if json_out {
            println!(
                "{}",
                if all.len() == 1 {
                    all.remove(0)
                } else {
                    Value::Array(all)
                }
            );
        }
        return Ok(());
    };
    hpcap::util::install_stop_handlers();
    let dt = Duration::from_secs_f64(every.max(0.05));
    let mut prev: Vec<(Instant, Stats)> = srcs
        .iter()
        .map(|(_, s)| s.stats().map(|st| (Instant::now(), st)))
        .collect::<hpcap::Result<_>>()?;
    let mut n = 0;
    while count.is_none_or(|c| n < c) && hpcap::util::stop_requested().is_none() {
        std::thread::sleep(dt);
        for (k, (p, s)) in srcs.iter().enumerate() {
            let st = s.stats()?;
            let (t0, ref old) = prev[k];
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            let d = |a: u64, b: u64| a.wrapping_sub(b) as f64 / secs;
            let (c, o) = (st.counters, old.counters);
            let pps = d(c.frames_stored, o.frames_stored);
            let bps = d(c.bytes_stored, o.bytes_stored) * 8.0;
            let drops = d(c.dropped_total(), o.dropped_total());
            let occ = (s
                .buffer_size()
                .saturating_sub(st.free_bytes.min(s.buffer_size()))) as f64
                / s.buffer_size() as f64
                * 100.0;
            if json_out {
                println!(
                    "{}",
                    json!({"path": p, "pps": pps, "bps": bps, "drops_per_s": drops,
                           "occupancy_pct": occ, "counters": counters_json(&st)})
                );
            } else {
                let nic = if st.nic_valid & hpcap::core::stats::NIC_MISSED != 0 {
                    c.nic_missed.to_string()
                } else {
                    "n/a".to_string()
                };
                println!(
                    "{}: {:.3} Mpps {:.3} Gbit/s stored | drops {:.0}/s (nic {} ring {} no-space {} lingering {} no-listener {} writer {} stop {}) | filtered {} | occupancy {:.1}%",
                    s.name(),
                    pps / 1e6,
                    bps / 1e9,
                    drops,
                    nic,
                    c.dropped_ring,
                    c.dropped_no_space,
                    c.dropped_lingering,
                    c.dropped_no_listener,
                    c.dropped_writer,
                    c.dropped_stop,
                    c.filtered,
                    occ
                );
            }
            prev[k] = (Instant::now(), st);
        }
        n += 1;
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    let r = match &args.cmd {
        Cmd::List { paths } => cmd_list(args.json, paths),
        Cmd::Status { source } => cmd_status(args.json, source),
        Cmd::Stats {
            watch,
            count,
            prometheus,
            sources,
        } => cmd_stats(args.json, sources, *watch, *count, *prometheus),
        Cmd::Serve { listen, sources } => serve::run(*listen, sources.clone()),
        Cmd::Config {
            snaplen,
            filter,
            no_filter,
            format,
            block_size,
            source,
        } => (|| -> Result<()> {
            let s = open(source)?;
            let mut cfg = abi::Config::default();
            if let Some(n) = snaplen {
                cfg.set |= abi::CONFIG_SNAPLEN;
                cfg.snaplen = *n;
            }
            if let Some(f) = format {
                cfg.set |= abi::CONFIG_FORMAT;
                cfg.format = match f {
                    Fmt::Pcapng => abi::FORMAT_PCAPNG,
                    Fmt::Raw => abi::FORMAT_RAW,
                };
            }
            if let Some(b) = block_size {
                cfg.set |= abi::CONFIG_BLOCK_SIZE;
                cfg.block_size = *b;
            }
            if cfg.set == 0 && filter.is_none() && !no_filter {
                bail!("nothing to change: give --snaplen, --filter, --no-filter, --format or --block-size");
            }
            if cfg.set != 0 {
                // Opening a device attaches nothing (the driver attaches a
                // file at its first read), so only real listeners, such as a
                // running hpcapdd, can make a format switch fail with EBUSY.
                s.set_config(&cfg).context("setting the configuration")?;
            }
            let mut insns = None;
            if let Some(expr) = filter {
                let prog = hpcap::bpfc::compile(expr)?;
                s.set_filter(&prog).context("installing the filter")?;
                insns = Some(prog.len());
            } else if *no_filter {
                s.set_filter(&[]).context("removing the filter")?;
                insns = Some(0);
            }
            if args.json {
                println!(
                    "{}",
                    json!({"path": source, "ok": true, "filter_insns": insns})
                );
            } else {
                println!("{}: configuration updated", source.display());
            }
            Ok(())
        })(),
        Cmd::Kill {
            source,
            listener,
            by_name,
        } => (|| -> Result<()> {
            let s = open(source)?;
            let id = match listener.parse::<u32>() {
                Ok(id) if !by_name => {
                    s.kill_listener(id)
                        .with_context(|| format!("killing listener {id}"))?;
                    id
                }
                _ => s
                    .kill_named(listener)
                    .with_context(|| format!("killing the listener named {listener:?}"))?,
            };
            if args.json {
                println!("{}", json!({"path": source, "killed": id}));
            } else {
                println!("{}: listener {listener} (id {id}) killed", source.display());
            }
            Ok(())
        })(),
    };
    if let Err(e) = r {
        eprintln!("hpcapctl: error: {e:#}");
        if let Some(h) = hpcap::device_hint(e.chain(), &format!("{e:#}")) {
            eprintln!("hpcapctl: hint: {h}");
        }
        std::process::exit(1);
    }
}
