//! The queue of job ids that worker threads take from: plain std primitives, because the
//! workers are std threads that block while they wait.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex};

#[derive(Debug, Default)]
pub(super) struct WorkQueue {
    state: Mutex<State>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct State {
    ids: VecDeque<String>,
    closed: bool,
}

impl WorkQueue {
    /// Adds a job id at the back (ignored once the queue is closed).
    pub fn push(&self, id: String) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.closed {
            state.ids.push_back(id);
            self.ready.notify_one();
        }
    }

    /// Blocks until an id is available; `None` once the queue is closed.
    pub fn pop(&self) -> Option<String> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if state.closed {
                return None;
            }
            if let Some(id) = state.ids.pop_front() {
                return Some(id);
            }
            state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Wakes every waiting worker with `None`; ids still queued stay in the database as
    /// `queued` and run after the next start.
    pub fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }

    pub fn len(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).ids.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn ids_come_out_in_order_and_close_releases_waiting_workers() {
        let q = Arc::new(WorkQueue::default());
        q.push("a".into());
        q.push("b".into());
        assert_eq!(q.len(), 2);
        assert_eq!(q.pop().as_deref(), Some("a"));
        assert_eq!(q.pop().as_deref(), Some("b"));
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || q.pop())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        q.push("c".into());
        assert_eq!(waiter.join().unwrap().as_deref(), Some("c"));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                std::thread::spawn(move || q.pop())
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        q.close();
        for w in waiters {
            assert_eq!(w.join().unwrap(), None);
        }
        q.push("d".into());
        assert_eq!(q.len(), 0);
    }
}
