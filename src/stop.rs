//! SIGTERM and SIGINT as a flag that every wait of the run checks; and the gentler remote stop
//! (`task_monitor.target_command = STOP`) with the committed-day signal the heartbeat listens to.
//!
//! A Kubernetes deadline or an eviction sends SIGTERM and kills 30 s later; a person presses
//! Ctrl-C. Either way the run must stop within seconds and leave only whole days behind. The
//! handler only stores the signal number (async-signal-safe, via signal-hook); sleeps and waits
//! in the run are cut into short slices that look at the flag, and a statement in flight is
//! cancelled (src/store.rs).
//!
//! One wait cannot watch the flag: a call into a server that has stopped answering (a
//! PostgreSQL backend that hangs with its TCP connection alive, a cancel request that is never
//! read). So the signal also starts a deadline: a run still going [`SIGNAL_DEADLINE`] after the
//! signal is ended there, with the signal's exit code. That loses nothing: uncommitted work is a
//! transaction that PostgreSQL rolls back when the connection closes, and a rerun resumes after
//! the last committed day (only the run's `sync_runs` row stays without its end).
//!
//! A remote stop is not an interruption: the run finishes and commits the day in flight, then
//! ends with exit 0 (`hold`/`held`). Every part of the run already carries a `Stop`, so these
//! two run-wide signals travel with it instead of through every signature.

use crate::error::{Error, Signal};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const SIGINT: usize = 2;
const SIGTERM: usize = 15;

/// How often a wait looks at the flag.
pub const TICK: Duration = Duration::from_millis(50);

/// How long after SIGTERM/SIGINT the process ends even if a call has not returned: within the
/// 10 s a scheduler can count on, with time to spare for exiting.
pub const SIGNAL_DEADLINE: Duration = Duration::from_secs(7);

/// Shared stop flags: the signal number that arrived (0 while running), and the remote stop.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicUsize>, Arc<Remote>);

/// The remote stop flag and the count of committed days (with a condition variable, so that the
/// heartbeat wakes at once when a day commits).
#[derive(Debug, Default)]
struct Remote {
    held: AtomicBool,
    committed: Mutex<u64>,
    progress: Condvar,
    /// The run is over: waits for progress end at once.
    over: AtomicBool,
}

impl Stop {
    /// Install the handlers for SIGINT and SIGTERM, and the deadline that follows a signal.
    pub fn install() -> Result<Stop, Error> {
        let stop = Stop::default();
        for signal in [SIGINT, SIGTERM] {
            // Signal numbers are small positive constants, so the conversion cannot fail.
            let number = i32::try_from(signal).unwrap_or(15);
            signal_hook::flag::register_usize(number, Arc::clone(&stop.0), signal)
                .map_err(|e| Error::Bug(format!("cannot install a signal handler: {e}")))?;
        }
        let watched = stop.clone();
        std::thread::Builder::new()
            .name("signal-deadline".into())
            .spawn(move || watched.end_the_process_after_the_deadline())
            .map_err(|e| Error::Bug(format!("cannot start the signal deadline: {e}")))?;
        Ok(stop)
    }

    /// Wait for a signal, then give the run [`SIGNAL_DEADLINE`] to end on its own; if it has
    /// not, end the process with the signal's exit code.
    fn end_the_process_after_the_deadline(&self) {
        let signal = loop {
            if let Some(signal) = self.signal() {
                break signal;
            }
            std::thread::sleep(TICK);
        };
        std::thread::sleep(SIGNAL_DEADLINE);
        let error = Error::Interrupted(signal);
        log::error!(
            exit_code = error.exit_code();
            "{error}, and still waiting for PostgreSQL or Douyin {} s later: exiting without them (uncommitted days roll back; a rerun resumes)",
            SIGNAL_DEADLINE.as_secs()
        );
        std::process::exit(error.exit_code());
    }

