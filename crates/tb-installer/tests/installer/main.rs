//! Golden tests per client over real-looking files, and the I/O rules
//! (all-or-nothing, backups, redaction), all under tempfile
//! dirs (never the real home).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    unreachable_pub,
    dead_code
)]

mod claude_code;
mod claude_desktop;
mod codex;
mod hermes;
mod io;
mod openclaw;
mod opencode;
mod support;
