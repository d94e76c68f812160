// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! What a listener's calls mean — `HPCAP_IOC_WAIT`, `HPCAP_IOC_STATS`,
//! `HPCAP_IOC_INFO` — written once for both sources: the kernel device
//! (`driver/chardev.rs`) and the software source (`userspace/hpcap`).
//!
//! The two differ only in how a caller sleeps (a kernel wait queue; a futex
//! in shared memory), how it learns that no more data will come (device
//! unbound; producer ended or died) and where process ids are kept. Those
//! are the [`Sleeper`] trait and the `pid_of` arguments; the semantics
//! (acknowledge first, report overruns with fresh counts, time out in
//! slices, a signal ends the wait like a timeout, killed listeners hang up,
//! killed listeners are listed with a flag) live here.

use super::abi;
use super::listener::{ListenerError, ListenerId, ListenerTable, Mode, Readiness};
use super::publish::{Geometry, PublishState};

/// Outcome of one sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slept {
    /// Woken (data, kill, unbind) or spuriously: re-check.
    Woken,
    /// The time given ran out.
    TimedOut,
    /// A signal is pending for the caller.
    Interrupted,
}

/// How a caller of [`wait`] sleeps.
pub trait Sleeper {
    /// A clock in ns for timeouts (any epoch).
    fn now_ns(&self) -> u64;
    /// No more data will ever come: the device was unbound, or the
    /// producer ended or died.
    fn ended(&self) -> bool;
    /// Sleeps until `committed() >= target` may hold, a wake-up, a signal
    /// or `max_ns`. The implementation registers the target with
    /// [`PublishState::prepare_wait`] and does not sleep if it returns
    /// true.
    fn sleep(&self, target: u64, max_ns: u64) -> Slept;
}

/// Longest single sleep: a long wait re-checks at least this often.
pub const SLEEP_SLICE_NS: u64 = 1_000_000_000;

/// A `HPCAP_IOC_WAIT` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitRequest {
    /// Bytes consumed since the cursor: the cursor advances first.
    pub ack: u64,
    /// Wait until this many bytes are readable (0: do not wait).
    pub min_bytes: u64,
    /// Longest wait in ns (`u64::MAX`: no limit).
    pub timeout_ns: u64,
}

/// The output fields of a `HPCAP_IOC_WAIT`, fresh for each call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitOutcome {
    /// The cursor after the acknowledgement (and any overrun skip).
    pub read_offset: u64,
    /// Published bytes from `read_offset` on.
    pub available: u64,
    /// Bytes skipped by overruns during this call.
    pub lost_bytes: u64,
    /// Blocks touched by those skips.
    pub lost_blocks: u64,
    /// `abi::WAIT_*`.
    pub flags: u32,
}

/// `HPCAP_IOC_WAIT` for listener `id`: acknowledges `req.ack` bytes, then
/// waits until `req.min_bytes` are readable, the stream ends, the listener
/// is killed, or the timeout passes. A signal ends the wait like a timeout
/// (the acknowledgement is applied; restarting the call would apply it
/// twice). Errors are for ids that are not attached and acknowledgements
/// past the published data.
pub fn wait<const S: usize>(
    table: &ListenerTable,
    publish: &PublishState<S>,
    geo: &Geometry,
    id: ListenerId,
    req: &WaitRequest,
    os: &impl Sleeper,
) -> Result<WaitOutcome, ListenerError> {
    let mut out = WaitOutcome::default();
    if req.ack != 0 {
        match table.ack(id, req.ack, publish) {
            Ok(_) => {}
            Err(ListenerError::Killed) => out.flags |= abi::WAIT_HUP,
            Err(e) => return Err(e),
        }
    }
    let deadline = os.now_ns().saturating_add(req.timeout_ns);
    while out.flags & abi::WAIT_HUP == 0 {
        match table.ready(id, req.min_bytes.max(1), publish, geo) {
            Err(ListenerError::Killed) => out.flags |= abi::WAIT_HUP,
            Err(e) => return Err(e),
            Ok(Readiness::Overrun(loss)) => {
                out.flags |= abi::WAIT_OVERRUN;
                out.lost_bytes = out.lost_bytes.saturating_add(loss.bytes);
                out.lost_blocks = out.lost_blocks.saturating_add(loss.blocks);
            }
            Ok(Readiness::Ready { .. }) => break,
            Ok(Readiness::Pending { target }) => {
                if req.min_bytes == 0 {
                    break;
                }
                if os.ended() {
                    out.flags |= abi::WAIT_HUP;
                    break;
                }
                let left = deadline.saturating_sub(os.now_ns());
                if left == 0 {
                    out.flags |= abi::WAIT_TIMEOUT;
                    break;
                }
                match os.sleep(target, left.min(SLEEP_SLICE_NS)) {
                    Slept::Interrupted => {
                        out.flags |= abi::WAIT_TIMEOUT;
                        break;
                    }
                    Slept::Woken | Slept::TimedOut => {}
                }
            }
        }
    }
    match table.cursor(id) {
        Ok((cursor, _)) => {
            out.read_offset = cursor;
            out.available = publish.committed().saturating_sub(cursor);
        }
        // Killed (or detached under us): nothing more to read.
        Err(_) => {
            out.flags |= abi::WAIT_HUP;
            out.available = 0;
        }
    }
    Ok(out)
}

