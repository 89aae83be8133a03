//! The ledger writer: records leave the request path through a bounded
//! channel and are committed in batches by one task.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tb_billing::record::CallRecord;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Ledger, StoreError};

/// What a writer carries: call records ([`Ledger`]'s sink) or purchase
/// events ([`PurchaseLog`](crate::PurchaseLog)'s).
pub trait LedgerItem: Send + Sync + 'static {
    /// Names the item in a message about it (never its secrets).
    fn describe(&self) -> String;
}

impl LedgerItem for CallRecord {
    fn describe(&self) -> String {
        format!("call record {}", self.id)
    }
}

/// Where the writer puts its batches. [`Ledger`] is the real one for call
/// records, [`PurchaseLog`](crate::PurchaseLog) for purchases; tests wrap
/// them to inject failures.
pub trait BatchSink: Send + Sync + 'static {
    /// What the batches hold.
    type Item: LedgerItem;

    /// Stores the whole batch, atomically: on `Err` nothing of it may have
    /// been kept *or* all of it may have been (the writer then retries the
    /// same batch, so storing must be idempotent per item).
    fn write_batch(
        &self,
        batch: &[Self::Item],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl BatchSink for Ledger {
    type Item = CallRecord;

    async fn write_batch(&self, batch: &[CallRecord]) -> Result<(), StoreError> {
        self.insert_batch(batch).await.map(|_| ())
    }
}

impl<S: BatchSink> BatchSink for Arc<S> {
    type Item = S::Item;

    fn write_batch(
        &self,
        batch: &[S::Item],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).write_batch(batch)
    }
}

/// Writer tuning. The defaults are the spec's: a 65,536-record queue,
/// batches of at most 256 records or 50 ms, retry backoff from 100 ms
/// doubling to 5 s.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Records the queue holds before [`LedgerSender::record`] drops
    /// (`ledger.queue_capacity`).
    pub capacity: usize,
    /// The most records committed in one transaction.
    pub max_batch: usize,
    /// How long a batch waits for more records after its first one.
    pub max_wait: Duration,
    /// The first retry delay after a failed commit.
    pub backoff_initial: Duration,
    /// The longest retry delay.
    pub backoff_max: Duration,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions {
            capacity: 65_536,
            max_batch: 256,
            max_wait: Duration::from_millis(50),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    /// Records handed to the queue (counted before the send, undone when
    /// it fails, so `accepted - written` never undercounts).
    accepted: AtomicU64,
    written: AtomicU64,
    dropped: AtomicU64,
    failed_writes: AtomicU64,
    /// Set while commits fail: since when, and the latest error. Only the
    /// writer task writes it, readers copy it out; never held across an
    /// `.await`.
    failure: Mutex<Option<WriteFailure>>,
}

impl Stats {
    fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    fn failed_writes(&self) -> u64 {
        self.failed_writes.load(Ordering::Relaxed)
    }
    fn failure(&self) -> Option<WriteFailure> {
        self.failure.lock().map(|f| f.clone()).unwrap_or(None)
    }
    fn set_failure(&self, error: String) {
        if let Ok(mut f) = self.failure.lock() {
            match f.as_mut() {
                Some(failure) => failure.error = error,
                None => {
                    *f = Some(WriteFailure {
                        error,
                        since: std::time::Instant::now(),
                    })
                }
            }
        }
    }
    fn clear_failure(&self) {
        if let Ok(mut f) = self.failure.lock() {
            *f = None;
        }
    }
    fn pending(&self) -> u64 {
        let written = self.written();
        self.accepted
            .load(Ordering::Acquire)
            .saturating_sub(written)
    }
}

/// Starts ledger writers.
#[derive(Debug)]
pub struct LedgerWriter;

impl LedgerWriter {
    /// Spawns the writer task on the current tokio runtime with the default
    /// batching and a queue of `capacity` records.
    pub fn spawn<S: BatchSink>(sink: S, capacity: usize) -> (LedgerSender<S::Item>, WriterHandle) {
        LedgerWriter::spawn_with(
            sink,
            WriterOptions {
                capacity,
                ..WriterOptions::default()
            },
        )
    }

