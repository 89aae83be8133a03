//! Client-facing ids. The crate has no randomness: every id is derived
//! from the upstream's own id, so the same answer always translates to
//! the same bytes and a client can still find the upstream's id inside.

use std::borrow::Cow;

/// `id` with the client protocol's prefix (`msg_`, `chatcmpl-`, `resp_`),
/// unless it already has it.
pub(crate) fn prefixed<'a>(prefix: &str, id: &'a str) -> Cow<'a, str> {
    if id.starts_with(prefix) {
        Cow::Borrowed(id)
    } else {
        Cow::Owned(format!("{prefix}{id}"))
    }
}

/// The id of output item `index` of a Responses answer: `msg_…`, `fc_…`,
/// `rs_…`, built from the response id.
pub(crate) fn item(kind: &str, response_id: &str, index: usize) -> String {
    let base = response_id.strip_prefix("resp_").unwrap_or(response_id);
    format!("{kind}_{base}_{index}")
}

/// Makes a tool-call id acceptable to Anthropic (`^[a-zA-Z0-9_-]+$`):
/// other characters become `_`. Applied to a call and to its result
/// alike, so they still match.
pub(crate) fn anthropic_id(id: &str) -> std::borrow::Cow<'_, str> {
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.chars().all(ok) {
        return std::borrow::Cow::Borrowed(id);
    }
    let cleaned: String = id.chars().map(|c| if ok(c) { c } else { '_' }).collect();
    if cleaned.is_empty() {
        std::borrow::Cow::Borrowed("call")
    } else {
        std::borrow::Cow::Owned(cleaned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_upstream_id_inside() {
        assert_eq!(prefixed("msg_", "chatcmpl-1"), "msg_chatcmpl-1");
        assert_eq!(prefixed("msg_", "msg_01"), "msg_01");
        assert_eq!(item("fc", "resp_abc", 2), "fc_abc_2");
        assert_eq!(item("msg", "chatcmpl-9", 0), "msg_chatcmpl-9_0");
    }
}
