// SPDX-License-Identifier: GPL-2.0
//! Intel XL710/X710 virtual function (iavf-style), one RX queue, polled.
//!
//! A VF owns only its queue tails and interrupt registers; everything else
//! is asked of its PF in virtchnl 1.1 messages over the admin-queue mailbox
//! ([`super::xl710_adminq`], messages encoded and parsed by the core's
//! [`virtchnl`]): the VF reset, the version, the VSI and its limits
//! (GET_VF_RESOURCES), the queue context (CONFIG_VSI_QUEUES), enabling and
//! disabling the queue, promiscuous mode (granted only to a VF the host
//! trusts) and the VSI's counters (GET_STATS). The PF's events (link
//! changes, an impending reset) arrive on the same mailbox and are read by
//! the slow path. hpcap polls its ring and uses no interrupt: no MSI-X
//! vector and no CONFIG_IRQ_MAP.

use super::{
    poll_until,
    Errno,
    with_bar,
    xl710_adminq::{
        AdminQueue,
        BUF_SIZE,
        VF_REGS, //
    },
    Backend,
    Caps,
    Link,
    Nic,
    RingConfig,
    Status, //
};
use crate::hpcap_core::{
    abi,
    adminq::Desc,
    config::RingLimits,
    desc::Iavf32,
    stats::{
        NicCounters,
        NIC_MISSED,
        NIC_RECEIVED, //
    },
    virtchnl::{
        self,
        cap,
        event,
        op,
        status,
        EthStats,
        PfEvent,
        PromiscInfo,
        QueuePairInfo,
        QueueSelect,
        RxqInfo,
        TxqInfo,
        VersionInfo,
        VfResourceMsg,
        VsiQueueConfig, //
    }, //
};
use core::sync::atomic::{
    AtomicU32,
    AtomicU8,
    Ordering, //
};
use kernel::{
    device::Core,
    io::{
        register,
        register::Array,
        Io, //
    },
    pci,
    prelude::*,
    sync::{
        aref::ARef,
        new_mutex,
        Mutex, //
    },
    time::{
        delay::fsleep,
        Delta, //
    }, //
};

/// The backend's entry in the device table.
pub(crate) static BACKEND: Backend = Backend {
    name: "iavf",
    model: "XL710 VF",
    abi_kind: abi::NIC_IAVF,
    start: crate::capture::start::<Iavf>,
};

/// Bytes of the VF's BAR0 (64 KiB).
pub(crate) const BAR0_LEN: usize = 0x10000;

type Bar0 = pci::DevresBar<BAR0_LEN>;

/// The queue hpcap uses.
const QUEUE: usize = 0;

register! {
    /// VF receive queue tail (`QRX_TAIL1[q]`).
    pub(crate) QRX_TAIL1(u32)[16, stride = 4] @ 0x2000 {
        /// Tail index.
        12:0 tail;
    }

    /// Interrupt causes enabled on vector 0 (`VFINT_ICR0_ENA1`).
    pub(crate) VFINT_ICR0_ENA1(u32) @ 0x5000 {
        /// Enabled causes.
        31:0 causes;
    }

    /// Vector 0 control (`VFINT_DYN_CTL01`).
    pub(crate) VFINT_DYN_CTL01(u32) @ 0x5C00 {
        /// Interrupt enable.
        0:0 intena;
    }

    /// VF reset status (`VFGEN_RSTAT`).
    pub(crate) VFGEN_RSTAT(u32) @ 0x8800 {
        /// `VIRTCHNL_VFR_*`: 0 in progress, 1 completed, 2 VF active.
        1:0 vfr_state;
    }
}

/// `VFGEN_RSTAT.VFR_STATE`: the reset is over (`VIRTCHNL_VFR_COMPLETED`).
const VFR_COMPLETED: u32 = 1;
/// `VFGEN_RSTAT.VFR_STATE`: the PF enabled the VF (`VIRTCHNL_VFR_VFACTIVE`).
const VFR_VFACTIVE: u32 = 2;

/// How long a VF reset may take (Linux's iavf waits seconds, too).
const RESET_TIMEOUT: Delta = Delta::from_millis(5000);
/// How long the PF may take to answer a message.
const REPLY_TIMEOUT: Delta = Delta::from_millis(5000);

/// Ethernet header plus one VLAN tag, on top of the MTU.
const L2_OVERHEAD: u32 = 14 + 4;

