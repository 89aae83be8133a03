//! Placeholder, replaced by the real bench.
#![allow(missing_docs)]
fn main() {}
