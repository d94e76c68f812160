// SPDX-License-Identifier: MIT
//! `hpcap-query`: finds packets in capture directories with the files'
//! indexes and writes them, merged in time order, as pcapng or pcap.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use hpcap::core::capfile::Packets;
use hpcap::core::pcapng::{write_epb, write_idb_with, write_shb_with, EpbOptions, InterfaceInfo};
use hpcap::core::raw;
use hpcap::files::{section_info, CaptureFile, FileKind};
use hpcap_index::fetch::{open_direct, Fetcher, Ticket};
use hpcap_index::files::data_files;
use hpcap_index::query::{parse, Expr, Matcher};
use hpcap_index::reader::{index_path, read_run_from, runs, Index, OwnedPacket, ReadStats};
use roaring::RoaringBitmap;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Io {
    /// io_uring where the kernel allows it, else advise.
    Auto,
    /// Queue the page reads on an io_uring (O_DIRECT where possible);
    /// an error where io_uring is unavailable.
    Uring,
    /// posix_fadvise(WILLNEED) ahead of the reader, then one pread per run.
    Advise,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Fmt {
    /// pcapng, one interface per source.
    Pcapng,
    /// Classic pcap, nanosecond timestamps.
    Pcap,
}

/// Find packets in capture directories, fast, with their indexes.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Finds the packets matching QUERY in the capture files under each DIR (hpcapdd's \
YYYY-MM-DD/HH/ trees, or any directory of .pcapng, .pcap and .raw files) and writes them merged in \
time order. Files are pruned by the time in their name, then by their index's time range and block \
table, then by the page sets of the query's addresses, ports, protocols and VLANs; only the pages \
that may hold matches are read, in merged reads, and every packet read is tested exactly (the \
query is compiled by libpcap and run as tcpdump runs it). Files without an index are scanned. The \
result is what `tcpdump -r FILE 'EXPR'` returns over all files, with EXPR the query without its \
time and inner primitives (see --explain).",
    after_help = "\
QUERY (a subset of tcpdump's language, plus time and tunnel primitives):
  host ADDR, [src|dst] host ADDR, ip|ip6 host ADDR, net ADDR/BITS, net ADDR mask MASK,
  [tcp|udp|sctp] [src|dst] port N, tcp, udp, sctp, icmp, icmp6, ip, ip6, arp,
  [ip|ip6] proto N, vlan [N], before TIME, after TIME, inner host ADDR, inner net ADDR/BITS,
  combined with and (&&), or (||), not (!) and parentheses.
  after T keeps ts >= T, before T keeps ts < T. TIME: 2026-11-27T10:00:00Z, \"2026-11-27 10:00\",
  seconds since the epoch, or N(s|m|h|d) ago. inner host X: X is an address inside a GRE or VXLAN
  tunnel (tcpdump has no such primitive).

EXIT STATUS: 0 success (also when nothing matched); 1 error; 2 bad usage.

EXAMPLES:
  hpcap-query -w x.pcapng 'host 10.1.2.3 and port 443 and after 2026-11-27T10:00:00Z' /mnt/raid
  hpcap-query 'net 10.1.0.0/16 and not tcp' /mnt/raid | tshark -r -
  hpcap-query --bpf 'tcp[tcpflags] & tcp-syn != 0' -w syn.pcapng 'dst port 22' /mnt/raid
  hpcap-query --flows-csv hits.csv -w x.pcapng 'host 10.1.2.3' /fleet/probe1 /fleet/probe2"
)]
struct Args {
    /// Output file (default: standard output).
    #[arg(short = 'w', long, value_name = "OUT")]
    write: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "pcapng")]
    format: Fmt,
    /// Also require this tcpdump filter, compiled with libpcap and run as a
    /// separate program (as `hpcapctl config --filter` does).
    #[arg(long, value_name = "FILTER")]
    bpf: Option<String>,
    /// Restrict the search to the files (and page ranges) listed in this CSV
    /// (columns `file` and optionally `probe`, `first_page`, `last_page`),
    /// e.g. the answer of a DuckDB query over the flow tables. Packets that
    /// belong to no flow (ARP, non-IP) are outside every listed range.
    #[arg(long, value_name = "CSV")]
    flows_csv: Option<PathBuf>,
    /// Also search hidden files (.NAME, being written): they are scanned.
    #[arg(long)]
    include_open: bool,
    /// Ignore indexes: scan every file (for comparisons).
    #[arg(long)]
    no_index: bool,
    /// Print what the query means (tcpdump expression, time window) and exit.
    #[arg(long)]
    explain: bool,
    /// Print statistics (files pruned, pages and bytes read) on stderr.
    #[arg(long)]
    stats: bool,
    /// How the pages of indexed files are read (see the long help).
    #[arg(long, value_enum, default_value = "auto", value_name = "HOW")]
    io: Io,
    /// Join page ranges less than this many pages apart into one read.
    #[arg(long, default_value_t = 8, value_name = "PAGES")]
    merge_gap: u32,
    /// The query.
    query: String,
    /// Capture directories (or files).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Stats {
    files: u64,
    pruned_name: u64,
    pruned_time: u64,
    pruned_index: u64,
    pruned_flows: u64,
    scanned: u64,
    unreadable: u64,
    indexed: u64,
    pages: u64,
    io: ReadStats,
    matched: u64,
    /// Time spent waiting for queued page reads (io_uring).
    wait_ns: u64,
    /// Time spent parsing and testing the packets of page runs (with the
    /// `pread` of runs not queued on the io_uring).
    parse_ns: u64,
    /// Time spent scanning files without an index.
    scan_ns: u64,
    /// Time spent writing the output.
    out_ns: u64,
}