    /// Ask the run to stop as if the signal had arrived (for tests: a failing account does not
    /// stop the others, so the run itself never raises it).
    pub fn raise(&self, signal: Signal) {
        let n = match signal {
            Signal::Int => SIGINT,
            Signal::Term => SIGTERM,
        };
        self.0.store(n, Ordering::SeqCst);
    }

    /// The signal that arrived, if any.
    pub fn signal(&self) -> Option<Signal> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            SIGINT => Some(Signal::Int),
            _ => Some(Signal::Term),
        }
    }

    /// `Err(Interrupted)` once a signal has arrived.
    pub fn check(&self) -> Result<(), Error> {
        match self.signal() {
            None => Ok(()),
            Some(s) => Err(Error::Interrupted(s)),
        }
    }

    /// Ask the run to stop after the day in flight commits (a remote STOP). Never undone within
    /// a run: the next run looks at the command again.
    pub fn hold(&self) {
        self.1.held.store(true, Ordering::SeqCst);
    }

    /// Whether a remote stop was asked for.
    pub fn held(&self) -> bool {
        self.1.held.load(Ordering::SeqCst)
    }

    /// A day was committed (wakes [`Stop::wait_progress`]).
    pub fn day_committed(&self) {
        let mut n = self.1.committed.lock().unwrap_or_else(|p| p.into_inner());
        *n += 1;
        self.1.progress.notify_all();
    }

    /// Wait up to `timeout` for the count of committed days to pass `seen`; returns the count.
    pub fn wait_progress(&self, seen: u64, timeout: Duration) -> u64 {
        let n = self.1.committed.lock().unwrap_or_else(|p| p.into_inner());
        let (n, _) = self
            .1
            .progress
            .wait_timeout_while(n, timeout, |n| {
                *n <= seen && !self.1.over.load(Ordering::SeqCst)
            })
            .unwrap_or_else(|p| p.into_inner());
        *n
    }

    /// The run is over: every [`Stop::wait_progress`], now and later, returns at once (the
    /// heartbeat thread ends without waiting out its tick).
    pub fn run_over(&self) {
        let _n = self.1.committed.lock().unwrap_or_else(|p| p.into_inner());
        self.1.over.store(true, Ordering::SeqCst);
        self.1.progress.notify_all();
    }

    /// Sleep, waking early with `Err(Interrupted)` when a signal arrives.
    pub fn sleep(&self, duration: Duration) -> Result<(), Error> {
        let until = Instant::now() + duration;
        loop {
            self.check()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            std::thread::sleep((until - now).min(TICK));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_the_run_ends_a_wait_for_progress_at_once() {
        let stop = Stop::default();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.run_over();
        });
        let started = Instant::now();
        assert_eq!(stop.wait_progress(0, Duration::from_secs(30)), 0);
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        // And every later wait.
        let again = Instant::now();
        stop.wait_progress(0, Duration::from_secs(30));
        assert!(again.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn a_raised_stop_cuts_a_long_sleep_short() {
        let stop = Stop::default();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            other.raise(Signal::Term);
        });
        let started = Instant::now();
        let result = stop.sleep(Duration::from_secs(30));
        t.join().unwrap();
        assert!(matches!(result, Err(Error::Interrupted(Signal::Term))));
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_committed_day_wakes_the_waiter_at_once() {
        let stop = Stop::default();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.day_committed();
        });
        let started = Instant::now();
        assert_eq!(stop.wait_progress(0, Duration::from_secs(30)), 1);
        t.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        // Nothing new: the wait runs out.
        assert_eq!(stop.wait_progress(1, Duration::from_millis(10)), 1);
    }

    #[test]
    fn a_hold_is_not_a_signal() {
        let stop = Stop::default();
        stop.clone().hold();
        assert!(stop.held());
        assert!(stop.check().is_ok());
    }

    #[test]
    fn no_signal_means_the_sleep_runs_out() {
        let stop = Stop::default();
        assert!(stop.sleep(Duration::from_millis(10)).is_ok());
        assert_eq!(stop.signal(), None);
    }
}
