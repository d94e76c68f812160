// SPDX-License-Identifier: GPL-2.0

//! Kernel threads pinned to a CPU, stopped on drop.
//!
//! Linux 7.3 has no Rust kthread abstraction, so this is the one place that
//! calls the raw `kthread_*` functions; everything else uses [`KThread`].

use core::ffi::c_void;
use kernel::{
    bindings,
    error::from_err_ptr,
    prelude::*,
    sync::Arc, //
};

/// What a kernel thread runs: called repeatedly until the thread is asked to
/// stop. Each call should return within a few milliseconds (it decides how
/// long to sleep when idle), so that stopping is prompt.
pub(crate) trait ThreadBody: Send + Sync + 'static {
    /// One iteration of the thread's loop.
    fn run_once(&self);
}

/// A running kernel thread executing `T::run_once` in a loop.
///
/// # Invariants
///
/// `task` is a kthread created by `kthread_create_on_node` whose reference
/// we hold (`get_task_struct`), which has been woken up, and which only
/// returns from its thread function after `kthread_should_stop()` is true;
/// `data` is the `Arc<T>` leaked to it and reclaimed after `kthread_stop`.
pub(crate) struct KThread<T: ThreadBody> {
    task: *mut bindings::task_struct,
    data: *const T,
}

// SAFETY: the handle only calls `kthread_stop`/`put_task_struct`, which may
// be called from any thread; `T` itself is `Send + Sync`.
unsafe impl<T: ThreadBody> Send for KThread<T> {}
// SAFETY: `&KThread` exposes nothing.
unsafe impl<T: ThreadBody> Sync for KThread<T> {}

/// # Safety
///
/// `data` must be the pointer leaked by [`KThread::spawn`], alive until
/// `kthread_stop` returns.
unsafe extern "C" fn thread_fn<T: ThreadBody>(data: *mut c_void) -> i32 {
    // SAFETY: `data` is the pointer `KThread::spawn` leaked from an
    // `Arc<T>`, which stays alive until after `kthread_stop` returns, and
    // the thread function cannot outlive `kthread_stop`.
    let body = unsafe { &*data.cast::<T>() };
    // SAFETY: called from a kthread.
    while !unsafe { bindings::kthread_should_stop() } {
        body.run_once();
    }
    0
}

impl<T: ThreadBody> KThread<T> {
    /// Starts a thread named `name` (already formatted, NUL-terminated) on
    /// `cpu`, or unbound if `cpu` is `None`.
    pub(crate) fn spawn(body: Arc<T>, name: &CStr, cpu: Option<u32>) -> Result<Self> {
        let data = Arc::into_raw(body);
        // SAFETY: `thread_fn::<T>` matches the expected signature; `data`
        // stays valid until the thread is stopped (type invariant); the
        // format string is "%s" and its argument a valid C string.
        let task = unsafe {
            bindings::kthread_create_on_node(
                Some(thread_fn::<T>),
                data.cast_mut().cast(),
                bindings::NUMA_NO_NODE,
                c"%s".as_char_ptr(),
                name.as_char_ptr(),
            )
        };
        let task = match from_err_ptr(task) {
            Ok(t) => t,
            Err(e) => {
                // SAFETY: the thread was not created, so we own the leaked Arc again.
                drop(unsafe { Arc::from_raw(data) });
                return Err(e);
            }
        };
        // SAFETY: `task` is a valid, not yet running kthread.
        unsafe {
            bindings::get_task_struct(task);
            if let Some(cpu) = cpu {
                bindings::kthread_bind(task, cpu);
            }
            bindings::wake_up_process(task);
        }
        // INVARIANT: created, referenced, woken; `data` leaked to it.
        Ok(Self { task, data })
    }
}

impl<T: ThreadBody> Drop for KThread<T> {
    fn drop(&mut self) {
        // SAFETY: by the type invariants `task` is a live kthread we hold a
        // reference to; `kthread_stop` waits for `thread_fn` to return, after
        // which `data` is no longer used by it and we own it again.
        unsafe {
            bindings::kthread_stop(self.task);
            bindings::put_task_struct(self.task);
            drop(Arc::from_raw(self.data));
        }
    }
}

/// Sleeps for `min_us`..`max_us` microseconds (uninterruptible, so a
/// kthread's idle back-off is not cut short by signals it never handles).
pub(crate) fn sleep_us(min_us: u64, max_us: u64) {
    // SAFETY: plain sleep in process context.
    unsafe {
        bindings::usleep_range_state(
            usize::try_from(min_us).unwrap_or(usize::MAX),
            usize::try_from(max_us).unwrap_or(usize::MAX),
            bindings::TASK_UNINTERRUPTIBLE,
        )
    };
}

/// Gives the CPU to other runnable tasks, if any (a `cond_resched()` for
/// code that does not hold locks).
pub(crate) fn yield_now() {
    // SAFETY: process context, no locks held by the caller.
    unsafe { bindings::schedule() };
}

/// Nanoseconds since the Unix epoch (NMI-safe, no locks): the per-frame
/// software timestamp.
#[inline]
pub(crate) fn now_ns() -> u64 {
    // SAFETY: `ktime_get_real_fast_ns` has no preconditions.
    unsafe { bindings::ktime_get_real_fast_ns() }
}

/// Nanoseconds on the monotonic clock (NMI-safe, no locks, never set
/// back): deadlines of lingering listeners.
#[inline]
pub(crate) fn mono_ns() -> u64 {
    // SAFETY: `ktime_get_mono_fast_ns` has no preconditions.
    unsafe { bindings::ktime_get_mono_fast_ns() }
}

/// Number of CPUs the system may have (`nr_cpu_ids`).
pub(crate) fn nr_cpu_ids() -> u32 {
    // SAFETY: `nr_cpu_ids` is set at boot and read-only afterwards.
    unsafe { bindings::nr_cpu_ids }
}