/// The XL710 VF's queue limits (the PF's `CONFIG_VSI_QUEUES` checks).
const RING: RingLimits = RingLimits {
    min: 64,
    max: 4096,
    // The PF programs the ring length in units of 32 descriptors.
    step: 32,
    // Descriptors are fetched in groups of 8: tail writes move by 8.
    tail_step: 8,
    buf_min: virtchnl::RX_BUFFER_UNIT,
    buf_max: virtchnl::MAX_RX_BUFFER,
    buf_unit: virtchnl::RX_BUFFER_UNIT,
};

/// The mailbox and what arrives on it.
struct Mailbox {
    aq: AdminQueue,
    /// Message buffer (replies and events).
    msg: KVec<u8>,
    /// Link state from the PF's last LINK_CHANGE event.
    link: Link,
    /// GET_STATS at `start_rx`, and the last reading.
    base: EthStats,
    last: EthStats,
    /// Frames received and discarded before the last reset (the PF may
    /// clear the VSI's counters in a reset).
    received_before: u64,
    missed_before: u64,
}

/// [`Iavf::state`]: capturing.
const RUNNING: u8 = 0;
/// The PF announced or started a VF reset; not recovered yet.
const RESETTING: u8 = 1;
/// The reset is over and the mailbox back; the queue is not started yet.
const RESET_DONE: u8 = 2;
/// The VF could not be brought back after a reset: it needs a rebind.
const BROKEN: u8 = 3;

/// An XL710 VF driven for capture.
pub(crate) struct Iavf {
    pdev: ARef<pci::Device>,
    bar: Bar0,
    mbx: Pin<KBox<Mutex<Mailbox>>>,
    vsi_id: u16,
    /// [`RUNNING`], [`RESETTING`], [`RESET_DONE`] or [`BROKEN`]: a reset by
    /// the PF under the capture (RESET_IMPENDING or the mailbox found
    /// disabled) and the recovery from it.
    state: AtomicU8,
    /// What the PF answered to the promiscuous request (`abi::PROMISC_*`).
    promisc: AtomicU32,
}

/// A virtchnl status as an errno.
fn status_error(s: i32) -> Error {
    match s {
        status::ERR_NOT_SUPPORTED => EOPNOTSUPP,
        status::ERR_PARAM => EINVAL,
        status::ERR_NO_MEMORY => ENOMEM,
        _ => EIO,
    }
}

impl Iavf {
    /// Waits until `VFGEN_RSTAT` says the VF is out of reset.
    fn wait_reset_done(&self) -> Result {
        poll_until(
            || with_bar(&self.bar, |b| b.read(VFGEN_RSTAT).vfr_state().get()),
            |s| *s == VFR_COMPLETED || *s == VFR_VFACTIVE,
            Delta::from_millis(2),
            RESET_TIMEOUT,
        )
        .inspect_err(|_| dev_err!(self.pdev, "the VF did not come out of reset (VFGEN_RSTAT); is the PF driver up?\n"))?;
        Ok(())
    }

    /// Masks the VF's interrupts: hpcap polls.
    fn mask_interrupts(&self) {
        let _ = with_bar(&self.bar, |b| {
            b.write_reg(VFINT_ICR0_ENA1::zeroed());
            b.write_reg(VFINT_DYN_CTL01::zeroed());
        });
    }

    /// Resets the VF through its PF (RESET_VF) and brings the mailbox
    /// back: the PF disables the VF's queues and the mailbox (ARQENABLE
    /// clears), then reports the reset done in `VFGEN_RSTAT`.
    fn reset(&self, m: &mut Mailbox) -> Result {
        m.aq.send(&self.bar, Desc::send_to_pf(op::RESET_VF, 0), &[], false)?;
        poll_until(
            || m.aq.enabled(&self.bar),
            |on| !*on,
            Delta::from_millis(1),
            RESET_TIMEOUT,
        )
        .inspect_err(|_| dev_err!(self.pdev, "the PF did not start the VF reset\n"))?;
        self.wait_reset_done()?;
        self.mask_interrupts();
        m.aq.enable(&self.bar)
            .inspect_err(|_| dev_err!(self.pdev, "the VF mailbox registers do not read back after the reset\n"))
    }

