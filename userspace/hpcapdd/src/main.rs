// SPDX-License-Identifier: MIT
//! `hpcapdd`: streams an hpcap source (`/dev/hpcapN` or a `hpcap-sim`
//! shared-memory file) to disk in whole stream blocks, written with
//! O_DIRECT straight from the read-only mapping, into rotated, valid pcapng
//! (or HPCAP RAW) files.

mod indexer;
mod recover;
mod sink;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use hpcap::core::abi;
use hpcap::core::format::StreamFormat;
use hpcap::stream::NextBlock;
use hpcap::util::{now_ns, parse_size, stop_requested};
use hpcap::{BlockReader, Leftover, ListenerMode, Source};

use indexer::{FlowCfg, Indexer};
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
when complete. At start, hidden files a killed hpcapdd left in DIR are finished (cut at their \
last complete block, statistics appended, renamed) and reported. With --name, hpcapdd is a \
named listener: if it is killed, the device keeps its place for --linger seconds, and the next \
hpcapdd --name NAME resumes exactly there, storing no block twice and losing none.",
    after_help = "\
FILES:
  DIR/YYYY-MM-DD/HH/YYYYMMDD-HHMMSS.NNNNNNNNN-IFACE.pcapng   (UTC, first packet's timestamp;
  .raw in RAW mode). Time rotation uses the packets' timestamps, aligned to multiples of
  --rotate-seconds since the epoch (60 = on the minute). A file being written is named
  .NAME and locked (flock); an unlocked .NAME is an orphan, finished at the next start.

RETENTION (--max-files, --min-free):
  Only complete files are deleted, oldest first, with their indexes: after each file is
  completed and before each new one is opened. Each deletion is reported on stderr with the
  file's packets, logged to --files-json (event \"deleted\") and counted in the final summary
  (\"retention\": files, bytes and packets deleted), so that the packets stored by a run are
  those of the files that remain plus those retention deleted.

RESTARTS (--name):
  A named listener whose hpcapdd dies (SIGKILL, crash, error exit) or stops because its storage
  failed (exit status 3 or 4) lingers: the capture keeps
  its unacknowledged bytes (frames that find no room meanwhile are counted as
  dropped_lingering) until --linger expires or `hpcapctl kill SOURCE NAME`. A new
  `hpcapdd --name NAME` within that time takes it over at the first byte its predecessor had
  not acknowledged; blocks the predecessor had already written (found in the orphan it left)
  are recognised byte for byte and skipped. SIGINT/SIGTERM and the end of the stream detach
  explicitly: nothing lingers.

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
  With --name, nothing is counted as not stored: the listener lingers at the first block
  not stored, for a new hpcapdd --name NAME (on other storage) to resume there.

STOPPING:
  On SIGINT, SIGTERM or --duration, hpcapdd detaches (from then on the source drops and
  counts frames that no listener takes) and stores everything that was published for it
  before: whole blocks, then the partial last block.

EXAMPLES:
  hpcapdd /dev/hpcap0 /mnt/raid
  hpcapdd --name raid0 --linger 60 /dev/hpcap0 /mnt/raid
  hpcapdd --rotate-size 1G --rotate-seconds 60 --max-files 1000 /dev/hpcap0 /mnt/raid
  hpcapdd --null --stats-interval 1 /dev/shm/hpcap-test"
)]
struct Args {
    /// Attach as a lossy listener (never holds the capture back; skips
    /// blocks when overrun) instead of a blocking one.
    #[arg(long, conflicts_with = "name")]
    lossy: bool,
    /// Attach as the named blocking listener NAME (1-31 characters of
    /// A-Z a-z 0-9 . _ -), resuming where a killed hpcapdd of that name
    /// stopped (see RESTARTS).
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    name: Option<String>,
    /// How long the named listener lingers after this hpcapdd dies without
    /// stopping cleanly (1s..1h; accepts 30s, 5m, 1h).
    #[arg(long, value_parser = parse_linger, value_name = "SECS", requires = "name")]
    linger: Option<Duration>,
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
    /// Write a JSON line here for every file completed (its packets,
    /// blocks and bytes) and every file retention deletes (the same, and
    /// why), so that what was stored can be counted after retention.
    #[arg(long, value_name = "FILE", conflicts_with = "null")]
    files_json: Option<PathBuf>,
    /// Stop after this many seconds (flushing like SIGINT).
    #[arg(long, value_name = "N")]
    duration: Option<f64>,
    /// Do not index completed files (build indexes later with hpcap-index).
    #[arg(long)]
    no_index: bool,
    /// Also write each file's Parquet flow table under
    /// DIR/flows/probe=P/date=YYYY-MM-DD/hour=HH/.
    #[arg(long, conflicts_with = "no_index")]
    flows: bool,
    /// Probe name in the flow table (default: the host name).
    #[arg(long, value_name = "NAME")]
    probe: Option<String>,
    /// Capture source: /dev/hpcapN or a software source path.
    source: PathBuf,
    /// Output directory (not needed with --null).
    #[arg(required_unless_present = "null")]
    dir: Option<PathBuf>,
}