    /// Spawns the writer task with explicit options. Zero sizes are raised
    /// to 1.
    pub fn spawn_with<S: BatchSink>(
        sink: S,
        options: WriterOptions,
    ) -> (LedgerSender<S::Item>, WriterHandle) {
        let options = WriterOptions {
            capacity: options.capacity.max(1),
            max_batch: options.max_batch.max(1),
            ..options
        };
        let (tx, rx) = mpsc::channel(options.capacity);
        let (close_tx, close_rx) = oneshot::channel();
        let stats = Arc::new(Stats::default());
        let task = tokio::spawn(run(sink, rx, close_rx, options, Arc::clone(&stats)));
        (
            LedgerSender {
                tx,
                stats: Arc::clone(&stats),
            },
            WriterHandle {
                task,
                close: Some(close_tx),
                stats,
            },
        )
    }
}

/// The request path's end of the queue. Clone it freely; it never blocks.
#[derive(Debug)]
pub struct LedgerSender<T = CallRecord> {
    tx: mpsc::Sender<T>,
    stats: Arc<Stats>,
}

impl<T> Clone for LedgerSender<T> {
    fn clone(&self) -> Self {
        LedgerSender {
            tx: self.tx.clone(),
            stats: Arc::clone(&self.stats),
        }
    }
}

impl<T: LedgerItem> LedgerSender<T> {
    /// Queues `record` for the writer without waiting. When the queue is
    /// full (or the writer has shut down) the record comes back in
    /// [`Dropped`] so the caller can log it (`ledger.dropped`), and the
    /// dropped counter rises.
    pub fn record(&self, record: T) -> Result<(), Dropped<T>> {
        self.stats.accepted.fetch_add(1, Ordering::AcqRel);
        let (record, reason) = match self.tx.try_send(record) {
            Ok(()) => return Ok(()),
            Err(mpsc::error::TrySendError::Full(r)) => (r, DropReason::QueueFull),
            Err(mpsc::error::TrySendError::Closed(r)) => (r, DropReason::WriterClosed),
        };
        self.stats.accepted.fetch_sub(1, Ordering::AcqRel);
        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        Err(Dropped {
            record: Box::new(record),
            reason,
        })
    }

    /// Records refused so far (`tb_ledger_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// Records committed so far.
    pub fn written(&self) -> u64 {
        self.stats.written()
    }

    /// Records waiting in the queue right now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Whether records are reaching the database: what is waiting, how many
    /// commits failed, and the failure in progress if there is one.
    pub fn health(&self) -> WriterHealth {
        WriterHealth {
            pending: self.stats.pending(),
            written: self.stats.written(),
            failed_writes: self.stats.failed_writes(),
            failing: self.stats.failure(),
        }
    }
}

/// A snapshot of the writer's state, for metrics and `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterHealth {
    /// Records accepted but not yet committed (queued or in the batch
    /// being retried).
    pub pending: u64,
    /// Records committed so far.
    pub written: u64,
    /// Failed commits so far (each one retried).
    pub failed_writes: u64,
    /// Set while the latest commit failed: the database is unwritable
    /// (full disk, read-only file, server down) and records wait in memory.
    pub failing: Option<WriteFailure>,
}

/// A run of failed commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    /// The latest error, as the database driver words it.
    pub error: String,
    /// When the first commit of the run failed.
    pub since: std::time::Instant,
}

/// Why a record was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The queue was full: the database is slower than the traffic.
    QueueFull,
    /// The writer has shut down.
    WriterClosed,
}

/// A record the queue refused, handed back to the caller.
#[derive(Debug)]
pub struct Dropped<T = CallRecord> {
    /// The record that was not queued.
    pub record: Box<T>,
    /// Why.
    pub reason: DropReason,
}

impl<T: LedgerItem> fmt::Display for Dropped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            DropReason::QueueFull => "the ledger queue is full",
            DropReason::WriterClosed => "the ledger writer has shut down",
        };
        write!(f, "{} not stored: {why}", self.record.describe())
    }
}

impl<T: LedgerItem + fmt::Debug> std::error::Error for Dropped<T> {}

/// Owns the writer task: counters, and a graceful [`shutdown`].
///
/// Dropping the handle without calling `shutdown` leaves the task running
/// until every [`LedgerSender`] is gone and the queue is drained.
///
/// [`shutdown`]: WriterHandle::shutdown
#[derive(Debug)]
pub struct WriterHandle {
    task: JoinHandle<()>,
    close: Option<oneshot::Sender<()>>,
    stats: Arc<Stats>,
}

