// SPDX-License-Identifier: MIT
//! `hpcap-model`: behavioural PCI device models served to QEMU over
//! vfio-user (`-device vfio-user-pci`, QEMU >= 10.1), so that a guest's
//! real drivers run against them with real DMA and MSI-X. See
//! docs/models.md.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use hpcap_model::ixgbe;
use hpcap_model::ixgbevf;
use hpcap_model::testdev;
use hpcap_model::transport::PciFunction;
use hpcap_model::transport::{self, lock, Handle, Platform, Shared};
use hpcap_model::xl710::{Config, PromiscRefusal, Vf};
use hpcap_model::xl710pf::{self, Pf};

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
sends go back on that socket. With --count-unplugged, a NIC model fed by
hpcap-inject outlives QEMU's disconnect (the device was unplugged, e.g. by
device_del): it reads the injector's frames until the injector closes,
delivering none and counting them as \"unplugged\" in --stats-json."
)]
struct Args {
    #[command(subcommand)]
    model: Model,
    /// NIC models with --inject: when QEMU disconnects (the device was
    /// unplugged), go on reading the injector's frames until it closes,
    /// counting them as "unplugged" (--stats-json), so it never blocks.
    #[arg(long, global = true)]
    count_unplugged: bool,
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
    /// Intel 82599 virtual function (8086:10ed) with an embedded PF that
    /// answers the PF/VF mailbox like Linux's ixgbe PF.
    #[command(name = "82599-vf")]
    Ixgbevf {
        /// The vfio-user socket to listen on.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// hpcap-inject's listening socket to take frames from.
        #[arg(long, value_name = "PATH")]
        inject: Option<PathBuf>,
        /// The VF's MAC, as the host assigns it (ip link set PF vf 0 mac M).
        #[arg(long, default_value = "02:00:00:00:00:10", value_parser = hpcap_core::frame::parse_mac)]
        mac: [u8; 6],
        /// The host trusts the VF (ip link set PF vf 0 trust on): it may
        /// change its MAC and receive all multicast. (An 82599 VF never gets
        /// unicast promiscuous mode.)
        #[arg(long)]
        trust: bool,
        /// Port VLAN (ip link set PF vf 0 vlan VID): only that VLAN reaches
        /// the VF; a VF that strips tags (RXDCTL.VME) gets it stripped.
        #[arg(long, default_value_t = 0, value_name = "VID")]
        port_vlan: u16,
        /// Report a stripped port VLAN tag in the descriptor. By default it
        /// is hidden, as Linux's ixgbe PF sets PFQDE.HIDE_VLAN.
        #[arg(long)]
        show_port_vlan: bool,
        /// Write the model's and the VF's counters here (every 200 ms and at exit).
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
    },
    /// Intel 82599ES SFP+ physical function (8086:10fb) with a passive
    /// direct-attach cable in its cage, as Linux's ixgbe driver uses it.
    #[command(name = "82599-pf")]
    Ixgbe {
        /// The vfio-user socket to listen on.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// hpcap-inject's listening socket to take frames from.
        #[arg(long, value_name = "PATH")]
        inject: Option<PathBuf>,
        /// The port's MAC address (loaded into RAL0/RAH0 at reset).
        #[arg(long, default_value = "02:00:00:00:00:20", value_parser = hpcap_core::frame::parse_mac)]
        mac: [u8; 6],
        /// Write the model's counters here (every 200 ms and at exit).
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
    },
    /// Intel XL710 physical function (8086:1583 XL710 QSFP+, or 1572 X710
    /// SFP+ with --device-id) with the firmware's admin queue, NVM and HMC,
    /// as Linux's i40e driver uses them.
    Xl710Pf {
        /// The vfio-user socket to listen on.
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        /// hpcap-inject's listening socket to take frames from.
        #[arg(long, value_name = "PATH")]
        inject: Option<PathBuf>,
        /// The port's MAC address (NVM / MAC_ADDRESS_READ).
        #[arg(long, default_value = "02:00:00:00:00:20", value_parser = hpcap_core::frame::parse_mac)]
        mac: [u8; 6],
        /// PCI device id: 1583 (XL710 QSFP+) or 1572 (X710 SFP+).
        #[arg(long, default_value = "1583", value_parser = parse_pf_device)]
        device_id: u16,
        /// MSI-X vectors of the PF (1..=129; the real PF's NVM sets up to
        /// 129). Fewer than 2 is less than Linux's i40e needs: it falls
        /// back to MSI (which the function offers, with INTx, as the real
        /// one does).
        #[arg(long, default_value_t = 17, value_parser = clap::value_parser!(u16).range(1..=129))]
        msix_vectors: u16,
        /// Write the model's and the port's counters here (every 200 ms and at exit).
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
    },
}

