//! A sleep that ends within tens of microseconds of its deadline, on any executor.
//!
//! Tokio's timer rounds every deadline up to its next millisecond tick and the runtime then
//! parks in whole milliseconds, so a wait ends on average about a millisecond late. For a
//! poll timed to a job's expected finish, or an emulated job that should finish after
//! exactly its planned time, that millisecond is 2 % of a 50 ms job. [`sleep_until`] hands
//! the wait to one shared thread that parks on a condition variable with a nanosecond
//! timeout and wakes each waiter at its deadline. No async runtime is involved, so the
//! client and the emulator use the same timer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::thread;
use std::time::Instant;

/// Sleeps until `deadline`, accurate to the operating system's timer slack rather than to
/// a runtime's millisecond tick. Cancel-safe: dropping the future forgets the wait.
///
/// `cargo bench -p imggo-benches --bench timer` compares its lateness with Tokio's.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep { deadline, id: None }
}

/// The future of [`sleep_until`].
#[derive(Debug)]
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep {
    deadline: Instant,
    /// Registration with the timer thread, once polled while pending.
    id: Option<u64>,
}

impl Future for Sleep {
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

impl Drop for Sleep {
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
        thread::Builder::new()
            .name("imggo-timer".into())
            .spawn(|| timer().run())
            .expect("spawning the timer thread");
        Timer {
            waits: Mutex::new(Waits::default()),
            changed: Condvar::new(),
        }
    })
}

impl Timer {
    fn lock(&self) -> MutexGuard<'_, Waits> {
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

    /// Forgets a wait. Its heap entry stays until its deadline, unless forgotten entries
    /// come to outnumber the live ones (many long waits cancelled), which rebuilds the heap.
    fn forget(&self, id: u64) {
        let mut w = self.lock();
        w.wakers.remove(&id);
        if w.heap.len() > 64 && w.heap.len() > 2 * w.wakers.len() {
            let Waits { heap, wakers, .. } = &mut *w;
            heap.retain(|Reverse((_, id))| wakers.contains_key(id));
        }
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
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Duration;

    /// Runs `f` to completion on this thread, parking between polls.
    fn block_on<F: Future>(f: F) -> F::Output {
        struct Unpark(thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            thread::park();
        }
    }

    #[test]
    fn never_ends_before_its_deadline() {
        for ms in [0u64, 1, 2, 5, 9] {
            let deadline = Instant::now() + Duration::from_millis(ms);
            block_on(sleep_until(deadline));
            assert!(Instant::now() >= deadline, "{ms} ms");
        }
    }

    #[test]
    fn many_waits_on_many_threads_all_end_after_their_deadlines() {
        let start = Instant::now();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..50u64 {
            let tx = tx.clone();
            thread::spawn(move || {
                let deadline = start + Duration::from_micros(100 * (i % 37));
                block_on(sleep_until(deadline));
                tx.send(Instant::now() >= deadline).unwrap();
            });
        }
        // A lost wake-up would leave a waiter parked for ever: fail instead of hanging.
        // (The bound is for that, not a speed check: every deadline is under 4 ms away.)
        for _ in 0..50 {
            let on_time = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("a waiter was never woken");
            assert!(on_time);
        }
    }

    #[test]
    fn a_dropped_wait_is_forgotten_and_cancelled_ones_do_not_pile_up() {
        let far = Instant::now() + Duration::from_secs(3600);
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut sleeps: Vec<_> = (0..500).map(|_| Box::pin(sleep_until(far))).collect();
        for s in &mut sleeps {
            assert!(s.as_mut().poll(&mut cx).is_pending());
        }
        let id = sleeps[0].id.expect("registered");
        assert!(timer().lock().wakers.contains_key(&id));
        drop(sleeps);
        let w = timer().lock();
        assert!(!w.wakers.contains_key(&id));
        // Other tests' waits may be live, but not 500 forgotten hour-long ones.
        assert!(w.heap.len() < 300, "{} heap entries", w.heap.len());
    }
}
