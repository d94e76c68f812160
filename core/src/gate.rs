// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Pausing the capture threads for a moment without a lock on their path.
//!
//! The capture threads pass through a [`PauseGate`] around each poll
//! ([`PauseGate::enter`], [`PauseGate::leave`]). A configuration change that
//! must not overlap any poll (switching the stream's format or block size)
//! calls [`PauseGate::pause`], waits until [`PauseGate::idle`], does its
//! work, and calls [`PauseGate::resume`]. While paused, `enter` fails and
//! the threads skip their poll.
//!
//! It is a Dekker handshake: a thread announces itself (`inside += 1`) and
//! then checks the flag; the pauser raises the flag and then checks for
//! threads inside. Both sides put a SeqCst fence between their store and
//! their load, so at least one of them sees the other: either the thread
//! backs out, or the pauser waits for it to leave. `leave` releases what the
//! poll wrote to the pauser, whose `idle` acquires it; `resume` releases
//! what the pauser wrote to the next `enter`.

use super::sync::{fence, AtomicU32, Ordering};

/// See the module documentation. All-zero memory is a gate that is open
/// with nobody inside.
#[derive(Debug)]
pub struct PauseGate {
    paused: AtomicU32,
    inside: AtomicU32,
}

impl Default for PauseGate {
    fn default() -> Self {
        Self::new()
    }
}

impl PauseGate {
    /// An open gate.
    pub fn new() -> Self {
        Self {
            paused: AtomicU32::new(0),
            inside: AtomicU32::new(0),
        }
    }

    /// A capture thread about to poll: false while paused (skip the poll).
    /// After true, call [`Self::leave`] when the poll is done.
    pub fn enter(&self) -> bool {
        self.enter_with::<false>()
    }

    fn enter_with<const BROKEN: bool>(&self) -> bool {
        // Relaxed: ordered before the flag load by the fence.
        self.inside.fetch_add(1, Ordering::Relaxed);
        if !BROKEN {
            // SeqCst: pairs with the fence in `pause_with`.
            fence(Ordering::SeqCst);
        }
        // Acquire: pairs with the Release store in `resume`; what the
        // pauser did happens-before this poll.
        if self.paused.load(Ordering::Acquire) != 0 {
            // Release: as in `leave` (we did nothing, but stay uniform).
            self.inside.fetch_sub(1, Ordering::Release);
            return false;
        }
        true
    }

    /// The poll that [`Self::enter`] admitted is done.
    pub fn leave(&self) {
        // Release: pairs with the Acquire load in `idle`; the poll's writes
        // happen-before the pauser's work.
        self.inside.fetch_sub(1, Ordering::Release);
    }

    /// Closes the gate. Polls already admitted go on: wait for
    /// [`Self::idle`] before touching what they use.
    pub fn pause(&self) {
        self.pause_with::<false>();
    }

    fn pause_with<const BROKEN: bool>(&self) {
        // Relaxed: ordered before the `inside` loads by the fence.
        self.paused.store(1, Ordering::Relaxed);
        if !BROKEN {
            // SeqCst: pairs with the fence in `enter_with`.
            fence(Ordering::SeqCst);
        }
    }

    /// After [`Self::pause`]: true once no admitted poll is running (and
    /// none can start until [`Self::resume`]).
    pub fn idle(&self) -> bool {
        // Acquire: pairs with the Release decrements in `leave`.
        self.inside.load(Ordering::Acquire) == 0
    }

    /// Opens the gate again.
    pub fn resume(&self) {
        // Release: pairs with the Acquire flag load in `enter`.
        self.paused.store(0, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_gate_admits_nobody_and_waits_for_those_inside() {
        let g = PauseGate::new();
        assert!(g.enter());
        g.pause();
        assert!(!g.idle(), "an admitted poll is still running");
        assert!(!g.enter(), "paused: nobody new gets in");
        g.leave();
        assert!(g.idle());
        g.resume();
        assert!(g.enter());
        g.leave();
        assert!(g.idle());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::Arc;
    use loom::thread;

    /// What the polls and the pauser both write: loom reports a race if the
    /// gate ever lets them overlap.
    struct Shared {
        gate: PauseGate,
        data: UnsafeCell<u32>,
    }

    // SAFETY: `data` is accessed only through loom's `with_mut`, which
    // checks for data races.
    unsafe impl Sync for Shared {}

    fn model<const BROKEN: bool>() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let s = Arc::new(Shared {
                gate: PauseGate::new(),
                data: UnsafeCell::new(0),
            });
            let poller = {
                let s = s.clone();
                thread::spawn(move || {
                    for _ in 0..2 {
                        if s.gate.enter_with::<BROKEN>() {
                            s.data.with_mut(|d| {
                                // SAFETY: the gate excludes the pauser.
                                unsafe { *d += 1 }
                            });
                            s.gate.leave();
                        }
                    }
                })
            };
            s.gate.pause_with::<BROKEN>();
            while !s.gate.idle() {
                thread::yield_now();
            }
            s.data.with_mut(|d| {
                // SAFETY: paused and idle: no poll runs.
                unsafe { *d += 10 }
            });
            s.gate.resume();
            poller.join().unwrap();
        });
    }

    #[test]
    fn loom_pause_gate_excludes_polls() {
        model::<false>();
    }

    /// Without the fences both sides can miss each other (store
    /// buffering): loom must find the overlapping accesses.
    #[test]
    #[should_panic(expected = "Causality violation")]
    fn loom_pause_gate_without_fences_is_caught() {
        model::<true>();
    }
}