impl Stats {
    /// Adds the planning counters of `o`.
    fn add(&mut self, o: &Stats) {
        self.files += o.files;
        self.pruned_name += o.pruned_name;
        self.pruned_time += o.pruned_time;
        self.pruned_index += o.pruned_index;
        self.pruned_flows += o.pruned_flows;
        self.scanned += o.scanned;
        self.indexed += o.indexed;
        self.pages += o.pages;
    }
}

/// What to read from one file.
enum Plan {
    /// Read these page runs with the index (then the tail past `covered`).
    Pages(Box<PagePlan>),
    /// Scan the whole file.
    Scan,
}

/// Page runs to read from one indexed file.
struct PagePlan {
    /// The data file, opened when the merge first reads from it (and closed
    /// with the plan), so that only the files being merged hold a
    /// descriptor however many match.
    file: Option<File>,
    /// Runs of pages still to read, in file order.
    runs: VecDeque<(u32, u32)>,
    /// Of `runs`, how many from the front have been announced to the kernel
    /// (queued on the fetcher, or read-ahead requested).
    announced: usize,
    /// Bytes of the runs announced and not yet read.
    ahead: u64,
    /// The fetcher's read of each announced run (`None`: announced as
    /// read-ahead advice, or no fetcher).
    tickets: VecDeque<Option<Ticket>>,
    /// The data file opened for the fetcher (`O_DIRECT` where possible).
    direct: Option<Arc<File>>,
    index: Index,
    /// Bytes of the data file the index covers.
    covered: u64,
    /// First page and oldest timestamp of each block (when the runs are
    /// queued in the merge's order): when the merge will want a run.
    block_ts: Vec<(u32, u64)>,
}

/// Read-ahead window of the file being read: its page runs are announced
/// to the kernel (`POSIX_FADV_WILLNEED`) this many bytes ahead of the
/// reader, so that the disk sees many requests at once instead of one read
/// at a time.
const WINDOW: u64 = 32 << 20;

/// Read-ahead announced while planning, over all files together: enough for
/// every page of a selective query, bounded for broad ones.
const PLAN_WINDOW: u64 = 256 << 20;

/// Files whose reads may be queued while planning (each holds a
/// descriptor until its reads are done); the others queue theirs when the
/// merge reaches them.
const PLAN_FILES: usize = 256;

impl PagePlan {
    /// Byte range of run `(a, b)` as read by `read_run`.
    fn range(&self, (a, b): (u32, u32)) -> (u64, u64) {
        let shift = self.index.header.page_shift;
        let start = u64::from(a) << shift;
        let end = ((u64::from(b) + 1) << shift)
            .saturating_add(2048)
            .min(self.covered);
        (start, end.max(start))
    }