    /// Handles one PF event.
    fn event(&self, m: &mut Mailbox, len: usize) {
        let Some(e) = m.msg.get(..len).and_then(PfEvent::parse) else {
            dev_warn!(self.pdev, "malformed event from the PF ({} bytes)\n", len);
            return;
        };
        match e.event {
            event::LINK_CHANGE => {
                let link = Link {
                    up: e.link_up,
                    mbps: virtchnl::link_speed_mbps(e.link_speed),
                };
                if link != m.link {
                    dev_info!(self.pdev, "link {} {} Mb/s\n", if link.up { "up" } else { "down" }, link.mbps);
                }
                m.link = link;
            }
            event::RESET_IMPENDING => {
                if self.state.compare_exchange(RUNNING, RESETTING, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                    dev_warn!(self.pdev, "the PF is resetting the VF: capture pauses until the VF is back\n");
                }
                m.link = Link::default();
            }
            event::PF_DRIVER_CLOSE => {
                dev_warn!(self.pdev, "the PF driver is closing\n");
                m.link = Link::default();
            }
            other => dev_warn!(self.pdev, "unknown event {} from the PF\n", other),
        }
    }

    /// Reads the PF's messages until one answers `opcode` (events met on
    /// the way are handled) or `timeout` passes; `Ok(None)` if nothing
    /// answers in time. With no `opcode`, handles what is there and
    /// returns once the mailbox is empty.
    fn wait_reply(&self, m: &mut Mailbox, opcode: Option<u32>, timeout: Delta) -> Result<Option<(i32, usize)>> {
        let step = Delta::from_millis(1);
        let mut waited = 0i64;
        loop {
            // Draining: stop once a reset was announced (what follows in
            // the mailbox is gone with it).
            if opcode.is_none() && self.state.load(Ordering::Relaxed) != RUNNING {
                return Ok(None);
            }
            let got = {
                let Mailbox { aq, msg, .. } = &mut *m;
                aq.receive(&self.bar, msg)?
            };
            match got {
                Some((d, len)) => match d.pf_message() {
                    Some(pm) if pm.opcode == op::EVENT => self.event(m, len),
                    Some(pm) if Some(pm.opcode) == opcode => return Ok(Some((pm.status, len))),
                    Some(pm) => dev_warn!(self.pdev, "unexpected reply to virtchnl op {} from the PF\n", pm.opcode),
                    None => dev_warn!(self.pdev, "unexpected mailbox descriptor opcode {:#x}\n", d.opcode),
                },
                None => {
                    if waited >= timeout.as_micros_ceil() {
                        return Ok(None);
                    }
                    fsleep(step);
                    waited += step.as_micros_ceil();
                }
            }
        }
    }

    /// Sends virtchnl message `opcode` with `req` and waits for the PF's
    /// answer; returns the reply's length (its bytes are in `m.msg`).
    fn call(&self, m: &mut Mailbox, opcode: u32, req: &[u8]) -> Result<usize> {
        // CAST: messages are at most BUF_SIZE (4 KiB) bytes.
        let sent = m
            .aq
            .send(&self.bar, Desc::send_to_pf(opcode, req.len() as u16), req, true)
            .inspect_err(|e| {
                dev_warn!(self.pdev, "mailbox: virtchnl {} not taken by the PF: {}\n", virtchnl::op_name(opcode), Errno(*e))
            })?;
        if sent.failed() {
            dev_warn!(
                self.pdev,
                "mailbox: virtchnl {} refused by the mailbox (retval {})\n",
                virtchnl::op_name(opcode),
                sent.retval
            );
            return Err(EIO);
        }
        match self.wait_reply(m, Some(opcode), REPLY_TIMEOUT)? {
            Some((status::SUCCESS, len)) => Ok(len),
            Some((s, _)) => {
                dev_warn!(
                    self.pdev,
                    "mailbox: the PF answered virtchnl {} with {} ({})\n",
                    virtchnl::op_name(opcode),
                    virtchnl::status_name(s),
                    s
                );
                Err(status_error(s))
            }
            None => {
                dev_warn!(
                    self.pdev,
                    "mailbox: no answer to virtchnl {} from the PF within 5 s\n",
                    virtchnl::op_name(opcode)
                );
                Err(ETIMEDOUT)
            }
        }
    }

    /// Encodes a request with `enc` into a stack buffer and calls.
    fn call_with(&self, m: &mut Mailbox, opcode: u32, enc: impl FnOnce(&mut [u8]) -> Option<usize>) -> Result<usize> {
        let mut req = [0u8; 256];
        let n = enc(&mut req).ok_or(EINVAL)?;
        self.call(m, opcode, req.get(..n).ok_or(EINVAL)?)
    }

