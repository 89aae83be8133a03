//! What a sink reports: for the control plane's status, `doctor` and the
//! metrics.

/// A sink's state, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkState {
    /// The queue is full: new records are dropped (and counted).
    Dropping,
    /// The latest POST failed; records wait and are retried.
    Failing,
    /// The latest POST succeeded.
    Healthy,
    /// Nothing sent yet.
    Idle,
}

impl SinkState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkState::Dropping => "dropping",
            SinkState::Failing => "failing",
            SinkState::Healthy => "healthy",
            SinkState::Idle => "idle",
        }
    }
}

/// One sink's counters and state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkStatus {
    /// `http` or `otlp`.
    pub sink: &'static str,
    /// Where it sends (no credentials, no query string).
    pub target: String,
    /// The state now.
    pub state: SinkState,
    /// Records waiting (including a batch being retried).
    pub queue_depth: u64,
    /// The queue's bound.
    pub queue_capacity: u64,
    /// Records delivered.
    pub sent: u64,
    /// POSTs that failed (each retried, or its batch rejected).
    pub failed_posts: u64,
    /// Records dropped because the queue was full.
    pub dropped: u64,
    /// Records the receiver refused for good (a 4xx other than 408/429).
    pub rejected: u64,
    /// Unix ms of the last delivered batch.
    pub last_success_at_ms: Option<i64>,
    /// The latest failure (never a header value or a query string).
    pub last_error: Option<String>,
}