/// What [`WriterHandle::shutdown`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Records committed over the writer's life.
    pub written: u64,
    /// Records queued but not committed when the deadline passed (0 after
    /// a complete drain).
    pub unwritten: u64,
    /// Records refused over the writer's life.
    pub dropped: u64,
}

impl ShutdownReport {
    /// Every queued record was committed.
    pub fn is_complete(&self) -> bool {
        self.unwritten == 0
    }
}

impl WriterHandle {
    /// Records committed so far.
    pub fn written(&self) -> u64 {
        self.stats.written()
    }

    /// Records refused so far.
    pub fn dropped(&self) -> u64 {
        self.stats.dropped()
    }

    /// Failed commits so far (each one retried).
    pub fn failed_writes(&self) -> u64 {
        self.stats.failed_writes()
    }

    /// Closes the queue (later [`LedgerSender::record`] calls return
    /// [`DropReason::WriterClosed`]) and waits until everything already
    /// queued is committed, or until `deadline` passes. Past the deadline
    /// the task is stopped (an open transaction rolls back) and the report
    /// says how many records were left unwritten.
    pub async fn shutdown(mut self, deadline: Duration) -> ShutdownReport {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        match tokio::time::timeout(deadline, &mut self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(target: "ledger.writer_failed", error = %e, "the ledger writer task ended abnormally");
            }
            Err(_) => self.task.abort(),
        }
        let report = ShutdownReport {
            written: self.stats.written(),
            unwritten: self.stats.pending(),
            dropped: self.stats.dropped(),
        };
        if report.is_complete() {
            tracing::info!(target: "ledger.drained", written = report.written, dropped = report.dropped, "ledger writer drained");
        } else {
            tracing::error!(
                target: "ledger.shutdown_unwritten",
                unwritten = report.unwritten,
                deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
                "shutdown deadline passed before the ledger queue was committed"
            );
        }
        report
    }
}

/// Resolves when a close was requested; never when the handle was dropped
/// without one.
async fn close_requested(close: &mut Option<oneshot::Receiver<()>>) {
    let Some(rx) = close.as_mut() else {
        return std::future::pending().await;
    };
    let result = rx.await;
    *close = None;
    if result.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn run<S: BatchSink>(
    sink: S,
    mut rx: mpsc::Receiver<S::Item>,
    close: oneshot::Receiver<()>,
    options: WriterOptions,
    stats: Arc<Stats>,
) {
    let mut close = Some(close);
    let mut batch = Vec::with_capacity(options.max_batch);
    loop {
        // Take one record (and whatever else is ready).
        let received = tokio::select! {
            biased;
            () = close_requested(&mut close) => {
                rx.close();
                continue;
            }
            n = rx.recv_many(&mut batch, options.max_batch) => n,
        };
        if received == 0 {
            // Closed and drained.
            break;
        }
        // Then wait a little for more, up to max_wait after the first.
        let deadline = Instant::now() + options.max_wait;
        while batch.len() < options.max_batch {
            let room = options.max_batch - batch.len();
            tokio::select! {
                biased;
                () = close_requested(&mut close) => rx.close(),
                more = tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)) => {
                    match more {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        }
        commit(&sink, &batch, &options, &stats).await;
        batch.clear();
    }
}

/// Commits `batch`, retrying the same batch with exponential backoff until
/// it succeeds: a batch the writer has taken is never discarded.
async fn commit<S: BatchSink>(sink: &S, batch: &[S::Item], options: &WriterOptions, stats: &Stats) {
    let mut delay = options.backoff_initial;
    let mut attempt: u32 = 1;
    loop {
        match sink.write_batch(batch).await {
            Ok(()) => {
                stats
                    .written
                    .fetch_add(batch.len() as u64, Ordering::AcqRel);
                stats.clear_failure();
                if attempt > 1 {
                    tracing::info!(target: "ledger.write_recovered", records = batch.len(), attempts = attempt, "ledger batch committed after retries");
                }
                return;
            }
            Err(e) => {
                stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                stats.set_failure(e.to_string());
                tracing::warn!(
                    target: "ledger.write_failed",
                    error = %e,
                    records = batch.len(),
                    attempt,
                    retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    "ledger batch not committed; retrying the same batch"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(options.backoff_max);
                attempt = attempt.saturating_add(1);
            }
        }
    }
}
