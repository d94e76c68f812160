// SPDX-License-Identifier: GPL-2.0-only OR MIT
//! Listener protocol: readers of the published stream.
//!
//! Up to [`MAX_LISTENERS`] listeners per device, each with its own read
//! cursor (a `u64` stream offset) and a [`Mode`]:
//!
//! - **Blocking** listeners hold the producer back. The producer reserves
//!   at most up to [`ListenerTable::reserve_limit`], i.e. free space is
//!   `buffer_size - (reserve - min(commit, blocking cursors))`; what does
//!   not fit is dropped and counted by the producer. Unread bytes of a
//!   blocking listener are never overwritten.
//! - **Lossy** listeners never hold the producer back. After reading bytes
//!   they call [`ListenerTable::check_read`]; if the producer lapped them
//!   they learn how many bytes and blocks they lost, and their cursor jumps
//!   to the oldest block boundary that is still intact.
//!
//! # Where a new listener starts
//!
//! Always on a block boundary, so the reader can parse from its first byte
//! and a disk writer stays block-aligned.
//!
//! - Blocking: the first boundary at or after the reservation cursor at
//!   attach time. Bytes before it may already be reserved by a producer that
//!   did not yet know the listener and are not protected, so they are not
//!   offered. The listener receives everything from the start of the next
//!   block on (the driver should close blocks on idle so that this block
//!   arrives promptly).
//!
//!   The rest of the block open at the attach is no loss when another
//!   listener reads it. When none does (the new listener is alone, e.g. an
//!   `hpcapdd` restarted after the previous one stopped in the middle of a
//!   block), the producer must not put frames there: it closes that block
//!   with padding first, because [`Limits::first`] (the lowest cursor of
//!   every listener) is past its batch's start. For that, a blocking
//!   listener is not *attached* for [`ListenerTable::any_attached`] until
//!   its start is known (state bit `STARTING` during the handshake below):
//!   a producer that saw it earlier would place frames below its start,
//!   which nobody reads and nobody counts. Frames that arrive meanwhile are
//!   dropped and counted as finding no listener, which they did.
//! - Lossy: the most recent boundary at or before the commit cursor if it
//!   is still intact, else the oldest intact boundary. Overruns after that
//!   are caught by `check_read` as usual.
//!
//! # Attach handshake (why blocking attach is safe without a lock)
//!
//! The attacher publishes its slot with a conservative cursor, then does an
//! RMW on the reservation cursor ([`PublishState::reserve_handshake`]). The
//! producer's per-batch reservation store is also an RMW, and it computes
//! the next batch's limit only after it. In the reservation cursor's
//! modification order, either the producer's RMW comes after the
//! attacher's (it then sees the slot), or before (the attacher then sees a
//! reservation `r` at least as large as anything the producer reserved
//! without knowing the slot, and the next blind batch ends at most at
//! `r + buffer_size`, as `commit <= r`). Starting at `block_ceil(r)` is thus
//! safe in both cases.
//!
//! # Named listeners and lingering
//!
//! A blocking listener may carry a [`Name`] ([`ListenerTable::attach_named`]).
//! When its owner goes away without detaching (a killed process: the OS
//! calls [`ListenerTable::abandon`] instead of [`ListenerTable::detach`]),
//! the slot is kept **lingering** until a deadline (the listener's linger
//! time after that moment): its cursor still limits the producer, it is
//! listed, and an attach by the same name before the deadline takes it
//! over exactly at its cursor, with a new generation (so ids cached before
//! never reach the new owner). A lingering slot is freed by a kill, by
//! [`ListenerTable::expire`] once its deadline has passed (the OS calls it
//! periodically, off the capture path), or by an attach by name that finds
//! it expired. The states of a slot:
//!
//! ```text
//!            attach / attach_named                  detach, kill+detach,
//!   FREE ─────────────────────────────▶ ATTACHED ───abandon (unnamed)──▶ FREE
//!     ▲                                  │   ▲
//!     │ expire, kill                     │   │ attach_named (same name,
//!     │                      abandon     ▼   │ before the deadline)
//!     └─────────────────────────────── LINGERING
//! ```
//!
//! Take-over, expiry, kill and the producer need no lock: each transition
//! is one compare-and-swap on the state word, and the slot stays BLOCKING
//! throughout, so the producer never stops honouring the cursor until the
//! slot is actually freed. Names are unique among listeners that are not
//! killed: an attach publishes its name (state CLAIMED|NAMED, `SeqCst`) and
//! then looks for the same name elsewhere (`SeqCst` loads); of two racing
//! attaches at least one sees the other and backs off with
//! [`ListenerError::NameInUse`] (both may; callers that serialise their
//! attaches, as the driver does, never see that).
//!
//! Frames the producer drops because only lingering listeners hold the room
//! they need are told apart from other drops: [`ListenerTable::reserve_limits`]
//! returns the limit with and without lingering listeners.
//!
//! # Waiting
//!
//! [`ListenerTable::ready`] is a pure predicate; if it answers
//! [`Readiness::Pending`], the OS glue calls
//! [`PublishState::prepare_wait`] with the target, re-checks, and sleeps with
//! its timeout (kernel: wait queue; userspace: futex or polling). Publishers
//! learn through [`super::publish::Published::wake`] when to wake sleepers;
//! [`ListenerTable::kill`] must be followed by a wake-up too.

use super::arith::div_u64;
use super::publish::{Geometry, PublishState};
use super::sync::{fence, AtomicU32, AtomicU64, Ordering};

/// Largest number of listeners per device.
#[cfg(not(all(loom, test)))]
pub const MAX_LISTENERS: usize = 16;

/// Largest number of listeners per device (small under loom: every slot is
/// a few more atomics for the model checker to track).
#[cfg(all(loom, test))]
pub const MAX_LISTENERS: usize = 2;

// A slot's state word: mode in bits 7:0, KILLED in bit 8, NAMED in bit 9,
// LINGERING in bit 10, STARTING in bit 11, and in bits 31:16 the generation, bumped by every
// attach and take-over, so an id cached before the slot was freed and
// reused never reaches the new owner.
const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const BLOCKING: u32 = 2;
const LOSSY: u32 = 3;
const MODE_MASK: u32 = 0xff;
/// Set by [`ListenerTable::kill`]; the producer ignores killed listeners.
const KILLED: u32 = 0x100;
/// The slot's `name` is valid (set before the state that carries it is
/// stored, and never changed while it is set).
const NAMED: u32 = 0x200;
/// The owner went away without detaching; the slot waits for a take-over
/// until its `deadline` (only ever together with BLOCKING and NAMED).
const LINGERING: u32 = 0x400;
/// A blocking listener in its attach handshake: its cursor already limits
/// the producer, but it is not [`ListenerTable::any_attached`] until its
/// start is known (module doc, "Where a new listener starts").
const STARTING: u32 = 0x800;
const GEN_SHIFT: u32 = 16;
const GEN_MASK: u32 = 0xffff << GEN_SHIFT;

/// A listener: its slot and the slot's generation at attach time. Every
/// operation checks both, so an id cached before its slot was freed and
/// taken again fails instead of acting on the new owner (an administrator's
/// kill by id, a stale handle). The check and the operation are two steps,
/// so an owner must not race its own detach with its own other calls: the
/// kernel serialises a file's listener calls with a per-file lock, and a
/// userspace handle is `&mut`. As a `u32` (the ioctl ABI's listener id) it
/// is `generation << 16 | slot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId(u32);

impl ListenerId {
    fn new(slot: usize, state: u32) -> Self {
        // CAST: slot < MAX_LISTENERS <= 0xffff.
        Self((state & GEN_MASK) | slot as u32)
    }

    /// The slot index.
    pub const fn slot(self) -> usize {
        (self.0 & 0xffff) as usize
    }

    /// The ABI representation.
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// From the ABI representation (validated when used).
    pub const fn from_raw(raw: u32) -> Self {
        Self(raw)
    }

    fn matches(self, state: u32) -> bool {
        state & GEN_MASK == self.0 & GEN_MASK
    }
}

/// How a listener treats the producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Holds the producer back; never loses data.
    Blocking,
    /// Never holds the producer back; may be overrun.
    Lossy,
}

/// Longest listener name, in bytes (the ABI field holds it and a NUL).
pub const NAME_MAX: usize = 31;

/// A listener name: 1 to [`NAME_MAX`] bytes of `A-Z a-z 0-9 . _ -`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Name {
    /// The name, NUL-padded.
    bytes: [u8; NAME_MAX + 1],
}

impl Name {
    /// Validates `s` as a name.
    pub fn new(s: &[u8]) -> Option<Self> {
        if s.is_empty() || s.len() > NAME_MAX {
            return None;
        }
        if !s
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        {
            return None;
        }
        let mut bytes = [0u8; NAME_MAX + 1];
        bytes.get_mut(..s.len())?.copy_from_slice(s);
        Some(Self { bytes })
    }

