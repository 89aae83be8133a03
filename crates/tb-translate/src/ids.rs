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

/// Whether `id` is one [`item`] made: a Responses output-item kind, then
/// the upstream's id, then `_<index>`. OpenAI's own item ids are the kind
/// and a hex string, with no second underscore, so they never match. The
/// proxy uses this to keep made-up ids away from a native OpenAI upstream,
/// which would look them up and answer "Item with id … not found".
pub fn is_minted_item_id(id: &str) -> bool {
    let Some((kind, rest)) = id.split_once('_') else {
        return false;
    };
    let Some((_, index)) = rest.rsplit_once('_') else {
        return false;
    };
    matches!(kind, "msg" | "fc" | "ctc" | "rs")
        && !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
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

    #[test]
    fn minted_ids_are_told_from_openai_ids() {
        for (kind, upstream) in [
            ("rs", "msg_01A"),
            ("msg", "chatcmpl-9"),
            ("fc", "930c-bf"),
            ("ctc", ""),
        ] {
            assert!(
                is_minted_item_id(&item(kind, upstream, 12)),
                "{kind} {upstream}"
            );
        }
        for openai in [
            "rs_6820f383d7c08191846711c5df8233bc0ac5ba57aafcbac7",
            "msg_67ccd3acc8d48190a77525dc6de64b41",
            "fc_12",
            "rs_",
            "call_abc_1",
            "rs_msg_01A_x",
            "rs_msg_01A_",
            "",
        ] {
            assert!(!is_minted_item_id(openai), "{openai}");
        }
    }
}
