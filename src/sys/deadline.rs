//! # Safety
//! A per-thread POSIX timer (`timer_create` with `SIGEV_THREAD_ID`) and a do-nothing
//! `SIGALRM` handler installed without `SA_RESTART`: the raw calls pass pointers to local
//! structs of the kernel's layout, and the handler touches nothing.
//!
//! Bounded blocking waits: a blocking syscall (`wait4` on a traced task) runs with an alarm
//! armed on the calling thread only; when it fires, the syscall returns `EINTR` and the
//! caller sees that its bound has passed. The bound is process-wide ([`set_bound`]): the
//! dump sets it (`--timeout`), so that no wait of a dump can hang.
//!
//! A [`Wait`] leaves its alarm armed when it ends (arming and disarming it around every
//! wait were two `timer_settime` per ptrace stop): the next wait finds it still pending
//! and arms nothing. An alarm that fires before a wait's own bound has passed (set by an
//! earlier wait) is armed again for the rest of it, so every wait still lasts at least
//! its bound and at most about that. The alarm is disarmed when the dump or restore ends
//! ([`Disarm`]) and when its thread exits; in between it fires at most once per bound,
//! and only a thread asleep in an interruptible call then sees `EINTR` (the waits here
//! retry; stasis's other blocking calls on that thread are file and `/proc` I/O, which
//! signals do not interrupt).
#![allow(unsafe_code)]

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

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

/// This thread's timer, created on first use, deleted when the thread exits.
struct ThreadTimer {
    id: Cell<Option<libc::timer_t>>,
    /// When the armed alarm fires (`None`: disarmed).
    until: Cell<Option<Instant>>,
}

impl Drop for ThreadTimer {
    fn drop(&mut self) {
        if let Some(t) = self.id.get() {
            // SAFETY: `t` is a timer this thread created and nothing else deletes.
            unsafe { libc::syscall(libc::SYS_timer_delete, t) };
        }
    }
}

thread_local! {
    static TIMER: ThreadTimer = const {
        ThreadTimer {
            id: Cell::new(None),
            until: Cell::new(None),
        }
    };
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
    if let Some(t) = TIMER.with(|t| t.id.get()) {
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
    TIMER.with(|t| t.id.set(Some(id)));
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

/// One bounded wait on this thread: the alarm armed (unless one armed by an earlier wait
/// is still pending), left armed when done.
pub struct Wait {
    bound: Option<Duration>,
    started: Instant,
}

impl Wait {
    /// Starts a wait of at most `bound` (unbounded if `None`, or if the timer cannot be
    /// had).
    pub fn start(bound: Option<Duration>) -> Wait {
        let started = Instant::now();
        if let Some(b) = bound {
            let pending = TIMER.with(|t| t.until.get()).is_some_and(|u| u > started);
            if !pending {
                arm_until(started + b, b);
            }
        }
        Wait { bound, started }
    }

    /// After `EINTR`: whether the bound has passed; if not, the alarm is armed again for
    /// the rest of it (it was an earlier wait's, or another signal's).
    pub fn timed_out(&self) -> bool {
        let Some(b) = self.bound else {
            return false;
        };
        let elapsed = self.started.elapsed();
        if elapsed >= b {
            return true;
        }
        arm_until(self.started + b, b - elapsed);
        false
    }
}

/// Arms this thread's alarm to fire after `after` (at `until`).
fn arm_until(until: Instant, after: Duration) {
    let Ok(t) = thread_timer() else {
        return;
    };
    if settime(t, after).is_ok() {
        TIMER.with(|t| t.until.set(Some(until)));
    }
}

/// Disarms this thread's alarm if a [`Wait`] left it armed.
pub fn disarm() {
    let (id, until) = TIMER.with(|t| (t.id.get(), t.until.take()));
    if let (Some(t), Some(_)) = (id, until) {
        let _ = settime(t, Duration::ZERO);
    }
}

/// Disarms this thread's alarm when dropped: held by the dump and the restore for their
/// whole run, so that no alarm outlives them.
pub struct Disarm;

impl Drop for Disarm {
    fn drop(&mut self) {
        disarm();
    }
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
        TIMER.with(|t| t.until.set(None));
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

    /// A blocking read that retries as `wait_tid` does: EINTR until the bound passed.
    fn bounded_read(bound: Duration) -> Duration {
        let wait = Wait::start(Some(bound));
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        let mut buf = [0u8; 1];
        loop {
            match nix::unistd::read(&r, &mut buf) {
                Err(Errno::EINTR) if wait.timed_out() => return wait.started.elapsed(),
                Err(Errno::EINTR) => continue,
                other => panic!("read returned {other:?}"),
            }
        }
    }

    #[test]
    fn a_wait_lasts_its_bound_even_after_an_earlier_wait_armed_the_alarm() {
        std::thread::spawn(|| {
            install_handler();
            // The first wait arms the alarm for 200 ms and leaves it armed.
            let _first = Wait::start(Some(Duration::from_millis(200)));
            std::thread::sleep(Duration::from_millis(120));
            // The alarm fires 80 ms into this wait: armed again, it still lasts 200 ms.
            let took = bounded_read(Duration::from_millis(200));
            assert!(took >= Duration::from_millis(200), "{took:?}");
            assert!(took < Duration::from_millis(2000), "{took:?}");
            disarm();
            assert_eq!(TIMER.with(|t| t.until.get()), None);
        })
        .join()
        .expect("the test thread");
    }
}