    /// Announces the runs of `file` that start within `window` bytes of the
    /// next one to read, taking what it announces from `budget` (when
    /// given) and stopping when that is spent: each run is queued on the
    /// fetcher when there is one and the file is open for it, else the
    /// kernel is advised to read it ahead.
    fn announce(
        &mut self,
        file: &File,
        fetcher: Option<&Fetcher>,
        window: u64,
        budget: Option<&AtomicU64>,
    ) {
        let mut batch = Vec::new();
        while self.announced < self.runs.len() && self.ahead < window {
            let (s, e) = self.range(self.runs[self.announced]);
            if let Some(b) = budget {
                if b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    v.checked_sub(e - s)
                })
                .is_err()
                {
                    break;
                }
            }
            match (fetcher, &self.direct) {
                (Some(_), Some(_)) => batch.push((s, e - s)),
                _ => {
                    advise(file, s, e - s, libc::POSIX_FADV_WILLNEED);
                    self.tickets.push_back(None);
                }
            }
            self.ahead += e - s;
            self.announced += 1;
        }
        if let (Some(fx), Some(d)) = (fetcher, &self.direct) {
            if !batch.is_empty() {
                self.tickets
                    .extend(fx.read_all(d, &batch).into_iter().map(Some));
            }
        }
    }
}

/// Queues the page runs of every file opened for the fetcher on it, in
/// the order the time-ordered merge will take them (each run's time
/// estimated by the oldest packet of the block holding its first page, and
/// never earlier than the file's previous run), up to [`WINDOW`] bytes per
/// file and [`PLAN_WINDOW`] over all, then starts them.
///
/// Reads complete in any order but start in queue order, and a completed
/// read holds its buffer until the merge takes it: queued file by file in
/// the order planning threads finished, the reads of a later file could
/// take every buffer while the merge waited for the first file's reads,
/// started one at a time (seen as ~900 waits for unstarted reads and ~5
/// reads in flight, instead of ~50 waits with ~90 in flight, for a Zipf
/// host over five files).
fn queue_in_merge_order(cursors: &mut [Cursor], fx: &Fetcher) {
    let mut order: Vec<(u64, usize, usize)> = Vec::new();
    for (ci, c) in cursors.iter().enumerate() {
        let Some(Plan::Pages(pp)) = &c.plan else {
            continue;
        };
        if pp.direct.is_none() || pp.announced > 0 {
            continue;
        }
        let mut last = c.lower_ts;
        for (ri, &(a, _)) in pp.runs.iter().enumerate() {
            let i = pp.block_ts.partition_point(|&(first, _)| first <= a);
            if let Some(&(_, ts)) = i.checked_sub(1).and_then(|i| pp.block_ts.get(i)) {
                last = last.max(ts);
            }
            order.push((last, ci, ri));
        }
    }
    order.sort_unstable();
    let mut budget = PLAN_WINDOW;
    let mut closed = vec![false; cursors.len()];
    for (_, ci, ri) in order {
        if closed[ci] {
            continue;
        }
        let Some(Plan::Pages(pp)) = &mut cursors[ci].plan else {
            continue;
        };
        let (s, e) = pp.range(pp.runs[ri]);
        // Runs of one file are queued in file order, from the first.
        if ri != pp.announced || pp.ahead >= WINDOW || e - s > budget {
            closed[ci] = true;
            continue;
        }
        let d = pp.direct.as_ref().expect("checked above");
        let t = fx.queue_all(d, &[(s, e - s)]);
        pp.tickets.extend(t.into_iter().map(Some));
        pp.ahead += e - s;
        pp.announced += 1;
        budget -= e - s;
    }
    fx.start();
}

/// posix_fadvise; advice only, failures are ignored.
fn advise(f: &File, off: u64, len: u64, advice: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the
    // descriptor is open for the duration of the call.
    unsafe {
        libc::posix_fadvise(
            f.as_raw_fd(),
            off as libc::off_t,
            len as libc::off_t,
            advice,
        );
    }
}

struct Cursor {
    path: PathBuf,
    iface: u32,
    plan: Option<Plan>,
    lower_ts: u64,
    buf: VecDeque<OwnedPacket>,
    done: bool,
}

/// First timestamp in an hpcapdd file name `YYYYMMDD-HHMMSS.NNNNNNNNN-IFACE.ext`.
fn name_ts(p: &Path) -> Option<u64> {
    let n = p.file_name()?.to_str()?.trim_start_matches('.');
    let b = n.as_bytes();
    if b.len() < 25 || b[8] != b'-' || b[15] != b'.' {
        return None;
    }
    let s = format!(
        "{}-{}-{} {}:{}:{}.{}",
        &n[0..4],
        &n[4..6],
        &n[6..8],
        &n[9..11],
        &n[11..13],
        &n[13..15],
        &n[16..25]
    );
    hpcap::util::parse_time(&s).ok()
}