    /// From a NUL-terminated ABI field: the name, then only NUL bytes.
    pub fn from_field(field: &[u8; NAME_MAX + 1]) -> Option<Self> {
        let n = field.iter().position(|&b| b == 0)?;
        let (name, rest) = field.split_at(n);
        if rest.iter().any(|&b| b != 0) {
            return None;
        }
        Self::new(name)
    }

    /// The name's bytes (without padding).
    pub fn as_bytes(&self) -> &[u8] {
        let n = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.bytes.len());
        self.bytes.get(..n).unwrap_or(&self.bytes)
    }

    /// The NUL-padded ABI field.
    pub const fn field(&self) -> [u8; NAME_MAX + 1] {
        self.bytes
    }

    /// The name as the slot stores it.
    fn words(&self) -> [u64; NAME_WORDS] {
        core::array::from_fn(|i| {
            let mut w = [0u8; 8];
            if let Some(src) = self.bytes.get(i * 8..i * 8 + 8) {
                w.copy_from_slice(src);
            }
            u64::from_le_bytes(w)
        })
    }

    fn from_words(words: [u64; NAME_WORDS]) -> Self {
        let mut bytes = [0u8; NAME_MAX + 1];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        Self { bytes }
    }
}

impl core::fmt::Debug for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "{:?}", self.as_bytes()),
        }
    }
}

/// `u64` words of a stored name.
const NAME_WORDS: usize = (NAME_MAX + 1) / 8;

/// Errors of listener operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerError {
    /// All [`MAX_LISTENERS`] slots are taken (or, for
    /// [`ListenerTable::attach_named`], the caller may not take another).
    Full,
    /// The id is out of range or the slot is not attached (a lingering
    /// slot has no owner: its old id is not attached either).
    NotAttached,
    /// An administrator killed the listener; it should detach.
    Killed,
    /// An ack would move the cursor past the published data.
    BeyondCommit,
    /// Another listener that is not killed (attached, or being attached)
    /// has this name.
    NameInUse,
}

/// Data a lossy listener lost to an overrun.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Bytes skipped, from the old cursor to `resume_at`.
    pub bytes: u64,
    /// Blocks touched by the skipped range (a partly read block counts).
    pub blocks: u64,
    /// New cursor: the oldest intact block boundary.
    pub resume_at: u64,
}

/// Outcome of [`ListenerTable::check_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadCheck {
    /// The bytes read from the cursor on were intact.
    Intact,
    /// They may have been overwritten: discard them; the cursor moved.
    Overrun(Loss),
}

/// Outcome of [`ListenerTable::ready`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// At least the threshold is available from the cursor on.
    Ready {
        /// Published bytes after the cursor.
        available: u64,
    },
    /// Not enough yet: sleep until `committed() >= target`.
    Pending {
        /// Commit offset that satisfies the wait.
        target: u64,
    },
    /// A lossy listener was lapped; its cursor moved.
    Overrun(Loss),
}

/// Result of [`ListenerTable::attach`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    /// The listener's id.
    pub id: ListenerId,
    /// Stream offset (a block boundary) where its cursor starts.
    pub start: u64,
}

/// Result of [`ListenerTable::attach_named`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttachedNamed {
    /// The listener's id (a new generation, also on a take-over).
    pub id: ListenerId,
    /// Stream offset where its cursor starts: a block boundary for a new
    /// listener, the lingering listener's cursor (the first byte it had
    /// not acknowledged) for a take-over.
    pub start: u64,
    /// A lingering listener of that name was taken over.
    pub resumed: bool,
}

/// What [`ListenerTable::abandon`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abandoned {
    /// A named blocking listener lingers until `deadline`.
    Lingering {
        /// When [`ListenerTable::expire`] may free it (the caller's clock).
        deadline: u64,
    },
    /// The slot was freed, as by [`ListenerTable::detach`]; `killed` says
    /// whether it had been killed.
    Freed {
        /// It had been killed.
        killed: bool,
    },
}

/// One attached listener, as [`ListenerTable::list`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Its id.
    pub id: ListenerId,
    /// Its mode.
    pub mode: Mode,
    /// Killed by an administrator (holds nobody back; its owner has not
    /// detached yet).
    pub killed: bool,
    /// Its name, if it has one.
    pub name: Option<Name>,
    /// Its linger time (ns), for a named listener.
    pub linger_ns: u64,
    /// Its owner went away: it lingers until `deadline` (the clock of the
    /// OS glue that called [`ListenerTable::abandon`]).
    pub lingering: Option<u64>,
    /// Its cursor.
    pub cursor: u64,
    /// Bytes skipped by overruns.
    pub lost_bytes: u64,
    /// Blocks touched by those overruns.
    pub lost_blocks: u64,
}

/// One listener slot.
#[repr(C, align(64))]
struct Slot {
    /// FREE, CLAIMED, BLOCKING or LOSSY, possibly with KILLED.
    state: AtomicU32,
    _pad: u32,
    /// Next stream offset to read. Written only by the owner (and attach).
    cursor: AtomicU64,
    /// Bytes lost to overruns (lossy only), for statistics.
    lost: AtomicU64,
    /// Blocks touched by those overruns.
    lost_blocks: AtomicU64,
    /// Linger time of a named listener (ns); written before the state
    /// that carries NAMED.
    linger_ns: AtomicU64,
    /// When a lingering slot expires; written before LINGERING is set.
    deadline: AtomicU64,
    /// The name, valid while the state has NAMED ([`Name::words`]).
    name: [AtomicU64; NAME_WORDS],
}

/// All listener slots of one device.
///
/// # Invariants
///
/// - A slot's cursor is written only by its owner after attach; the state
///   word moves FREE → CLAIMED → BLOCKING/LOSSY (→ with KILLED) → FREE,
///   or, for a named blocking listener, BLOCKING → BLOCKING|LINGERING →
///   FREE or back to BLOCKING with a new generation (take-over); the
///   generation changes only when the slot is claimed or taken over.
/// - A lingering slot has no owner: nothing writes its cursor.
/// - Among slots that are not killed, at most one BLOCKING slot has a
///   given name (attachers that race may both back off).
/// - A blocking, non-killed listener's unread bytes `[cursor, commit)` are
///   never overwritten: the producer reserves below
///   [`Self::reserve_limit`].
/// - All-zero memory is the initial state (every slot free).
#[repr(C)]
pub struct ListenerTable {
    slots: [Slot; MAX_LISTENERS],
    /// Stream bytes lingering listeners had not read when they expired
    /// unclaimed ([`Self::expired_bytes`]).
    expired_bytes: AtomicU64,
}

impl Slot {
    #[cfg(not(all(loom, test)))]
    const fn new() -> Self {
        Self {
            state: AtomicU32::new(FREE),
            _pad: 0,
            cursor: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_blocks: AtomicU64::new(0),
            linger_ns: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            name: [const { AtomicU64::new(0) }; NAME_WORDS],
        }
    }

