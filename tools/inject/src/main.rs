// SPDX-License-Identifier: MIT
//! `hpcap-inject`: replays the frames of pcap/pcapng files into a QEMU
//! network device through `-netdev stream` (each frame is a 4-byte big-endian
//! length followed by the frame), with rate control, loops and exact counts.
//!
//! QEMU connects to us (`-netdev stream,server=off,addr.type=unix,addr.path=S`)
//! or we connect to QEMU (`server=on`, `--connect`). Frames sent before the
//! guest's link is up are lost, so replay can wait for a start signal: a file
//! that appears (`--wait-file`) or the first frame the guest sends (`--wait-rx`).

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hpcap_core::capfile::Packets;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

/// Replay pcap/pcapng files into a QEMU NIC over a `-netdev stream` socket.
#[derive(Parser, Debug)]
#[command(version, about, long_about = None, after_help = "\
EXAMPLES:
  # listen; QEMU runs with -netdev stream,id=n0,server=off,addr.type=unix,addr.path=/tmp/inj.sock
  hpcap-inject --listen /tmp/inj.sock --pps 20000 --wait-file /tmp/go trace.pcap

  # replay twice, as fast as QEMU reads, and write counts as JSON
  hpcap-inject --listen /tmp/inj.sock --loop 2 --stats-json sent.json a.pcapng b.pcap

  # rounds at rates chosen by the guest: it writes 5000 to DIR/go.1, waits
  # for DIR/done.1, writes 0 to DIR/go.2, ..., and finally creates DIR/end
  hpcap-inject --listen /tmp/inj.sock --rounds-dir /srv/share/rounds trace.pcap

  # rounds whose frames the guest picks too: go.K holds a JSON spec, e.g.
  # {\"files\": [\"/srv/a.pcap\"], \"pps\": 3000, \"loop\": 1, \"dst_mac\": \"02:00:00:00:00:10\"}
  hpcap-inject --listen /tmp/inj.sock --rounds-dir /srv/share/rounds

The exit status is 0 once every frame was written to the socket. Counts in
--stats-json are of frames handed to QEMU: frames QEMU's NIC model drops
because the guest's ring is full are not visible here.")]
struct Args {
    /// Listen on this unix socket and wait for QEMU to connect (QEMU `server=off`).
    #[arg(
        long,
        value_name = "PATH",
        conflicts_with = "connect",
        required_unless_present = "connect"
    )]
    listen: Option<PathBuf>,
    /// Connect to QEMU listening on this unix socket (QEMU `server=on`).
    #[arg(long, value_name = "PATH")]
    connect: Option<PathBuf>,
    /// Frames per second (0 = as fast as the socket accepts them).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pps: u64,
    /// Replay the files this many times.
    #[arg(long = "loop", default_value_t = 1, value_name = "N")]
    loops: u64,
    /// Do not start replaying before this file exists.
    #[arg(long, value_name = "PATH")]
    wait_file: Option<PathBuf>,
    /// Do not start replaying before the guest has sent a frame.
    #[arg(long)]
    wait_rx: bool,
    /// Give up (exit status 3) if the start signal has not come after this many seconds.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    start_timeout: u64,
    /// Create this file when every frame has been written.
    #[arg(long, value_name = "PATH")]
    done_file: Option<PathBuf>,
    /// After sending, keep the connection open until QEMU closes it or we are killed.
    #[arg(long)]
    hold: bool,
    /// Rewrite every frame's destination MAC to this address (e.g. to reach
    /// an SR-IOV VF, which receives only frames addressed to it).
    #[arg(long, value_name = "MAC", value_parser = hpcap_core::frame::parse_mac)]
    dst_mac: Option<[u8; 6]>,
    /// Write final counts as JSON to this file.
    #[arg(long, value_name = "PATH")]
    stats_json: Option<PathBuf>,
    /// Rounds controlled from a directory (e.g. a guest's share): for K = 1,
    /// 2, ... wait for DIR/go.K, replay, write DIR/done.K with that round's
    /// counts as JSON; end at DIR/end. go.K holds either a rate in frames
    /// per second (0 = unpaced) for the FILEs, --loop and --dst-mac of the
    /// command line, or a JSON object {"files": [...], "pps": N, "loop": N,
    /// "dst_mac": "MAC"} naming the round's own files (relative paths are
    /// relative to DIR; missing fields come from the command line). Replaces
    /// --wait-file, --done-file and --stats-json (the last round's counts).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["wait_file", "done_file", "wait_rx"])]
    rounds_dir: Option<PathBuf>,
    /// Print progress to stderr every N seconds (0 = never).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    progress: u64,
    /// Capture files to replay, in order (pcap or pcapng); with
    /// --rounds-dir they may instead be named by each round's JSON spec.
    #[arg(required_unless_present = "rounds_dir", value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Counts written by `--stats-json`.
