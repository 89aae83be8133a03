//! The price table (being written).