    /// The queue selection of our one RX queue.
    fn rx_queue(&self) -> QueueSelect {
        QueueSelect {
            vsi_id: self.vsi_id,
            rx_queues: 1 << QUEUE,
            tx_queues: 0,
        }
    }

    /// The VSI's counters (GET_STATS).
    fn get_stats(&self, m: &mut Mailbox) -> Result<EthStats> {
        let q = self.rx_queue();
        let n = self.call_with(m, op::GET_STATS, |b| q.encode(b))?;
        m.msg.get(..n).and_then(EthStats::parse).ok_or(EPROTO)
    }

    /// Version, resources: what the PF lets this VF do, and the VSI id.
    fn negotiate(&self, m: &mut Mailbox) -> Result<(Caps, u16)> {
        let n = self.call_with(m, op::VERSION, |b| virtchnl::VERSION.encode(b))?;
        let v = m.msg.get(..n).and_then(VersionInfo::parse).ok_or(EPROTO)?;
        if v.major != virtchnl::VERSION.major {
            dev_err!(self.pdev, "the PF speaks virtchnl {}.{}, hpcap 1.1\n", v.major, v.minor);
            return Err(EOPNOTSUPP);
        }
        // A 1.0 PF takes no capability word.
        let n = if v.minor == 0 {
            self.call(m, op::GET_VF_RESOURCES, &[])?
        } else {
            self.call_with(m, op::GET_VF_RESOURCES, |b| virtchnl::encode_caps(cap::L2, b))?
        };
        let msg = m.msg.get(..n).and_then(VfResourceMsg::parse).ok_or(EPROTO)?;
        let Some(vsi) = msg.sriov_vsi() else {
            dev_err!(self.pdev, "the PF gave this VF no SR-IOV VSI\n");
            return Err(ENODEV);
        };
        if msg.res.num_queue_pairs == 0 || vsi.num_queue_pairs == 0 {
            dev_err!(self.pdev, "the PF gave this VF no queue\n");
            return Err(ENODEV);
        }
        // A PF that states no MTU allows a standard frame.
        let mtu = if msg.res.max_mtu == 0 { 1500 } else { u32::from(msg.res.max_mtu) };
        let max_frame = (mtu + L2_OVERHEAD).min(virtchnl::MAX_PKT_SIZE - 1);
        let mac = vsi.default_mac;
        dev_info!(
            self.pdev,
            "virtchnl {}.{}: VSI {}, {} queue pair(s), MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, max MTU {}\n",
            v.major,
            v.minor,
            vsi.vsi_id,
            vsi.num_queue_pairs,
            mac[0],
            mac[1],
            mac[2],
            mac[3],
            mac[4],
            mac[5],
            mtu
        );
        let caps = Caps {
            ring: RING,
            max_frame,
            // A PF strips a port VLAN's tag and reports it (L2TAG1P).
            vlan_stripped: true,
            // GET_STATS: frames received for the VSI and frames it
            // discarded for lack of a descriptor (GLV_RDPC).
            counters: NIC_RECEIVED | NIC_MISSED,
        };
        Ok((caps, vsi.vsi_id))
    }
}

impl Nic for Iavf {
    type Format = Iavf32;

    /// Takes over the VF: waits for it to be out of reset, brings up the
    /// mailbox, resets the VF through the PF (so nothing a previous driver
    /// configured survives), then negotiates version and resources.
    fn new(pdev: &pci::Device<Core<'_>>) -> Result<(Self, Caps)> {
        let bar = pdev.iomap_region_sized::<BAR0_LEN>(0, c"hpcap")?.into_devres()?;
        let mut msg = KVec::with_capacity(BUF_SIZE, GFP_KERNEL)?;
        msg.resize(BUF_SIZE, 0, GFP_KERNEL)?;
        let mbx = KBox::pin_init(
            new_mutex!(Mailbox {
                aq: AdminQueue::new(pdev.as_ref(), &VF_REGS)?,
                msg,
                link: Link::default(),
                base: EthStats::default(),
                last: EthStats::default(),
                received_before: 0,
                missed_before: 0,
            }),
            GFP_KERNEL,
        )?;
        let mut vf = Self {
            pdev: pdev.into(),
            bar,
            mbx,
            vsi_id: 0,
            state: AtomicU8::new(RUNNING),
            promisc: AtomicU32::new(abi::PROMISC_UNKNOWN),
        };
        vf.wait_reset_done()?;
        vf.mask_interrupts();
        let (caps, vsi_id) = {
            let mut m = vf.mbx.lock();
            m.aq.enable(&vf.bar)
                .inspect_err(|_| dev_err!(vf.pdev, "the VF mailbox registers do not read back\n"))?;
            vf.reset(&mut m)?;
            vf.negotiate(&mut m)?
        };
        vf.vsi_id = vsi_id;
        Ok((vf, caps))
    }