/// Fills the stream and listener fields of `HPCAP_IOC_STATS` (`commit`,
/// `free_bytes`, `nlisteners`, `listener[]`); the caller sets the counters,
/// uptime, `nic_valid` and `self_id`. Killed listeners are listed, with
/// [`abi::LISTENER_KILLED`], until their owner detaches; lingering ones
/// with [`abi::LISTENER_LINGERING`] and the time they have left from `now`
/// (the clock their deadlines use, see [`ListenerTable::abandon`]).
pub fn fill_stats<const S: usize>(
    st: &mut abi::Stats,
    table: &ListenerTable,
    publish: &PublishState<S>,
    geo: &Geometry,
    now: u64,
    pid_of: impl Fn(usize) -> u32,
) {
    let commit = publish.committed();
    st.commit = commit;
    st.free_bytes = table
        .reserve_limit(commit, geo)
        .saturating_sub(publish.reserved());
    let mut n = 0;
    for (l, info) in st.listener.iter_mut().zip(table.list()) {
        *l = abi::Listener {
            id: info.id.raw(),
            mode: match info.mode {
                Mode::Blocking => abi::MODE_BLOCKING,
                Mode::Lossy => abi::MODE_LOSSY,
            },
            pid: pid_of(info.id.slot()),
            flags: if info.killed { abi::LISTENER_KILLED } else { 0 }
                | if info.name.is_some() {
                    abi::LISTENER_NAMED
                } else {
                    0
                }
                | if info.lingering.is_some() {
                    abi::LISTENER_LINGERING
                } else {
                    0
                },
            cursor: info.cursor,
            lag: commit.saturating_sub(info.cursor),
            lost_bytes: info.lost_bytes,
            lost_blocks: info.lost_blocks,
            name: info.name.map_or([0; abi::NAME_LEN], |n| n.field()),
            linger_ms: ms(info.linger_ns),
            linger_left_ms: info
                .lingering
                .map_or(0, |deadline| ms(deadline.saturating_sub(now))),
        };
        n += 1;
    }
    // CAST: at most MAX_LISTENERS.
    st.nlisteners = n as u32;
}

/// Nanoseconds as whole milliseconds, saturating at `u32::MAX`.
fn ms(ns: u64) -> u32 {
    u32::try_from(ns / 1_000_000).unwrap_or(u32::MAX)
}

/// Fills the live fields of `HPCAP_IOC_INFO`: `commit` and `listeners`
/// (slots in use, killed ones included: they still hold a slot).
pub fn fill_info<const S: usize>(
    info: &mut abi::Info,
    table: &ListenerTable,
    publish: &PublishState<S>,
) {
    info.commit = publish.committed();
    // CAST: at most MAX_LISTENERS.
    info.listeners = table.list().count() as u32;
}

#[cfg(all(test, not(loom)))]
mod tests {
    extern crate std;
    use super::*;
    use core::cell::Cell;

    fn geo() -> Geometry {
        Geometry::new(4 * 256, 256, 0, 12).unwrap()
    }

    fn produce(p: &PublishState<8>, l: &ListenerTable, g: &Geometry, len: u64) {
        let limit = l.reserve_limit(p.committed(), g);
        let mut b = p.begin_batch(0, limit).unwrap();
        let _ = b.place(g, len);
        p.complete(p.finish_batch(b, 0));
    }