    #[cfg(all(loom, test))]
    fn new() -> Self {
        Self {
            state: AtomicU32::new(FREE),
            _pad: 0,
            cursor: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            lost_blocks: AtomicU64::new(0),
            linger_ns: AtomicU64::new(0),
            deadline: AtomicU64::new(0),
            name: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The stored name, if state `s` (just loaded with Acquire or
    /// stronger) carries one and the slot still has state `s` after it
    /// was read (else it changed hands meanwhile: `None`, look again).
    fn name_if(&self, s: u32) -> Option<Name> {
        if s & NAMED == 0 {
            return None;
        }
        // Relaxed: ordered after the caller's Acquire state load, and
        // validated by the re-load below.
        let words =
            core::array::from_fn(|i| self.name.get(i).map_or(0, |w| w.load(Ordering::Relaxed)));
        // Acquire: the name loads above stay before it.
        fence(Ordering::Acquire);
        // Relaxed: after the fence.
        (self.state.load(Ordering::Relaxed) == s).then(|| Name::from_words(words))
    }

    /// Stores `name` into a slot this caller has just claimed; the caller
    /// then stores a state with NAMED (Release or stronger).
    fn set_name(&self, name: &Name) {
        // Release: a reader that sees one of the stores below then sees,
        // after its Acquire fence (`name_if`), that the state moved on
        // from what it had loaded (the claim happened before).
        fence(Ordering::Release);
        for (w, v) in self.name.iter().zip(name.words()) {
            // Relaxed: published by the caller's state store.
            w.store(v, Ordering::Relaxed);
        }
    }
}

/// Limits for the producer's next batch, from
/// [`ListenerTable::reserve_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Reservations must stay below this (every blocking listener, the
    /// lingering ones included).
    pub all: u64,
    /// The same without lingering listeners (`>= all`): a record refused
    /// by `all` that fits below `live` is dropped because of a lingering
    /// listener only.
    pub live: u64,
    /// The lowest cursor of every listener that is not killed (blocking,
    /// lossy, lingering; `u64::MAX` if none). A batch that starts below it
    /// starts where no listener reads: the producer closes the open block
    /// before it places frames (module doc, "Where a new listener starts").
    pub first: u64,
}

/// Oldest block boundary whose bytes are still intact given reservation
/// cursor `reserved`.
/// The state word's generation after `s`'s, for a new owner.
fn next_gen(s: u32) -> u32 {
    (s & GEN_MASK).wrapping_add(1 << GEN_SHIFT)
}

fn oldest_intact(geo: &Geometry, reserved: u64) -> u64 {
    geo.block_ceil(reserved.saturating_sub(geo.buffer_size()))
}

impl ListenerTable {
    /// An empty table (equivalent to all-zero memory).
    #[cfg(not(all(loom, test)))]
    pub const fn new() -> Self {
        Self {
            slots: [const { Slot::new() }; MAX_LISTENERS],
            expired_bytes: AtomicU64::new(0),
        }
    }

    /// An empty table; loom atomics have no `const fn new`.
    #[cfg(all(loom, test))]
    pub fn new() -> Self {
        Self {
            slots: core::array::from_fn(|_| Slot::new()),
            expired_bytes: AtomicU64::new(0),
        }
    }

    fn slot(&self, id: ListenerId) -> Result<&Slot, ListenerError> {
        self.slots.get(id.slot()).ok_or(ListenerError::NotAttached)
    }

    /// The mode of listener `id`, or why it cannot be used.
    fn mode_of(&self, slot: &Slot, id: ListenerId) -> Result<Mode, ListenerError> {
        // Acquire: pairs with the Release state store in `attach`.
        let s = slot.state.load(Ordering::Acquire);
        if !id.matches(s) {
            return Err(ListenerError::NotAttached);
        }
        if s & KILLED != 0 {
            return Err(ListenerError::Killed);
        }
        if s & LINGERING != 0 {
            // Its owner is gone; only a take-over (new id) revives it.
            return Err(ListenerError::NotAttached);
        }
        match s & MODE_MASK {
            BLOCKING => Ok(Mode::Blocking),
            LOSSY => Ok(Mode::Lossy),
            _ => Err(ListenerError::NotAttached),
        }
    }

    /// For the producer, after the previous batch's `finish_batch`: the
    /// stream offset reservations must stay below. `commit` is
    /// [`PublishState::committed`] read after that call too.
    pub fn reserve_limit(&self, commit: u64, geo: &Geometry) -> u64 {
        self.reserve_limits(commit, geo).all
    }

    /// [`Self::reserve_limit`], and the limit lingering listeners alone do
    /// not impose (for counting the drops they cause apart). One pass over
    /// the slots, as `reserve_limit`: the capture path calls it per batch.
    pub fn reserve_limits(&self, commit: u64, geo: &Geometry) -> Limits {
        let mut low = commit;
        let mut live = commit;
        let mut first = u64::MAX;
        for slot in &self.slots {
            // Acquire: pairs with the Release stores in `attach` and
            // `start_blocking`, so the cursor load below sees at least the
            // attach-time cursor (the final start once STARTING is clear).
            let s = slot.state.load(Ordering::Acquire);
            let mode = s & (MODE_MASK | KILLED);
            if mode != BLOCKING && mode != LOSSY {
                continue;
            }
            // Acquire: pairs with the Release store in `ack`; the
            // listener's reads of the bytes below its cursor happen-before
            // our overwriting them.
            let c = slot.cursor.load(Ordering::Acquire);
            if c < first {
                first = c;
            }
            if mode != BLOCKING {
                continue;
            }
            if c < low {
                low = c;
            }
            if s & LINGERING == 0 && c < live {
                live = c;
            }
        }
        Limits {
            all: low.saturating_add(geo.buffer_size()),
            live: live.saturating_add(geo.buffer_size()),
            first,
        }
    }

    /// True if some non-killed listener (blocking or lossy, lingering
    /// ones included: frames are stored for them) is attached, a blocking
    /// one only once its start is known (not STARTING). A
    /// driver skips copying when none is; it switches the stream's layout
    /// only when none is, serialising that check with [`Self::attach`]
    /// under its own lock (the publication protocol itself does not depend
    /// on this answer).
    pub fn any_attached(&self) -> bool {
        self.slots.iter().any(|s| {
            // Relaxed: a hint for copying; the stream switch orders it with
            // attach through the driver's lock.
            let st = s.state.load(Ordering::Relaxed);
            st & (KILLED | STARTING) == 0 && matches!(st & MODE_MASK, BLOCKING | LOSSY)
        })
    }

    /// Attaches a listener; see the module documentation for where it
    /// starts and why this is safe against a running producer.
    pub fn attach<const S: usize>(
        &self,
        mode: Mode,
        publ: &PublishState<S>,
        geo: &Geometry,
    ) -> Result<Attached, ListenerError> {
        let (id, slot) = self.claim()?;
        let gen = id.0 & GEN_MASK;
        let start = match mode {
            Mode::Blocking => Self::start_blocking(slot, gen, publ, geo),
            Mode::Lossy => {
                let commit = publ.committed();
                let floor = geo.block_floor(commit);
                let oldest = oldest_intact(geo, publ.reserved());
                let start = if floor >= oldest { floor } else { oldest };
                // Relaxed: published by the Release state store below.
                slot.cursor.store(start, Ordering::Relaxed);
                // Release: pairs with the Acquire state loads of readers of
                // this slot (`mode_of`).
                slot.state.store(gen | LOSSY, Ordering::Release);
                start
            }
        };
        Ok(Attached { id, start })
    }

    /// Claims a free slot (state CLAIMED, a new generation, statistics
    /// reset).
    fn claim(&self) -> Result<(ListenerId, &Slot), ListenerError> {
        let (id, slot) = self
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                // Relaxed: the CAS below decides.
                let cur = s.state.load(Ordering::Relaxed);
                if cur & (MODE_MASK | KILLED) != FREE {
                    return None;
                }
                let claimed = next_gen(cur) | CLAIMED;
                // Acquire on success: pairs with the Release store in
                // `detach`; the previous owner is done with the slot.
                s.state
                    .compare_exchange(cur, claimed, Ordering::Acquire, Ordering::Relaxed)
                    .ok()
                    .map(|_| (ListenerId::new(i, claimed), s))
            })
            .ok_or(ListenerError::Full)?;
        // Relaxed: statistics, published by the caller's state store.
        slot.lost.store(0, Ordering::Relaxed);
        slot.lost_blocks.store(0, Ordering::Relaxed);
        Ok((id, slot))
    }

    /// Makes a claimed slot a blocking listener with state `bits` (its
    /// generation and flags such as NAMED) through the attach handshake;
    /// returns where it starts.
    fn start_blocking<const S: usize>(
        slot: &Slot,
        bits: u32,
        publ: &PublishState<S>,
        geo: &Geometry,
    ) -> u64 {
        // Conservative cursor until the handshake tells us where we
        // start: never above the final start, so a producer that
        // sees it only reserves less.
        let provisional = publ.reserved();
        // Relaxed: published by the Release state store below.
        slot.cursor.store(provisional, Ordering::Relaxed);
        // Release: pairs with the Acquire state load in
        // `reserve_limit`. STARTING: not attached for `any_attached` yet.
        slot.state
            .store(bits | BLOCKING | STARTING, Ordering::Release);
        let r = publ.reserve_handshake();
        let start = geo.block_ceil(r);
        // Release: pairs with the Acquire cursor load in
        // `reserve_limit`.
        slot.cursor.store(start, Ordering::Release);
        // Release: a producer that sees the listener attached sees its
        // start (pairs with the Acquire state load in `reserve_limits`,
        // which comes after `any_attached`'s load of the same word). An
        // RMW, not a store: an administrator's kill may have set KILLED.
        slot.state.fetch_and(!STARTING, Ordering::Release);
        start
    }

