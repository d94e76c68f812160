// SPDX-License-Identifier: MIT
//! `hpcapdd`: streams an hpcap source (`/dev/hpcapN` or a `hpcap-sim`
//! shared-memory file) to disk in whole stream blocks, written with
//! O_DIRECT straight from the read-only mapping, into rotated, valid pcapng
//! (or HPCAP RAW) files.

mod sink;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use hpcap::core::abi;
use hpcap::stream::NextBlock;
use hpcap::util::{now_ns, parse_size, stop_requested};
use hpcap::{BlockReader, Leftover, ListenerMode, Source};

use sink::{BlockMeta, DirSink, Failure, RotateCfg, StorageFailed};

/// Exit status when the disk filled up.
const EXIT_DISK_FULL: i32 = 3;
/// Exit status when the storage failed (I/O error, read-only file system).
const EXIT_STORAGE: i32 = 4;
/// How long a stopping hpcapdd waits for frames reserved before it let go
/// of the stream to be published.
const SETTLE: Duration = Duration::from_secs(1);

/// Stream an hpcap capture source to disk.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Attaches to SOURCE (/dev/hpcapN, or the PATH of a hpcap-sim software source) \
as a listener and writes its stream to files under DIR in whole blocks, with O_DIRECT, \
straight from the read-only mapping. Every file starts with a 4 KiB SHB+IDB header, holds \
whole blocks, and ends with an Interface Statistics Block carrying the drop counters, so it \
is valid pcapng at every block boundary. Files are written as .NAME (hidden) and renamed \
when complete.",
    after_help = "\
FILES:
  DIR/YYYY-MM-DD/HH/YYYYMMDD-HHMMSS.NNNNNNNNN-IFACE.pcapng   (UTC, first packet's timestamp;
  .raw in RAW mode). Time rotation uses the packets' timestamps, aligned to multiples of
  --rotate-seconds since the epoch (60 = on the minute).

EXIT STATUS:
  0  end of stream, or stopped by SIGINT/SIGTERM or --duration: everything published up to
     the stop was stored (the partial last block too), files closed
  1  error (source, file system)
  2  bad usage
  3  disk full: the current file was cut at its last complete block and closed validly
  4  the storage failed (I/O error, read-only file system, device gone): the current file
     was cut at its last complete block and closed as far as the storage allowed; one it
     could not rename is left as .NAME, finished by hpcap-check --repair
  With 3 and 4, the frames published but not stored are counted in the summary (\"not
  stored\") and, where the file could still be closed, in its statistics block (osdrop).

STOPPING:
  On SIGINT, SIGTERM or --duration, hpcapdd detaches (from then on the source drops and
  counts frames that no listener takes) and stores everything that was published for it
  before: whole blocks, then the partial last block.

EXAMPLES:
  hpcapdd /dev/hpcap0 /mnt/raid
  hpcapdd --rotate-size 1G --rotate-seconds 60 --max-files 1000 /dev/hpcap0 /mnt/raid
  hpcapdd --null --stats-interval 1 /dev/shm/hpcap-test"
)]
struct Args {
    /// Attach as a lossy listener (never holds the capture back; skips
    /// blocks when overrun) instead of a blocking one.
    #[arg(long)]
    lossy: bool,
    /// Start a new file before one would exceed this size (e.g. 1G).
    #[arg(long, value_parser = parse_size, value_name = "BYTES")]
    rotate_size: Option<u64>,
    /// Start a new file every N seconds of capture time, aligned to
    /// multiples of N since the epoch (accepts 30s, 5m, 1h).
    #[arg(long, value_parser = hpcap::util::parse_duration_s, value_name = "N")]
    rotate_seconds: Option<u64>,
    /// Keep at most N complete files (oldest deleted first).
    #[arg(long, value_name = "N")]
    max_files: Option<usize>,
    /// Delete the oldest complete files to keep this percentage of the file
    /// system free.
    #[arg(long, value_name = "PCT")]
    min_free: Option<f64>,
    /// Discard the data (benchmarks): read and acknowledge blocks only.
    #[arg(long)]
    null: bool,
    /// Do not use O_DIRECT even where the file system supports it.
    #[arg(long)]
    no_direct: bool,
    /// Print a one-line status every N seconds to stderr (0 = never).
    #[arg(long, default_value_t = 0.0, value_name = "N")]
    stats_interval: f64,
    /// Also write each status, and a final summary, as JSON lines here.
    #[arg(long, value_name = "FILE")]
    stats_json: Option<PathBuf>,
    /// Stop after this many seconds (flushing like SIGINT).
    #[arg(long, value_name = "N")]
    duration: Option<f64>,
    /// Capture source: /dev/hpcapN or a software source path.
    source: PathBuf,
    /// Output directory (not needed with --null).
    #[arg(required_unless_present = "null")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    blocks: u64,
    packets: u64,
    bytes: u64,
    /// Published frames hpcapdd could not store (storage failure).
    not_stored_packets: u64,
    /// Their stream bytes.
    not_stored_bytes: u64,
    /// Published bytes overwritten before hpcapdd could store them after
    /// it let go of the stream (only when other listeners let the
    /// producer lap it); their frames cannot be counted.
    overwritten_bytes: u64,
}