    /// A fake clock that advances by each sleep; `on_sleep` runs first
    /// (produce, kill...).
    struct Fake<'a> {
        now: Cell<u64>,
        sleeps: Cell<u32>,
        ended: bool,
        interrupt: bool,
        on_sleep: &'a dyn Fn(),
    }

    impl Sleeper for Fake<'_> {
        fn now_ns(&self) -> u64 {
            self.now.get()
        }
        fn ended(&self) -> bool {
            self.ended
        }
        fn sleep(&self, _target: u64, max_ns: u64) -> Slept {
            assert!(max_ns <= SLEEP_SLICE_NS);
            self.sleeps.set(self.sleeps.get() + 1);
            (self.on_sleep)();
            if self.interrupt {
                return Slept::Interrupted;
            }
            self.now.set(self.now.get() + max_ns);
            Slept::TimedOut
        }
    }

    fn fake(on_sleep: &dyn Fn()) -> Fake<'_> {
        Fake {
            now: Cell::new(0),
            sleeps: Cell::new(0),
            ended: false,
            interrupt: false,
            on_sleep,
        }
    }

    #[test]
    fn waits_until_enough_is_published() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach(Mode::Blocking, &p, &g).unwrap();
        let more = || produce(&p, &l, &g, 100);
        let os = fake(&more);
        let req = WaitRequest {
            ack: 0,
            min_bytes: 250,
            timeout_ns: u64::MAX,
        };
        let out = wait(&l, &p, &g, a.id, &req, &os).unwrap();
        // Two records fill the first 256-byte block but for a 56-byte gap,
        // which the third one's padding closes.
        assert_eq!((out.flags, out.read_offset, out.available), (0, 0, 356));
        assert_eq!(os.sleeps.get(), 3);
        // Acknowledge, then poll without waiting.
        let req = WaitRequest {
            ack: 356,
            min_bytes: 0,
            timeout_ns: 0,
        };
        let out = wait(&l, &p, &g, a.id, &req, &fake(&|| ())).unwrap();
        assert_eq!((out.read_offset, out.available), (356, 0));
        // Past the published data: an error, nothing moves.
        let req = WaitRequest { ack: 1, ..req };
        assert_eq!(
            wait(&l, &p, &g, a.id, &req, &fake(&|| ())),
            Err(ListenerError::BeyondCommit)
        );
    }

    #[test]
    fn timeout_signal_end_and_kill() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach(Mode::Blocking, &p, &g).unwrap();
        let req = WaitRequest {
            ack: 0,
            min_bytes: 10,
            timeout_ns: 2_500_000_000,
        };
        let os = fake(&|| ());
        let out = wait(&l, &p, &g, a.id, &req, &os).unwrap();
        assert_eq!((out.flags, os.sleeps.get()), (abi::WAIT_TIMEOUT, 3));
        let os = Fake {
            interrupt: true,
            ..fake(&|| ())
        };
        let out = wait(&l, &p, &g, a.id, &req, &os).unwrap();
        assert_eq!(out.flags, abi::WAIT_TIMEOUT);
        let os = Fake {
            ended: true,
            ..fake(&|| ())
        };
        assert_eq!(
            wait(&l, &p, &g, a.id, &req, &os).unwrap().flags,
            abi::WAIT_HUP
        );
        let kill = || l.kill(a.id, 0).unwrap();
        let out = wait(&l, &p, &g, a.id, &req, &fake(&kill)).unwrap();
        assert_eq!((out.flags, out.available), (abi::WAIT_HUP, 0));
    }

    /// Overrun counts are this call's, whatever the caller passed before.
    #[test]
    fn lossy_overruns_are_reported_fresh() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let z = l.attach(Mode::Lossy, &p, &g).unwrap();
        for _ in 0..12 {
            produce(&p, &l, &g, 128);
        }
        let req = WaitRequest {
            ack: 0,
            min_bytes: 1,
            timeout_ns: 0,
        };
        let out = wait(&l, &p, &g, z.id, &req, &fake(&|| ())).unwrap();
        assert_eq!(out.flags, abi::WAIT_OVERRUN);
        assert_eq!((out.lost_bytes, out.lost_blocks), (512, 2));
        let again = wait(&l, &p, &g, z.id, &req, &fake(&|| ())).unwrap();
        assert_eq!((again.flags, again.lost_bytes), (0, 0));
    }

    #[test]
    fn stats_list_killed_listeners() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach(Mode::Blocking, &p, &g).unwrap();
        let b = l.attach(Mode::Lossy, &p, &g).unwrap();
        produce(&p, &l, &g, 100);
        l.kill(b.id, 0).unwrap();
        let mut st = abi::Stats::ZERO;
        fill_stats(&mut st, &l, &p, &g, 0, |slot| 100 + slot as u32);
        assert_eq!(st.nlisteners, 2);
        assert_eq!(
            (st.listener[0].id, st.listener[0].flags, st.listener[0].pid),
            (a.id.raw(), 0, 100)
        );
        assert_eq!(
            (st.listener[1].id, st.listener[1].flags),
            (b.id.raw(), abi::LISTENER_KILLED)
        );
        assert_eq!(st.listener[0].lag, 100);
        assert_eq!(st.free_bytes, 1024 - 100);
        let mut info = abi::Info::ZERO;
        fill_info(&mut info, &l, &p);
        assert_eq!((info.listeners, info.commit), (2, 100));
    }
}