    /// Attaches a named blocking listener that lingers for `linger_ns`
    /// after its owner goes away without detaching (0: it does not
    /// linger). If a lingering listener has this name and its deadline has
    /// not passed (`now` is the clock [`Self::abandon`] was given), this
    /// takes it over at its cursor (`resumed`); one whose deadline has
    /// passed is freed first. Otherwise a new blocking listener is
    /// attached as by [`Self::attach`], provided `may_claim` (the caller's
    /// own limit on slots in use: a take-over needs no new slot).
    ///
    /// Errors: [`ListenerError::NameInUse`] if a listener that is not
    /// killed has the name; [`ListenerError::Full`] without a slot.
    pub fn attach_named<const S: usize>(
        &self,
        name: &Name,
        linger_ns: u64,
        now: u64,
        may_claim: bool,
        publ: &PublishState<S>,
        geo: &Geometry,
    ) -> Result<AttachedNamed, ListenerError> {
        'retry: loop {
            // 1. A listener of that name already?
            for (i, slot) in self.slots.iter().enumerate() {
                // SeqCst: one side of the name handshake (module doc).
                let s = slot.state.load(Ordering::SeqCst);
                if s & KILLED != 0 {
                    // A killed listener's name is free again.
                    continue;
                }
                let Some(n) = slot.name_if(s) else {
                    if s & NAMED != 0 {
                        // It changed hands while we read it.
                        continue 'retry;
                    }
                    continue;
                };
                if n != *name {
                    continue;
                }
                if s & LINGERING == 0 {
                    return Err(ListenerError::NameInUse);
                }
                // Relaxed: written before LINGERING was set, which our
                // SeqCst load saw.
                if slot.deadline.load(Ordering::Relaxed) <= now {
                    // Expired: free it (or someone else changed it).
                    self.free_expired(slot, s, publ.committed());
                    continue 'retry;
                }
                // Take over: still BLOCKING throughout, so the producer
                // never stops honouring the cursor.
                let next = next_gen(s) | NAMED | BLOCKING;
                // Relaxed: only the owner reads it, after this CAS.
                slot.linger_ns.store(linger_ns, Ordering::Relaxed);
                // AcqRel: against a racing expiry or kill (one CAS wins);
                // Acquire for the cursor below.
                if slot
                    .state
                    .compare_exchange(s, next, Ordering::AcqRel, Ordering::Relaxed)
                    .is_err()
                {
                    continue 'retry;
                }
                // Acquire: pairs with the previous owner's last Release
                // store in `ack`.
                let start = slot.cursor.load(Ordering::Acquire);
                return Ok(AttachedNamed {
                    id: ListenerId::new(i, next),
                    start,
                    resumed: true,
                });
            }
            // 2. A new listener.
            if !may_claim {
                return Err(ListenerError::Full);
            }
            let (id, slot) = self.claim()?;
            let gen = id.0 & GEN_MASK;
            slot.set_name(name);
            // Relaxed: published by the state store below.
            slot.linger_ns.store(linger_ns, Ordering::Relaxed);
            // SeqCst: the other side of the name handshake: publish the
            // name, then look for it elsewhere.
            slot.state.store(gen | NAMED | CLAIMED, Ordering::SeqCst);
            let mut lingering = false;
            let mut conflict = false;
            for (j, other) in self.slots.iter().enumerate() {
                if j == id.slot() {
                    continue;
                }
                // SeqCst: see above.
                let s = other.state.load(Ordering::SeqCst);
                if s & KILLED != 0 {
                    continue;
                }
                match other.name_if(s) {
                    Some(n) if n == *name => {
                        conflict = true;
                        lingering |= s & LINGERING != 0;
                    }
                    // Changed hands meanwhile: whatever it is now
                    // published its name after ours, so it sees ours.
                    _ => {}
                }
            }
            if conflict {
                // Release: as in `detach`.
                slot.state.store(gen, Ordering::Release);
                if lingering {
                    // Its owner died while we attached: take it over.
                    continue 'retry;
                }
                return Err(ListenerError::NameInUse);
            }
            let start = Self::start_blocking(slot, gen | NAMED, publ, geo);
            return Ok(AttachedNamed {
                id,
                start,
                resumed: false,
            });
        }
    }

    /// The owner of listener `id` went away without detaching (its file
    /// was closed, its process died). A named blocking listener that is
    /// not killed and has a linger time lingers until `now` plus that
    /// time; any other is freed as by [`Self::detach`].
    pub fn abandon(&self, id: ListenerId, now: u64) -> Result<Abandoned, ListenerError> {
        let slot = self.slot(id)?;
        // Relaxed: the CAS below decides.
        let mut s = slot.state.load(Ordering::Relaxed);
        loop {
            if !id.matches(s) || s & LINGERING != 0 || !matches!(s & MODE_MASK, BLOCKING | LOSSY) {
                return Err(ListenerError::NotAttached);
            }
            // Relaxed: written by the owner's attach, before its state.
            let linger = slot.linger_ns.load(Ordering::Relaxed);
            let lingers = s & (NAMED | KILLED | MODE_MASK) == NAMED | BLOCKING && linger != 0;
            let (next, out) = if lingers {
                let deadline = now.saturating_add(linger);
                // Relaxed: published by the Release CAS below.
                slot.deadline.store(deadline, Ordering::Relaxed);
                (s | LINGERING, Abandoned::Lingering { deadline })
            } else {
                (
                    s & GEN_MASK,
                    Abandoned::Freed {
                        killed: s & KILLED != 0,
                    },
                )
            };
            // Release: the owner's last use of the slot (and the deadline)
            // happens-before whoever acts on the new state.
            match slot
                .state
                .compare_exchange(s, next, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Ok(out),
                Err(now_s) => s = now_s,
            }
        }
    }

    /// Frees lingering slot `slot` (state word `s`) whose deadline has
    /// passed; counts the bytes it held unread (`[cursor, commit)`) in
    /// [`Self::expired_bytes`]. False if a take-over, kill or another
    /// expiry changed the slot first (it then counts nothing).
    fn free_expired(&self, slot: &Slot, s: u32, commit: u64) -> bool {
        // Acquire: pairs with the last owner's Release store in `ack`; a
        // lingering slot has no owner, so the cursor no longer moves.
        let cursor = slot.cursor.load(Ordering::Acquire);
        // Release: as in `detach`. A take-over or kill that won the race
        // leaves the slot as it made it.
        if slot
            .state
            .compare_exchange(s, s & GEN_MASK, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // Relaxed: a statistic.
        self.expired_bytes
            .fetch_add(commit.saturating_sub(cursor), Ordering::Relaxed);
        true
    }

    /// Stream bytes that lingering listeners had not read when they were
    /// freed unclaimed (their linger time ran out, or an administrator
    /// killed them), in all (counter `bytes_expired`): released to the
    /// producer without ever being delivered under their name. `commit` at
    /// that moment minus the listener's cursor.
    pub fn expired_bytes(&self) -> u64 {
        // Relaxed: a statistic.
        self.expired_bytes.load(Ordering::Relaxed)
    }

    /// Frees every lingering listener whose deadline is at or before
    /// `now`, counting the bytes each held unread up to `commit` (the
    /// publication state's [`PublishState::committed`]) in
    /// [`Self::expired_bytes`]; returns how many. For the OS's periodic
    /// slow path (not the capture path).
    pub fn expire(&self, now: u64, commit: u64) -> usize {
        let mut n = 0;
        for slot in &self.slots {
            // Acquire: pairs with the Release CAS in `abandon`, so the
            // deadline load sees its deadline.
            let s = slot.state.load(Ordering::Acquire);
            if s & LINGERING == 0 {
                continue;
            }
            // Relaxed: see above.
            if slot.deadline.load(Ordering::Relaxed) > now {
                continue;
            }
            if self.free_expired(slot, s, commit) {
                n += 1;
            }
        }
        n
    }

    /// The listener named `name` that is not killed, if any (lingering
    /// ones included), for administrators who kill by name.
    #[cfg(not(hpcap_kernel))]
    pub fn find(&self, name: &Name) -> Option<ListenerId> {
        self.list()
            .find(|l| !l.killed && l.name.as_ref() == Some(name))
            .map(|l| l.id)
    }

    /// Frees listener `id`'s slot; returns whether it had been killed (so
    /// the owner can make the kill stick). The owner (or the OS when the
    /// owner's file closes) calls it; a killed listener must still be
    /// detached.
    pub fn detach(&self, id: ListenerId) -> Result<bool, ListenerError> {
        let slot = self.slot(id)?;
        // Relaxed: the CAS below decides.
        let mut s = slot.state.load(Ordering::Relaxed);
        loop {
            if !id.matches(s) || s & MODE_MASK == FREE || s & LINGERING != 0 {
                return Err(ListenerError::NotAttached);
            }
            // Release: pairs with the Acquire CAS in `attach`: the owner's
            // last use of the slot happens-before the next owner's first.
            // The generation stays, so the next owner gets a new one.
            match slot
                .state
                .compare_exchange(s, s & GEN_MASK, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => return Ok(s & KILLED != 0),
                Err(now) => s = now,
            }
        }
    }

    /// Administrative kill: listener `id` stops holding the producer back at
    /// once and gets [`ListenerError::Killed`] from every later call. The
    /// caller should wake the device's sleepers. A lingering listener has
    /// no owner to tell: it is freed at once, and the bytes it held unread
    /// up to `commit` (the publication state's
    /// [`PublishState::committed`]) are counted in [`Self::expired_bytes`]
    /// as if its linger time had run out.
    pub fn kill(&self, id: ListenerId, commit: u64) -> Result<(), ListenerError> {
        let slot = self.slot(id)?;
        // Relaxed: the CAS below decides.
        let mut s = slot.state.load(Ordering::Relaxed);
        loop {
            if !id.matches(s) || !matches!(s & MODE_MASK, BLOCKING | LOSSY) {
                return Err(ListenerError::NotAttached);
            }
            let lingering = s & LINGERING != 0;
            let next = if lingering { s & GEN_MASK } else { s | KILLED };
            // Acquire: as in `free_expired` (a lingering slot's cursor no
            // longer moves; the CAS below proves it was still lingering).
            let cursor = slot.cursor.load(Ordering::Acquire);
            // AcqRel: atomic with respect to a concurrent detach, take-over
            // or expiry; Release so the owner's Acquire state load sees it
            // in order.
            match slot
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if lingering {
                        // Relaxed: a statistic.
                        self.expired_bytes
                            .fetch_add(commit.saturating_sub(cursor), Ordering::Relaxed);
                    }
                    return Ok(());
                }
                Err(now) => s = now,
            }
        }
    }

    /// The listener's cursor and mode.
    pub fn cursor(&self, id: ListenerId) -> Result<(u64, Mode), ListenerError> {
        let slot = self.slot(id)?;
        let mode = self.mode_of(slot, id)?;
        // Relaxed: the owner reads its own cursor.
        Ok((slot.cursor.load(Ordering::Relaxed), mode))
    }

    /// Every attached listener (killed and lingering ones too), for
    /// statistics.
    pub fn list(&self) -> impl Iterator<Item = ListenerInfo> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            // Acquire: pairs with the Release state store in `attach`.
            let s = slot.state.load(Ordering::Acquire);
            let mode = match s & MODE_MASK {
                BLOCKING => Mode::Blocking,
                LOSSY => Mode::Lossy,
                _ => return None,
            };
            let name = slot.name_if(s);
            // Relaxed: statistics.
            Some(ListenerInfo {
                id: ListenerId::new(i, s),
                mode,
                killed: s & KILLED != 0,
                name,
                linger_ns: if name.is_some() {
                    slot.linger_ns.load(Ordering::Relaxed)
                } else {
                    0
                },
                lingering: (s & LINGERING != 0).then(|| slot.deadline.load(Ordering::Relaxed)),
                cursor: slot.cursor.load(Ordering::Relaxed),
                lost_bytes: slot.lost.load(Ordering::Relaxed),
                lost_blocks: slot.lost_blocks.load(Ordering::Relaxed),
            })
        })
    }

    /// Marks `bytes` more as consumed; returns the new cursor. For a
    /// blocking listener this frees buffer space for the producer.
    pub fn ack<const S: usize>(
        &self,
        id: ListenerId,
        bytes: u64,
        publ: &PublishState<S>,
    ) -> Result<u64, ListenerError> {
        let slot = self.slot(id)?;
        self.mode_of(slot, id)?;
        // Relaxed: only the owner writes its cursor.
        let c = slot.cursor.load(Ordering::Relaxed);
        let new = c.checked_add(bytes).ok_or(ListenerError::BeyondCommit)?;
        if new > publ.committed() {
            return Err(ListenerError::BeyondCommit);
        }
        // Release: pairs with the Acquire load in `reserve_limit`; our reads
        // of `[c, new)` happen-before the producer reuses that space.
        slot.cursor.store(new, Ordering::Release);
        Ok(new)
    }

    /// Pure wait predicate: is at least `threshold` bytes (capped at the
    /// buffer size, which is all that can ever be pending) available?
    pub fn ready<const S: usize>(
        &self,
        id: ListenerId,
        threshold: u64,
        publ: &PublishState<S>,
        geo: &Geometry,
    ) -> Result<Readiness, ListenerError> {
        let slot = self.slot(id)?;
        let mode = self.mode_of(slot, id)?;
        if mode == Mode::Lossy {
            if let ReadCheck::Overrun(loss) = self.lap_check(slot, publ.reserved(), geo) {
                return Ok(Readiness::Overrun(loss));
            }
        }
        // Relaxed: only the owner writes its cursor.
        let c = slot.cursor.load(Ordering::Relaxed);
        let commit = publ.committed();
        let available = commit.saturating_sub(c);
        let want = threshold.clamp(1, geo.buffer_size());
        if available >= want {
            Ok(Readiness::Ready { available })
        } else {
            Ok(Readiness::Pending {
                target: c.saturating_add(want),
            })
        }
    }

    /// For a lossy listener that has just read bytes from its cursor on:
    /// were they intact? On overrun the cursor jumps to the oldest intact
    /// block boundary and the loss is counted. Blocking listeners are
    /// always intact.
    pub fn check_read<const S: usize>(
        &self,
        id: ListenerId,
        publ: &PublishState<S>,
        geo: &Geometry,
    ) -> Result<ReadCheck, ListenerError> {
        let slot = self.slot(id)?;
        match self.mode_of(slot, id)? {
            Mode::Blocking => Ok(ReadCheck::Intact),
            // The horizon load is fenced after the caller's buffer reads.
            Mode::Lossy => Ok(self.lap_check(slot, publ.overwrite_horizon(), geo)),
        }
    }

    fn lap_check(&self, slot: &Slot, reserved: u64, geo: &Geometry) -> ReadCheck {
        // Relaxed: only the owner writes its cursor.
        let c = slot.cursor.load(Ordering::Relaxed);
        if reserved <= c.saturating_add(geo.buffer_size()) {
            return ReadCheck::Intact;
        }
        let resume_at = oldest_intact(geo, reserved);
        let loss = Loss {
            bytes: resume_at - c,
            blocks: div_u64(resume_at - geo.block_floor(c), geo.block_size()),
            resume_at,
        };
        // Release: a lossy cursor holds nobody back; Release only keeps
        // it uniform with `ack`.
        slot.cursor.store(resume_at, Ordering::Release);
        // Relaxed: statistics.
        slot.lost.fetch_add(loss.bytes, Ordering::Relaxed);
        slot.lost_blocks.fetch_add(loss.blocks, Ordering::Relaxed);
        ReadCheck::Overrun(loss)
    }
}