/// `--name`: a valid listener name.
fn parse_name(s: &str) -> Result<String, String> {
    hpcap::core::listener::Name::new(s.as_bytes())
        .map(|_| s.to_string())
        .ok_or_else(|| {
            format!(
                "{s:?}: a listener name is 1 to {} characters of A-Z a-z 0-9 . _ -",
                hpcap::core::listener::NAME_MAX
            )
        })
}

/// `--linger`: whole seconds, 1 s to the ABI's maximum.
fn parse_linger(s: &str) -> Result<Duration, String> {
    let secs = hpcap::util::parse_duration_s(s)?;
    let max = u64::from(abi::LINGER_MAX_MS / 1000);
    if secs == 0 || secs > max {
        return Err(format!("{s:?}: the linger time must be 1 s to {max} s"));
    }
    Ok(Duration::from_secs(secs))
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
    index: Option<std::sync::Arc<indexer::IndexCounters>>,
    /// Added to the final JSON summary.
    extra: serde_json::Value,
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
        let ix = self.index.as_ref().map_or(String::new(), |c| {
            format!(
                " | indexed {} backlog {}",
                c.done.load(std::sync::atomic::Ordering::Relaxed),
                c.backlog()
            )
        });
        eprintln!(
            "hpcapdd: {}{gbps:.2} Gbit/s {mpps:.3} Mpps | buffer {occ:.1}% | {} pkts {} blocks {} files | \
             drops: ring {} no-space {} lingering {} no-listener {} writer {} stop {} nic {} | filtered {} | \
             overrun {} blocks{ix}{}",
            if final_ { "total " } else { "" },
            t.packets,
            t.blocks,
            files,
            c.dropped_ring,
            c.dropped_no_space,
            c.dropped_lingering,
            c.dropped_no_listener,
            c.dropped_writer,
            c.dropped_stop,
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
                "index": self.index.as_ref().map(|c| c.json()),
                "source": source_json(&st),
            });
            if final_ {
                if let (Some(v), Some(extra)) = (v.as_object_mut(), self.extra.as_object()) {
                    v.extend(extra.clone());
                }
            }
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
/// the stream. Whole blocks a resumed named listener finds already stored
/// by its predecessor (`skip`) are skipped, as in the main loop.
fn drain(
    reader: &BlockReader,
    sink: &mut Option<DirSink>,
    left: Leftover,
    mut failure: Option<StorageFailed>,
    t: &mut Totals,
    format: u32,
    mut skip: Option<&mut recover::ResumeSkip>,
) -> Result<Option<StorageFailed>> {
    let bs = reader.source().block_size();
    let mut off = left.start;
    while off < left.end {
        let len = (left.end - off).min(bs - off % bs);
        let data = reader.leftover_data(off, len as usize);
        if let Some(sk) = skip.as_deref_mut() {
            if len == bs && off.is_multiple_of(bs) && sk.already_stored(data)? {
                off += len;
                continue;
            }
        }
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

/// Finishes the orphans a killed hpcapdd left in `dir` and reports them.
fn recover_orphans(dir: &std::path::Path, src: &Source) -> Result<Vec<recover::Orphan>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let info = src.cached_info();
    let ifname = String::from_utf8_lossy(abi::get_cstr(&info.name)).into_owned();
    let ctx = recover::Ctx {
        ifname: if ifname.is_empty() { "hpcap" } else { &ifname },
        block_size: info.block_size,
        counters: src.stats().ok().map(|st| (st.counters, st.nic_valid)),
    };
    let orphans = recover::recover(dir, &ctx)
        .with_context(|| format!("finishing the files left in {}", dir.display()))?;
    for o in &orphans {
        eprintln!("hpcapdd: {}", o.describe());
    }
    Ok(orphans)
}

fn run(args: &Args) -> Result<i32> {
    let src = Source::open(&args.source)
        .with_context(|| format!("opening the source {}", args.source.display()))?;
    // Before attaching: a predecessor's orphan must be finished (and its
    // last blocks known) before the stream resumes after them.
    let orphans = match (&args.dir, args.null) {
        (Some(dir), false) => recover_orphans(dir, &src)?,
        _ => Vec::new(),
    };
    let mut reader = match &args.name {
        Some(name) => BlockReader::named(src, name, args.linger).with_context(|| {
            format!(
                "attaching to {} as the named listener {name:?}",
                args.source.display()
            )
        })?,
        None => {
            let mode = if args.lossy {
                ListenerMode::Lossy
            } else {
                ListenerMode::Blocking
            };
            BlockReader::new(src, mode)
                .with_context(|| format!("attaching to {}", args.source.display()))?
        }
    };
    // Taken once attached: format and block size are then fixed.
    let info = *reader.source().cached_info();
    let mut skip = None;
    if let Some(name) = &args.name {
        let at = reader.start_offset();
        if reader.resumed() {
            if at % info.block_size != 0 {
                // Not left by an hpcapdd: its blocks would be cut.
                bail!(
                    "the lingering listener {name:?} stopped at stream offset {at}, inside a \
                     block: it was not an hpcapdd's (kill it with `hpcapctl kill {} {name}`)",
                    args.source.display()
                );
            }
            eprintln!(
                "hpcapdd: resumed the named listener {name:?} at stream offset {at} (block {})",
                at / info.block_size
            );
            if let (Some(dir), false) = (&args.dir, args.null) {
                let format = StreamFormat::try_from(info.format)
                    .map_err(|_| anyhow::anyhow!("unknown stream format {}", info.format))?;
                let ifname = String::from_utf8_lossy(abi::get_cstr(&info.name)).into_owned();
                skip = Some(recover::ResumeSkip::new(
                    dir,
                    if ifname.is_empty() { "hpcap" } else { &ifname },
                    format,
                    info.block_size,
                ));
            }
        } else {
            eprintln!("hpcapdd: attached as the named listener {name:?} at stream offset {at}");
        }
    }
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
    if let (Some(s), Some(p)) = (&mut sink, &args.files_json) {
        let f = std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?;
        s.set_files_log(f);
    }
    let mut index = match (&args.dir, args.null || args.no_index) {
        (Some(dir), false) => Some(Indexer::start(args.flows.then(|| FlowCfg {
            root: dir.clone(),
            probe: args.probe.clone().unwrap_or_else(hostname),
        }))),
        _ => None,
    };
    let mut stats = Stats {
        index: index.as_ref().map(|i| i.counters.clone()),
        extra: serde_json::Value::Null,
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
    // Test knob (tests/restart.rs): SIGKILL ourselves right after writing
    // the N-th block, before it is acknowledged.
    let kill_after = std::env::var("HPCAPDD_TEST_KILL_AFTER_BLOCKS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    // The stream ended (a storage failure while storing its last partial
    // block is then not something a successor could resume).
    let mut ended = false;
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
        if let (Some(s), Some(ix)) = (&mut sink, &index) {
            for p in s.take_closed() {
                ix.submit(p);
            }
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
                if let Some(sk) = &mut skip {
                    // Written by our predecessor, which died before
                    // acknowledging it: stored once already.
                    if sk.already_stored(b.data)? {
                        continue;
                    }
                }
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
                if kill_after == Some(t.blocks) {
                    // Test knob: die the hard way between writing a block
                    // and acknowledging it.
                    // SAFETY: signalling ourselves.
                    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
                }
            }
            NextBlock::Timeout => {
                if let Some(s) = &mut sink {
                    // The first frame of the block being filled, if any:
                    // a file's period is not over while it holds frames
                    // of that period.
                    let next_ts = hpcap::StreamPackets::new(reader.unfinished(), format)
                        .next()
                        .map(|p| p.ts_ns);
                    if let Err(e) = s.idle(now_ns(), next_ts) {
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
                        ended = true;
                        break Stop::Failed(storage_failed(e)?);
                    }
                }
            }
        }
    };
    // Let go of the stream and store (or count) what was published for us.
    // A named listener whose storage failed keeps its place instead (see
    // below).
    let mut lingers = None;
    let (failure, reason) = match stop {
        Stop::End => {
            // A named listener must not linger after the end of stream.
            reader.detach();
            (None, "end of stream".to_string())
        }
        Stop::Requested(sig) => {
            // Detaches: a named listener must not linger after a clean stop.
            let left = reader.let_go(consumed_last, SETTLE)?;
            let f = drain(
                &reader,
                &mut sink,
                left,
                None,
                &mut t,
                format,
                skip.as_mut(),
            )?;
            let why = match sig {
                Some(libc::SIGINT) => "stopped by SIGINT".to_string(),
                Some(libc::SIGTERM) => "stopped by SIGTERM".to_string(),
                Some(s) => format!("stopped by signal {s}"),
                None => "--duration reached".to_string(),
            };
            (f, why)
        }
        Stop::Failed(f) if args.name.is_some() && !ended => {
            // A named listener does not let go: it lingers when this
            // process exits, holding everything from the first block not
            // stored (not acknowledged) on, so that a new `hpcapdd --name`
            // on other storage resumes exactly there. Nothing is counted
            // as not stored: it is kept, not lost (if nobody resumes it
            // within the linger time, the source counts what its expiry
            // costs).
            lingers = Some(reader.last_wait().read_offset);
            (Some(f), String::new())
        }
        Stop::Failed(f) => {
            let left = reader.let_go(consumed_last, SETTLE)?;
            let f = drain(
                &reader,
                &mut sink,
                left,
                Some(f),
                &mut t,
                format,
                skip.as_mut(),
            )?;
            if ended {
                reader.detach();
            }
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
    // Every file completed (rotation, the end, a storage failure) goes to
    // the indexer; it indexes the backlog before hpcapdd exits.
    if let Some(ix) = &mut index {
        if let Some(s) = &mut sink {
            for p in s.take_closed() {
                ix.submit(p);
            }
        }
        ix.finish();
    }
    if let Some(sk) = &skip {
        if sk.skipped > 0 {
            eprintln!(
                "hpcapdd: {} block(s) delivered again after the resume were already stored \
                 (written by the predecessor before it could acknowledge them) and skipped",
                sk.skipped
            );
        }
    }
    stats.extra = serde_json::json!({
        "recovered": orphans.iter().map(recover::Orphan::json).collect::<Vec<_>>(),
        "resumed": reader.resumed(),
        "start_offset": reader.start_offset(),
        "skipped_blocks": skip.as_ref().map_or(0, |s| s.skipped),
        "lingering_at": lingers,
        "retention": sink.as_ref().map(|s| {
            let d = s.deleted();
            serde_json::json!({
                "files_deleted": d.files,
                "bytes_deleted": d.bytes,
                "packets_deleted": d.packets,
                "files_deleted_not_ours": d.unknown_files,
            })
        }),
    });
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
    if let (Some(at), Some(name)) = (lingers, &args.name) {
        eprintln!(
            "hpcapdd: the named listener {name:?} lingers at stream offset {at} for {} s: \
             `hpcapdd --name {name} {} DIR` on working storage resumes there and loses nothing",
            args.linger
                .map_or(u64::from(abi::LINGER_DEFAULT_MS / 1000), |d| d.as_secs()),
            args.source.display()
        );
    }
    Ok(end.status)
}

/// The host name (default probe name).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "probe".into())
}

fn main() {
    let args = Args::parse();
    hpcap::util::install_stop_handlers();
    match run(&args) {
        Ok(status) => std::process::exit(status),
        Err(e) => {
            eprintln!("hpcapdd: error: {e:#}");
            if let Some(h) = hpcap::device_hint(e.chain(), &format!("{e:#}")) {
                eprintln!("hpcapdd: hint: {h}");
            }
            std::process::exit(1);
        }
    }
}
