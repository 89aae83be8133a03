//! tb-pool (being written).
