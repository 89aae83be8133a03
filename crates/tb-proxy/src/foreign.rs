//! Foreign history: what a translated turn left in an agent's history that
//! the agent's next turn, taking a native route, must not carry upstream.
//!
//! A translated answer has to invent what its client protocol requires and
//! the foreign upstream never gave: Anthropic thinking with no signature,
//! Responses output items with ids no OpenAI server ever issued. The agent
//! keeps them in its history and sends them back. A native upstream
//! refuses them — Anthropic with "Invalid signature in thinking block",
//! OpenAI with "Item with id '…' not found" — and the session is stuck.
//! So on a native route they are left out (or, for an item whose content
//! is worth keeping, only its made-up id is), every other byte kept.
//!
//! Each kind has a scan that needs no parse, so the native turns of an
//! agent that never went through translation pay a `memmem` and nothing
//! else; the edit itself parses only the one member it rewrites.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::body::RawMembers;

/// Whether a Messages body holds a `"signature": ""`: thinking a
/// translated route answered with (tb-translate gives foreign reasoning an
/// empty signature, having no Anthropic one). Anthropic refuses such a
/// block ("Invalid signature in thinking block"), so when the agent's next
/// turn takes a native route the block is dropped; the text was another
/// provider's reasoning, which Anthropic could not use anyway. A scan, no
/// parse: a native Claude Code turn (signed thinking) pays a few µs.
pub(crate) fn has_unsigned_thinking(body: &[u8]) -> bool {
    const KEY: &[u8] = b"\"signature\"";
    memchr::memmem::find_iter(body, KEY).any(|at| {
        let rest = &body[at + KEY.len()..];
        let rest = trim_json_space(rest);
        match rest.split_first() {
            Some((b':', value)) => trim_json_space(value).starts_with(b"\"\""),
            _ => false,
        }
    })
}

fn trim_json_space(bytes: &[u8]) -> &[u8] {
    let skip = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &bytes[skip..]
}

/// `messages` with every empty-signature `thinking` block left out of the
/// turns' content; every other byte as it was. A turn that would be left
/// with no content at all is kept whole (Anthropic refuses an empty turn
/// as surely as the block).
pub(crate) fn write_messages_without_unsigned_thinking(
    out: &mut Vec<u8>,
    raw: &RawValue,
) -> Result<(), serde_json::Error> {
    let Ok(messages) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        out.extend_from_slice(raw.get().as_bytes());
        return Ok(());
    };
    out.push(b'[');
    for (i, message) in messages.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_turn_without_unsigned_thinking(out, message)?;
    }
    out.push(b']');
    Ok(())
}

fn write_turn_without_unsigned_thinking(
    out: &mut Vec<u8>,
    raw: &RawValue,
) -> Result<(), serde_json::Error> {
    let Ok(members) = serde_json::from_str::<RawMembers<'_>>(raw.get()) else {
        out.extend_from_slice(raw.get().as_bytes());
        return Ok(());
    };
    let blocks = members
        .0
        .iter()
        .find(|(k, _)| k == "content")
        .and_then(|(_, c)| serde_json::from_str::<Vec<&RawValue>>(c.get()).ok())
        .unwrap_or_default();
    let kept: Vec<&RawValue> = blocks
        .iter()
        .copied()
        .filter(|b| !is_unsigned_thinking(b))
        .collect();
    if kept.len() == blocks.len() || kept.is_empty() {
        out.extend_from_slice(raw.get().as_bytes());
        return Ok(());
    }
    out.push(b'{');
    for (i, (key, value)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key.as_ref())?;
        out.push(b':');
        if key == "content" {
            out.push(b'[');
            for (j, block) in kept.iter().enumerate() {
                if j > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(block.get().as_bytes());
            }
            out.push(b']');
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(())
}

/// A `thinking` block whose signature is empty or missing.
fn is_unsigned_thinking(block: &RawValue) -> bool {
    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(default, borrow)]
        signature: Option<Cow<'a, str>>,
    }
    serde_json::from_str::<Block<'_>>(block.get())
        .is_ok_and(|b| b.kind == "thinking" && b.signature.as_deref().unwrap_or("").is_empty())
}

