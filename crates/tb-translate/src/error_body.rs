//! Error bodies.

use crate::Route;

/// Translates an upstream error answer into the client protocol's shape.
pub fn translate_error(_route: &Route<'_>, _status: u16, body: &[u8]) -> Vec<u8> {
    body.to_vec()
}
