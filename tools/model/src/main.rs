// SPDX-License-Identifier: MIT
//! `hpcap-model`: behavioural PCI device models served to QEMU over
//! vfio-user (`-device vfio-user-pci`, QEMU >= 10.1), so that a guest's
//! real drivers run against them with real DMA and MSI-X. See
//! docs/models.md.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use hpcap_model::testdev;
use hpcap_model::transport::{self, lock, Handle, Platform, Shared};
use hpcap_model::xl710::{Config, PromiscRefusal, Vf};

/// Serve a device model to QEMU over vfio-user.
#[derive(Parser, Debug)]
#[command(
    version,
    about,
    after_help = "\
QEMU side (guest RAM must be shared memfd so the model can DMA into it):
  qemu-system-x86_64 -M q35,memory-backend=ram \\
    -object memory-backend-memfd,id=ram,size=2G,share=on \\
    -device '{\"driver\":\"vfio-user-pci\",\"socket\":{\"path\":\"/tmp/m.sock\",\"type\":\"unix\"}}' ...

The model serves one QEMU connection and exits when QEMU disconnects.
Frames for a NIC model come from hpcap-inject --listen SOCK (the same
length-prefixed stream QEMU's -netdev stream speaks); frames the guest
sends go back on that socket."
)]
struct Args {
    #[command(subcommand)]
    model: Model,
}

#[derive(Subcommand, Debug)]
enum Model {
    /// Minimal test function (1234:4850): registers, DMA, MSI-X.
    Testdev {
        /// The vfio-user socket to listen on.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
    },
    /// Intel XL710 virtual function (8086:154c) with an embedded PF that
    /// answers virtchnl like Linux's i40e PF.
    Xl710Vf {
        /// The vfio-user socket to listen on.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// hpcap-inject's listening socket to take frames from.
        #[arg(long, value_name = "PATH")]
        inject: Option<PathBuf>,
        /// The VF's MAC, as the host assigns it (ip link set PF vf 0 mac M).
        #[arg(long, default_value = "02:00:00:00:00:10", value_parser = hpcap_core::frame::parse_mac)]
        mac: [u8; 6],
        /// The host trusts the VF (ip link set PF vf 0 trust on): promiscuous
        /// requests are granted.
        #[arg(long)]
        trust: bool,
        /// Port VLAN (ip link set PF vf 0 vlan VID): only that VLAN reaches
        /// the VF, its tag stripped into the descriptor.
        #[arg(long, default_value_t = 0, value_name = "VID")]
        port_vlan: u16,
        /// Queue pairs offered to the VF.
        #[arg(long, default_value_t = 4)]
        queue_pairs: u16,
        /// How an untrusted VF's promiscuous request is answered: `lie`
        /// (SUCCESS, nothing changes: Linux's i40e PF) or `error`.
        #[arg(long, value_enum, default_value_t = PromiscRefusal::Lie)]
        promisc_refusal: PromiscRefusal,
        /// Fault: delay every PF reply by this many milliseconds.
        #[arg(long, default_value_t = 0, value_name = "MS")]
        reply_delay_ms: u64,
        /// Fault: cut replies to this virtchnl opcode to half their length.
        #[arg(long, value_name = "OPCODE")]
        malformed_reply: Option<u32>,
        /// Fault: after N delivered frames the PF resets the VF (once).
        #[arg(long, value_name = "N")]
        reset_after_frames: Option<u64>,
        /// Write the model's and the VSI's counters here (every 200 ms and at exit).
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
    },
}

fn platform() -> Platform {
    Platform {
        mem: Default::default(),
        irq: Default::default(),
    }
}

fn write_stats(path: &Path, h: &Handle<Vf>) -> Result<()> {
    let v = {
        let g = lock(h);
        serde_json::json!({"model": g.dev.stats, "vsi": hpcap_model::xl710::eth_stats_json(&g.dev.eth), "promiscuous": g.dev.promiscuous()})
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&v)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Connects to hpcap-inject (retrying while it starts).
fn connect(path: &Path) -> Result<UnixStream> {
    let t0 = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if t0.elapsed() > Duration::from_secs(30) => {
                bail!("connecting to {}: {e}", path.display())
            }
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Frames in from the injector, frames out from the guest, timers.
fn pump(h: Handle<Vf>, inject: Option<PathBuf>, stats: Option<PathBuf>) -> Result<()> {
    let mut s = match &inject {
        Some(p) => Some(connect(p)?),
        None => None,
    };
    if let Some(s) = &s {
        s.set_read_timeout(Some(Duration::from_millis(1)))?;
    }
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut last_stats = Instant::now();
    loop {
        let mut frames = Vec::new();
        if let Some(sock) = s.as_mut() {
            match sock.read(&mut buf) {
                Ok(0) => s = None, // the injector went away
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e).context("reading from hpcap-inject"),
            }
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
                frames.push(pending[at + 4..at + 4 + len].to_vec());
                at += 4 + len;
            }
            pending.drain(..at);
        } else {
            thread::sleep(Duration::from_millis(1));
        }
        let tx = {
            let mut g = lock(&h);
            let g = &mut *g;
            let now = Instant::now();
            for f in &frames {
                g.dev.receive(f, now, &mut g.platform);
            }
            g.dev.tick(now, &mut g.platform);
            g.dev.take_tx()
        };
        if let Some(sock) = s.as_mut() {
            for f in tx {
                let mut out = (f.len() as u32).to_be_bytes().to_vec();
                out.extend_from_slice(&f);
                let _ = sock.write_all(&out);
            }
        }
        if let Some(p) = &stats {
            if last_stats.elapsed() >= Duration::from_millis(200) {
                last_stats = Instant::now();
                write_stats(p, &h)?;
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    match args.model {
        Model::Testdev { socket } => {
            let h = Arc::new(Mutex::new(Shared {
                dev: testdev::TestDev::new(),
                platform: platform(),
            }));
            eprintln!("hpcap-model: testdev on {}", socket.display());
            transport::serve(&socket, h)?;
            eprintln!("hpcap-model: QEMU disconnected");
        }
        Model::Xl710Vf {
            socket,
            inject,
            mac,
            trust,
            port_vlan,
            queue_pairs,
            promisc_refusal,
            reply_delay_ms,
            malformed_reply,
            reset_after_frames,
            stats_json,
        } => {
            if !(1..=16).contains(&queue_pairs) {
                bail!("--queue-pairs must be 1..16");
            }
            if port_vlan > 4094 {
                bail!("--port-vlan must be a VLAN id 1..4094 (0 = none)");
            }
            let vf = Vf::new(Config {
                mac,
                trust,
                port_vlan,
                queue_pairs,
                promisc_refusal,
                reply_delay: Duration::from_millis(reply_delay_ms),
                malformed_reply,
                reset_after_frames,
                ..Config::default()
            });
            let h = Arc::new(Mutex::new(Shared {
                dev: vf,
                platform: platform(),
            }));
            let (h2, stats2) = (h.clone(), stats_json.clone());
            thread::spawn(move || {
                if let Err(e) = pump(h2, inject, stats2) {
                    eprintln!("hpcap-model: frame pump: {e:#}");
                    std::process::exit(1);
                }
            });
            eprintln!("hpcap-model: XL710 VF on {}", socket.display());
            transport::serve(&socket, h.clone())?;
            eprintln!("hpcap-model: QEMU disconnected");
            if let Some(p) = &stats_json {
                write_stats(p, &h)?;
            }
        }
    }
    Ok(())
}
