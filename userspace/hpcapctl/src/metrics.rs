// SPDX-License-Identifier: MIT
//! The Prometheus text exposition format (version 0.0.4) of hpcap sources:
//! the one generator behind `hpcapctl stats --prometheus` and
//! `hpcapctl serve`.
//!
//! Capture counters come from the core's table (`hpcap_core::stats::COUNTERS`:
//! metric family, `# HELP`, `stage` label); the gauges (buffer, link,
//! listeners) are defined here. Every series carries the labels `device`
//! (the source's name) and `path`; loss counters add `stage`, per-listener
//! series add `listener` and `mode`. Units are base units (bytes, seconds);
//! counters end in `_total`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hpcap::core::abi::{self, Info, Stats};
use hpcap::core::stats::{family_help, Source as CounterSource, COUNTERS};
use hpcap::Source;

/// What one source reported at one moment.
pub(crate) struct Reading {
    /// The path it was opened by.
    pub(crate) path: PathBuf,
    /// Geometry, name, link.
    pub(crate) info: Info,
    /// Counters and listeners.
    pub(crate) stats: Stats,
}

impl Reading {
    /// Reads `src` (opened from `path`).
    pub(crate) fn of(path: &Path, src: &Source) -> Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            info: src.info().context("HPCAP_IOC_INFO")?,
            stats: src.stats().context("HPCAP_IOC_STATS")?,
        })
    }

    /// Opens `path` (which attaches no listener), reads it, closes it.
    pub(crate) fn read(path: &Path) -> Result<Self> {
        let src = Source::open(path).with_context(|| format!("opening {}", path.display()))?;
        Self::of(path, &src).with_context(|| format!("reading {}", path.display()))
    }
}

/// A label value, escaped as the text format wants it.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family being written: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &'a str, kind: &str, help: &str) -> Self {
        // Writing to a String cannot fail.
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        Self { out, name }
    }

    fn sample(&mut self, labels: &str, v: f64) {
        let _ = writeln!(self.out, "{}{{{labels}}} {v}", self.name);
    }
}

