//! Event loops on threads of their own, for a listener that outgrows one.
//!
//! Why not tokio's work-stealing runtime: on a small machine its workers
//! wake each other at every hand-off between a connection's task, the
//! upstream client's connection task and the ledger writer (a futex wake
//! and a context switch each), which costs a lone agent's request tens of
//! microseconds. Here every loop is a single-threaded runtime, and a
//! connection, with every task it starts, stays on the loop that took it
//! (the model of nginx workers and Envoy's worker threads): a lone client
//! is served on the calling thread exactly as with one loop, and under
//! load the connections spread over the loops, one core each.

use std::io;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// How long a stopping loop waits for its blocking tasks.
const BLOCKING_GRACE: Duration = Duration::from_secs(2);

/// Why the loops could not start.
#[derive(Debug, thiserror::Error)]
pub enum EventLoopsError {
    /// [`EventLoops::start`] must run inside a tokio runtime (loop 0).
    #[error("event loops must be started from inside a tokio runtime")]
    NoRuntime,
    /// A thread or its runtime could not be created.
    #[error("starting event loop {index}: {source}")]
    Thread {
        /// The loop.
        index: usize,
        /// The failure.
        source: io::Error,
    },
}

/// The calling runtime as loop 0, and `count - 1` more single-threaded
/// runtimes on threads named `tb-loop-<i>`. The extra loops run until this
/// value is dropped (after the listener drained, so that tasks a request
/// started, such as a purchase finishing in the background, keep running
/// until the daemon's own shutdown is done).
pub struct EventLoops {
    handles: Vec<Handle>,
    threads: Vec<(oneshot::Sender<()>, JoinHandle<()>)>,
}

impl EventLoops {
    /// Starts the loops; `count` 0 is taken as 1.
    ///
    /// # Errors
    ///
    /// [`EventLoopsError`] outside a runtime, or when a thread cannot start.
    pub fn start(count: usize) -> Result<EventLoops, EventLoopsError> {
        let current = Handle::try_current().map_err(|_| EventLoopsError::NoRuntime)?;
        let mut loops = EventLoops {
            handles: vec![current],
            threads: Vec::new(),
        };
        for index in 1..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|source| EventLoopsError::Thread { index, source })?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("tb-loop-{index}"))
                .spawn(move || {
                    // Spawned tasks run while the thread blocks on this.
                    let _ = runtime.block_on(stopped);
                    // A blocking task stuck in a DNS lookup must not hold
                    // the daemon's exit for long.
                    runtime.shutdown_timeout(BLOCKING_GRACE);
                })
                .map_err(|source| EventLoopsError::Thread { index, source })?;
            loops.handles.push(handle);
            loops.threads.push((stop, thread));
        }
        Ok(loops)
    }

    /// The calling thread's runtime as the only loop.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, as tokio's own `spawn` does.
    pub fn this_thread() -> EventLoops {
        EventLoops {
            handles: vec![Handle::current()],
            threads: Vec::new(),
        }
    }

    /// How many loops there are (at least 1).
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least loop 0.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Each loop's runtime, loop 0 first.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for EventLoops {
    fn drop(&mut self) {
        for (stop, thread) in self.threads.drain(..) {
            let _ = stop.send(());
            if thread.join().is_err() {
                tracing::error!(target: "daemon.event_loop", "an event loop thread panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn start_needs_a_runtime() {
        assert!(matches!(
            EventLoops::start(2),
            Err(EventLoopsError::NoRuntime)
        ));
    }

    #[tokio::test]
    async fn each_loop_runs_its_tasks_on_its_own_thread() {
        let loops = EventLoops::start(3).unwrap();
        assert_eq!(loops.len(), 3);
        let mut names = Vec::new();
        for handle in loops.handles() {
            let name = handle
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap();
            names.push(name.unwrap_or_default());
        }
        let main = std::thread::current()
            .name()
            .map(str::to_owned)
            .unwrap_or_default();
        assert_eq!(names, vec![main, "tb-loop-1".into(), "tb-loop-2".into()]);
        drop(loops);
    }

    #[tokio::test]
    async fn zero_is_one_loop() {
        assert_eq!(EventLoops::start(0).unwrap().len(), 1);
    }
}
