// SPDX-License-Identifier: MIT
//! The indexing thread: builds the `.hpidx` sidecar (and optionally the
//! Parquet flow table) of every file hpcapdd completes.
//!
//! It runs beside the capture path, never in it: the writer only hands it
//! the path of a file it has closed, synced and renamed, through an
//! unbounded queue, and never waits for it. The thread runs at a lower CPU
//! priority (nice +10) and reads the file back. When it falls behind, files
//! wait in the queue (the backlog, reported in the status line and the JSON
//! stats) and are indexed later; at exit hpcapdd finishes the backlog.
//!
//! Crash safety: an index is written as `.NAME.hpidx`, synced, and renamed
//! to `NAME.hpidx` only when complete, and only for a data file that is
//! already complete; it records the data length and a hash of its last page,
//! which readers check. A killed hpcapdd leaves at most a hidden partial
//! index, which readers ignore.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use hpcap_index::files::{index_file, write_atomic};
use hpcap_index::flows::{parquet_path, write_parquet};
use hpcap_index::reader::index_path;

/// Counters shared with the writer thread (Relaxed: statistics only).
#[derive(Debug, Default)]
pub(crate) struct IndexCounters {
    pub(crate) queued: AtomicU64,
    pub(crate) done: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) packets: AtomicU64,
    pub(crate) index_bytes: AtomicU64,
    pub(crate) data_bytes: AtomicU64,
    pub(crate) cpu_ns: AtomicU64,
}

impl IndexCounters {
    /// Files waiting to be indexed.
    pub(crate) fn backlog(&self) -> u64 {
        let q = self.queued.load(Ordering::Relaxed);
        q.saturating_sub(self.done.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed))
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "queued": l(&self.queued),
            "done": l(&self.done),
            "failed": l(&self.failed),
            "backlog": self.backlog(),
            "packets": l(&self.packets),
            "index_bytes": l(&self.index_bytes),
            "data_bytes": l(&self.data_bytes),
            "cpu_ns_per_packet": l(&self.cpu_ns) as f64 / l(&self.packets).max(1) as f64,
        })
    }
}

/// Where flow tables go, if wanted.
#[derive(Debug, Clone)]
pub(crate) struct FlowCfg {
    pub(crate) root: PathBuf,
    pub(crate) probe: String,
}

pub(crate) struct Indexer {
    tx: Option<Sender<PathBuf>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) counters: Arc<IndexCounters>,
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn index_one(path: &Path, flows: Option<&FlowCfg>, c: &IndexCounters) -> anyhow::Result<()> {
    let cpu0 = thread_cpu_ns();
    let fi = index_file(path, hpcap_index::builder::PAGE_SHIFT, flows.is_some())?;
    write_atomic(&index_path(path), &fi.built.bytes)?;
    if let (Some(cfg), Some(ft)) = (flows, &fi.built.flows) {
        let rel = path.strip_prefix(&cfg.root).unwrap_or(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = parquet_path(&cfg.root, &cfg.probe, fi.built.header.min_ts, &name);
        write_parquet(&ft.rows(), &cfg.probe, &rel.to_string_lossy(), &out)?;
    }
    c.cpu_ns
        .fetch_add(thread_cpu_ns() - cpu0, Ordering::Relaxed);
    c.packets
        .fetch_add(fi.built.header.packets, Ordering::Relaxed);
    c.index_bytes
        .fetch_add(fi.built.bytes.len() as u64, Ordering::Relaxed);
    c.data_bytes.fetch_add(fi.file_len, Ordering::Relaxed);
    Ok(())
}

impl Indexer {
    pub(crate) fn start(flows: Option<FlowCfg>) -> Self {
        let (tx, rx) = channel::<PathBuf>();
        let counters = Arc::new(IndexCounters::default());
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("hpcapdd-index".into())
            .spawn(move || {
                // SAFETY: setpriority on this thread's own id; failure is
                // harmless (the thread then runs at normal priority).
                unsafe {
                    libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
                }
                for path in rx {
                    match index_one(&path, flows.as_ref(), &c) {
                        Ok(()) => c.done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("hpcapdd: warning: indexing {}: {e:#}", path.display());
                            c.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
            .expect("spawning the indexing thread");
        Self {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        }
    }

    /// Queues a completed file.
    pub(crate) fn submit(&self, path: PathBuf) {
        if let Some(tx) = &self.tx {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            if tx.send(path).is_err() {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Ends the queue and waits for the backlog to be indexed.
    pub(crate) fn finish(&mut self) {
        self.tx = None;
        let backlog = self.counters.backlog();
        let t0 = Instant::now();
        if backlog > 0 {
            eprintln!("hpcapdd: indexing the {backlog} remaining file(s)...");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if backlog > 0 {
            eprintln!(
                "hpcapdd: indexed the backlog in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
}