/// Whether a Responses body may hold items a translated route made up:
/// an `"id"` whose value tb-translate minted, or a reasoning item's
/// `"encrypted_content": null` — what Codex sends back for a foreign
/// reasoning item (it drops ids itself, and we had no encrypted content
/// to give). A scan, no parse; a false positive only costs the edit,
/// which then finds nothing to change.
pub(crate) fn has_foreign_items(body: &[u8]) -> bool {
    let minted_id = memchr::memmem::find_iter(body, b"\"id\"").any(|at| {
        string_value_after(&body[at + 4..])
            .is_some_and(|v| std::str::from_utf8(v).is_ok_and(tb_translate::is_minted_item_id))
    });
    minted_id
        || memchr::memmem::find_iter(body, b"\"encrypted_content\"").any(|at| {
            let rest = trim_json_space(&body[at + 19..]);
            rest.split_first()
                .is_some_and(|(c, v)| *c == b':' && trim_json_space(v).starts_with(b"null"))
        })
}

/// The raw text of the string value after a key (`: "…"`), when it is a
/// string without escapes (an id never has any).
fn string_value_after(rest: &[u8]) -> Option<&[u8]> {
    let rest = trim_json_space(rest).strip_prefix(b":")?;
    let rest = trim_json_space(rest).strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    (rest[end] == b'"').then_some(&rest[..end])
}

/// `input` with the items a translated route made up handled: a reasoning
/// item that carries no encrypted content and whose id is missing or
/// minted is left out (there is nothing in it a native upstream can use:
/// its text was another model's); any other item with a minted id keeps
/// its content and loses the id, so the upstream reads it inline instead
/// of looking up an item it never stored. Every other byte as it was; an
/// `input` that is a string, or not an array, is kept whole.
pub(crate) fn write_input_without_foreign_items(
    out: &mut Vec<u8>,
    raw: &RawValue,
) -> Result<(), serde_json::Error> {
    let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) else {
        out.extend_from_slice(raw.get().as_bytes());
        return Ok(());
    };
    out.push(b'[');
    let mut first = true;
    for item in items {
        let fate = ItemFate::of(item);
        if fate == ItemFate::Drop {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        match fate {
            ItemFate::DropId => write_without_id(out, item)?,
            _ => out.extend_from_slice(item.get().as_bytes()),
        }
    }
    out.push(b']');
    Ok(())
}

/// What becomes of one Responses input item on a native route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemFate {
    Keep,
    DropId,
    Drop,
}

impl ItemFate {
    fn of(item: &RawValue) -> ItemFate {
        #[derive(Deserialize)]
        struct Item<'a> {
            #[serde(rename = "type", default, borrow)]
            kind: Option<Cow<'a, str>>,
            #[serde(default, borrow)]
            id: Option<Cow<'a, str>>,
            #[serde(default, borrow)]
            encrypted_content: Option<Cow<'a, str>>,
        }
        let Ok(item) = serde_json::from_str::<Item<'_>>(item.get()) else {
            return ItemFate::Keep;
        };
        let minted = item
            .id
            .as_deref()
            .is_some_and(tb_translate::is_minted_item_id);
        let reasoning = item.kind.as_deref() == Some("reasoning");
        if reasoning && item.encrypted_content.is_none() && (minted || item.id.is_none()) {
            ItemFate::Drop
        } else if minted {
            ItemFate::DropId
        } else {
            ItemFate::Keep
        }
    }
}

