// SPDX-License-Identifier: MIT
//! `hpcap-index`: builds, rebuilds, checks and dumps the `.hpidx` index
//! sidecars (and Parquet flow tables) of existing capture files.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use hpcap_index::files::{data_files, index_file, write_atomic};
use hpcap_index::flows::{parquet_path, write_parquet};
use hpcap_index::reader::{index_path, Index};

/// Build or check packet indexes of capture files.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    long_about = "Builds the index sidecar NAME.hpidx of each capture file NAME.pcapng, NAME.pcap \
or NAME.raw (hpcap stream files, any pcapng, classic pcap, HPCAP RAW): the pages (4 KiB) where \
packets of every IP address, port, IP protocol, VLAN, ether type and tunnel inner address start, \
the block table with time ranges, and a page directory. hpcap-query uses it to read only those \
pages. Files whose index is up to date are skipped unless --force. Indexes are written as .NAME.hpidx \
and renamed when complete.",
    after_help = "\
PATH is a file or a directory, searched recursively for *.pcapng, *.pcap and *.raw (hidden
files, being written, are skipped; flows/ is skipped).

EXIT STATUS: 0 every file indexed (or up to date, or checked good); 1 some file failed;
2 bad usage.

EXAMPLES:
  hpcap-index /mnt/raid
  hpcap-index --force --flows --probe probe1 /mnt/raid
  hpcap-index --check /mnt/raid/2026-11-27/10/*.pcapng
  hpcap-index --dump x.pcapng | head"
)]
struct Args {
    /// Rebuild indexes that exist and look up to date.
    #[arg(long)]
    force: bool,
    /// Rebuild each index in memory and compare it with the one on disk
    /// (nothing is written).
    #[arg(long, conflicts_with_all = ["force", "dump"])]
    check: bool,
    /// Print the header and every key with its pages, one per line.
    #[arg(long)]
    dump: bool,
    /// Also write the Parquet flow table of each file under
    /// ROOT/flows/probe=P/date=YYYY-MM-DD/hour=HH/.
    #[arg(long)]
    flows: bool,
    /// Probe name for the flow table (default: the host name).
    #[arg(long, value_name = "NAME")]
    probe: Option<String>,
    /// Capture root for the flow table and its `file` column (default: the
    /// directory given as PATH, or a file's directory).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Page size of the index (power of two, 512..65536).
    #[arg(long, default_value = "4K", value_parser = hpcap::util::parse_size, value_name = "BYTES")]
    page_size: u64,
    /// Files or directories.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

/// The host name (probe name default).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "probe".into())
}

fn one(args: &Args, root: &Path, path: &Path, shift: u32) -> Result<String> {
    let ipath = index_path(path);
    if args.dump {
        let ix = Index::open(&ipath)?;
        let h = &ix.header;
        let mut s = format!(
            "# {}: data_len {} packets {} pages {} keys {} ts {}..{} size {}\n",
            ipath.display(),
            h.data_len,
            h.packets,
            h.pages,
            h.keys,
            h.min_ts,
            h.max_ts,
            ix.size()
        );
        for (k, pages) in ix.all_keys()? {
            let v: Vec<String> = pages.iter().map(|p| p.to_string()).collect();
            s.push_str(&format!("{k:?} {}\n", v.join(",")));
        }
        return Ok(s);
    }
    let data_len = std::fs::metadata(path)
        .with_context(|| path.display().to_string())?
        .len();
    if !args.force && !args.check {
        if let Ok(ix) = Index::open(&ipath) {
            let f = std::fs::File::open(path)?;
            if ix.header.data_len == data_len && ix.check_data(&f).is_ok() {
                return Ok(format!("{}: up to date", path.display()));
            }
        }
    }
    let t0 = Instant::now();
    let cpu0 = cpu_time();
    let fi = index_file(path, shift, args.flows)?;
    let cpu = cpu_time() - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let h = &fi.built.header;
    if args.check {
        let ix = Index::open(&ipath).context("no readable index")?;
        let on_disk = std::fs::read(&ipath)?;
        if on_disk != fi.built.bytes {
            bail!(
                "{}: index differs from a rebuild (index covers {} bytes, rebuild {})",
                ipath.display(),
                ix.header.data_len,
                h.data_len
            );
        }
        return Ok(format!(
            "{}: index good ({} packets)",
            path.display(),
            h.packets
        ));
    }
    write_atomic(&ipath, &fi.built.bytes)?;
    let mut msg = format!(
        "{}: {} packets, index {} B = {:.2} B/packet, {:.3}% of the data, {:.0} ns/packet CPU ({:.1} MB/s)",
        path.display(),
        h.packets,
        fi.built.bytes.len(),
        fi.built.bytes.len() as f64 / (h.packets.max(1)) as f64,
        fi.built.bytes.len() as f64 / (fi.file_len.max(1)) as f64 * 100.0,
        cpu * 1e9 / h.packets.max(1) as f64,
        fi.file_len as f64 / wall.max(1e-9) / 1e6
    );
    if let Some(why) = &fi.stopped {
        msg.push_str(&format!(" [partial: {why}]"));
    }
    if let Some(ft) = &fi.built.flows {
        let probe = args.probe.clone().unwrap_or_else(hostname);
        let rel = path.strip_prefix(root).unwrap_or(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let out = parquet_path(root, &probe, h.min_ts, &name);
        write_parquet(&ft.rows(), &probe, &rel.to_string_lossy(), &out)?;
        msg.push_str(&format!(", {} flows -> {}", ft.len(), out.display()));
    }
    Ok(msg)
}

/// CPU time of this thread, seconds.
fn cpu_time() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn run(args: &Args) -> Result<bool> {
    if !args.page_size.is_power_of_two() || !(512..=65536).contains(&args.page_size) {
        bail!("--page-size must be a power of two from 512 to 64K");
    }
    let shift = args.page_size.trailing_zeros();
    let mut ok = true;
    for p in &args.paths {
        let files = data_files(p, false)?;
        let root = match &args.root {
            Some(r) => r.clone(),
            None if p.is_dir() => p.clone(),
            None => p.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        if files.is_empty() {
            eprintln!("hpcap-index: {}: no capture files", p.display());
        }
        for f in files {
            match one(args, &root, &f, shift) {
                Ok(msg) => {
                    if args.dump {
                        print!("{msg}");
                    } else {
                        println!("{msg}");
                    }
                }
                Err(e) => {
                    eprintln!("hpcap-index: {}: {e:#}", f.display());
                    ok = false;
                }
            }
        }
    }
    Ok(ok)
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("hpcap-index: error: {e:#}");
            std::process::exit(1);
        }
    }
}
