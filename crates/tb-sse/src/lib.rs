//! Incremental SSE parsing (being written).