/// Interface part of an hpcapdd file name (`…-IFACE.ext` or `…-IFACE-N.ext`),
/// else the file stem.
fn iface_name(p: &Path) -> String {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().trim_start_matches('.').to_string())
        .unwrap_or_default();
    if name_ts(p).is_some() && stem.len() > 26 {
        let rest = &stem[26..];
        let rest = match rest.rsplit_once('-') {
            Some((a, n)) if n.chars().all(|c| c.is_ascii_digit()) => a,
            _ => rest,
        };
        return rest.to_string();
    }
    stem
}

/// The probe a capture directory belongs to: `DIR/flows/probe=NAME`, else
/// the directory's name.
fn probe_of(dir: &Path) -> String {
    if let Ok(rd) = std::fs::read_dir(dir.join("flows")) {
        for e in rd.flatten() {
            if let Some(n) = e
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("probe="))
            {
                return n.to_string();
            }
        }
    }
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into())
}

/// Candidate files and page ranges from a CSV: (probe, file) -> ranges.
type Candidates = HashMap<(Option<String>, String), Vec<(u32, u32)>>;

fn read_candidates(p: &Path) -> Result<Candidates> {
    let text = std::fs::read_to_string(p).with_context(|| p.display().to_string())?;
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .ok_or_else(|| anyhow!("{}: empty", p.display()))?
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .collect();
    let col = |n: &str| head.iter().position(|h| h == n);
    let file = col("file").ok_or_else(|| anyhow!("{}: no 'file' column", p.display()))?;
    let (probe, fp, lp) = (col("probe"), col("first_page"), col("last_page"));
    let mut out: Candidates = HashMap::new();
    for (i, l) in lines.enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = l.split(',').map(|s| s.trim().trim_matches('"')).collect();
        let get = |c: usize| {
            f.get(c)
                .copied()
                .ok_or_else(|| anyhow!("{}: line {}: too few columns", p.display(), i + 2))
        };
        let key = (
            probe.map(get).transpose()?.map(String::from),
            get(file)?.to_string(),
        );
        let e = out.entry(key).or_default();
        if let (Some(a), Some(b)) = (fp, lp) {
            let a: u32 = get(a)?.parse().context("first_page")?;
            let b: u32 = get(b)?.parse().context("last_page")?;
            e.push((a.min(b), a.max(b)));
        } else {
            e.push((0, u32::MAX));
        }
    }
    Ok(out)
}

struct Query {
    matcher: Matcher,
    stats: Stats,
    fetcher: Option<Arc<Fetcher>>,
}

/// What decides which files and pages to read (shared by the planning
/// threads).
struct Planner {
    expr: Expr,
    lo: u64,
    hi: u64,
    merge_gap: u32,
    /// What is left of [`PLAN_WINDOW`].
    budget: AtomicU64,
    /// What is left of [`PLAN_FILES`].
    files_left: AtomicUsize,
    /// Queues the page reads (none: io_uring unavailable, read-ahead advice
    /// and one pread per run instead).
    fetcher: Option<Arc<Fetcher>>,
}

/// One file to plan: its path, whether to use its index, the page ranges
/// a flow-table answer allows.
struct Job {
    path: PathBuf,
    use_index: bool,
    allowed: Option<Vec<(u32, u32)>>,
    iface_name: String,
}

/// Files planned at once: opening an index and reading what the query
/// needs from it is a chain of small dependent reads, which overlap across
/// files when cold.
const PLAN_THREADS: usize = 8;