/// An item object with its `id` member left out.
fn write_without_id(out: &mut Vec<u8>, item: &RawValue) -> Result<(), serde_json::Error> {
    let Ok(members) = serde_json::from_str::<RawMembers<'_>>(item.get()) else {
        out.extend_from_slice(item.get().as_bytes());
        return Ok(());
    };
    out.push(b'{');
    let kept = members.0.iter().filter(|(k, _)| k != "id");
    for (i, (key, value)) in kept.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, key.as_ref())?;
        out.push(b':');
        out.extend_from_slice(value.get().as_bytes());
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_thinking_is_found_by_a_scan_in_any_spacing() {
        assert!(has_unsigned_thinking(br#"{"signature":""}"#));
        assert!(has_unsigned_thinking(b"{\"signature\" :\n \"\"}"));
        assert!(!has_unsigned_thinking(br#"{"signature":"EqQBCkYI"}"#));
        assert!(!has_unsigned_thinking(br#"{"text":"no signature here"}"#));
        // A key quoted inside a string value is no key, but a harmless
        // false positive: the edit then finds nothing to drop.
        assert!(!has_unsigned_thinking(br#"{"signature":"a","b":""}"#));
        assert!(!has_unsigned_thinking(br#"{"x":"\"signature\""}"#));
    }

    #[test]
    fn foreign_items_are_found_by_a_scan_in_any_spacing() {
        // Minted ids: the upstream's id inside, an index at the end.
        assert!(has_foreign_items(br#"{"input":[{"id":"rs_msg_01A_0"}]}"#));
        assert!(has_foreign_items(b"{\"id\" :\n \"msg_chatcmpl-9_1\"}"));
        assert!(has_foreign_items(br#"{"id": "fc_930c60df-bf64_2"}"#));
        // Codex's echo of a foreign reasoning item.
        assert!(has_foreign_items(br#"{"encrypted_content":null}"#));
        assert!(has_foreign_items(b"{\"encrypted_content\" : null}"));
        // OpenAI's own ids and encrypted reasoning: nothing to do.
        assert!(!has_foreign_items(
            br#"{"input":[{"type":"reasoning","id":"rs_6820f383d7c08191846711c5df8233bc","encrypted_content":"gAAAAB"}]}"#
        ));
        assert!(!has_foreign_items(br#"{"id":"msg_abc"}"#));
        assert!(!has_foreign_items(br#"{"id":"call_1","x":"\"id\""}"#));
        assert!(!has_foreign_items(br#"{"id":"rs_\u0041_0"}"#));
        assert!(!has_foreign_items(br#"{"id":7}"#));
    }

    fn rewrite(input: &str) -> String {
        let raw: &RawValue = serde_json::from_str(input).unwrap();
        let mut out = Vec::new();
        write_input_without_foreign_items(&mut out, raw).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn foreign_reasoning_is_dropped_and_minted_ids_are_left_out() {
        let input = r#"[{"role":"user","content":"hi"},{"type":"reasoning","id":"rs_msg_01A_0","summary":[{"type":"summary_text","text":"foreign"}]},{"type":"message","id":"msg_msg_01A_1","role":"assistant","content":[{"type":"output_text","text":"A"}]},{"type":"function_call","id":"fc_msg_01A_2","call_id":"toolu_1","name":"f","arguments":"{}"},{"type":"reasoning","summary":[],"encrypted_content":null},{"type":"reasoning","id":"rs_68ab12","summary":[],"encrypted_content":"gAAA"},{"type":"reasoning","id":"rs_68ab13","summary":[]},{"type":"function_call_output","call_id":"toolu_1","output":"ok"}]"#;
        assert_eq!(
            rewrite(input),
            r#"[{"role":"user","content":"hi"},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"A"}]},{"type":"function_call","call_id":"toolu_1","name":"f","arguments":"{}"},{"type":"reasoning","id":"rs_68ab12","summary":[],"encrypted_content":"gAAA"},{"type":"reasoning","id":"rs_68ab13","summary":[]},{"type":"function_call_output","call_id":"toolu_1","output":"ok"}]"#
        );
    }

    #[test]
    fn input_without_foreign_items_is_kept_byte_for_byte() {
        for input in [
            r#"[{"role":"user" , "content":"hi"},{"type":"reasoning","id":"rs_1","encrypted_content":"x"}]"#,
            r#""just a string""#,
            r#"[1,"two",null]"#,
            r#"[]"#,
        ] {
            assert_eq!(rewrite(input), input);
        }
    }
}
