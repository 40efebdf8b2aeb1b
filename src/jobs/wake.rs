//! How idle job workers learn that there may be work: a generation counter bumped by every
//! submit (and every notice from another replica), which a worker waits on with a timeout,
//! since the queue itself is in the database and may fill without a word (a replica's
//! notification lost). Plain std primitives: the workers are std threads that block.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
pub(super) struct Wake {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    generation: u64,
    closed: bool,
}

impl Wake {
    /// The generation now; pass it to [`Wake::wait`] after looking for work.
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// There may be work: wakes every waiting worker.
    pub fn notify(&self) {
        self.lock().generation += 1;
        self.changed.notify_all();
    }

    /// Waits until a notice newer than `seen` or `timeout`; `false` once closed.
    pub fn wait(&self, seen: u64, timeout: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| !s.closed && s.generation == seen)
            .unwrap_or_else(|e| e.into_inner());
        !state.closed
    }

    /// Releases every waiting worker for good.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_notice_wakes_waiters_at_once_one_before_the_wait_is_not_lost_and_close_releases_them() {
        let wake = Arc::new(Wake::default());
        let seen = wake.generation();
        let waiter = {
            let wake = wake.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (wake.wait(seen, Duration::from_secs(10)), t.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        wake.notify();
        let (open, waited) = waiter.join().unwrap();
        assert!(open && waited < Duration::from_secs(5), "woken after {waited:?}");

        // Notified between looking for work and waiting: the wait returns at once.
        let seen = wake.generation();
        wake.notify();
        let t = Instant::now();
        assert!(wake.wait(seen, Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(1));

        // Nothing new: the wait times out (the worker then polls the database).
        let seen = wake.generation();
        let t = Instant::now();
        assert!(wake.wait(seen, Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(100));

        let seen = wake.generation();
        let waiter = {
            let wake = wake.clone();
            std::thread::spawn(move || wake.wait(seen, Duration::from_secs(10)))
        };
        std::thread::sleep(Duration::from_millis(50));
        wake.close();
        assert!(!waiter.join().unwrap());
        assert!(!wake.wait(wake.generation(), Duration::from_secs(10)), "closed for good");
    }
}
