//! Translated routes in the request path (translation.md): the client's
//! body translated once per upstream protocol the plan reaches, before the
//! attempt loop starts, and what the answer's translation needs from it.
//!
//! Translating up front, not per attempt, makes a refusal (a field the
//! upstream's protocol cannot express) a decision about the plan, not an
//! attempt outcome: the routes it rules out are dropped, and only when no
//! route is left is the refusal the client's 400. An upstream never sees a
//! request it could not have been sent, and no breaker learns from it.

use bytes::Bytes;
use tb_domain::Protocol;
use tb_router::{Route, RoutePlan};
use tb_translate::{AnswerContext, Refusal, RequestOptions};

use crate::error::{ErrorCode, ProxyError};

/// The request as each translated route's protocol needs it.
#[derive(Default)]
pub(crate) struct Translations {
    bodies: Vec<TranslatedBody>,
}

struct TranslatedBody {
    protocol: Protocol,
    body: Bytes,
    answer: AnswerContext,
}

impl Translations {
    /// Translates `body` (the client's, `model` already resolved) for every
    /// foreign protocol in `plan`, dropping the routes whose translation is
    /// refused. Errs with the first refusal when no route is left.
    pub(crate) fn prepare(
        plan: &mut RoutePlan,
        client: Protocol,
        body: &[u8],
        created_unix_s: u64,
    ) -> Result<Translations, ProxyError> {
        let mut out = Translations::default();
        let mut refused: Vec<(Protocol, Refusal)> = Vec::new();
        for route in &plan.routes {
            let p = route.protocol;
            if p == client
                || out.bodies.iter().any(|b| b.protocol == p)
                || refused.iter().any(|(q, _)| *q == p)
            {
                continue;
            }
            let troute = route_of(client, route);
            match tb_translate::translate_request_with(&troute, body, &RequestOptions::default()) {
                Ok(t) => {
                    let mut answer = t.context;
                    answer.created = created_unix_s;
                    out.bodies.push(TranslatedBody {
                        protocol: p,
                        body: Bytes::from(t.body),
                        answer,
                    });
                }
                Err(refusal) => refused.push((p, refusal)),
            }
        }
        if refused.is_empty() {
            return Ok(out);
        }
        plan.routes
            .retain(|r| !refused.iter().any(|(p, _)| *p == r.protocol));
        match refused.into_iter().next() {
            Some((_, refusal)) if plan.routes.is_empty() => Err(ProxyError::new(
                ErrorCode::Untranslatable,
                format!(
                    "{refusal}; send the request to an endpoint the upstream speaks natively, or remove the field"
                ),
            )),
            _ => Ok(out),
        }
    }

    /// The body for a route over `protocol`; `None` on a native route.
    pub(crate) fn body(&self, protocol: Protocol) -> Option<&Bytes> {
        self.find(protocol).map(|b| &b.body)
    }

    /// What translating the answer of a route over `protocol` needs;
    /// `None` on a native route.
    pub(crate) fn answer(&self, protocol: Protocol) -> Option<&AnswerContext> {
        self.find(protocol).map(|b| &b.answer)
    }

    fn find(&self, protocol: Protocol) -> Option<&TranslatedBody> {
        self.bodies.iter().find(|b| b.protocol == protocol)
    }
}

/// The translation crate's view of a route.
pub(crate) fn route_of(client: Protocol, route: &Route) -> tb_translate::Route<'_> {
    tb_translate::Route {
        client,
        upstream: route.protocol,
        upstream_name: route.upstream.id.as_str(),
    }
}
