//! Whole JSON answers.

use crate::{AnswerContext, Route};

/// An upstream answer that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("the upstream's answer cannot be translated: {0}")]
pub struct AnswerError(String);

/// Translates an upstream's whole JSON answer into the client's protocol.
pub fn translate_answer(route: &Route<'_>, body: &[u8]) -> Result<Vec<u8>, AnswerError> {
    translate_answer_with(route, &AnswerContext::default(), body)
}

/// [`translate_answer`] with what the request said ([`AnswerContext`]).
pub fn translate_answer_with(
    _route: &Route<'_>,
    _ctx: &AnswerContext,
    body: &[u8],
) -> Result<Vec<u8>, AnswerError> {
    Ok(body.to_vec())
}
