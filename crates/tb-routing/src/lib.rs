//! tb-routing (being written).
