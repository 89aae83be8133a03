//! Whole JSON answers: the upstream's answer is read into the neutral
//! [`Answer`](crate::ir::Answer) and written in the client's protocol.
//!
//! Reading is lenient (an upstream may add members of its own; unknown
//! content kinds are skipped), writing is exact (the client protocol's
//! official SDK must accept the result).

mod read;
mod write;

use tb_domain::Protocol;

use crate::ir::{Answer, Finish, OutPart};
use crate::wire::Str;
use crate::{AnswerContext, Route};

/// An upstream answer that cannot be translated (the proxy treats it as
/// an upstream failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// The body is not the upstream protocol's answer.
    #[error("the upstream's answer is not a valid {protocol} answer: {reason}")]
    Malformed {
        /// The upstream's protocol.
        protocol: Protocol,
        /// What did not parse.
        reason: String,
    },
    /// A tool call's arguments are not a JSON object, which a Messages
    /// client requires.
    #[error("tool call {id} has arguments that are not a JSON object")]
    Arguments {
        /// The tool call's id.
        id: String,
    },
    /// The route has a protocol that is not translated.
    #[error("{0} answers are not translated")]
    NotText(Protocol),
}

/// Translates an upstream's whole JSON answer into the client's protocol.
pub fn translate_answer(route: &Route<'_>, body: &[u8]) -> Result<Vec<u8>, AnswerError> {
    translate_answer_with(route, &AnswerContext::default(), body)
}

/// [`translate_answer`] with what the request said ([`AnswerContext`],
/// from [`TranslatedRequest::context`](crate::TranslatedRequest)).
pub fn translate_answer_with(
    route: &Route<'_>,
    ctx: &AnswerContext,
    body: &[u8],
) -> Result<Vec<u8>, AnswerError> {
    if route.is_native() {
        return Ok(body.to_vec());
    }
    let mut answer = match route.upstream {
        Protocol::ChatCompletions => read::chat(body),
        Protocol::Responses => read::responses(body),
        Protocol::Messages => read::messages(body),
        Protocol::ImagesGenerations
        | Protocol::ImagesEdits
        | Protocol::Embeddings
        | Protocol::Videos => Err(AnswerError::NotText(route.upstream)),
    }?;
    apply_context(ctx, &mut answer);
    match route.client {
        Protocol::ChatCompletions => write::chat(ctx, &answer),
        Protocol::Responses => write::responses(ctx, &answer),
        Protocol::Messages => write::messages(&answer),
        Protocol::ImagesGenerations
        | Protocol::ImagesEdits
        | Protocol::Embeddings
        | Protocol::Videos => Err(AnswerError::NotText(route.client)),
    }
}

/// What the request changed about the answer: the forced structured
/// output tool becomes text, hidden reasoning is removed.
fn apply_context(ctx: &AnswerContext, answer: &mut Answer<'_>) {
    if let Some(tool) = &ctx.json_tool {
        for part in &mut answer.parts {
            if let OutPart::ToolCall {
                name, arguments, ..
            } = part
                && **name == **tool
            {
                *part = OutPart::Text(Str(std::mem::take(arguments)));
            }
        }
        if answer.finish == Some(Finish::ToolCalls) {
            answer.finish = Some(Finish::Stop);
        }
    }
    if ctx.hide_reasoning {
        answer.parts.retain(|p| !matches!(p, OutPart::Reasoning(_)));
    }
}

/// A serde error as an [`AnswerError`].
fn malformed(protocol: Protocol, err: &serde_json::Error) -> AnswerError {
    AnswerError::Malformed {
        protocol,
        reason: err.to_string(),
    }
}

#[cfg(test)]
mod tests;
