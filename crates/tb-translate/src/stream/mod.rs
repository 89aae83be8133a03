//! Streams.

use crate::Route;

/// Translates an upstream SSE stream into the client's protocol.
#[derive(Debug)]
pub struct StreamTranslator {}

impl StreamTranslator {
    /// A translator for one answer.
    pub fn new(_route: &Route<'_>, _model: &str) -> Self {
        StreamTranslator {}
    }
    /// Feeds upstream bytes.
    pub fn push(&mut self, _chunk: &[u8], _out: &mut Vec<u8>) {}
    /// The upstream ended.
    pub fn finish(&mut self, _out: &mut Vec<u8>) {}
}
