//! A sleep that ends within tens of microseconds of its deadline.
//!
//! Tokio's timer rounds every deadline up to its next millisecond tick and the runtime then
//! parks in whole milliseconds, so a wait ends on average about a millisecond late. For a
//! poll timed to a job's expected finish that millisecond is idle time in every cycle (2 %
//! of a 50 ms job). [`sleep_until`] lets Tokio's timer do all but the last few milliseconds
//! and hands the rest to one shared thread that parks on a condition variable with a
//! nanosecond timeout and wakes each waiter at its deadline.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How much of a wait the precise thread takes over from Tokio's timer (which may be up to
/// about two milliseconds late).
const HANDOVER: Duration = Duration::from_millis(3);

/// Sleeps until `deadline`, accurate to the operating system's timer slack rather than to
/// Tokio's millisecond tick. Cancel-safe: dropping the future forgets the wait.
///
/// `cargo bench -p imggo-benches --bench timer` compares its lateness with Tokio's.
pub async fn sleep_until(deadline: Instant) {
    if let Some(early) = deadline.checked_sub(HANDOVER) {
        if early > Instant::now() {
            tokio::time::sleep_until(early.into()).await;
        }
    }
    PreciseSleep { deadline, id: None }.await
}

struct PreciseSleep {
    deadline: Instant,
    /// Registration with the timer thread, once polled while pending.
    id: Option<u64>,
}

impl Future for PreciseSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            if let Some(id) = self.id.take() {
                timer().forget(id);
            }
            return Poll::Ready(());
        }
        let deadline = self.deadline;
        let id = timer().register(self.id, deadline, cx.waker());
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for PreciseSleep {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            timer().forget(id);
        }
    }
}

/// The waits the thread handles: a heap of deadlines and the waker of each live one.
#[derive(Default)]
struct Waits {
    next_id: u64,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
}

struct Timer {
    waits: Mutex<Waits>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        std::thread::Builder::new()
            .name("imggo-http-timer".into())
            .spawn(|| timer().run())
            .expect("spawning the timer thread");
        Timer {
            waits: Mutex::new(Waits::default()),
            changed: Condvar::new(),
        }
    })
}

impl Timer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Waits> {
        self.waits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or refreshes the waker of) a wait; returns its id.
    fn register(&self, id: Option<u64>, deadline: Instant, waker: &Waker) -> u64 {
        let mut w = self.lock();
        let id = match id {
            Some(id) if w.wakers.contains_key(&id) => id,
            _ => {
                let id = w.next_id;
                w.next_id += 1;
                w.heap.push(Reverse((deadline, id)));
                // Only a new earliest deadline needs the thread to re-plan its park.
                if w.heap
                    .peek()
                    .is_some_and(|Reverse((_, first))| *first == id)
                {
                    self.changed.notify_one();
                }
                id
            }
        };
        match w.wakers.get_mut(&id) {
            Some(old) if old.will_wake(waker) => {}
            _ => {
                w.wakers.insert(id, waker.clone());
            }
        }
        id
    }

    fn forget(&self, id: u64) {
        self.lock().wakers.remove(&id);
    }

    fn run(&self) {
        let mut w = self.lock();
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse((deadline, id))) = w.heap.peek().copied() {
                if deadline > now {
                    break;
                }
                w.heap.pop();
                if let Some(waker) = w.wakers.remove(&id) {
                    due.push(waker);
                }
            }
            if !due.is_empty() {
                drop(w);
                due.into_iter().for_each(Waker::wake);
                w = self.lock();
                continue;
            }
            w = match w.heap.peek() {
                Some(Reverse((deadline, _))) => {
                    let park = deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(w, park)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
                None => self.changed.wait(w).unwrap_or_else(|p| p.into_inner()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_ends_before_its_deadline() {
        for ms in [0u64, 1, 2, 5, 9] {
            let deadline = Instant::now() + Duration::from_millis(ms);
            sleep_until(deadline).await;
            assert!(Instant::now() >= deadline, "{ms} ms");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_waits_all_end_after_their_deadlines() {
        let start = Instant::now();
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let deadline = start + Duration::from_micros(100 * (i % 37));
                tokio::spawn(async move {
                    sleep_until(deadline).await;
                    Instant::now() >= deadline
                })
            })
            .collect();
        for t in tasks {
            assert!(t.await.unwrap());
        }
    }

    #[tokio::test]
    async fn a_dropped_wait_is_forgotten() {
        let far = Instant::now() + Duration::from_millis(2);
        let mut sleep = Box::pin(PreciseSleep {
            deadline: far,
            id: None,
        });
        // Poll once so that it registers, then drop it.
        assert!(futures_poll_once(sleep.as_mut()).is_pending());
        let id = sleep.id.expect("registered");
        assert!(timer().lock().wakers.contains_key(&id));
        drop(sleep);
        assert!(!timer().lock().wakers.contains_key(&id));
    }

    fn futures_poll_once(f: Pin<&mut PreciseSleep>) -> Poll<()> {
        let waker = Waker::noop();
        f.poll(&mut Context::from_waker(waker))
    }
}