fn parse_pf_device(s: &str) -> Result<u16, String> {
    match s.trim_start_matches("0x") {
        "1583" => Ok(xl710pf::DEVICE_QSFP),
        "1572" => Ok(xl710pf::DEVICE_SFP),
        _ => Err(format!(
            "'{s}': the PF model is 1583 (XL710 QSFP+) or 1572 (X710 SFP+)"
        )),
    }
}

/// What the frame pump needs of a NIC model.
trait FrameDevice: PciFunction + 'static {
    fn receive_frame(&mut self, frame: &[u8], now: Instant, p: &mut Platform);
    fn tick_timers(&mut self, now: Instant, p: &mut Platform);
    fn sent_frames(&mut self) -> Vec<Vec<u8>>;
    fn counters(&self) -> serde_json::Value;
}

impl FrameDevice for Vf {
    fn receive_frame(&mut self, frame: &[u8], now: Instant, p: &mut Platform) {
        self.receive(frame, now, p);
    }
    fn tick_timers(&mut self, now: Instant, p: &mut Platform) {
        self.tick(now, p);
    }
    fn sent_frames(&mut self) -> Vec<Vec<u8>> {
        self.take_tx()
    }
    fn counters(&self) -> serde_json::Value {
        serde_json::json!({"model": self.stats, "vsi": hpcap_model::xl710::eth_stats_json(&self.eth), "promiscuous": self.promiscuous()})
    }
}

impl FrameDevice for Pf {
    fn receive_frame(&mut self, frame: &[u8], _now: Instant, p: &mut Platform) {
        self.receive(frame, p);
    }
    fn tick_timers(&mut self, now: Instant, p: &mut Platform) {
        self.tick(now, p);
    }
    fn sent_frames(&mut self) -> Vec<Vec<u8>> {
        self.take_tx()
    }
    fn counters(&self) -> serde_json::Value {
        serde_json::json!({"model": self.stats, "port": self.port, "promiscuous": self.vsi.unicast_promisc || self.vsi.default_port})
    }
}

impl FrameDevice for ixgbevf::Vf {
    fn receive_frame(&mut self, frame: &[u8], _now: Instant, p: &mut Platform) {
        self.receive(frame, p);
    }
    fn tick_timers(&mut self, now: Instant, p: &mut Platform) {
        self.tick(now, p);
    }
    fn sent_frames(&mut self) -> Vec<Vec<u8>> {
        self.take_tx()
    }
    fn counters(&self) -> serde_json::Value {
        self.counters_json()
    }
}

impl FrameDevice for ixgbe::Pf {
    fn receive_frame(&mut self, frame: &[u8], _now: Instant, p: &mut Platform) {
        self.receive(frame, p);
    }
    fn tick_timers(&mut self, _now: Instant, _p: &mut Platform) {}
    fn sent_frames(&mut self) -> Vec<Vec<u8>> {
        self.take_tx()
    }
    fn counters(&self) -> serde_json::Value {
        self.counters_json()
    }
}

fn platform() -> Platform {
    Platform {
        mem: Default::default(),
        irq: Default::default(),
    }
}