/// How the run ended, for the exit status and the summary.
struct End {
    status: i32,
    reason: String,
    /// The storage failure and how the last file was left.
    failure: Option<(StorageFailed, String)>,
}

struct Stats {
    interval: Option<Duration>,
    json: Option<std::fs::File>,
    last: Instant,
    last_totals: Totals,
    start: Instant,
}

impl Stats {
    /// A status line (every --stats-interval), or the final summary (`end`,
    /// with the source's counters `snapshot` taken when the last file was
    /// closed, so both say the same).
    fn report(
        &mut self,
        reader: &BlockReader,
        t: &Totals,
        files: u64,
        end: Option<(&End, &abi::Stats, Option<&sink::LastFile>)>,
    ) -> Result<()> {
        let final_ = end.is_some();
        let due = self.interval.is_some_and(|i| self.last.elapsed() >= i);
        if !due && !final_ {
            return Ok(());
        }
        let (dt, d) = if final_ {
            (self.start.elapsed().as_secs_f64(), *t)
        } else {
            (
                self.last.elapsed().as_secs_f64(),
                Totals {
                    blocks: t.blocks - self.last_totals.blocks,
                    packets: t.packets - self.last_totals.packets,
                    bytes: t.bytes - self.last_totals.bytes,
                    ..Totals::default()
                },
            )
        };
        self.last = Instant::now();
        self.last_totals = *t;
        let src = reader.source();
        let st = match end {
            Some((_, snap, _)) => *snap,
            None => src.stats().unwrap_or(abi::Stats::ZERO),
        };
        let c = st.counters;
        let w = reader.last_wait();
        let occ = w.available as f64 / src.buffer_size() as f64 * 100.0;
        let (lost_b, lost_k) = reader.losses();
        let gbps = d.bytes as f64 * 8.0 / dt.max(1e-9) / 1e9;
        let mpps = d.packets as f64 / dt.max(1e-9) / 1e6;
        eprintln!(
            "hpcapdd: {}{gbps:.2} Gbit/s {mpps:.3} Mpps | buffer {occ:.1}% | {} pkts {} blocks {} files | \
             drops: ring {} no-space {} no-listener {} writer {} nic {} | filtered {} | overrun {} blocks{}",
            if final_ { "total " } else { "" },
            t.packets,
            t.blocks,
            files,
            c.dropped_ring,
            c.dropped_no_space,
            c.dropped_no_listener,
            c.dropped_writer,
            if st.nic_valid & hpcap::core::stats::NIC_MISSED != 0 {
                c.nic_missed.to_string()
            } else {
                "n/a".to_string()
            },
            c.filtered,
            lost_k,
            match end {
                Some(_) if t.not_stored_packets > 0 || t.overwritten_bytes > 0 => format!(
                    " | not stored {} pkts{}",
                    t.not_stored_packets,
                    if t.overwritten_bytes > 0 {
                        format!(" + {} bytes overwritten before they could be", t.overwritten_bytes)
                    } else {
                        String::new()
                    }
                ),
                _ => String::new(),
            }
        );
        if let Some(j) = &mut self.json {
            use std::io::Write;
            let mut v = serde_json::json!({
                "time_ns": now_ns(),
                "final": final_,
                "interval_s": dt,
                "gbps": gbps,
                "mpps": mpps,
                "occupancy_pct": occ,
                "packets": t.packets,
                "blocks": t.blocks,
                "bytes": t.bytes,
                "files": files,
                "lost_bytes": lost_b,
                "lost_blocks": lost_k,
                "source": source_json(&st),
            });
            if let Some((e, _, last)) = end {
                let x = serde_json::json!({
                    "exit_status": e.status,
                    "exit_reason": e.reason,
                    "not_stored_packets": t.not_stored_packets,
                    "not_stored_bytes": t.not_stored_bytes,
                    "overwritten_bytes": t.overwritten_bytes,
                    "last_file": last.map(|l| l.path.display().to_string()),
                    "last_file_isb": last.map(|l| l.isb),
                    "last_file_renamed": last.map(|l| l.renamed),
                });
                if let (Some(m), serde_json::Value::Object(x)) = (v.as_object_mut(), x) {
                    m.extend(x);
                }
            }
            writeln!(j, "{v}").context("writing --stats-json")?;
        }
        Ok(())
    }
}

