//! A sink's bounded queue and its counters. The bound covers every record
//! not yet delivered, the batch being retried included, so "dropped" is
//! exactly "arrived while `capacity` records were waiting". The request
//! path only ever calls [`Queue::offer`]: a short lock, never a wait.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tb_billing::record::CallRecord;
use tokio::sync::Notify;

/// Records waiting for one sink, oldest first.
pub(crate) struct Queue {
    items: Mutex<VecDeque<Arc<CallRecord>>>,
    capacity: usize,
    ready: Notify,
    closed: AtomicBool,
    /// Records refused because the queue was full.
    pub dropped: AtomicU64,
}

impl Queue {
    pub(crate) fn new(capacity: usize) -> Queue {
        Queue {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            closed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    fn items(&self) -> MutexGuard<'_, VecDeque<Arc<CallRecord>>> {
        // A panic while holding this lock cannot leave the deque invalid.
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a record; `false` (and one more drop counted) when full.
    pub(crate) fn offer(&self, record: Arc<CallRecord>) -> bool {
        {
            let mut items = self.items();
            if items.len() >= self.capacity {
                drop(items);
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            items.push_back(record);
        }
        self.ready.notify_one();
        true
    }

    /// The oldest `max` records, left in the queue until
    /// [`Queue::remove_front`]: waits for one; `None` once closed and empty.
    pub(crate) async fn next_batch(&self, max: usize) -> Option<Vec<Arc<CallRecord>>> {
        loop {
            let notified = self.ready.notified();
            {
                let items = self.items();
                if !items.is_empty() {
                    return Some(items.iter().take(max).cloned().collect());
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// Forgets the `n` oldest records (delivered, or refused for good).
    pub(crate) fn remove_front(&self, n: usize) {
        let mut items = self.items();
        let n = n.min(items.len());
        items.drain(..n);
    }

    /// Records waiting now.
    pub(crate) fn depth(&self) -> usize {
        self.items().len()
    }

    /// The bound.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// No more records will come: the worker drains what is left and ends.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    /// Whether [`Queue::close`] was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Resolves at the next [`Queue::offer`], [`Queue::close`] or [`Queue::wake`].
    pub(crate) async fn woken(&self) {
        self.ready.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Arc<CallRecord> {
        let mut r = crate::fixture::record();
        r.id = id.into();
        Arc::new(r)
    }

    #[tokio::test]
    async fn the_bound_counts_the_batch_in_flight_and_drops_past_it() {
        let q = Queue::new(3);
        for i in 0..3 {
            assert!(q.offer(record(&i.to_string())));
        }
        let batch = q.next_batch(2).await.unwrap();
        assert_eq!(batch.len(), 2, "peeked, not taken");
        assert!(!q.offer(record("x")));
        assert!(!q.offer(record("y")));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        q.remove_front(2);
        assert_eq!(q.depth(), 1);
        assert!(q.offer(record("z")));
        let ids: Vec<String> = q
            .next_batch(10)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(ids, ["2", "z"]);
    }

    #[tokio::test]
    async fn a_closed_empty_queue_ends_the_worker() {
        let q = Arc::new(Queue::new(2));
        let waiter = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.next_batch(5).await.map(|b| b.len()) })
        };
        q.offer(record("a"));
        assert_eq!(waiter.await.unwrap(), Some(1));
        q.remove_front(1);
        q.close();
        assert!(q.next_batch(5).await.is_none());
    }
}