#[derive(Serialize, Debug, Default)]
struct Stats {
    frames_sent: u64,
    bytes_sent: u64,
    frames_received: u64,
    bytes_received: u64,
    truncated_frames_sent: u64,
    loops: u64,
    pps_target: u64,
    send_seconds: f64,
    /// Wall clock (Unix seconds) when the round's first frame was sent, so
    /// host-side logs (QEMU's trace events) can be cut by round.
    start_unix_s: f64,
}

/// One round: what to replay, how often, how fast.
struct Round<'a> {
    files: Vec<(&'a Path, &'a Mmap)>,
    pps: u64,
    loops: u64,
    dst_mac: Option<[u8; 6]>,
}

/// A round's JSON spec in `--rounds-dir` mode (fields missing here come
/// from the command line).
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct RoundSpec {
    #[serde(default)]
    files: Vec<PathBuf>,
    pps: Option<u64>,
    #[serde(rename = "loop")]
    loops: Option<u64>,
    dst_mac: Option<String>,
}

/// What a go.K file asks for: a bare rate, or a JSON spec.
fn parse_go(text: &str) -> Option<Result<RoundSpec>> {
    let t = text.trim();
    if let Ok(pps) = t.parse::<u64>() {
        return Some(Ok(RoundSpec {
            pps: Some(pps),
            ..RoundSpec::default()
        }));
    }
    if t.starts_with('{') && t.ends_with('}') {
        return Some(serde_json::from_str(t).map_err(|e| anyhow::anyhow!("bad round spec: {e}")));
    }
    // Not whole yet (or not ours): look again.
    None
}

fn map(path: &Path) -> Result<Mmap> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: the file is only read; a concurrent writer could change what we
    // replay, never memory safety of the slices we hand to the socket copy.
    let m = unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
    Packets::new(&m)
        .map_err(|e| anyhow::anyhow!("{}: not a pcap/pcapng file: {e:?}", path.display()))?;
    Ok(m)
}

fn connect(args: &Args) -> Result<UnixStream> {
    if let Some(path) = &args.connect {
        return UnixStream::connect(path)
            .with_context(|| format!("connecting to {}", path.display()));
    }
    let path = args
        .listen
        .as_ref()
        .context("--listen or --connect is required")?;
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).with_context(|| format!("listening on {}", path.display()))?;
    eprintln!("hpcap-inject: listening on {}", path.display());
    let (s, _) = l.accept().context("accepting QEMU's connection")?;
    eprintln!("hpcap-inject: QEMU connected");
    Ok(s)
}

/// Drains and counts what the guest sends; sets `first` on the first frame.
fn spawn_receiver(
    mut s: UnixStream,
    first: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            let mut at = 0;
            while pending.len() - at >= 4 {
                let len = u32::from_be_bytes([
                    pending[at],
                    pending[at + 1],
                    pending[at + 2],
                    pending[at + 3],
                ]) as usize;
                if pending.len() - at < 4 + len {
                    break;
                }
                at += 4 + len;
                frames.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(len as u64, Ordering::Relaxed);
                first.store(true, Ordering::Release);
            }
            pending.drain(..at);
        }
    });
}