impl Planner {
    /// Plans every job, in parallel, returning the plans in job order.
    fn plan_all(&self, jobs: &[Job], stats: &mut Stats) -> Result<Vec<Option<(Plan, u64)>>> {
        type Slot = std::sync::Mutex<Option<(Result<Option<(Plan, u64)>>, Stats)>>;
        let slots: Vec<Slot> = jobs.iter().map(|_| Default::default()).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|sc| {
            for _ in 0..PLAN_THREADS.min(jobs.len()) {
                sc.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(j) = jobs.get(i) else {
                        break;
                    };
                    let mut st = Stats::default();
                    let r = self.plan(&j.path, j.use_index, j.allowed.as_deref(), &mut st);
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some((r, st));
                });
            }
        });
        let mut out = Vec::with_capacity(jobs.len());
        for s in slots {
            let (r, st) = s
                .into_inner()
                .unwrap_or_else(|e| e.into_inner())
                .ok_or_else(|| anyhow!("a planning thread failed"))?;
            stats.add(&st);
            out.push(r?);
        }
        Ok(out)
    }

    /// Decides what to read of `path`.
    fn plan(
        &self,
        path: &Path,
        use_index: bool,
        allowed: Option<&[(u32, u32)]>,
        stats: &mut Stats,
    ) -> Result<Option<(Plan, u64)>> {
        stats.files += 1;
        if name_ts(path).is_some_and(|t| t >= self.hi) {
            stats.pruned_name += 1;
            return Ok(None);
        }
        let ipath = index_path(path);
        if use_index && ipath.exists() {
            match self.plan_indexed(path, &ipath, allowed, stats) {
                Ok(p) => return Ok(p),
                Err(e) => eprintln!("hpcap-query: warning: {e:#}; scanning {}", path.display()),
            }
        }
        stats.scanned += 1;
        Ok(Some((Plan::Scan, self.lo)))
    }

    fn plan_indexed(
        &self,
        path: &Path,
        ipath: &Path,
        allowed: Option<&[(u32, u32)]>,
        stats: &mut Stats,
    ) -> Result<Option<(Plan, u64)>> {
        // With a time window, the header alone (one page) may rule the
        // file out: the rest of the index's head (512 KiB) is only asked
        // for once it has not.
        let timed = self.lo > 0 || self.hi < u64::MAX;
        let mut ix = if timed {
            Index::open_header(ipath)?
        } else {
            Index::open(ipath)?
        };
        let len = std::fs::metadata(path)
            .with_context(|| path.display().to_string())?
            .len();
        if len < ix.header.data_len {
            bail!(
                "{}: the data file is shorter than its index says",
                path.display()
            );
        }
        let complete = len == ix.header.data_len;
        let h = &ix.header;
        if complete && (h.packets == 0 || h.max_ts < self.lo || h.min_ts >= self.hi) {
            stats.pruned_time += 1;
            return Ok(None);
        }
        if timed {
            ix.load()?;
        }
        let f = File::open(path).with_context(|| path.display().to_string())?;
        // The page `check_data` reads, fetched while the index is consulted.
        let tail = ix.header.data_len.saturating_sub(4096);
        advise(
            &f,
            tail,
            ix.header.data_len - tail,
            libc::POSIX_FADV_WILLNEED,
        );
        let h = &ix.header;
        let mut pages = self.expr.pages(&ix)?;
        if let Some(r) = allowed {
            let mut a = RoaringBitmap::new();
            for (x, y) in r {
                a.insert_range(*x..=*y);
            }
            pages &= a;
        }
        if pages.is_empty() && complete {
            stats.pruned_index += 1;
            return Ok(None);
        }
        ix.check_data(&f)?;
        ix.prefetch_pagedir();
        stats.indexed += 1;
        stats.pages += pages.len();
        let runs: VecDeque<(u32, u32)> = runs(&pages, self.merge_gap).into();
        // No match is older than the window's start, nor than the file's
        // oldest packet (when the index covers the whole file).
        let lower = if complete {
            h.min_ts.max(self.lo)
        } else {
            self.lo
        };
        let covered = h.data_len;
        let mut pp = PagePlan {
            file: None,
            runs,
            announced: 0,
            ahead: 0,
            tickets: VecDeque::new(),
            direct: None,
            index: ix,
            covered,
            block_ts: Vec::new(),
        };
        if self.fetcher.is_some()
            && self
                .files_left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1))
                .is_ok()
        {
            pp.direct = Some(Arc::new(open_direct(path)?.0));
        }
        if pp.direct.is_some() {
            // Queued with every other file's, in the merge's order, once
            // all are planned (`queue_in_merge_order`).
            pp.block_ts = pp
                .index
                .blocks()?
                .iter()
                .map(|b| (b.first_page, b.min_ts))
                .collect();
        } else {
            pp.announce(&f, self.fetcher.as_deref(), WINDOW, Some(&self.budget));
        }
        Ok(Some((Plan::Pages(Box::new(pp)), lower)))
    }
}

