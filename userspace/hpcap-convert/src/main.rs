// SPDX-License-Identifier: MIT
//! `hpcap-convert`: converts and merges capture files between native hpcap
//! pcapng stream files, plain pcapng, classic pcap (ns and µs) and HPCAP
//! RAW, with time-range extraction that seeks through block headers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use hpcap::core::abi;
use hpcap::core::capfile::Packet;
use hpcap::core::pcapng::{Block, Blocks, FILE_HEADER_LEN};
use hpcap::files::{CaptureFile, FileKind, OutFormat, PacketWriter};
use hpcap::stream::block_header;
use hpcap::util::parse_time;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Fmt {
    /// Classic pcap, nanosecond timestamps.
    Pcap,
    /// Classic pcap, microsecond timestamps (truncated).
    PcapUs,
    /// Plain pcapng (no hpcap local blocks), nanosecond timestamps.
    Pcapng,
    /// HPCAP RAW records.
    Raw,
}

/// Convert, merge and cut capture files.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Reads hpcap stream files (.pcapng from hpcapdd), any pcapng or classic pcap \
file, and HPCAP RAW files (.raw), merges them in timestamp order, keeps the packets in \
[--start, --end), and writes them as classic pcap (ns or µs), plain pcapng or HPCAP RAW. In hpcap \
stream files the block headers give each block's time range, so a time range is found by \
binary search instead of reading everything.",
    after_help = "\
TIME is seconds since the epoch (1700000000.5) or UTC YYYY-MM-DD[ HH:MM[:SS[.frac]]].
Packets with equal timestamps keep the order of the inputs on the command line.

EXIT STATUS: 0 on success, 1 on errors (unreadable or malformed input, packet not
representable in the output format, write failure), 2 on bad usage.

