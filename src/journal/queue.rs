//! The bounded queue in front of the writer thread, in submission order, that never blocks a submitter's thread.
//!
//! `push` waits for room when the queue is full, but on a thread of its own: jobs that find the queue full (and every
//! job after them, so nothing overtakes) wait in a backlog that a drainer thread feeds into the queue as the writer
//! makes room. `try_push` refuses instead (webhooks shed load with a 503), and refuses while a backlog exists too,
//! so a later job never commits before an earlier one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc::{self, error::TrySendError};

/// Why `try_push` did not queue.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    Full,
    Stopped,
}

pub(super) struct Queue<T> {
    tx: mpsc::Sender<T>,
    backlog: Arc<Mutex<Backlog<T>>>,
}

struct Backlog<T> {
    waiting: VecDeque<T>,
    /// A drainer thread is feeding `waiting` (it may hold one job it popped but has not sent yet).
    draining: bool,
}

impl<T: Send + 'static> Queue<T> {
    /// A queue of `capacity` jobs and the writer's end of it.
    pub fn new(capacity: usize) -> (Queue<T>, mpsc::Receiver<T>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let backlog = Arc::new(Mutex::new(Backlog {
            waiting: VecDeque::new(),
            draining: false,
        }));
        (Queue { tx, backlog }, rx)
    }

    /// Queues `job` behind every job pushed before it. A job that cannot be queued because the writer has stopped
    /// is dropped (its receipt then reads `Stopped`).
    pub fn push(&self, job: T) {
        let mut backlog = self.lock();
        if backlog.draining {
            backlog.waiting.push_back(job);
            return;
        }
        match self.tx.try_send(job) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(job)) => {
                backlog.waiting.push_back(job);
                backlog.draining = true;
                drop(backlog);
                self.drain();
            }
        }
    }

    /// Queues `job` if there is room now and nothing is waiting for room; never waits.
    pub fn try_push(&self, job: T) -> Result<(), Refused> {
        let backlog = self.lock();
        if backlog.draining {
            return Err(Refused::Full);
        }
        self.tx.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Full,
            TrySendError::Closed(_) => Refused::Stopped,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Backlog<T>> {
        unlocked(&self.backlog)
    }

    /// Feeds the backlog into the queue, oldest first, until it is empty.
    fn drain(&self) {
        let (tx, backlog) = (self.tx.clone(), self.backlog.clone());
        let started = std::thread::Builder::new()
            .name("journal-backlog".into())
            .spawn(move || loop {
                let job = {
                    let mut b = unlocked(&backlog);
                    match b.waiting.pop_front() {
                        Some(job) => job,
                        None => {
                            b.draining = false;
                            return;
                        }
                    }
                };
                // A plain thread, not a runtime's: blocking here holds up nobody but the backlog.
                if tx.blocking_send(job).is_err() {
                    let mut b = unlocked(&backlog);
                    b.waiting.clear();
                    b.draining = false;
                    return;
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "cannot start the journal's backlog thread; the waiting writes are dropped");
            let mut b = self.lock();
            b.waiting.clear();
            b.draining = false;
        }
    }
}

/// A poisoned backlog is still a list of jobs: a panic elsewhere must not stop the writes.
fn unlocked<T>(backlog: &Mutex<Backlog<T>>) -> MutexGuard<'_, Backlog<T>> {
    backlog.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_refuses_try_push_and_keeps_push_in_order() {
        let (queue, mut rx) = Queue::new(2);
        queue.push(1);
        queue.push(2);
        queue.push(3); // waits in the backlog
        assert_eq!(queue.try_push(99), Err(Refused::Full));
        queue.push(4);
        let mut got = Vec::new();
        while got.len() < 4 {
            got.push(rx.blocking_recv().unwrap());
        }
        assert_eq!(got, [1, 2, 3, 4]);
        // The backlog is empty again: room means try_push succeeds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while queue.try_push(5).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the backlog never emptied"
            );
            std::thread::yield_now();
        }
        assert_eq!(rx.blocking_recv(), Some(5));
    }

    #[test]
    fn a_stopped_writer_refuses() {
        let (queue, rx) = Queue::new(1);
        drop(rx);
        assert_eq!(queue.try_push(1), Err(Refused::Stopped));
        queue.push(2); // dropped, does not block or panic
    }
}