impl Query {
    /// Reads more matching packets of `c` into its buffer (until at least
    /// one or the end).
    fn refill(&mut self, c: &mut Cursor) -> Result<()> {
        while c.buf.is_empty() && !c.done {
            let Some(plan) = c.plan.as_mut() else {
                c.done = true;
                break;
            };
            match plan {
                Plan::Scan => {
                    let path = c.path.clone();
                    let mut out = Vec::new();
                    let t = Instant::now();
                    self.scan_file(&path, 0, None, &mut out)?;
                    self.stats.scan_ns += t.elapsed().as_nanos() as u64;
                    c.buf.extend(out);
                    c.done = true;
                }
                Plan::Pages(pp) => match pp.runs.pop_front() {
                    Some((a, b)) => {
                        if pp.file.is_none() {
                            let f = File::open(&c.path)
                                .with_context(|| c.path.display().to_string())?;
                            // Scattered reads: no read-ahead beyond what
                            // is announced.
                            advise(&f, 0, 0, libc::POSIX_FADV_RANDOM);
                            pp.file = Some(f);
                            if self.fetcher.is_some() && pp.direct.is_none() {
                                pp.direct = Some(Arc::new(open_direct(&c.path)?.0));
                            }
                        }
                        let file = pp.file.take().expect("opened above");
                        let ticket = if pp.announced > 0 {
                            let (s, e) = pp.range((a, b));
                            pp.ahead = pp.ahead.saturating_sub(e - s);
                            pp.announced -= 1;
                            pp.tickets.pop_front().flatten()
                        } else {
                            None
                        };
                        pp.announce(&file, self.fetcher.as_deref(), WINDOW, None);
                        // A failed queued read is retried with pread, which
                        // reports the error if it persists.
                        let t_wait = Instant::now();
                        let pre = match (ticket, &self.fetcher) {
                            (Some(t), Some(fx)) => fx.take(t).ok(),
                            _ => None,
                        };
                        let t_parse = Instant::now();
                        self.stats.wait_ns += (t_parse - t_wait).as_nanos() as u64;
                        let pre = pre.as_ref().map(|(at, b)| (*at, &b[..]));
                        let mut out = Vec::new();
                        let m = &mut self.matcher;
                        let mut err = None;
                        read_run_from(&file, &pp.index, a, b, pre, &mut self.stats.io, &mut |p| {
                            match m.matches(p.ts_ns, p.orig_len, &p.data) {
                                Ok(true) => {
                                    out.push(p);
                                    true
                                }
                                Ok(false) => true,
                                Err(e) => {
                                    err = Some(e);
                                    false
                                }
                            }
                        })
                        .with_context(|| c.path.display().to_string())?;
                        self.stats.parse_ns += t_parse.elapsed().as_nanos() as u64;
                        if let Some(e) = err {
                            return Err(e);
                        }
                        pp.file = Some(file);
                        c.buf.extend(out);
                    }
                    None => {
                        // The tail the index does not cover (appended later).
                        let len = std::fs::metadata(&c.path)?.len();
                        if len > pp.covered {
                            let st = pp.index.contexts()?.last().map(|x| x.1);
                            let (path, from) = (c.path.clone(), pp.covered);
                            let mut out = Vec::new();
                            self.scan_file(&path, from, st, &mut out)?;
                            c.buf.extend(out);
                        }
                        c.done = true;
                    }
                },
            }
        }
        Ok(())
    }

    /// Scans `path` from byte `from` (with `state` when not 0).
    fn scan_file(
        &mut self,
        path: &Path,
        from: u64,
        state: Option<hpcap::core::capfile::ReadState>,
        out: &mut Vec<OwnedPacket>,
    ) -> Result<()> {
        let cf = match CaptureFile::open(path) {
            Ok(cf) => cf,
            Err(e) => {
                // An empty or unrecognisable file: said, counted, skipped.
                eprintln!("hpcap-query: warning: skipping {}: {e}", path.display());
                self.stats.unreadable += 1;
                return Ok(());
            }
        };
        let data = cf.data();
        self.stats.io.reads += 1;
        self.stats.io.bytes += data.len() as u64 - from;
        let mut it = match (state, cf.kind()) {
            (Some(st), _) => Packets::resume(data, from as usize, &st),
            (None, FileKind::Raw { .. }) => Packets::new_raw(data),
            (None, _) => Packets::new(data).map_err(|e| anyhow!("{}: {e:?}", path.display()))?,
        };
        for p in it.by_ref() {
            let Ok(p) = p else {
                // A damaged or unfinished end: what came before stands.
                break;
            };
            self.stats.io.parsed += 1;
            if self.matcher.matches(p.ts_ns, p.orig_len, p.data)? {
                out.push(OwnedPacket {
                    ts_ns: p.ts_ns,
                    orig_len: p.orig_len,
                    data: p.data.to_vec(),
                    record: 0,
                });
            }
        }
        Ok(())
    }
}