fn wait_start(args: &Args, first_rx: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(args.start_timeout);
    loop {
        let file_ok = args.wait_file.as_ref().is_none_or(|p| p.exists());
        let rx_ok = !args.wait_rx || first_rx.load(Ordering::Acquire);
        if file_ok && rx_ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!(
                "hpcap-inject: no start signal after {} s",
                args.start_timeout
            );
            std::process::exit(3);
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Replays every file `args.loops` times at `pps` frames per second (0 =
/// as fast as the socket takes them) and returns what was sent.
fn send_round(args: &Args, round: &Round<'_>, out: &mut BufWriter<UnixStream>) -> Result<Stats> {
    let pps = round.pps;
    let mut st = Stats {
        loops: round.loops,
        pps_target: pps,
        ..Stats::default()
    };
    let t0 = Instant::now();
    st.start_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut last_progress = t0;
    let mut warned_trunc = false;
    for _ in 0..round.loops {
        for &(path, m) in &round.files {
            for p in Packets::new(m).map_err(|e| anyhow::anyhow!("{e:?}"))? {
                let p = p.map_err(|e| anyhow::anyhow!("{}: {e:?}", path.display()))?;
                // Frame i is due at t0 + i/pps (pps 0: no pacing); sleep only
                // when ahead, and flush first so QEMU sees the frames on time.
                if let Some(due_ns) = st
                    .frames_sent
                    .saturating_mul(1_000_000_000)
                    .checked_div(pps)
                {
                    let due = t0 + Duration::from_nanos(due_ns);
                    let now = Instant::now();
                    if due > now {
                        out.flush().context("writing to QEMU")?;
                        thread::sleep(due - now);
                    }
                }
                if (p.data.len() as u64) < u64::from(p.orig_len) {
                    st.truncated_frames_sent += 1;
                    if !warned_trunc {
                        eprintln!("hpcap-inject: warning: {} has truncated frames; sending the captured bytes", path.display());
                        warned_trunc = true;
                    }
                }
                let len = u32::try_from(p.data.len()).context("frame too long")?;
                out.write_all(&len.to_be_bytes())
                    .context("writing to QEMU")?;
                match (&round.dst_mac, p.data.get(6..)) {
                    (Some(mac), Some(rest)) => {
                        out.write_all(mac).context("writing to QEMU")?;
                        out.write_all(rest).context("writing to QEMU")?;
                    }
                    _ => out.write_all(p.data).context("writing to QEMU")?,
                }
                st.frames_sent += 1;
                st.bytes_sent += u64::from(len);
                if args.progress > 0
                    && last_progress.elapsed() >= Duration::from_secs(args.progress)
                {
                    last_progress = Instant::now();
                    let secs = t0.elapsed().as_secs_f64();
                    eprintln!(
                        "hpcap-inject: {} frames, {} bytes in {secs:.1} s ({:.0} fps)",
                        st.frames_sent,
                        st.bytes_sent,
                        st.frames_sent as f64 / secs
                    );
                }
            }
        }
    }
    out.flush().context("writing to QEMU")?;
    st.send_seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "hpcap-inject: sent {} frames ({} bytes) in {:.2} s",
        st.frames_sent, st.bytes_sent, st.send_seconds
    );
    Ok(st)
}

/// The `--rounds-dir` protocol: one round per go.K file, until `end`.
fn run_rounds(
    args: &Args,
    maps: &[Mmap],
    out: &mut BufWriter<UnixStream>,
    dir: &Path,
) -> Result<Stats> {
    let mut last = Stats::default();
    // Files named by JSON specs, mapped once.
    let mut mapped: Vec<(PathBuf, Mmap)> = Vec::new();
    for k in 1u64.. {
        let go = dir.join(format!("go.{k}"));
        let deadline = Instant::now() + Duration::from_secs(args.start_timeout);
        // The guest writes go.K through a shared directory: wait until it
        // exists and holds a whole rate or spec.
        let spec = loop {
            if dir.join("end").exists() {
                return Ok(last);
            }
            if let Ok(text) = std::fs::read_to_string(&go) {
                if let Some(spec) = parse_go(&text) {
                    break spec.with_context(|| format!("{}", go.display()))?;
                }
            }
            if Instant::now() > deadline {
                eprintln!(
                    "hpcap-inject: no {} after {} s",
                    go.display(),
                    args.start_timeout
                );
                std::process::exit(3);
            }
            thread::sleep(Duration::from_millis(5));
        };
        let files: Vec<PathBuf> = spec.files.iter().map(|f| dir.join(f)).collect();
        for f in &files {
            if !mapped.iter().any(|(p, _)| p == f) {
                mapped.push((f.clone(), map(f)?));
            }
        }
        let round = Round {
            files: if files.is_empty() {
                args.files.iter().map(PathBuf::as_path).zip(maps).collect()
            } else {
                files
                    .iter()
                    .filter_map(|f| mapped.iter().find(|(p, _)| p == f))
                    .map(|(p, m)| (p.as_path(), m))
                    .collect()
            },
            pps: spec.pps.unwrap_or(args.pps),
            loops: spec.loops.unwrap_or(args.loops),
            dst_mac: match &spec.dst_mac {
                Some(m) => Some(
                    hpcap_core::frame::parse_mac(m)
                        .with_context(|| format!("the round's dst_mac '{m}'"))?,
                ),
                None => args.dst_mac,
            },
        };
        if round.files.is_empty() {
            bail!(
                "{}: the round names no files and none were given",
                go.display()
            );
        }
        eprintln!(
            "hpcap-inject: round {k}: {} file(s) x {} at {} frames/s",
            round.files.len(),
            round.loops,
            round.pps
        );
        last = send_round(args, &round, out)?;
        // Written whole, then renamed: the guest never reads half a file.
        let tmp = dir.join(format!(".done.{k}"));
        write_json(&tmp, &last)?;
        std::fs::rename(&tmp, dir.join(format!("done.{k}")))
            .with_context(|| format!("renaming {}", tmp.display()))?;
    }
    Ok(last)
}

fn write_json(path: &Path, st: &Stats) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(st)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn run(args: &Args) -> Result<Stats> {
    let maps = args
        .files
        .iter()
        .map(|p| map(p))
        .collect::<Result<Vec<_>>>()?;
    let stream = connect(args)?;
    let first_rx = Arc::new(AtomicBool::new(false));
    let rx_frames = Arc::new(AtomicU64::new(0));
    let rx_bytes = Arc::new(AtomicU64::new(0));
    spawn_receiver(
        stream.try_clone()?,
        first_rx.clone(),
        rx_frames.clone(),
        rx_bytes.clone(),
    );

    let mut out = BufWriter::with_capacity(1 << 20, stream.try_clone()?);
    let st = match &args.rounds_dir {
        None => {
            wait_start(args, &first_rx)?;
            let round = Round {
                files: args.files.iter().map(PathBuf::as_path).zip(&maps).collect(),
                pps: args.pps,
                loops: args.loops,
                dst_mac: args.dst_mac,
            };
            send_round(args, &round, &mut out)?
        }
        Some(dir) => run_rounds(args, &maps, &mut out, dir)?,
    };
    if let Some(p) = &args.stats_json {
        write_json(p, &st)?;
    }
    if let Some(p) = &args.done_file {
        File::create(p).with_context(|| format!("creating {}", p.display()))?;
    }
    if args.hold {
        // Stay connected (QEMU drops a stream netdev's queue when the peer
        // goes away); the receiver thread ends when QEMU closes its side.
        let mut probe = stream;
        let mut b = [0u8; 1];
        let _ = probe.read(&mut b);
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    }
    let mut st = st;
    st.frames_received = rx_frames.load(Ordering::Relaxed);
    st.bytes_received = rx_bytes.load(Ordering::Relaxed);
    Ok(st)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("hpcap-inject: error: {e:#}");
        std::process::exit(1);
    }
}