/// The text exposition of `readings`. Each path in `failed` (a source that
/// could not be read this time) and each reading gets a
/// `hpcap_source_up{path}` sample, 0 or 1.
pub(crate) fn render(readings: &[Reading], failed: &[PathBuf]) -> String {
    let mut out = String::new();
    let labels: Vec<String> = readings
        .iter()
        .map(|r| {
            format!(
                "device=\"{}\",path=\"{}\"",
                esc(&crate::cstr(&r.info.name)),
                esc(&r.path.to_string_lossy())
            )
        })
        .collect();
    let each = |f: &mut Family, v: &dyn Fn(&Reading) -> Option<f64>| {
        for (r, l) in readings.iter().zip(&labels) {
            if let Some(x) = v(r) {
                f.sample(l, x);
            }
        }
    };

    let mut up = Family::new(
        &mut out,
        "hpcap_source_up",
        "gauge",
        "1 if the source could be opened and read for this scrape, else 0.",
    );
    for r in readings {
        up.sample(&format!("path=\"{}\"", esc(&r.path.to_string_lossy())), 1.0);
    }
    for p in failed {
        up.sample(&format!("path=\"{}\"", esc(&p.to_string_lossy())), 0.0);
    }

    let mut info = Family::new(
        &mut out,
        "hpcap_info",
        "gauge",
        "Always 1; the labels describe the source (backend, PCI address, stream format).",
    );
    for (r, l) in readings.iter().zip(&labels) {
        info.sample(
            &format!(
                "{l},nic=\"{}\",bus=\"{}\",format=\"{}\"",
                esc(crate::nic_name(r.info.nic)),
                esc(&crate::cstr(&r.info.bus_addr)),
                crate::format_name(r.info.format)
            ),
            1.0,
        );
    }

    // Counters from the core's table, one family per metric with the loss
    // stages as labels; a NIC counter the NIC does not have is left out
    // (unavailable is not 0).
    let mut metrics: Vec<&'static str> = Vec::new();
    for c in COUNTERS {
        if !metrics.contains(&c.metric) {
            metrics.push(c.metric);
        }
    }
    for metric in metrics {
        let help = family_help(metric).unwrap_or("hpcap capture counter.");
        let mut f = Family::new(&mut out, metric, "counter", help);
        for (r, l) in readings.iter().zip(&labels) {
            for c in COUNTERS.iter().filter(|c| c.metric == metric) {
                if let CounterSource::Nic(bit) = c.source {
                    if r.stats.nic_valid & bit == 0 {
                        continue;
                    }
                }
                let sl = match c.stage {
                    Some(stage) => format!("{l},stage=\"{stage}\""),
                    None => l.clone(),
                };
                f.sample(&sl, (c.get)(&r.stats.counters) as f64);
            }
        }
    }

    type Gauge = (&'static str, &'static str, fn(&Reading) -> Option<f64>);
    let gauges: [Gauge; 11] = [
        (
            "hpcap_buffer_size_bytes",
            "Size of the stream buffer.",
            |r| Some(r.info.buffer_size as f64),
        ),
        ("hpcap_block_size_bytes", "Stream block size.", |r| {
            Some(r.info.block_size as f64)
        }),
        (
            "hpcap_buffer_used_bytes",
            "Buffer occupancy: published bytes the slowest blocking listener has not consumed yet (buffer size minus free).",
            |r| {
                Some(
                    r.info
                        .buffer_size
                        .saturating_sub(r.stats.free_bytes.min(r.info.buffer_size))
                        as f64,
                )
            },
        ),
        (
            "hpcap_buffer_free_bytes",
            "Room left before the slowest blocking listener (the whole buffer without one).",
            |r| Some(r.stats.free_bytes as f64),
        ),
        (
            "hpcap_commit_offset_bytes",
            "Stream offset of the end of the published data.",
            |r| Some(r.stats.commit as f64),
        ),
        ("hpcap_listeners", "Attached listeners.", |r| {
            Some(f64::from(r.stats.nlisteners))
        }),
        (
            "hpcap_listeners_lingering",
            "Named listeners whose process went away, kept for a successor.",
            |r| {
                let n = (r.stats.nlisteners as usize).min(abi::MAX_LISTENERS);
                Some(
                    r.stats.listener[..n]
                        .iter()
                        .filter(|l| l.flags & abi::LISTENER_LINGERING != 0)
                        .count() as f64,
                )
            },
        ),
        (
            "hpcap_link_up",
            "1 when the port's link is up, else 0.",
            |r| Some(f64::from(u8::from(r.info.link_up != 0))),
        ),
        (
            "hpcap_link_speed_bytes",
            "Link speed in bytes per second (absent while the speed is unknown).",
            |r| (r.info.link_mbps != 0).then(|| f64::from(r.info.link_mbps) * 1e6 / 8.0),
        ),
        (
            "hpcap_ring_descriptors",
            "RX descriptors of the ring the capture threads share.",
            |r| Some(f64::from(r.info.ring_size)),
        ),
        (
            "hpcap_uptime_seconds",
            "Seconds since the device was bound (the software source started).",
            |r| Some(r.stats.uptime_ns as f64 / 1e9),
        ),
    ];
    for (name, help, get) in gauges {
        let mut f = Family::new(&mut out, name, "gauge", help);
        each(&mut f, &get);
    }

    // Per listener (labels listener = its id, mode = blocking | lossy, and
    // name for a named listener).
    type PerListener = (
        &'static str,
        &'static str,
        &'static str,
        fn(&abi::Listener) -> u64,
    );
    let per_listener: [PerListener; 3] = [
        (
            "hpcap_listener_lag_bytes",
            "gauge",
            "Published bytes the listener has not consumed.",
            |l| l.lag,
        ),
        (
            "hpcap_listener_lost_bytes_total",
            "counter",
            "Bytes the listener lost to overruns (lossy listeners; since it attached).",
            |l| l.lost_bytes,
        ),
        (
            "hpcap_listener_lost_blocks_total",
            "counter",
            "Blocks the listener lost to overruns (lossy listeners; since it attached).",
            |l| l.lost_blocks,
        ),
    ];
    for (name, kind, help, get) in per_listener {
        let mut f = Family::new(&mut out, name, kind, help);
        for (r, l) in readings.iter().zip(&labels) {
            let n = (r.stats.nlisteners as usize).min(abi::MAX_LISTENERS);
            for li in &r.stats.listener[..n] {
                let name = crate::listener_name(li)
                    .map_or(String::new(), |n| format!(",name=\"{}\"", esc(&n)));
                f.sample(
                    &format!(
                        "{l},listener=\"{}\",mode=\"{}\"{name}",
                        li.id,
                        crate::mode_name(li.mode)
                    ),
                    get(li) as f64,
                );
            }
        }
    }
    out
}
