//! Wiring between the proxy's call records and the ledger.

use std::path::Path;

use anyhow::Context;
use tb_billing::record::CallRecord;
use tb_proxy::CallSink;
use tb_store::{Ledger, LedgerSender, LedgerTarget};

/// The proxy's sink: the ledger writer's bounded queue. Never blocks.
pub(crate) struct LedgerSink(pub(crate) LedgerSender);

impl CallSink for LedgerSink {
    fn submit(&self, record: CallRecord) -> Result<(), Box<CallRecord>> {
        self.0.record(record).map_err(|dropped| dropped.record)
    }
}

/// Opens the configured ledger (SQLite in the data dir by default).
pub(crate) async fn open(
    url: Option<&str>,
    data_dir: &Path,
) -> anyhow::Result<(Ledger, LedgerTarget)> {
    let target = LedgerTarget::from_config(url, data_dir);
    let ledger = Ledger::open(&target)
        .await
        .with_context(|| format!("opening the ledger at {target} (ledger.url)"))?;
    Ok((ledger, target))
}
