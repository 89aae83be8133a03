//! The ledger: every call record, stored in SQLite (default, one file) or
//! PostgreSQL (a team's shared ledger), and written off the request path.
//!
//! Why a crate of its own: it is the only place that knows SQL. Everything
//! else hands it [`CallRecord`](tb_billing::record::CallRecord)s and asks
//! it the questions the product needs (recent calls, usage by model /
//! upstream / day, the focus set of models, spend vs savings), so the two
//! backends can share one schema, one set of queries and one test suite.
//!
//! - [`Ledger`]: opens either backend (an `enum` of pools, not `sqlx::Any`,
//!   so each keeps its native types), runs the embedded migrations
//!   (`migrations/sqlite`, `migrations/postgres`) and answers queries.
//!   Money is `BIGINT` micros with NULL meaning unknown (never summed as
//!   zero); times are unix milliseconds UTC.
//! - Seller tokens ([`TokenRow`]): [`Ledger::save_token`] (upsert per
//!   seller and payment method), [`Ledger::load_tokens`],
//!   [`Ledger::delete_token`]. Only ciphertext, nonce and fingerprint are
//!   stored; tb-seller encrypts.
//! - Purchases ([`PurchaseRow`], [`PurchaseEvent`]): every quote and
//!   completion, and the credit wasted on bought tokens, written through a
//!   second [`LedgerWriter`] over [`PurchaseLog`];
//!   [`Ledger::credit_history`] rebuilds the credit tracker at start-up and
//!   [`Ledger::wasted_credit_by_seller`] reports waste per seller.
//! - Provider probes ([`ProbeRun`]): [`Ledger::save_probe`] stores one
//!   `tokenbuddyd probe` run, [`Ledger::latest_probes`] the latest per
//!   upstream × model, which routing trusts or demotes by.
//! - Member keys ([`MemberKeyRow`]): [`Ledger::create_member_key`],
//!   [`Ledger::member_keys`], [`Ledger::active_member_keys`] (what the
//!   proxy accepts), [`Ledger::revoke_member_keys`]; hashes only.
//!   [`Ledger::admit_member`] admits a member's request in one atomic
//!   conditional statement (budget, requests and tokens per minute, with
//!   the estimated cost and tokens of calls in flight reserved); the
//!   writer settles each reservation with the call's actual cost in the
//!   record's transaction, and [`Ledger::expire_member_reservations`]
//!   gives back those of a daemon that died.
//! - Team mode ([`TeamStore`], PostgreSQL only, from
//!   [`Ledger::team_store`]): seller tokens shared by a team's daemons,
//!   purchase leases ([`TeamStore::try_lock`], [`TeamStore::finish`]) and
//!   the team's purchase budget ([`TeamStore::reserve`]).
//! - [`LedgerWriter`]: a bounded queue and one task that commits batches
//!   (≤ 256 records or 50 ms) in single transactions. The request path only
//!   calls [`LedgerSender::record`], which never waits: a full queue hands
//!   the record back and counts it as dropped. A batch the task has taken
//!   is retried with backoff until the database takes it, and shutdown
//!   drains the queue.
//!
//! ```no_run
//! use std::time::Duration;
//! use tb_store::{GroupBy, Ledger, LedgerTarget, LedgerWriter};
//!
//! # async fn demo(record: tb_billing::record::CallRecord) -> Result<(), tb_store::StoreError> {
//! let ledger = Ledger::open(&LedgerTarget::parse("/tmp/tb/ledger.db")).await?;
//! let (sender, writer) = LedgerWriter::spawn(ledger.clone(), 65_536);
//!
//! // On the request path: never blocks.
//! if let Err(dropped) = sender.record(record) {
//!     tracing::warn!(target: "ledger.dropped", "{dropped}");
//! }
//!
//! // At shutdown: everything queued is committed.
//! let report = writer.shutdown(Duration::from_secs(10)).await;
//! assert!(report.is_complete());
//!
//! let newest = ledger.recent_calls(20, None).await?;
//! let by_model = ledger.usage_summary(0, GroupBy::Model).await?;
//! # let _ = (newest, by_model);
//! # Ok(())
//! # }
//! ```

mod codec;
mod error;
mod ledger;
mod target;
mod writer;

pub use error::StoreError;
pub use ledger::{BudgetReset, TeamSummary};
pub use ledger::{
    CallCursor, CreditHistory, GroupBy, KeySelector, Ledger, MAX_SERIES_SAMPLES, MemberAdmission,
    MemberCounters, MemberKeyRow, ProbeCheckRow, ProbeRun, PurchaseEvent, PurchaseLog, PurchaseRow,
    PurchaseStatus, SellerCreditHistory, SellerWaste, SeriesSamples, StoredPurchase, TokenRow,
    Totals, UsageRow, VideoJob, WasteReason, WasteRow, member_pg_round_trips,
};
pub use ledger::{
    LockAttempt, Reservation, TeamBudget, TeamLock, TeamStore, budget_after, lease_left,
    settled_balance,
};
pub use target::{Backend, LedgerTarget};
pub use writer::{
    BatchSink, DropReason, Dropped, LedgerItem, LedgerSender, LedgerWriter, ShutdownReport,
    WriteFailure, WriterHandle, WriterHealth, WriterOptions,
};
