//! # Safety
//! A per-thread POSIX timer (`timer_create` with `SIGEV_THREAD_ID`) and a do-nothing
//! `SIGALRM` handler installed without `SA_RESTART`: the raw calls pass pointers to local
//! structs of the kernel's layout, and the handler touches nothing.
//!
//! Bounded blocking waits: a blocking syscall (`wait4` on a traced task) runs with an alarm
//! armed on the calling thread only; when it fires, the syscall returns `EINTR` and the
//! caller sees that its bound has passed. The bound is process-wide ([`set_bound`]): the
//! dump sets it (`--timeout`), so that no wait of a dump can hang.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use nix::errno::Errno;

use crate::abi::KernelSigevent;

/// The bound in milliseconds; 0: unbounded.
static BOUND_MS: AtomicU64 = AtomicU64::new(0);

/// `SIGEV_THREAD_ID`: the timer signals one thread.
const SIGEV_THREAD_ID: i32 = 4;

/// Sets the bound of every wait that asks for it ([`bound`]) from now on (`None`: unbounded).
///
/// The `SIGALRM` handler is installed here, before any task is created or stasis's own
/// signal actions are read (`inherit::own_sigaction`): the restore's children, copies of
/// stasis, inherit it, and their saved actions replace it as any that differs from ours.
pub fn set_bound(bound: Option<Duration>) {
    if bound.is_some() {
        install_handler();
    }
    let ms = bound.map_or(0, |d| d.as_millis().clamp(1, u64::MAX as u128) as u64);
    BOUND_MS.store(ms, Ordering::Relaxed);
}

/// The current bound.
pub fn bound() -> Option<Duration> {
    match BOUND_MS.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

thread_local! {
    /// This thread's timer, created on first use.
    static TIMER: Cell<Option<libc::timer_t>> = const { Cell::new(None) };
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Installs the handler once: without `SA_RESTART`, so a blocked syscall returns `EINTR`.
fn install_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is well
        // formed; the handler is async-signal-safe (it does nothing).
        unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = on_alarm as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(libc::SIGALRM, &act, std::ptr::null_mut());
        }
    });
}

fn thread_timer() -> Result<libc::timer_t, Errno> {
    if let Some(t) = TIMER.with(Cell::get) {
        return Ok(t);
    }
    install_handler();
    let ev = KernelSigevent {
        signo: libc::SIGALRM,
        notify: SIGEV_THREAD_ID,
        tid: nix::unistd::gettid().as_raw(),
        ..KernelSigevent::default()
    };
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `ev` has the kernel's `struct sigevent` layout (64 bytes) and `id` is a
    // valid place for the kernel to store the timer id (an int, widened by libc's type).
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_create,
            libc::CLOCK_MONOTONIC,
            &ev as *const KernelSigevent,
            &mut id as *mut libc::timer_t,
        )
    };
    Errno::result(r)?;
    TIMER.with(|c| c.set(Some(id)));
    Ok(id)
}

fn settime(timer: libc::timer_t, after: Duration) -> Result<(), Errno> {
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: after.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(after.subsec_nanos() as i32),
        },
    };
    // SAFETY: `spec` is a valid itimerspec read by the kernel; no old value is asked for.
    let r = unsafe {
        libc::syscall(
            libc::SYS_timer_settime,
            timer,
            0,
            &spec as *const libc::itimerspec,
            std::ptr::null_mut::<libc::itimerspec>(),
        )
    };
    Errno::result(r).map(drop)
}

/// An armed alarm on this thread; disarmed when dropped.
pub struct Alarm {
    timer: Option<libc::timer_t>,
}

impl Alarm {
    /// Arms the alarm to fire after `bound` (nothing if `None`, or if the timer cannot be
    /// had: the wait is then unbounded, as before).
    pub fn arm(bound: Option<Duration>) -> Alarm {
        let timer = bound.and_then(|b| {
            let t = thread_timer().ok()?;
            settime(t, b).ok().map(|()| t)
        });
        Alarm { timer }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(t) = self.timer {
            let _ = settime(t, Duration::ZERO);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_armed_alarm_interrupts_a_blocking_call() {
        let started = std::time::Instant::now();
        let alarm = Alarm::arm(Some(Duration::from_millis(50)));
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let mut buf = [0u8; 1];
        let got = nix::unistd::read(&r, &mut buf);
        drop(alarm);
        assert_eq!(got, Err(Errno::EINTR));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