EXAMPLES:
  hpcap-convert -f pcap -o all.pcap /data/2024-05-01/13/*.pcapng
  hpcap-convert -f pcapng -o cut.pcapng --start '2024-05-01 13:05' --end '2024-05-01 13:06' *.pcapng
  hpcap-convert -f raw -o legacy.raw capture.pcapng"
)]
struct Args {
    /// Output format.
    #[arg(short = 'f', long, value_enum)]
    format: Fmt,
    /// Output file.
    #[arg(short = 'o', long, value_name = "OUT")]
    output: PathBuf,
    /// Keep packets at or after this time.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    start: Option<u64>,
    /// Keep packets before this time.
    #[arg(long, value_parser = parse_time, value_name = "TIME")]
    end: Option<u64>,
    /// Report progress on stderr (default: when stderr is a terminal).
    #[arg(long)]
    progress: bool,
    /// Input files.
    #[arg(required = true, value_name = "IN")]
    inputs: Vec<PathBuf>,
}

type PacketIter<'a> = Box<dyn Iterator<Item = Result<Packet<'a>>> + 'a>;

/// Byte offset in a stream file of the first block that may hold packets
/// at or after `start`: binary search over the block headers' first
/// timestamps. Those are exact in every header, final or provisional (the
/// driver writes a block's header when the block opens, before its record
/// count and last timestamp are known); the block before the first one that
/// starts at or after `start` may still end after it, so reading starts there.
fn seek_blocks(data: &[u8], first: usize, bs: usize, format: u32, start: u64) -> usize {
    let n = data.len().saturating_sub(first) / bs;
    let first_ts = |i: usize| -> Option<u64> {
        let b = data.get(first + i * bs..first + (i + 1) * bs)?;
        block_header(b, format).map(|h| h.first_ts_ns)
    };
    // Every whole block must have a header for the search to be trusted;
    // otherwise read from the start.
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match first_ts(mid) {
            Some(t) if t < start => lo = mid + 1,
            Some(_) => hi = mid,
            None => return first,
        }
    }
    first + lo.saturating_sub(1) * bs
}

fn packets<'a>(f: &'a CaptureFile, start: Option<u64>) -> Result<PacketIter<'a>> {
    let data = f.data();
    let path = f.path().display().to_string();
    match f.kind() {
        FileKind::HpcapPcapng { block_size } => {
            let at = start.map_or(FILE_HEADER_LEN, |s| {
                seek_blocks(
                    data,
                    FILE_HEADER_LEN,
                    block_size as usize,
                    abi::FORMAT_PCAPNG,
                    s,
                )
            });
            // hpcap files are little-endian with ns timestamps (checked by
            // hpcap-check); blocks after the header need no SHB.
            let it = Blocks::new(&data[at..]).filter_map(move |b| match b {
                Ok((_, Block::Epb(e))) => Some(Ok(Packet {
                    ts_ns: e.ts,
                    orig_len: e.orig_len,
                    data: e.data,
                    interface: e.interface,
                })),
                Ok(_) => None,
                Err(e) => Some(Err(anyhow!("{path}: {e:?}"))),
            });
            Ok(Box::new(it))
        }
        FileKind::Raw {
            block_size: Some(bs),
        } if start.is_some() => {
            let at = seek_blocks(data, 0, bs as usize, abi::FORMAT_RAW, start.unwrap_or(0));
            let it = hpcap::core::capfile::Packets::new_raw(&data[at..])
                .map(move |r| r.map_err(|e| anyhow!("{path}: {e:?}")));
            Ok(Box::new(it))
        }
        _ => {
            let it = f
                .packets()
                .map_err(|e| anyhow!("{path}: {e:?}"))?
                .map(move |r| r.map_err(|e| anyhow!("{path}: {e:?}")));
            Ok(Box::new(it))
        }
    }
}

fn run(args: &Args) -> Result<()> {
    if let (Some(s), Some(e)) = (args.start, args.end) {
        if e < s {
            bail!("--end is before --start");
        }
    }
    let files: Vec<CaptureFile> = args
        .inputs
        .iter()
        .map(|p| CaptureFile::open(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_>>()?;
    let fmt = match args.format {
        Fmt::Pcap => OutFormat::Pcap,
        Fmt::PcapUs => OutFormat::PcapUs,
        Fmt::Pcapng => OutFormat::Pcapng,
        Fmt::Raw => OutFormat::Raw,
    };
    let out = File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut w = PacketWriter::new(BufWriter::with_capacity(1 << 20, out), fmt, 0, "hpcap")?;
    // Time-ordered inputs (stream files) can stop at --end; others are
    // filtered to the end.
    let mut iters: Vec<(PacketIter<'_>, bool)> = files
        .iter()
        .map(|f| {
            let ordered = matches!(f.kind(), FileKind::HpcapPcapng { .. });
            packets(f, args.start).map(|it| (it, ordered))
        })
        .collect::<Result<_>>()?;
    let keep = |ts: u64| args.start.is_none_or(|s| ts >= s) && args.end.is_none_or(|e| ts < e);
    let total_in: u64 = files.iter().map(|f| f.data().len() as u64).sum();
    let progress = args.progress || std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let mut last_report = Instant::now();
    // Head of each input, next in line.
    let mut heads: Vec<Option<Packet<'_>>> = Vec::with_capacity(iters.len());
    let mut heap = BinaryHeap::new();
    for (k, (it, ordered)) in iters.iter_mut().enumerate() {
        let h = pull(it, *ordered, &keep, args.end)?;
        if let Some(p) = &h {
            heap.push(Reverse((p.ts_ns, k)));
        }
        heads.push(h);
    }
    let single = iters.len() == 1;
    while let Some(Reverse((_, k))) = heap.pop() {
        let p = heads[k].take().expect("head present");
        w.write(p.ts_ns, p.orig_len, p.data)
            .with_context(|| format!("writing {}", args.output.display()))?;
        let (it, ordered) = &mut iters[k];
        if single {
            // Fast path: no merge bookkeeping.
            while let Some(p) = pull(it, *ordered, &keep, args.end)? {
                w.write(p.ts_ns, p.orig_len, p.data)
                    .with_context(|| format!("writing {}", args.output.display()))?;
                if progress && last_report.elapsed().as_secs() >= 1 {
                    report(&w, t0, total_in);
                    last_report = Instant::now();
                }
            }
            break;
        }
        if let Some(p) = pull(it, *ordered, &keep, args.end)? {
            heap.push(Reverse((p.ts_ns, k)));
            heads[k] = Some(p);
        }
        if progress && last_report.elapsed().as_secs() >= 1 {
            report(&w, t0, total_in);
            last_report = Instant::now();
        }
    }
    let (n, bytes) = w.counts();
    w.finish(None)?;
    if progress {
        eprintln!(
            "hpcap-convert: {n} packets ({bytes} bytes) written to {} in {:.2} s",
            args.output.display(),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn report<W: std::io::Write>(w: &PacketWriter<W>, t0: Instant, total_in: u64) {
    let (n, b) = w.counts();
    let s = t0.elapsed().as_secs_f64().max(1e-9);
    eprintln!(
        "hpcap-convert: {n} packets, {:.1} MB/s, {:.2} Mpps (input {:.1} MB)",
        b as f64 / s / 1e6,
        n as f64 / s / 1e6,
        total_in as f64 / 1e6
    );
}

/// Next packet of an input within the range (`None` at its end, or past
/// `end` for time-ordered inputs).
fn pull<'a>(
    it: &mut PacketIter<'a>,
    ordered: bool,
    keep: &dyn Fn(u64) -> bool,
    end: Option<u64>,
) -> Result<Option<Packet<'a>>> {
    for p in it.by_ref() {
        let p = p?;
        if keep(p.ts_ns) {
            return Ok(Some(p));
        }
        if ordered && end.is_some_and(|e| p.ts_ns >= e) {
            return Ok(None);
        }
    }
    Ok(None)
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("hpcap-convert: error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hpcap::core::pcapng::{self, BlockHeader};

    /// `n` blocks of `bs` bytes after a `first`-byte file header; block i
    /// starts at time `1000 * (i + 1)` and has a header as the driver
    /// writes it (provisional: no record count, no last timestamp) unless
    /// `final_headers`.
    fn stream(n: usize, bs: usize, first: usize, final_headers: bool) -> Vec<u8> {
        let mut data = vec![0u8; first + n * bs];
        for i in 0..n {
            let h = BlockHeader {
                format: pcapng::BH_FORMAT_PCAPNG,
                block_len: bs as u32,
                records: if final_headers { 3 } else { 0 },
                seq: i as u64,
                offset: (i * bs) as u64,
                first_ts_ns: 1000 * (i as u64 + 1),
                last_ts_ns: if final_headers {
                    1000 * (i as u64 + 1) + 999
                } else {
                    0
                },
                drops: 0,
                flags: if final_headers {
                    pcapng::BH_FLAG_FINAL
                } else {
                    0
                },
            };
            pcapng::write_block_header(&mut data, first + i * bs, &h).unwrap();
        }
        data
    }

    #[test]
    fn seeks_on_first_timestamps_of_final_and_provisional_headers() {
        let (bs, first) = (4096, 4096);
        for fin in [false, true] {
            let data = stream(8, bs, first, fin);
            let at = |t| (seek_blocks(&data, first, bs, abi::FORMAT_PCAPNG, t) - first) / bs;
            // Before everything, inside block 0, exactly at block 3's start,
            // inside block 3, after the end.
            assert_eq!(at(0), 0);
            assert_eq!(at(1500), 0);
            assert_eq!(at(4000), 2, "block 2 may end with packets at 4000");
            assert_eq!(at(4500), 3);
            assert_eq!(at(1_000_000), 7);
        }
    }

    #[test]
    fn without_headers_it_reads_from_the_start() {
        let (bs, first) = (4096, 4096);
        let mut data = stream(8, bs, first, false);
        data[first + 5 * bs..first + 6 * bs].fill(0);
        assert_eq!(
            seek_blocks(&data, first, bs, abi::FORMAT_PCAPNG, 6500),
            first
        );
    }
}