impl Default for ListenerTable {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geo() -> Geometry {
        Geometry::new(4 * 256, 256, 0, 12).unwrap()
    }

    /// Runs one single-writer batch with one record of `len` bytes.
    fn produce(p: &PublishState<8>, l: &ListenerTable, g: &Geometry, len: u64) -> bool {
        let limit = l.reserve_limit(p.committed(), g);
        let mut b = p.begin_batch(0, limit).unwrap();
        let ok = b.place(g, len).is_some();
        let t = p.finish_batch(b, 0);
        p.complete(t);
        ok
    }

    #[test]
    fn blocking_listener_holds_producer() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach(Mode::Blocking, &p, &g).unwrap();
        assert_eq!(a.start, 0);
        let mut stored = 0;
        for _ in 0..20 {
            stored += produce(&p, &l, &g, 128) as u64;
        }
        assert_eq!(stored, 8);
        assert_eq!(p.committed(), 1024);
        assert_eq!(
            l.ready(a.id, 512, &p, &g).unwrap(),
            Readiness::Ready { available: 1024 }
        );
        assert_eq!(l.ack(a.id, 1025, &p), Err(ListenerError::BeyondCommit));
        assert_eq!(l.ack(a.id, 256, &p), Ok(256));
        assert!(produce(&p, &l, &g, 128));
        assert!(produce(&p, &l, &g, 128));
        assert!(!produce(&p, &l, &g, 128));
        // Kill: the listener no longer holds the producer back.
        l.kill(a.id, 0).unwrap();
        assert_eq!(l.ack(a.id, 1, &p), Err(ListenerError::Killed));
        assert!(produce(&p, &l, &g, 128));
        l.detach(a.id).unwrap();
        assert_eq!(l.detach(a.id), Err(ListenerError::NotAttached));
        assert_eq!(l.kill(a.id, 0), Err(ListenerError::NotAttached));
    }

    #[test]
    fn attach_starts_on_block_boundaries() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        for _ in 0..3 {
            produce(&p, &l, &g, 100);
        }
        // Two records in block 0, the third padded over into block 1.
        assert_eq!(p.committed(), 356);
        let b = l.attach(Mode::Blocking, &p, &g).unwrap();
        assert_eq!(b.start, 512);
        let z = l.attach(Mode::Lossy, &p, &g).unwrap();
        assert_eq!(z.start, 256);
        assert_eq!(
            l.ready(b.id, 1, &p, &g).unwrap(),
            Readiness::Pending { target: 513 }
        );
    }

    #[test]
    fn after_a_restart_listeners_start_in_the_new_geometry() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        for _ in 0..3 {
            produce(&p, &l, &g, 100);
        }
        assert_eq!(p.committed(), 356);
        // Switch to 512-byte blocks while nobody is attached. Without the
        // restart, a lossy listener would start at floor(356) = 0 of the
        // new geometry: inside bytes laid out with the old one.
        let g2 = Geometry::new(4 * 256, 512, 0, 12).unwrap();
        assert_eq!(g2.block_floor(p.committed()), 0);
        assert_eq!(p.restart(&g2), Ok(512));
        let z = l.attach(Mode::Lossy, &p, &g2).unwrap();
        let b = l.attach(Mode::Blocking, &p, &g2).unwrap();
        assert_eq!((z.start, b.start), (512, 512));
        assert!(produce(&p, &l, &g2, 100));
        assert_eq!(p.committed(), 612);
        assert_eq!(
            l.ready(z.id, 1, &p, &g2).unwrap(),
            Readiness::Ready { available: 100 }
        );
    }

    #[test]
    fn lossy_listener_skips_to_oldest_intact_block() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let z = l.attach(Mode::Lossy, &p, &g).unwrap();
        for _ in 0..12 {
            assert!(produce(&p, &l, &g, 128));
        }
        // 1536 bytes written into a 1024-byte buffer: [0, 512) is gone.
        let r = l.check_read(z.id, &p, &g).unwrap();
        assert_eq!(
            r,
            ReadCheck::Overrun(Loss {
                bytes: 512,
                blocks: 2,
                resume_at: 512
            })
        );
        assert_eq!(l.check_read(z.id, &p, &g).unwrap(), ReadCheck::Intact);
        let info = l.list().find(|i| i.id == z.id).unwrap();
        assert_eq!((info.lost_bytes, info.lost_blocks), (512, 2));
    }

    #[test]
    fn table_full() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        for _ in 0..MAX_LISTENERS {
            l.attach(Mode::Lossy, &p, &g).unwrap();
        }
        assert_eq!(l.attach(Mode::Lossy, &p, &g), Err(ListenerError::Full));
        let third = l.list().nth(3).unwrap().id;
        assert_eq!(l.detach(third), Ok(false));
        let again = l.attach(Mode::Blocking, &p, &g).unwrap().id;
        assert_eq!(again.slot(), 3);
        assert_ne!(again, third, "a reused slot gets a new generation");
    }

    /// An id cached before its slot was freed and taken again acts on
    /// nothing: not the cursor, not the mode, not a kill, not a detach.
    #[test]
    fn stale_ids_never_reach_the_next_owner() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let old = l.attach(Mode::Blocking, &p, &g).unwrap().id;
        for _ in 0..8 {
            produce(&p, &l, &g, 100);
        }
        assert_eq!(l.detach(old), Ok(false));
        let new = l.attach(Mode::Blocking, &p, &g).unwrap();
        assert_eq!(new.id.slot(), old.slot());
        for _ in 0..4 {
            produce(&p, &l, &g, 100);
        }
        assert!(p.committed() > new.start, "the new owner has data to read");
        assert_eq!(l.ack(old, 1, &p), Err(ListenerError::NotAttached));
        assert_eq!(l.cursor(old), Err(ListenerError::NotAttached));
        assert_eq!(l.kill(old, 0), Err(ListenerError::NotAttached));
        assert_eq!(l.detach(old), Err(ListenerError::NotAttached));
        assert_eq!(l.cursor(new.id), Ok((new.start, Mode::Blocking)));
        // The raw ABI form round-trips; a kill through it reaches only the
        // current owner, and a killed listener's detach reports the kill.
        assert_eq!(ListenerId::from_raw(new.id.raw()), new.id);
        l.kill(ListenerId::from_raw(new.id.raw()), 0).unwrap();
        assert!(l.list().next().unwrap().killed);
        assert_eq!(l.detach(new.id), Ok(true));
        assert_eq!(l.list().count(), 0);
    }

    fn name(s: &str) -> Name {
        Name::new(s.as_bytes()).unwrap()
    }

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn names_are_validated() {
        assert!(Name::new(b"hpcapdd-0.eth_1").is_some());
        assert!(Name::new(&[b'a'; NAME_MAX]).is_some());
        for bad in [
            &b""[..],
            &[b'a'; NAME_MAX + 1],
            b"a b",
            b"a/b",
            b"caf\xc3\xa9",
            b"a\0",
        ] {
            assert!(Name::new(bad).is_none(), "{bad:?}");
        }
        let n = name("dd0");
        assert_eq!(n.as_bytes(), b"dd0");
        assert_eq!(Name::from_field(&n.field()), Some(n));
        let mut f = n.field();
        f[10] = b'x';
        assert_eq!(Name::from_field(&f), None, "bytes after the NUL");
        assert_eq!(Name::from_field(&[b'a'; NAME_MAX + 1]), None, "no NUL");
        assert_eq!(Name::from_words(n.words()), n);
    }

    /// The life of a named listener: it lingers when abandoned, holds the
    /// producer back meanwhile, and an attach by its name takes it over at
    /// the first byte it had not acknowledged.
    #[test]
    fn named_listener_lingers_and_is_taken_over() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l
            .attach_named(&name("dd"), 30 * SEC, 0, true, &p, &g)
            .unwrap();
        assert_eq!((a.start, a.resumed), (0, false));
        assert_eq!(
            l.attach_named(&name("dd"), SEC, 0, true, &p, &g),
            Err(ListenerError::NameInUse)
        );
        for _ in 0..6 {
            assert!(produce(&p, &l, &g, 100));
        }
        l.ack(a.id, 256, &p).unwrap();
        // Its owner dies at t = 5 s.
        assert_eq!(
            l.abandon(a.id, 5 * SEC),
            Ok(Abandoned::Lingering { deadline: 35 * SEC })
        );
        let info = l.list().next().unwrap();
        assert_eq!(
            (info.name, info.lingering, info.cursor, info.linger_ns),
            (Some(name("dd")), Some(35 * SEC), 256, 30 * SEC)
        );
        // The old id is nobody's now.
        assert_eq!(l.ack(a.id, 1, &p), Err(ListenerError::NotAttached));
        assert_eq!(l.cursor(a.id), Err(ListenerError::NotAttached));
        assert_eq!(l.detach(a.id), Err(ListenerError::NotAttached));
        assert_eq!(l.abandon(a.id, 6 * SEC), Err(ListenerError::NotAttached));
        // It still holds the producer back, and only it does.
        let lim = l.reserve_limits(p.committed(), &g);
        assert_eq!(lim.all, 256 + 1024);
        assert_eq!(lim.live, p.committed() + 1024);
        while produce(&p, &l, &g, 100) {}
        assert!(p.reserved() <= 256 + 1024);
        // Not expired before its deadline.
        assert_eq!(l.expire(35 * SEC - 1, p.committed()), 0);
        // Taken over before the deadline: same cursor, new id.
        let b = l
            .attach_named(&name("dd"), 10 * SEC, 20 * SEC, false, &p, &g)
            .unwrap();
        assert_eq!((b.start, b.resumed), (256, true));
        assert_eq!(b.id.slot(), a.id.slot());
        assert_ne!(b.id, a.id);
        assert_eq!(l.cursor(b.id), Ok((256, Mode::Blocking)));
        let info = l.list().next().unwrap();
        assert_eq!((info.lingering, info.linger_ns), (None, 10 * SEC));
        assert_eq!(l.ack(b.id, p.committed() - 256, &p), Ok(p.committed()));
        assert_eq!(
            l.expire(u64::MAX, p.committed()),
            0,
            "live listeners never expire"
        );
        // An explicit detach frees it at once, name and all.
        assert_eq!(l.detach(b.id), Ok(false));
        assert_eq!(l.list().count(), 0);
        let c = l.attach_named(&name("dd"), SEC, 0, true, &p, &g).unwrap();
        assert!(!c.resumed);
    }

    #[test]
    fn lingering_listeners_expire() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach_named(&name("x"), SEC, 0, true, &p, &g).unwrap();
        produce(&p, &l, &g, 100);
        assert_eq!(
            l.abandon(a.id, 0),
            Ok(Abandoned::Lingering { deadline: SEC })
        );
        assert_eq!(l.expire(SEC - 1, p.committed()), 0);
        assert_eq!(l.expired_bytes(), 0, "nothing expired yet");
        // Issue 13: what it held unread (all it was offered: it never
        // acknowledged anything) is counted when it expires unclaimed.
        let held = p.committed() - a.start;
        assert!(held > 0);
        assert_eq!(l.expire(SEC, p.committed()), 1);
        assert_eq!(l.expired_bytes(), held);
        assert_eq!(l.expire(2 * SEC, p.committed()), 0);
        assert_eq!(l.expired_bytes(), held, "counted once");
        assert_eq!(l.list().count(), 0);
        assert_eq!(l.reserve_limit(p.committed(), &g), p.committed() + 1024);
        // A new one starts fresh, on the next block boundary.
        let b = l.attach_named(&name("x"), SEC, 0, true, &p, &g).unwrap();
        assert_eq!((b.start, b.resumed), (256, false));
        // One whose deadline has passed is not taken over, even before the
        // periodic expiry ran.
        assert!(matches!(
            l.abandon(b.id, 2 * SEC),
            Ok(Abandoned::Lingering { .. })
        ));
        while p.committed() <= b.start {
            assert!(produce(&p, &l, &g, 100));
        }
        let held2 = p.committed() - b.start;
        let c = l
            .attach_named(&name("x"), SEC, 3 * SEC, true, &p, &g)
            .unwrap();
        assert!(!c.resumed);
        assert_eq!(l.list().count(), 1);
        // The attach freed the expired one: its unread bytes count too.
        assert_eq!(l.expired_bytes(), held + held2);
    }

    #[test]
    fn abandon_frees_what_does_not_linger() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let plain = l.attach(Mode::Blocking, &p, &g).unwrap();
        assert_eq!(
            l.abandon(plain.id, 0),
            Ok(Abandoned::Freed { killed: false })
        );
        let zero = l.attach_named(&name("z"), 0, 0, true, &p, &g).unwrap();
        assert_eq!(
            l.abandon(zero.id, 0),
            Ok(Abandoned::Freed { killed: false })
        );
        let k = l.attach_named(&name("k"), SEC, 0, true, &p, &g).unwrap();
        l.kill(k.id, 0).unwrap();
        assert_eq!(l.abandon(k.id, 0), Ok(Abandoned::Freed { killed: true }));
        assert_eq!(l.list().count(), 0);
    }

    #[test]
    fn kills_and_names() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach_named(&name("a"), SEC, 0, true, &p, &g).unwrap();
        assert_eq!(l.find(&name("a")), Some(a.id));
        assert_eq!(l.find(&name("b")), None);
        // A killed listener's name is free for a new listener.
        l.kill(a.id, 0).unwrap();
        assert_eq!(l.find(&name("a")), None);
        let b = l.attach_named(&name("a"), SEC, 0, true, &p, &g).unwrap();
        assert!(!b.resumed);
        assert_eq!(l.list().count(), 2);
        assert_eq!(l.detach(a.id), Ok(true));
        // Killing a lingering listener frees it at once.
        l.abandon(b.id, 0).unwrap();
        let lingering = l.find(&name("a")).unwrap();
        assert_eq!(lingering, b.id);
        // ... and counts what it held unread as expired, once.
        assert_eq!(l.expired_bytes(), 0);
        l.kill(lingering, 4096).unwrap();
        assert_eq!(l.list().count(), 0);
        assert_eq!(l.expired_bytes(), 4096);
        assert_eq!(l.kill(lingering, 8192), Err(ListenerError::NotAttached));
        assert_eq!(l.expired_bytes(), 4096);
    }

    #[test]
    fn takeover_needs_no_new_slot() {
        let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
        let a = l.attach_named(&name("a"), SEC, 0, true, &p, &g).unwrap();
        for _ in 1..MAX_LISTENERS {
            l.attach(Mode::Lossy, &p, &g).unwrap();
        }
        assert_eq!(
            l.attach_named(&name("b"), SEC, 0, true, &p, &g),
            Err(ListenerError::Full)
        );
        l.abandon(a.id, 0).unwrap();
        assert_eq!(
            l.attach_named(&name("b"), SEC, 0, false, &p, &g),
            Err(ListenerError::Full)
        );
        let b = l.attach_named(&name("a"), SEC, 0, false, &p, &g).unwrap();
        assert!(b.resumed);
    }

    /// What a named listener is in the reference model.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Model {
        Gone,
        Live(ListenerId),
        Lingering { cursor: u64, deadline: u64 },
    }

    proptest! {
        /// Named listeners against a reference model: random attaches by
        /// name, acks, abandons, detaches, kills, expiries and production
        /// at a moving clock. A name is never held twice; a take-over
        /// resumes exactly where the listener stopped; lingering listeners
        /// keep holding the producer back until freed; the limit without
        /// them is what the live listeners impose.
        #[test]
        fn named_listeners_follow_the_model(
            ops in prop::collection::vec((0u8..8, 0usize..3, 1u64..300), 1..300)
        ) {
            let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
            let names = [name("a"), name("b"), name("c")];
            let mut model = [Model::Gone; 3];
            let mut now = 0u64;
            for (op, k, n) in ops {
                now += n;
                match op {
                    0 | 1 => {
                        let r = l.attach_named(&names[k], 200, now, true, &p, &g);
                        match model[k] {
                            Model::Live(_) => prop_assert_eq!(r, Err(ListenerError::NameInUse)),
                            Model::Lingering { cursor, deadline } if deadline > now => {
                                let a = r.unwrap();
                                prop_assert!(a.resumed);
                                prop_assert_eq!(a.start, cursor);
                                model[k] = Model::Live(a.id);
                            }
                            _ => {
                                let a = r.unwrap();
                                prop_assert!(!a.resumed);
                                prop_assert_eq!(a.start % g.block_size(), 0);
                                model[k] = Model::Live(a.id);
                            }
                        }
                    }
                    2 => {
                        if let Model::Live(id) = model[k] {
                            let (c, _) = l.cursor(id).unwrap();
                            let avail = p.committed().saturating_sub(c);
                            if avail > 0 {
                                l.ack(id, n.min(avail), &p).unwrap();
                            }
                        }
                    }
                    3 => {
                        if let Model::Live(id) = model[k] {
                            let (cursor, _) = l.cursor(id).unwrap();
                            prop_assert_eq!(
                                l.abandon(id, now),
                                Ok(Abandoned::Lingering { deadline: now + 200 })
                            );
                            model[k] = Model::Lingering { cursor, deadline: now + 200 };
                        }
                    }
                    4 => {
                        if let Model::Live(id) = model[k] {
                            prop_assert_eq!(l.detach(id), Ok(false));
                            model[k] = Model::Gone;
                        }
                    }
                    5 => {
                        if let Some(id) = l.find(&names[k]) {
                            l.kill(id, 0).unwrap();
                            if let Model::Live(_) = model[k] {
                                prop_assert_eq!(l.detach(id), Ok(true));
                            }
                            model[k] = Model::Gone;
                        }
                    }
                    6 => {
                        l.expire(now, 0);
                        for m in &mut model {
                            if matches!(*m, Model::Lingering { deadline, .. } if deadline <= now) {
                                *m = Model::Gone;
                            }
                        }
                    }
                    _ => {
                        produce(&p, &l, &g, n);
                    }
                }
                // The table agrees with the model.
                for (k, m) in model.iter().enumerate() {
                    let mine = || l.list().filter(|i| i.name == Some(names[k]));
                    let (count, first) = (mine().count(), mine().next());
                    match (*m, first) {
                        (Model::Gone, None) => {}
                        (Model::Gone, Some(f)) => prop_assert!(
                            count == 1 && f.lingering.is_some_and(|d| d <= now),
                            "{:?}", f
                        ),
                        (Model::Live(id), Some(f)) => {
                            prop_assert_eq!(count, 1);
                            prop_assert_eq!((f.id, f.lingering), (id, None));
                        }
                        (Model::Lingering { cursor, deadline }, Some(f)) => {
                            prop_assert_eq!(count, 1);
                            prop_assert_eq!(f.cursor, cursor);
                            prop_assert_eq!(f.lingering, Some(deadline));
                        }
                        (m, None) => prop_assert!(false, "{:?} missing", m),
                    }
                }
                // Nothing a blocking listener still holds is overwritten.
                for i in l.list().filter(|i| i.mode == Mode::Blocking && !i.killed) {
                    prop_assert!(p.reserved() <= i.cursor + g.buffer_size());
                }
                let lim = l.reserve_limits(p.committed(), &g);
                let live_low = model
                    .iter()
                    .filter_map(|m| match m {
                        Model::Live(id) => Some(l.cursor(*id).unwrap().0),
                        _ => None,
                    })
                    .fold(p.committed(), u64::min);
                prop_assert_eq!(lim.live, live_low + g.buffer_size());
                prop_assert!(lim.all <= lim.live);
            }
        }
    }

    proptest! {
        /// Random interleavings of produce/ack with a blocking and a lossy
        /// listener: the blocking one never loses a byte (its unread range
        /// fits in the buffer behind the reservation cursor), the lossy one
        /// always resumes on an intact block boundary.
        #[test]
        fn listener_invariants(ops in prop::collection::vec((0u8..4, 1u64..300), 1..200)) {
            let (p, l, g) = (PublishState::<8>::new(), ListenerTable::new(), geo());
            let b = l.attach(Mode::Blocking, &p, &g).unwrap();
            let z = l.attach(Mode::Lossy, &p, &g).unwrap();
            for (op, n) in ops {
                match op {
                    0 | 1 => { produce(&p, &l, &g, n); }
                    2 => {
                        let (c, _) = l.cursor(b.id).unwrap();
                        let avail = p.committed() - c;
                        l.ack(b.id, n.min(avail), &p).unwrap();
                    }
                    _ => {
                        if let ReadCheck::Overrun(loss) = l.check_read(z.id, &p, &g).unwrap() {
                            prop_assert_eq!(loss.resume_at % g.block_size(), 0);
                            prop_assert!(loss.resume_at + g.buffer_size() >= p.reserved());
                        }
                        let (c, _) = l.cursor(z.id).unwrap();
                        let avail = p.committed().saturating_sub(c);
                        l.ack(z.id, n.min(avail), &p).unwrap();
                    }
                }
                let (c, _) = l.cursor(b.id).unwrap();
                prop_assert!(p.reserved() <= c + g.buffer_size());
                prop_assert!(p.committed() <= p.reserved());
            }
        }
    }
}

