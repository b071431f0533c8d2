//! The shared QPS budget: the one place that decides when a request may leave.
//!
//! Every call to Douyin (token, order query, decrypt, and every retry) asks the pacer first. It
//! spaces requests evenly (no bursts) and, as a hard guarantee, never lets more than `MAX_QPS`
//! requests start within any sliding second: it remembers when the last `MAX_QPS` requests left
//! and holds the next one until the oldest is more than a second (plus a small margin for
//! scheduling jitter) old. A "too frequent" answer means other tools share the app's budget: the
//! pacer halves the rate for the whole job and recovers by a tenth of `MAX_QPS` per quiet second.

use crate::error::Error;
use crate::stop::Stop;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Added to the one-second window: requests that leave on time may still arrive a few
/// milliseconds apart from how they left.
const MARGIN: Duration = Duration::from_millis(25);
/// The slowest the pacer goes after repeated "too frequent" answers.
const MIN_RATE: f64 = 0.5;

#[derive(Debug)]
pub struct Pacer {
    max_qps: u32,
    state: Mutex<State>,
    slowdowns: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Requests per second allowed now (≤ max_qps).
    rate: f64,
    /// Earliest start of the next request by even spacing.
    next_slot: Instant,
    /// Start times of the last `max_qps` requests.
    recent: VecDeque<Instant>,
    /// When the rate last changed.
    last_change: Instant,
}

impl Pacer {
    pub fn new(max_qps: u32) -> Pacer {
        let now = Instant::now();
        let max_qps = max_qps.max(1);
        Pacer {
            max_qps,
            state: Mutex::new(State {
                rate: f64::from(max_qps),
                next_slot: now,
                recent: VecDeque::with_capacity(max_qps as usize + 1),
                last_change: now,
            }),
            slowdowns: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (plain numbers).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block until a request may start; `Err(Interrupted)` if a signal arrives meanwhile.
    pub fn acquire(&self, stop: &Stop) -> Result<(), Error> {
        loop {
            stop.check()?;
            let wait = {
                let mut st = self.lock();
                let now = Instant::now();
                let window_free_at = if st.recent.len() >= self.max_qps as usize {
                    st.recent
                        .front()
                        .map_or(now, |t| *t + Duration::from_secs(1) + MARGIN)
                } else {
                    now
                };
                let at = st.next_slot.max(window_free_at);
                if at <= now {
                    let interval = Duration::from_secs_f64(
                        (1.0 + MARGIN.as_secs_f64()) / st.rate.max(MIN_RATE),
                    );
                    // Keep the cadence when a caller is a little late, restart it after a pause.
                    let base = if st.next_slot + interval < now {
                        now
                    } else {
                        st.next_slot
                    };
                    st.next_slot = base + interval;
                    st.recent.push_back(now);
                    while st.recent.len() > self.max_qps as usize {
                        st.recent.pop_front();
                    }
                    return Ok(());
                }
                at - now
            };
            stop.sleep(wait.min(crate::stop::TICK))?;
        }
    }

    /// Douyin said "too frequent": halve the rate of the whole job (at most once a second, so
    /// that a burst of such answers to requests already in flight counts once).
    pub fn slow_down(&self) {
        let mut st = self.lock();
        let now = Instant::now();
        if now.duration_since(st.last_change) >= Duration::from_secs(1)
            || st.rate >= f64::from(self.max_qps)
        {
            st.rate = (st.rate / 2.0).max(MIN_RATE);
            st.last_change = now;
            self.slowdowns.fetch_add(1, Ordering::Relaxed);
            log::warn!(
                "Douyin says requests are too frequent: slowing the whole job to {:.1} requests/s",
                st.rate
            );
        }
    }

    /// A request succeeded: recover towards `MAX_QPS` by a tenth of it per quiet second.
    pub fn success(&self) {
        let max = f64::from(self.max_qps);
        let mut st = self.lock();
        if st.rate < max {
            let now = Instant::now();
            if now.duration_since(st.last_change) >= Duration::from_secs(1) {
                st.rate = (st.rate + (max / 10.0).max(0.5)).min(max);
                st.last_change = now;
            }
        }
    }

    /// The rate allowed now, requests per second.
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }

    /// How many times the job slowed down.
    pub fn slowdowns(&self) -> u64 {
        self.slowdowns.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The most starts within any sliding second.
    fn busiest_second(mut starts: Vec<Instant>) -> usize {
        starts.sort();
        let mut best = 0;
        let mut lo = 0;
        for hi in 0..starts.len() {
            while starts[hi].duration_since(starts[lo]) >= Duration::from_secs(1) {
                lo += 1;
            }
            best = best.max(hi - lo + 1);
        }
        best
    }

    #[test]
    fn many_threads_never_exceed_max_qps_in_any_second() {
        let pacer = Arc::new(Pacer::new(20));
        let stop = Stop::default();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (pacer, stop, starts) = (pacer.clone(), stop.clone(), starts.clone());
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        pacer.acquire(&stop).unwrap();
                        starts.lock().unwrap().push(Instant::now());
                    }
                })
            })
            .collect();
        let begun = Instant::now();
        for t in threads {
            t.join().unwrap();
        }
        let elapsed = begun.elapsed().as_secs_f64();
        let starts = starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 64);
        assert!(busiest_second(starts) <= 20);
        // 64 requests at ~19.5/s take a bit over three seconds, not much more.
        assert!(elapsed > 2.9 && elapsed < 4.0, "{elapsed}");
    }

    #[test]
    fn too_frequent_halves_the_rate_and_quiet_seconds_restore_it() {
        let pacer = Pacer::new(10);
        pacer.slow_down();
        assert_eq!(pacer.rate(), 5.0);
        pacer.slow_down(); // within the same second: counted once
        assert_eq!(pacer.rate(), 5.0);
        std::thread::sleep(Duration::from_millis(1010));
        pacer.success();
        assert_eq!(pacer.rate(), 6.0);
        assert_eq!(pacer.slowdowns(), 1);
    }

    #[test]
    fn a_signal_interrupts_a_wait_for_a_slot() {
        let pacer = Pacer::new(1);
        let stop = Stop::default();
        pacer.acquire(&stop).unwrap();
        stop.raise(crate::error::Signal::Int);
        assert!(pacer.acquire(&stop).is_err());
    }
}
