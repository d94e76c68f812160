// SPDX-License-Identifier: MIT
//! `hpcap-synth`: writes synthetic traffic (see `hpcap_index::synth`) as a
//! capture file, for tests and benchmarks of the index.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hpcap::files::{OutFormat, PacketWriter};
use hpcap_index::synth::{Mix, Spec, Traffic};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fmt {
    Pcap,
    Pcapng,
    Raw,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum HostMix {
    Even,
    Zipf,
}

/// Write synthetic traffic (flows between hosts, IPv4/IPv6, VLANs,
/// tunnels, ARP, fragments, IMIX sizes) as a capture file.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Packets to write.
    #[arg(long, default_value_t = 100_000)]
    packets: u64,
    /// Stop after this many bytes of output instead (e.g. 2G).
    #[arg(long, value_parser = hpcap::util::parse_size)]
    bytes: Option<u64>,
    /// Distinct hosts.
    #[arg(long, default_value_t = 5000)]
    hosts: usize,
    /// Flows in the pool.
    #[arg(long, default_value_t = 20000)]
    flows: usize,
    /// Host mix.
    #[arg(long, value_enum, default_value = "even")]
    mix: HostMix,
    /// Only TCP and UDP over IPv4 (no IPv6, VLANs, tunnels, ARP...).
    #[arg(long)]
    plain: bool,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First timestamp, ns since the epoch.
    #[arg(long)]
    ts_start: Option<u64>,
    /// Mean gap between packets, ns.
    #[arg(long, default_value_t = 1000)]
    ts_step: u64,
    /// Output format.
    #[arg(short = 'f', long, value_enum, default_value = "pcap")]
    format: Fmt,
    /// Output file.
    #[arg(short = 'o', long)]
    output: PathBuf,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let mut spec = Spec {
        hosts: a.hosts.max(2),
        flows: a.flows.max(1),
        mix: match a.mix {
            HostMix::Even => Mix::Even,
            HostMix::Zipf => Mix::Zipf(1.0),
        },
        seed: a.seed,
        ts_step: a.ts_step.max(1),
        variety: !a.plain,
        ..Spec::default()
    };
    if let Some(t) = a.ts_start {
        spec.ts_start = t;
    }
    let fmt = match a.format {
        Fmt::Pcap => OutFormat::Pcap,
        Fmt::Pcapng => OutFormat::Pcapng,
        Fmt::Raw => OutFormat::Raw,
    };
    let out = File::create(&a.output).with_context(|| a.output.display().to_string())?;
    let mut w = PacketWriter::new(BufWriter::with_capacity(1 << 20, out), fmt, 0, "synth")?;
    let mut t = Traffic::new(spec);
    let mut f = Vec::with_capacity(2048);
    let mut n = 0u64;
    let mut bytes = 0u64;
    loop {
        if a.bytes.map_or(n >= a.packets, |b| bytes >= b) {
            break;
        }
        let ts = t.next_frame(&mut f);
        w.write(ts, f.len() as u32, &f)?;
        n += 1;
        bytes += f.len() as u64 + 16;
    }
    w.finish(None)?;
    eprintln!("hpcap-synth: {n} packets to {}", a.output.display());
    Ok(())
}