/// Model checks; run with `tests/loom/run`.
#[cfg(all(test, loom))]
mod loom_tests {
    extern crate std;

    use super::super::publish::spin_wait;
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::atomic::AtomicU8;
    use loom::sync::Arc;
    use loom::thread;

    /// One-byte blocks in a two-byte buffer: every record is a block, and
    /// the third record laps the first.
    fn geo() -> Geometry {
        Geometry::new(2, 1, 0, 0).unwrap()
    }

    fn value(off: u64) -> u8 {
        off as u8 + 1
    }

    fn model(f: impl Fn() + Sync + Send + 'static) {
        let mut model = loom::model::Builder::new();
        if model.preemption_bound.is_none() {
            model.preemption_bound = Some(3);
        }
        model.check(f);
    }

    /// Single producer: one record per batch, limited by the listeners;
    /// `write` stores the record's value at its buffer position.
    fn produce(p: &PublishState<2>, l: &ListenerTable, records: u64, write: impl Fn(u64, u8)) {
        let g = geo();
        for _ in 0..records {
            let limit = l.reserve_limit(p.committed(), &g);
            let mut b = loop {
                match p.begin_batch(0, limit) {
                    Ok(b) => break b,
                    Err(_) => spin_wait(),
                }
            };
            let placed = b.place(&g, 1);
            let t = p.finish_batch(b, 0);
            if let Some(pl) = placed {
                write(pl.record.pos, value(pl.record.offset));
            }
            p.complete(t);
        }
    }