    fn start_rx(&self, ring: &RingConfig) -> Result {
        let mut m = self.mbx.lock();
        let pair = QueuePairInfo {
            // No TX queue: hpcap only receives.
            txq: TxqInfo {
                vsi_id: self.vsi_id,
                queue_id: 0,
                ..TxqInfo::default()
            },
            rxq: RxqInfo {
                vsi_id: self.vsi_id,
                // CAST: QUEUE is 0.
                queue_id: QUEUE as u16,
                ring_len: ring.count,
                databuffer_size: ring.buf_size,
                max_pkt_size: ring.max_frame.max(virtchnl::MIN_PKT_SIZE),
                dma_ring_addr: ring.dma,
                rxdid: virtchnl::RXDID_LEGACY_32B,
                ..RxqInfo::default()
            },
        };
        let vsi = self.vsi_id;
        self.call_with(&mut m, op::CONFIG_VSI_QUEUES, |b| VsiQueueConfig::encode(vsi, &[pair], b))
            .inspect_err(|e| dev_err!(self.pdev, "the PF refused the receive queue's configuration: {}\n", Errno(*e)))?;
        let q = self.rx_queue();
        self.call_with(&mut m, op::ENABLE_QUEUES, |b| q.encode(b))
            .inspect_err(|e| dev_err!(self.pdev, "the PF did not enable the receive queue: {}\n", Errno(*e)))?;
        let promisc = PromiscInfo {
            vsi_id: vsi,
            flags: virtchnl::FLAG_UNICAST_PROMISC | virtchnl::FLAG_MULTICAST_PROMISC,
        };
        match self.call_with(&mut m, op::CONFIG_PROMISCUOUS_MODE, |b| promisc.encode(b)) {
            // Linux's PF answers an untrusted VF's request with success too.
            Ok(_) => {
                self.promisc.store(abi::PROMISC_ACKED, Ordering::Relaxed);
                dev_info!(
                    self.pdev,
                    "promiscuous mode requested (a PF grants it only to a VF the host trusts: \
                     `ip link set <PF> vf <N> trust on`)\n"
                )
            }
            Err(e) => {
                self.promisc.store(abi::PROMISC_REFUSED, Ordering::Relaxed);
                dev_err!(
                    self.pdev,
                    "the PF refused promiscuous mode ({}): capturing only frames for this VF's MAC, broadcast \
                     and its multicast groups; to capture everything, trust the VF on the host \
                     (`ip link set <PF> vf <N> trust on`) and rebind it\n",
                    Errno(e)
                )
            }
        }
        m.base = self.get_stats(&mut m)?;
        m.last = m.base;
        // After a reset: capturing again.
        let _ = self.state.compare_exchange(RESET_DONE, RUNNING, Ordering::Relaxed, Ordering::Relaxed);
        Ok(())
    }

    fn stop_rx(&self) {
        if self.state.load(Ordering::Relaxed) != RUNNING {
            // A reset disabled the queue (and the mailbox may be down).
            return;
        }
        let mut m = self.mbx.lock();
        let q = self.rx_queue();
        // The PF answers once the queue is disabled (it waits for the
        // hardware's QRX_ENA status): no DMA after this.
        if self.call_with(&mut m, op::DISABLE_QUEUES, |b| q.encode(b)).is_err() {
            // A VF reset disables every queue of the VF.
            dev_warn!(self.pdev, "resetting the VF to stop its receive queue\n");
            let _ = self.reset(&mut m);
        }
    }

    fn write_tail(&self, tail: u32) {
        let _ = with_bar(&self.bar, |b| {
            if let Ok(r) = QRX_TAIL1::zeroed().try_with_tail(tail) {
                b.write(QRX_TAIL1::at(QUEUE), r);
            }
        });
    }