struct Out<W: Write> {
    w: W,
    fmt: Fmt,
    buf: Vec<u8>,
}

impl<W: Write> Out<W> {
    fn new(mut w: W, fmt: Fmt, ifaces: &[String]) -> Result<Self> {
        let mut buf = vec![0u8; 1 << 16];
        let n = match fmt {
            Fmt::Pcap => raw::write_pcap_header(&mut buf, 0, true, 262_144)
                .map_err(|e| anyhow!("pcap header: {e:?}"))?,
            Fmt::Pcapng => {
                let mut n = write_shb_with(&mut buf, 0, &section_info())
                    .map_err(|e| anyhow!("SHB: {e:?}"))?;
                for name in ifaces {
                    let info = InterfaceInfo {
                        snaplen: 0,
                        name,
                        description: "",
                    };
                    n += write_idb_with(&mut buf, n, &info, "")
                        .map_err(|e| anyhow!("IDB: {e:?}"))?;
                }
                n
            }
        };
        w.write_all(&buf[..n]).context("writing the output")?;
        Ok(Self { w, fmt, buf })
    }

    fn packet(&mut self, iface: u32, p: &OwnedPacket) -> Result<()> {
        if self.buf.len() < p.data.len() + 64 {
            self.buf.resize(p.data.len() + 64, 0);
        }
        let n = match self.fmt {
            Fmt::Pcap => {
                raw::write_pcap_record(&mut self.buf, 0, true, p.ts_ns, p.orig_len, &p.data)
            }
            Fmt::Pcapng => write_epb(
                &mut self.buf,
                0,
                iface,
                p.ts_ns,
                p.orig_len,
                &p.data,
                &EpbOptions::NONE,
            ),
        }
        .map_err(|e| anyhow!("writing a packet: {e:?}"))?;
        self.w
            .write_all(&self.buf[..n])
            .context("writing the output")
    }
}