/// The source's counters by their names in the core's table (a NIC counter
/// the NIC does not have is null), and its commit offset.
fn source_json(st: &hpcap::core::abi::Stats) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for c in hpcap::core::stats::COUNTERS {
        let v = match c.source {
            hpcap::core::stats::Source::Nic(bit) if st.nic_valid & bit == 0 => {
                serde_json::Value::Null
            }
            _ => (c.get)(&st.counters).into(),
        };
        m.insert(c.name.into(), v);
    }
    m.insert("commit".into(), st.commit.into());
    serde_json::Value::Object(m)
}

/// Metadata of a block: from its header when final, else by parsing it.
fn block_meta(data: &[u8], format: u32) -> BlockMeta {
    if let Some(h) = hpcap::stream::block_header(data, format) {
        if h.flags & hpcap::core::pcapng::BH_FLAG_FINAL != 0 {
            return BlockMeta {
                packets: u64::from(h.records),
                first_ts: (h.records > 0).then_some(h.first_ts_ns),
                last_ts: h.last_ts_ns,
            };
        }
    }
    parse_meta(data, format)
}

fn parse_meta(data: &[u8], format: u32) -> BlockMeta {
    let mut m = BlockMeta::default();
    for p in hpcap::StreamPackets::new(data, format) {
        m.packets += 1;
        m.first_ts.get_or_insert(p.ts_ns);
        m.last_ts = p.ts_ns;
    }
    m
}

/// Why the main loop stopped.
enum Stop {
    /// End of stream (source finished, device gone, listener killed).
    End,
    /// SIGINT/SIGTERM (the signal) or --duration (None).
    Requested(Option<i32>),
    /// The capture directory failed.
    Failed(StorageFailed),
}

/// A storage failure, or the error itself.
fn storage_failed(e: anyhow::Error) -> Result<StorageFailed> {
    e.downcast::<StorageFailed>()
}

