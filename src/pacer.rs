//! The shared QPS budget: the one place that decides when a request may leave.
//!
//! Every call to Douyin (token, order query, decrypt, and every retry) asks the pacer first. It
//! spaces requests evenly, except that after a pause (the start of a run) up to [`burst`]
//! requests (a fifth of `MAX_QPS`, at most 4) may leave at once, like a token bucket: the first
//! pages of a short cron run do not queue behind each other for nothing. As a hard guarantee,
//! whatever the spacing, it never lets more than `MAX_QPS`
//! requests start within any sliding second: it remembers when the last `MAX_QPS` requests left
//! and holds the next one until the oldest is more than a second (plus a small margin for
//! scheduling jitter) old. A "too frequent" answer means other tools share the app's budget: the
//! pacer halves the rate for the whole job and recovers by a tenth of `MAX_QPS` per quiet second.
//!
//! Callers are served in the order they asked (a ticket each), not by whichever waiting thread
//! wakes first: fetchers take the earliest day's pages first, and a fair pacer keeps that order
//! on the wire, so days complete (and commit) one after the other while later ones are fetched,
//! instead of all finishing together at the end of the run.

use crate::error::Error;
use crate::stop::Stop;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Added to the one-second window: requests that leave on time may still arrive a few
/// milliseconds apart from how they left (the grant is taken just before the request is
/// written). 15 ms costs 1.5% of the budget; the default `MAX_QPS` is half the documented limit.
const MARGIN: Duration = Duration::from_millis(15);
/// Requests that may leave at once after a pause: a fifth of `MAX_QPS`, 1 to 4.
pub fn burst(max_qps: u32) -> u32 {
    (max_qps / 5).clamp(1, 4)
}

/// The slowest the pacer goes after repeated "too frequent" answers.
const MIN_RATE: f64 = 0.5;

#[derive(Debug)]
pub struct Pacer {
    max_qps: u32,
    state: Mutex<State>,
    /// Signalled when the next ticket's turn comes.
    turn: Condvar,
    slowdowns: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Requests per second allowed now (≤ max_qps).
    rate: f64,
    /// Earliest start of the next request by even spacing (up to `burst - 1` intervals in
    /// the past: that many requests may leave at once).
    next_slot: Instant,
    /// Start times of the last `max_qps` requests.
    recent: VecDeque<Instant>,
    /// When the rate last changed.
    last_change: Instant,
    /// The ticket the next caller gets.
    next_ticket: u64,
    /// The ticket whose turn it is.
    serving: u64,
    /// Tickets given up (a signal arrived while their holder waited) before their turn.
    abandoned: BTreeSet<u64>,
}

impl State {
    /// The current ticket is done (served or given up): the next one not given up is served.
    fn advance(&mut self) {
        self.serving += 1;
        while self.abandoned.remove(&self.serving) {
            self.serving += 1;
        }
    }
}

impl Pacer {
    pub fn new(max_qps: u32) -> Pacer {
        let now = Instant::now();
        let max_qps = max_qps.max(1);
        Pacer {
            max_qps,
            state: Mutex::new(State {
                rate: f64::from(max_qps),
                // Long ago: the first request finds the whole burst credit (`acquire` caps it).
                next_slot: now.checked_sub(Duration::from_secs(1)).unwrap_or(now),
                recent: VecDeque::with_capacity(max_qps as usize + 1),
                last_change: now,
                next_ticket: 0,
                serving: 0,
                abandoned: BTreeSet::new(),
            }),
            turn: Condvar::new(),
            slowdowns: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent (plain numbers).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Block until a request may start, after every caller that asked before;
    /// `Err(Interrupted)` if a signal arrives meanwhile.
    pub fn acquire(&self, stop: &Stop) -> Result<(), Error> {
        let ticket = {
            let mut st = self.lock();
            st.next_ticket += 1;
            st.next_ticket - 1
        };
        let result = self.wait_turn(ticket, stop);
        if result.is_err() {
            let mut st = self.lock();
            if st.serving == ticket {
                st.advance();
            } else {
                st.abandoned.insert(ticket);
            }
            self.turn.notify_all();
        }
        result
    }

    fn wait_turn(&self, ticket: u64, stop: &Stop) -> Result<(), Error> {
        loop {
            stop.check()?;
            let wait = {
                let mut st = self.lock();
                if st.serving != ticket {
                    // Not our turn: wait for the one before us (waking now and then for signals).
                    let _ = self.turn.wait_timeout(st, crate::stop::TICK);
                    continue;
                }
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
                    // Keep the cadence when a caller is a little late; after a pause, credit
                    // at most `burst - 1` slots (a token bucket of `burst`).
                    let credit = interval * (burst(self.max_qps) - 1);
                    let base = match now.checked_sub(credit) {
                        Some(earliest) => st.next_slot.max(earliest),
                        None => st.next_slot,
                    };
                    st.next_slot = base + interval;
                    st.recent.push_back(now);
                    while st.recent.len() > self.max_qps as usize {
                        st.recent.pop_front();
                    }
                    st.advance();
                    self.turn.notify_all();
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
    fn a_burst_of_a_fifth_of_max_qps_may_leave_at_once_then_requests_are_spaced() {
        assert_eq!(
            (burst(1), burst(10), burst(15), burst(20), burst(100)),
            (1, 2, 3, 4, 4)
        );
        let pacer = Pacer::new(15);
        let stop = Stop::default();
        let begun = Instant::now();
        let mut starts = Vec::new();
        for _ in 0..6 {
            pacer.acquire(&stop).unwrap();
            starts.push(begun.elapsed());
        }
        // Three at once, then one every 1.015/15 s (68 ms).
        assert!(starts[2] < Duration::from_millis(20), "{starts:?}");
        for pair in starts[2..].windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(60) && gap < Duration::from_millis(120),
                "{starts:?}"
            );
        }
        // After a pause, the burst is there again, but no bigger.
        std::thread::sleep(Duration::from_millis(600));
        let again = Instant::now();
        for _ in 0..4 {
            pacer.acquire(&stop).unwrap();
        }
        let took = again.elapsed();
        assert!(
            took >= Duration::from_millis(60) && took < Duration::from_millis(120),
            "{took:?}"
        );
    }

    #[test]
    fn callers_are_served_in_the_order_they_asked() {
        let pacer = Arc::new(Pacer::new(10));
        let stop = Stop::default();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..8 {
            let (pacer, stop, order) = (pacer.clone(), stop.clone(), order.clone());
            threads.push(std::thread::spawn(move || {
                pacer.acquire(&stop).unwrap();
                order.lock().unwrap().push(i);
            }));
            // Each thread asks (takes its ticket) well before the next one starts.
            std::thread::sleep(Duration::from_millis(15));
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_caller_interrupted_in_the_line_does_not_hold_up_those_behind_it() {
        let pacer = Arc::new(Pacer::new(2));
        let stop = Stop::default();
        pacer.acquire(&stop).unwrap();
        // A second caller waits for its slot (~0.5 s away) and is interrupted.
        let interrupted = Stop::default();
        let waiting = {
            let (pacer, interrupted) = (pacer.clone(), interrupted.clone());
            std::thread::spawn(move || pacer.acquire(&interrupted))
        };
        std::thread::sleep(Duration::from_millis(50));
        interrupted.raise(crate::error::Signal::Term);
        assert!(waiting.join().unwrap().is_err());
        // The next caller is served in the slot the interrupted one gave up.
        let begun = Instant::now();
        pacer.acquire(&stop).unwrap();
        assert!(
            begun.elapsed() < Duration::from_millis(700),
            "{:?}",
            begun.elapsed()
        );
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