    struct Buf([UnsafeCell<u8>; 2]);

    // SAFETY: accessed only through loom's checked `with`/`with_mut`.
    unsafe impl Sync for Buf {}

    /// A blocking listener attaching while the producer runs never sees an
    /// overwritten or unpublished byte (loom flags any race on the cells,
    /// the assertion any overwrite that is ordered but wrong).
    #[test]
    fn loom_blocking_listener_never_overwritten() {
        model(|| {
            let p = Arc::new(PublishState::<2>::new());
            let l = Arc::new(ListenerTable::new());
            let buf = Arc::new(Buf([UnsafeCell::new(0), UnsafeCell::new(0)]));
            let (p2, l2, b2) = (p.clone(), l.clone(), buf.clone());
            let prod = thread::spawn(move || {
                produce(&p2, &l2, 3, |pos, v| {
                    // SAFETY: the reservation excludes every unread byte of
                    // blocking listeners; loom checks it.
                    b2.0[pos as usize].with_mut(|c| unsafe { *c = v })
                })
            });
            let g = geo();
            let a = l.attach(Mode::Blocking, &p, &g).unwrap();
            assert_eq!(a.start % g.block_size(), 0);
            for _ in 0..2 {
                let (c, _) = l.cursor(a.id).unwrap();
                if p.committed() > c {
                    // SAFETY: published and protected by our cursor.
                    let got = buf.0[(c % 2) as usize].with(|x| unsafe { *x });
                    assert_eq!(got, value(c), "blocking listener overwritten");
                    l.ack(a.id, 1, &p).unwrap();
                }
                thread::yield_now();
            }
            prod.join().unwrap();
        });
    }