fn run(args: &Args) -> Result<()> {
    let t_start = Instant::now();
    let expr = parse(&args.query, hpcap::util::now_ns()).context("QUERY")?;
    let matcher = Matcher::new(&expr, args.bpf.as_deref())?;
    let (lo, hi) = expr.time_window();
    if args.explain {
        println!(
            "tcpdump expression: {}",
            matcher
                .tcpdump_expr()
                .unwrap_or_else(|| "(none: every packet)".into())
        );
        println!("time window: [{lo}, {hi}) ns");
        if let Some(b) = &args.bpf {
            println!("extra filter: {b}");
        }
        return Ok(());
    }
    let cands = args.flows_csv.as_deref().map(read_candidates).transpose()?;
    let fetcher = match args.io {
        Io::Advise => None,
        Io::Auto => Fetcher::new().map(Arc::new),
        Io::Uring => Some(Arc::new(Fetcher::new().ok_or_else(|| {
            anyhow!(
                "--io uring: io_uring is not available here (kernel or seccomp); use --io advise"
            )
        })?)),
    };
    let mut q = Query {
        matcher,
        stats: Stats::default(),
        fetcher: fetcher.clone(),
    };
    let planner = Planner {
        expr,
        lo,
        hi,
        merge_gap: args.merge_gap,
        budget: AtomicU64::new(PLAN_WINDOW),
        files_left: AtomicUsize::new(PLAN_FILES),
        fetcher,
    };
    let t0 = Instant::now();
    let setup = (t0 - t_start).as_secs_f64();
    let mut jobs: Vec<Job> = Vec::new();
    for dir in &args.dirs {
        let probe = probe_of(dir);
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for path in data_files(dir, args.include_open)? {
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            let allowed = match &cands {
                None => None,
                Some(c) => {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .into_owned();
                    let hit = c
                        .get(&(Some(probe.clone()), rel.clone()))
                        .or_else(|| c.get(&(None, rel)));
                    match hit {
                        Some(r) => Some(r.clone()),
                        None => {
                            q.stats.files += 1;
                            q.stats.pruned_flows += 1;
                            continue;
                        }
                    }
                }
            };
            jobs.push(Job {
                iface_name: format!("{label}:{}", iface_name(&path)),
                path,
                use_index: !args.no_index && !hidden,
                allowed,
            });
        }
    }
    let plans = planner.plan_all(&jobs, &mut q.stats)?;
    let planned = t0.elapsed().as_secs_f64();
    let mut ifaces: Vec<String> = Vec::new();
    let mut cursors: Vec<Cursor> = Vec::new();
    for (job, plan) in jobs.into_iter().zip(plans) {
        let Some((plan, lower)) = plan else {
            continue;
        };
        let iface = match ifaces.iter().position(|n| *n == job.iface_name) {
            Some(i) => i,
            None => {
                ifaces.push(job.iface_name);
                ifaces.len() - 1
            }
        } as u32;
        cursors.push(Cursor {
            path: job.path,
            iface,
            plan: Some(plan),
            lower_ts: lower,
            buf: VecDeque::new(),
            done: false,
        });
    }
    if let Some(fx) = &q.fetcher {
        queue_in_merge_order(&mut cursors, fx);
    }
    let sink: Box<dyn Write> = match &args.write {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = Out::new(
        BufWriter::with_capacity(1 << 20, sink),
        args.format,
        &ifaces,
    )?;
    // k-way merge: (ts, file rank); unread files enter with a lower bound.
    let mut heap: BinaryHeap<Reverse<(u64, usize, bool)>> = cursors
        .iter()
        .enumerate()
        .map(|(i, c)| Reverse((c.lower_ts, i, false)))
        .collect();
    while let Some(Reverse((_, i, primed))) = heap.pop() {
        let c = &mut cursors[i];
        if primed {
            let p = c.buf.pop_front().expect("primed cursor has a packet");
            let t = Instant::now();
            out.packet(c.iface, &p)?;
            q.stats.out_ns += t.elapsed().as_nanos() as u64;
            q.stats.matched += 1;
        }
        q.refill(c)?;
        if let Some(p) = c.buf.front() {
            heap.push(Reverse((p.ts_ns, i, true)));
        } else {
            c.plan = None;
        }
    }
    let t = Instant::now();
    out.w.flush().context("writing the output")?;
    q.stats.out_ns += t.elapsed().as_nanos() as u64;
    let hidden_only = q.stats.unreadable == 0;
    if args.stats {
        let s = &q.stats;
        eprintln!(
            "hpcap-query: {} packets from {} files ({} pruned by name, {} by time, {} by index, \
             {} by flows, {} via index, {} scanned); {} candidate pages; {} reads, {} bytes read, \
             {} packets tested; {:.3} s ({:.3} s compiling the query, {:.3} s planning, {:.3} s waiting for reads, {:.3} s \
             parsing and testing, {:.3} s scanning, {:.3} s writing)",
            s.matched,
            s.files,
            s.pruned_name,
            s.pruned_time,
            s.pruned_index,
            s.pruned_flows,
            s.indexed,
            s.scanned,
            s.pages,
            s.io.reads,
            s.io.bytes,
            s.io.parsed,
            t_start.elapsed().as_secs_f64(),
            setup,
            planned,
            s.wait_ns as f64 / 1e9,
            s.parse_ns as f64 / 1e9,
            s.scan_ns as f64 / 1e9,
            s.out_ns as f64 / 1e9,
        );
    }
    if args.stats {
        if let Some(fx) = &q.fetcher {
            let f = fx.stats();
            eprintln!(
                "hpcap-query: io_uring: {} reads started, at most {} in flight; the reader waited {} \
                 times ({} for a read not yet started), {:.1} reads in flight on average while it waited",
                f.started,
                f.max_in_flight,
                f.waits,
                f.waits_unstarted,
                f.in_flight_sum as f64 / f.waits.max(1) as f64
            );
        }
    }
    if !hidden_only {
        eprintln!(
            "hpcap-query: {} file(s) could not be read (see the warnings above)",
            q.stats.unreadable
        );
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        // A closed pipe (`| head`) is not an error worth a message.
        if e.chain().any(|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        }) {
            std::process::exit(0);
        }
        eprintln!("hpcap-query: error: {e:#}");
        std::process::exit(1);
    }
}