    fn service(&self) -> Status {
        let mut m = self.mbx.lock();
        // A reset the PF did not announce: the mailbox is off.
        if self.state.load(Ordering::Relaxed) == RUNNING
            && !m.aq.enabled(&self.bar).unwrap_or(false)
            && self.state.compare_exchange(RUNNING, RESETTING, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            dev_warn!(self.pdev, "the PF reset the VF: capture pauses until the VF is back\n");
            m.link = Link::default();
        }
        if self.state.load(Ordering::Relaxed) == RUNNING {
            // Events (link changes, a reset announced), then the counters.
            let _ = self.wait_reply(&mut m, None, Delta::from_micros(0));
        }
        if self.state.load(Ordering::Relaxed) == RUNNING {
            if let Ok(s) = self.get_stats(&mut m) {
                m.last = s;
            }
        }
        let (b, l) = (m.base, m.last);
        let state = self.state.load(Ordering::Relaxed);
        Status {
            link: if state == RUNNING { m.link } else { Link::default() },
            counters: NicCounters {
                received: m.received_before.wrapping_add(l.rx_frames().wrapping_sub(b.rx_frames())),
                missed: m.missed_before.wrapping_add(l.rx_discards.wrapping_sub(b.rx_discards)),
                valid: NIC_RECEIVED | NIC_MISSED,
            },
            reset: state == RESETTING || state == RESET_DONE,
            promisc: self.promisc.load(Ordering::Relaxed),
        }
    }

    /// Waits for the PF's VF reset to start (the mailbox goes off; from
    /// then on the queue is disabled) and to end (`VFGEN_RSTAT`), then
    /// brings the mailbox back and negotiates again as at probe.
    fn await_reset(&self) -> Result {
        match self.state.load(Ordering::Relaxed) {
            RESETTING => {}
            RESET_DONE => return Ok(()),
            RUNNING => return Ok(()),
            _ => return Err(ENODEV),
        }
        let mut m = self.mbx.lock();
        let r = (|| -> Result {
            poll_until(
                || m.aq.enabled(&self.bar),
                |on| !*on,
                Delta::from_millis(1),
                RESET_TIMEOUT,
            )
            .inspect_err(|_| dev_err!(self.pdev, "the announced VF reset did not start\n"))?;
            self.wait_reset_done()?;
            self.mask_interrupts();
            m.aq.enable(&self.bar)?;
            let (_, vsi) = self.negotiate(&mut m)?;
            if vsi != self.vsi_id {
                dev_err!(self.pdev, "the PF gave the VF another VSI ({} instead of {})\n", vsi, self.vsi_id);
                return Err(ENODEV);
            }
            Ok(())
        })();
        match r {
            Ok(()) => {
                // The counters so far; `start_rx` reads a new base.
                let (b, l) = (m.base, m.last);
                m.received_before = m.received_before.wrapping_add(l.rx_frames().wrapping_sub(b.rx_frames()));
                m.missed_before = m.missed_before.wrapping_add(l.rx_discards.wrapping_sub(b.rx_discards));
                m.base = EthStats::default();
                m.last = EthStats::default();
                self.state.store(RESET_DONE, Ordering::Relaxed);
                dev_info!(self.pdev, "the VF is back after the PF's reset\n");
                Ok(())
            }
            Err(e) => {
                self.state.store(BROKEN, Ordering::Relaxed);
                dev_err!(self.pdev, "the VF did not come back after the PF's reset ({}): capture stopped; rebind the device\n", Errno(e));
                Err(e)
            }
        }
    }
}

impl Drop for Iavf {
    /// Hands the VF back as Linux's iavf does on remove: asks the PF for a
    /// VF reset (which clears the queue context, filters, promiscuous mode
    /// and the VSI's counters for the next driver), waits for it to start
    /// (the PF turns the mailbox off: no more DMA into it), then turns the
    /// mailbox off itself. The receive queue was stopped by its owner before.
    fn drop(&mut self) {
        self.mask_interrupts();
        let mut m = self.mbx.lock();
        if self.state.load(Ordering::Relaxed) == RUNNING
            && m.aq.send(&self.bar, Desc::send_to_pf(op::RESET_VF, 0), &[], false).is_ok()
            && poll_until(|| m.aq.enabled(&self.bar), |on| !*on, Delta::from_millis(1), Delta::from_millis(1000)).is_err()
        {
            dev_warn!(self.pdev, "the PF did not start the VF reset on release\n");
        }
        m.aq.disable(&self.bar);
    }
}
