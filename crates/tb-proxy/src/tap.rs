//! The taps that watch answers on their way to the client.

use bytes::Bytes;

use crate::stream::Tap;

/// The tap for one answer, chosen by its content type and protocol.
pub(crate) enum ResponseTap {
    /// Nothing to read (errors, unknown content types).
    Opaque,
}

impl ResponseTap {
    /// A tap that only forwards.
    pub(crate) fn opaque() -> ResponseTap {
        ResponseTap::Opaque
    }
}

impl Tap for ResponseTap {
    fn on_data(&mut self, data: Bytes) -> Bytes {
        data
    }

    fn saw_content(&self) -> bool {
        false
    }
}
