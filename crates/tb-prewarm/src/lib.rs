//! Prewarm (being written).