/// Writes the model's counters (and `unplugged`: frames read from the
/// injector after QEMU disconnected, which no device received) to PATH.
fn write_stats<D: FrameDevice>(path: &Path, h: &Handle<D>, unplugged: u64) -> Result<()> {
    let mut v = lock(h).dev.counters();
    if let Some(o) = v.as_object_mut() {
        o.insert("unplugged".into(), unplugged.into());
    }
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
/// Feeds the injector's frames to the device until the injector closes.
/// Once GONE is set (QEMU disconnected: the device was unplugged) frames
/// are only counted (`unplugged`), and the pump ends with the injector.
fn pump<D: FrameDevice>(
    h: Handle<D>,
    inject: Option<PathBuf>,
    stats: Option<PathBuf>,
    gone: Arc<AtomicBool>,
) -> Result<()> {
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
    let mut unplugged = 0u64;
    loop {
        let unplugged_now = gone.load(Ordering::Acquire);
        if unplugged_now && s.is_none() {
            if let Some(p) = &stats {
                write_stats(p, &h, unplugged)?;
            }
            return Ok(());
        }
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
        if unplugged_now {
            // No device: nothing is delivered, nothing is sent.
            unplugged += frames.len() as u64;
            if let Some(p) = &stats {
                if last_stats.elapsed() >= Duration::from_millis(200) {
                    last_stats = Instant::now();
                    write_stats(p, &h, unplugged)?;
                }
            }
            continue;
        }
        let tx = {
            let mut g = lock(&h);
            let g = &mut *g;
            let now = Instant::now();
            for f in &frames {
                g.dev.receive_frame(f, now, &mut g.platform);
            }
            g.dev.tick_timers(now, &mut g.platform);
            g.dev.sent_frames()
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
                write_stats(p, &h, unplugged)?;
            }
        }
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let count_unplugged = args.count_unplugged;
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
            serve_nic(vf, "XL710 VF", &socket, inject, stats_json, count_unplugged)?;
        }
        Model::Ixgbevf {
            socket,
            inject,
            mac,
            trust,
            port_vlan,
            show_port_vlan,
            stats_json,
        } => {
            if port_vlan > 4094 {
                bail!("--port-vlan must be a VLAN id 1..4094 (0 = none)");
            }
            let vf = ixgbevf::Vf::new(ixgbevf::Config {
                mac,
                trust,
                port_vlan,
                hide_port_vlan: !show_port_vlan,
                ..ixgbevf::Config::default()
            });
            serve_nic(vf, "82599 VF", &socket, inject, stats_json, count_unplugged)?;
        }
        Model::Ixgbe {
            socket,
            inject,
            mac,
            stats_json,
        } => {
            let pf = ixgbe::Pf::new(ixgbe::Config { mac });
            serve_nic(pf, "82599 PF", &socket, inject, stats_json, count_unplugged)?;
        }
        Model::Xl710Pf {
            socket,
            inject,
            mac,
            device_id,
            msix_vectors,
            stats_json,
        } => {
            let pf = Pf::new(xl710pf::Config {
                mac,
                device: device_id,
                vectors: msix_vectors,
                ..xl710pf::Config::default()
            });
            serve_nic(pf, "XL710 PF", &socket, inject, stats_json, count_unplugged)?;
        }
    }
    Ok(())
}

/// Serves a NIC model to QEMU with its frame pump, until QEMU disconnects.
fn serve_nic<D: FrameDevice>(
    dev: D,
    name: &str,
    socket: &Path,
    inject: Option<PathBuf>,
    stats_json: Option<PathBuf>,
    count_unplugged: bool,
) -> Result<()> {
    let h = Arc::new(Mutex::new(Shared {
        dev,
        platform: platform(),
    }));
    let (h2, stats2) = (h.clone(), stats_json.clone());
    let gone = Arc::new(AtomicBool::new(false));
    let gone2 = gone.clone();
    let fed = inject.is_some() && count_unplugged;
    let pump = thread::spawn(move || {
        if let Err(e) = pump(h2, inject, stats2, gone2) {
            eprintln!("hpcap-model: frame pump: {e:#}");
            std::process::exit(1);
        }
    });
    eprintln!("hpcap-model: {name} on {}", socket.display());
    transport::serve(socket, h.clone())?;
    gone.store(true, Ordering::Release);
    if fed {
        // Unplugged (device_del): the injector may still be sending; read
        // and count its frames until it closes, so it never blocks.
        eprintln!("hpcap-model: QEMU disconnected; counting the injector's frames as unplugged until it closes");
        let _ = pump.join();
        return Ok(());
    }
    eprintln!("hpcap-model: QEMU disconnected");
    if let Some(p) = &stats_json {
        write_stats(p, &h, 0)?;
    }
    Ok(())
}
