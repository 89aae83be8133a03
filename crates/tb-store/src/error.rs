//! The one error type of the crate.

/// Why a ledger operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached (connection, I/O,
    /// constraint, SQL). The writer retries these.
    #[error("ledger database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Bringing the schema up to date failed.
    #[error("ledger migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The ledger location is unusable (bad schema name, directory that
    /// cannot be created, …).
    #[error("invalid ledger target: {0}")]
    InvalidTarget(String),
    /// A stored row does not decode into a record (written by something
    /// else, or by a newer version with values this one does not know).
    #[error("ledger row {id}: column {column}: {detail}")]
    Corrupt {
        /// The row's `id` (or key), when known.
        id: String,
        /// The column that did not decode.
        column: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A record could not be encoded for storage.
    #[error("cannot encode call record {id}: {detail}")]
    Encode {
        /// The record's id.
        id: String,
        /// What went wrong.
        detail: String,
    },
}
