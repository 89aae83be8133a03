//! The ledger (being written).