/// Stores (or, once the storage failed or with nothing to store to,
/// counts) the published bytes hpcapdd had not consumed when it let go of
/// the stream.
fn drain(
    reader: &BlockReader,
    sink: &mut Option<DirSink>,
    left: Leftover,
    mut failure: Option<StorageFailed>,
    t: &mut Totals,
    format: u32,
) -> Result<Option<StorageFailed>> {
    let bs = reader.source().block_size();
    let mut off = left.start;
    while off < left.end {
        let len = (left.end - off).min(bs - off % bs);
        let data = reader.leftover_data(off, len as usize);
        let m = if len == bs {
            block_meta(data, format)
        } else {
            parse_meta(data, format)
        };
        // Stream offsets of blocks are multiples of the block size; a
        // listener's cursor always is one.
        let mut stored = failure.is_none() && off.is_multiple_of(bs);
        if stored {
            if let Some(s) = sink.as_mut() {
                let r = if len == bs {
                    s.write_block(data, &m)
                } else {
                    s.write_partial(data, &m)
                };
                if let Err(e) = r {
                    failure = Some(storage_failed(e)?);
                    stored = false;
                }
            }
        }
        if !reader.leftover_intact(&left, off)? {
            if stored {
                if let Some(s) = sink.as_mut() {
                    s.undo_last_block()?;
                }
            }
            t.overwritten_bytes += left.end - off;
            eprintln!(
                "hpcapdd: warning: {} published bytes were overwritten before they could be \
                 stored (another listener let the capture lap this one after it stopped)",
                left.end - off
            );
            break;
        }
        if stored {
            t.blocks += 1;
            t.packets += m.packets;
            t.bytes += bs;
        } else {
            t.not_stored_packets += m.packets;
            t.not_stored_bytes += len;
        }
        off += len;
    }
    Ok(failure)
}