    /// A named listener lingers (its owner died at cursor 0) while the
    /// producer runs; its successor's attach by name races with the
    /// periodic expiry. Exactly one wins: a take-over resumes at the
    /// lingering cursor, and whichever way it went, the successor never
    /// reads an overwritten or unpublished byte (loom flags races on the
    /// cells; the assertion wrong values).
    #[test]
    fn loom_takeover_vs_expiry_vs_producer() {
        model(|| {
            let p = Arc::new(PublishState::<2>::new());
            let l = Arc::new(ListenerTable::new());
            let buf = Arc::new(Buf([UnsafeCell::new(0), UnsafeCell::new(0)]));
            let g = geo();
            let name = Name::new(b"dd").unwrap();
            let dead = l.attach_named(&name, 10, 0, true, &p, &g).unwrap();
            assert_eq!(
                l.abandon(dead.id, 0),
                Ok(Abandoned::Lingering { deadline: 10 })
            );
            let (p2, l2, b2) = (p.clone(), l.clone(), buf.clone());
            let prod = thread::spawn(move || {
                produce(&p2, &l2, 3, |pos, v| {
                    // SAFETY: the reservation excludes every unread byte of
                    // blocking listeners, lingering ones included.
                    b2.0[pos as usize].with_mut(|c| unsafe { *c = v })
                })
            });
            let l3 = l.clone();
            let exp = thread::spawn(move || l3.expire(10, 0));
            // Before the deadline by the successor's clock: a take-over if
            // the expiry has not freed the slot yet.
            let a = l.attach_named(&name, 10, 5, true, &p, &g).unwrap();
            if a.resumed {
                assert_eq!(a.start, dead.start);
            }
            assert_ne!(a.id, dead.id);
            for _ in 0..2 {
                let (c, _) = l.cursor(a.id).unwrap();
                if p.committed() > c {
                    // SAFETY: published and protected by our cursor.
                    let got = buf.0[(c % 2) as usize].with(|x| unsafe { *x });
                    assert_eq!(got, value(c), "successor read an overwritten byte");
                    l.ack(a.id, 1, &p).unwrap();
                }
                thread::yield_now();
            }
            let expired = exp.join().unwrap();
            prod.join().unwrap();
            assert_eq!(a.resumed, expired == 0, "take-over and expiry both won");
            assert_eq!(l.list().count(), 1);
        });
    }

    /// Issue 13: a blocking listener attaches alone while the block at
    /// the reservation cursor is open (a predecessor stopped there), and the
    /// producer runs as the engine does (`Writer::poll`: copy only if
    /// `any_attached`, close the open block when every listener starts past
    /// the batch). Every record it places is at or after the listener's
    /// start, i.e. one the listener reads; the others were dropped and
    /// counted as finding no listener. Without STARTING, a producer that
    /// sees the slot during the handshake places a record the listener
    /// then skips; without the close, one after the handshake does.
    #[test]
    fn loom_attach_alone_mid_block_places_nothing_unread() {
        model(|| {
            // 4-byte blocks, no header, 1-byte records and padding.
            let g = Geometry::new(8, 4, 0, 1).unwrap();
            let p = Arc::new(PublishState::<2>::new());
            let l = Arc::new(ListenerTable::new());
            // The predecessor: one record, read, then gone mid-block.
            let pre = l.attach(Mode::Blocking, &p, &g).unwrap();
            let mut b = p
                .begin_batch(0, l.reserve_limit(p.committed(), &g))
                .unwrap();
            assert!(b.place(&g, 1).is_some());
            p.complete(p.finish_batch(b, 0));
            l.ack(pre.id, 1, &p).unwrap();
            l.detach(pre.id).unwrap();
            let (p2, l2) = (p.clone(), l.clone());
            let prod = thread::spawn(move || {
                let mut placed = std::vec::Vec::new();
                for _ in 0..2 {
                    let copying = l2.any_attached();
                    let limits = l2.reserve_limits(p2.committed(), &g);
                    let mut b = loop {
                        match p2.begin_batch(0, limits.all) {
                            Ok(b) => break b,
                            Err(_) => spin_wait(),
                        }
                    };
                    if copying && limits.first > b.start() {
                        let _ = b.close_block(&g);
                    }
                    if copying {
                        if let Some(pl) = b.place(&g, 1) {
                            placed.push(pl.record.offset);
                        }
                    }
                    p2.complete(p2.finish_batch(b, 0));
                }
                placed
            });
            let a = l.attach(Mode::Blocking, &p, &g).unwrap();
            let placed = prod.join().unwrap();
            assert!(
                placed.iter().all(|&o| o >= a.start),
                "records at {placed:?}, the only listener starts at {}",
                a.start
            );
        });
    }

    /// A lossy listener that is lapped either reads intact bytes (then they
    /// are the right ones) or is told so and resumes on an intact block.
    #[test]
    fn loom_lossy_listener_skips_correctly() {
        model(|| {
            let p = Arc::new(PublishState::<2>::new());
            let l = Arc::new(ListenerTable::new());
            let g = geo();
            let a = l.attach(Mode::Lossy, &p, &g).unwrap();
            let cells = Arc::new([AtomicU8::new(0), AtomicU8::new(0)]);
            let (p2, l2, c2) = (p.clone(), l.clone(), cells.clone());
            let prod = thread::spawn(move || {
                produce(&p2, &l2, 3, |pos, v| {
                    // Relaxed: lossy readers race with the producer by
                    // design and validate afterwards.
                    c2[pos as usize].store(v, Ordering::Relaxed)
                })
            });
            for _ in 0..2 {
                let (c, _) = l.cursor(a.id).unwrap();
                if p.committed() <= c {
                    thread::yield_now();
                    continue;
                }
                // Relaxed: validated by `check_read`.
                let got = cells[(c % 2) as usize].load(Ordering::Relaxed);
                match l.check_read(a.id, &p, &g).unwrap() {
                    ReadCheck::Intact => {
                        assert_eq!(got, value(c), "intact read returned lapped data");
                        l.ack(a.id, 1, &p).unwrap();
                    }
                    ReadCheck::Overrun(loss) => {
                        assert_eq!(loss.resume_at % g.block_size(), 0);
                        assert!(loss.resume_at > c);
                        assert_eq!(loss.bytes, loss.resume_at - c);
                    }
                }
            }
            prod.join().unwrap();
        });
    }
}