fn run(args: &Args) -> Result<i32> {
    let src = Source::open(&args.source)
        .with_context(|| format!("opening the source {}", args.source.display()))?;
    let mode = if args.lossy {
        ListenerMode::Lossy
    } else {
        ListenerMode::Blocking
    };
    let mut reader = BlockReader::new(src, mode)
        .with_context(|| format!("attaching to {}", args.source.display()))?;
    // Taken once attached: format and block size are then fixed.
    let info = *reader.source().cached_info();
    let mut sink = match (&args.dir, args.null) {
        (Some(dir), false) => Some(DirSink::new(
            dir,
            &info,
            RotateCfg {
                size: args.rotate_size,
                seconds: args.rotate_seconds,
                max_files: args.max_files,
                min_free: args.min_free,
            },
            !args.no_direct,
        )?),
        _ => None,
    };
    let mut stats = Stats {
        interval: (args.stats_interval > 0.0).then(|| Duration::from_secs_f64(args.stats_interval)),
        json: args
            .stats_json
            .as_ref()
            .map(|p| std::fs::File::create(p).with_context(|| format!("creating {}", p.display())))
            .transpose()?,
        last: Instant::now(),
        last_totals: Totals::default(),
        start: Instant::now(),
    };
    let deadline = args
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let format = info.format;
    let mut t = Totals::default();
    // Whether the block returned last was stored (acknowledged when
    // letting go of the stream) or must still be stored or counted.
    let mut consumed_last = true;
    let stop = loop {
        if let Some(sig) = stop_requested() {
            break Stop::Requested(Some(sig));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Stop::Requested(None);
        }
        let files = sink.as_ref().map_or(0, |s| s.files_done());
        stats.report(&reader, &t, files, None)?;
        if let Some(s) = &mut sink {
            // Counters for the statistics block of files closed by rotation.
            if let Ok(st) = reader.source().stats() {
                s.set_counters(st.counters, st.nic_valid);
            }
        }
        match reader.next_block(Some(Duration::from_millis(100)))? {
            NextBlock::Block(b) => {
                let m = block_meta(b.data, format);
                let res = match &mut sink {
                    Some(s) => s.write_block(b.data, &m),
                    None => Ok(()),
                };
                if let Err(e) = res {
                    consumed_last = false;
                    break Stop::Failed(storage_failed(e)?);
                }
                if !reader.validate()? {
                    // Overwritten while we wrote it: take it back.
                    if let Some(s) = &mut sink {
                        s.undo_last_block()?;
                    }
                    continue;
                }
                t.blocks += 1;
                t.packets += m.packets;
                t.bytes += info.block_size;
            }
            NextBlock::Timeout => {
                if let Some(s) = &mut sink {
                    if let Err(e) = s.idle(now_ns()) {
                        break Stop::Failed(storage_failed(e)?);
                    }
                }
            }
            NextBlock::End { partial, .. } => {
                if partial.is_empty() {
                    break Stop::End;
                }
                let m = parse_meta(partial, format);
                let r = match &mut sink {
                    Some(s) => s.write_partial(partial, &m),
                    None => Ok(()),
                };
                match r {
                    Ok(()) => {
                        t.packets += m.packets;
                        t.blocks += 1;
                        t.bytes += info.block_size;
                        break Stop::End;
                    }
                    Err(e) => {
                        t.not_stored_packets += m.packets;
                        t.not_stored_bytes += partial.len() as u64;
                        break Stop::Failed(storage_failed(e)?);
                    }
                }
            }
        }
    };
    // Let go of the stream and store (or count) what was published for us.
    let (failure, reason) = match stop {
        Stop::End => (None, "end of stream".to_string()),
        Stop::Requested(sig) => {
            let left = reader.let_go(consumed_last, SETTLE)?;
            let f = drain(&reader, &mut sink, left, None, &mut t, format)?;
            let why = match sig {
                Some(libc::SIGINT) => "stopped by SIGINT".to_string(),
                Some(libc::SIGTERM) => "stopped by SIGTERM".to_string(),
                Some(s) => format!("stopped by signal {s}"),
                None => "--duration reached".to_string(),
            };
            (f, why)
        }
        Stop::Failed(f) => {
            let left = reader.let_go(consumed_last, SETTLE)?;
            let f = drain(&reader, &mut sink, left, Some(f), &mut t, format)?;
            (f, String::new())
        }
    };
    let snap = reader.source().stats().unwrap_or(abi::Stats::ZERO);
    let counters = (snap.counters, snap.nic_valid);
    let mut failure = failure;
    let mut how = String::new();
    if let Some(s) = &mut sink {
        s.set_not_stored(t.not_stored_packets);
        if failure.is_none() {
            if let Err(e) = s.close(&counters, reader.losses()) {
                failure = Some(storage_failed(e)?);
            }
        }
        if failure.is_some() {
            how = s.close_failed(&counters);
        }
    }
    let end = match failure {
        None => End {
            status: 0,
            reason,
            failure: None,
        },
        Some(f) => End {
            status: if f.kind == Failure::DiskFull {
                EXIT_DISK_FULL
            } else {
                EXIT_STORAGE
            },
            reason: format!(
                "{}{f}",
                if reason.is_empty() {
                    String::new()
                } else {
                    format!("{reason}, then ")
                }
            ),
            failure: Some((f, how)),
        },
    };
    let files = sink.as_ref().map_or(0, |s| s.files_done());
    let last = sink.as_ref().and_then(|s| s.last_file().cloned());
    stats.report(&reader, &t, files, Some((&end, &snap, last.as_ref())))?;
    if let Some((f, how)) = &end.failure {
        eprintln!("hpcapdd: error: {f}; {how}");
        if t.not_stored_packets > 0 {
            eprintln!(
                "hpcapdd: {} published frames ({} bytes) were not stored",
                t.not_stored_packets, t.not_stored_bytes
            );
        }
    }
    Ok(end.status)
}

fn main() {
    let args = Args::parse();
    hpcap::util::install_stop_handlers();
    match run(&args) {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("hpcapdd: error: {e:#}");
            std::process::exit(1);
        }
    }
}
