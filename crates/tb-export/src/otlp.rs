//! Call records as OpenTelemetry traces (OTLP protobuf): one span per
//! request, a child span per upstream attempt, with the GenAI semantic
//! convention attributes. Pure: records in, an `ExportTraceServiceRequest`
//! out; the worker POSTs it.
//!
//! Ids: a request that carried a valid `traceparent` joins the client's
//! trace (same trace id, the client's span as parent); otherwise the trace
//! id is derived from the record id. Span ids are derived from the record
//! id too (SHA-256), so the same record always makes the same spans.
//! Attempt spans are laid end to end from the request's start: the record
//! keeps each attempt's latency, not its start.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use sha2::{Digest, Sha256};
use tb_billing::record::CallRecord;
use tb_domain::{Outcome, Protocol};

/// The request for a batch of records.
pub fn trace_request<'a>(
    records: impl IntoIterator<Item = &'a CallRecord>,
) -> ExportTraceServiceRequest {
    let spans = records.into_iter().flat_map(spans_of).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    text("service.name", "tokenbuddyd"),
                    text("service.version", env!("CARGO_PKG_VERSION")),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "tokenbuddy".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The request span, then one child per attempt.
pub fn spans_of(r: &CallRecord) -> Vec<Span> {
    let trace_id = r.trace_parent.map_or_else(
        || derive::<16>(&["trace", &r.id]).to_vec(),
        |t| t.trace_id.to_vec(),
    );
    let parent = r
        .trace_parent
        .map(|t| t.parent_id.to_vec())
        .unwrap_or_default();
    let request_span = derive::<8>(&["span", &r.id]).to_vec();
    let start = nanos(r.started_at_ms, 0);
    let operation = operation(r.protocol);
    let provider = system(r.upstream_protocol.unwrap_or(r.protocol));
    let mut attributes = vec![
        text("gen_ai.operation.name", operation),
        text("gen_ai.request.model", &r.requested_model),
        // The older and the current semantic-convention name.
        text("gen_ai.system", provider),
        text("gen_ai.provider.name", provider),
        text("tokenbuddy.request_id", &r.request_id),
        text("tokenbuddy.call_id", &r.id),
        text("tokenbuddy.outcome", r.outcome.as_str()),
        boolean("tokenbuddy.failed_over", r.failed_over),
        boolean("tokenbuddy.stream", r.stream),
    ];
    if !r.model.is_empty() {
        attributes.push(text("gen_ai.response.model", &r.model));
    }
    if let Some(w) = &r.winner {
        attributes.push(text("tokenbuddy.upstream", w));
    }
    let ints = [
        ("gen_ai.usage.input_tokens", r.input_tokens.map(saturate)),
        ("gen_ai.usage.output_tokens", r.output_tokens.map(saturate)),
        ("tokenbuddy.cost_usd_micros", r.cost_usd_micros),
        ("tokenbuddy.saved_usd_micros", r.saved_usd_micros),
    ];
    attributes.extend(ints.into_iter().filter_map(|(k, v)| v.map(|v| int(k, v))));
    let mut spans = vec![Span {
        trace_id: trace_id.clone(),
        span_id: request_span.clone(),
        parent_span_id: parent,
        name: format!("{operation} {}", r.requested_model),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: start,
        end_time_unix_nano: nanos(r.started_at_ms, r.latency_ms),
        attributes,
        status: Some(status(r.ok, r.outcome.as_str())),
        ..Default::default()
    }];
    let mut offset_ms = 0;
    for (i, a) in r.attempts.iter().enumerate() {
        let mut attributes = vec![
            text("gen_ai.request.model", &r.model),
            text("tokenbuddy.upstream", &a.upstream),
            text("tokenbuddy.attempt.outcome", a.outcome.as_str()),
            int(
                "tokenbuddy.attempt.index",
                i64::try_from(i).unwrap_or(i64::MAX),
            ),
        ];
        if let Some(s) = a.status {
            attributes.push(int("http.response.status_code", i64::from(s)));
        }
        spans.push(Span {
            trace_id: trace_id.clone(),
            span_id: derive::<8>(&["span", &r.id, &i.to_string()]).to_vec(),
            parent_span_id: request_span.clone(),
            name: format!("attempt {}", a.upstream),
            kind: SpanKind::Client as i32,
            start_time_unix_nano: nanos(r.started_at_ms, offset_ms),
            end_time_unix_nano: nanos(r.started_at_ms, offset_ms + a.latency_ms),
            attributes,
            status: Some(status(a.outcome == Outcome::Ok, a.outcome.as_str())),
            ..Default::default()
        });
        offset_ms += a.latency_ms;
    }
    spans
}

/// The GenAI operation name.
fn operation(p: Protocol) -> &'static str {
    match p {
        Protocol::ChatCompletions | Protocol::Responses | Protocol::Messages => "chat",
        Protocol::Embeddings => "embeddings",
        Protocol::ImagesGenerations => "image_generation",
        Protocol::ImagesEdits => "image_edit",
        Protocol::Videos => "video_generation",
    }
}

/// `gen_ai.system` / `gen_ai.provider.name`: the API family the upstream was spoken to in.
fn system(p: Protocol) -> &'static str {
    match p {
        Protocol::Messages => "anthropic",
        _ => "openai",
    }
}

fn status(ok: bool, message: &str) -> Status {
    if ok {
        Status {
            code: StatusCode::Ok as i32,
            ..Default::default()
        }
    } else {
        Status {
            code: StatusCode::Error as i32,
            message: message.into(),
        }
    }
}

/// Unix nanoseconds of `ms + offset_ms` (0 for a time before 1970).
fn nanos(ms: i64, offset_ms: u64) -> u64 {
    u64::try_from(ms)
        .unwrap_or(0)
        .saturating_add(offset_ms)
        .saturating_mul(1_000_000)
}

fn saturate(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The first `N` bytes of SHA-256 over the parts (never all zero).
fn derive<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut out = [0u8; N];
    out.copy_from_slice(&digest[..N]);
    if out.iter().all(|b| *b == 0) {
        out[N - 1] = 1;
    }
    out
}

fn value(v: any_value::Value) -> Option<AnyValue> {
    Some(AnyValue { value: Some(v) })
}

fn text(key: &str, v: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(any_value::Value::StringValue(v.into())),
        ..Default::default()
    }
}

fn int(key: &str, v: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(any_value::Value::IntValue(v)),
        ..Default::default()
    }
}

fn boolean(key: &str, v: bool) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: value(any_value::Value::BoolValue(v)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_billing::record::Attempt;
    use tb_domain::TraceParent;

    fn record() -> CallRecord {
        let mut r = crate::fixture::record();
        r.protocol = Protocol::Messages;
        r.requested_model = "claude-x".into();
        r.model = "claude-x-1".into();
        r.stream = true;
        r.winner = Some("b".into());
        r.failed_over = true;
        r.latency_ms = 50;
        for (up, status, outcome, ms) in [
            ("a", 500, Outcome::ServerError, 10),
            ("b", 200, Outcome::Ok, 15),
        ] {
            r.attempts.push(Attempt {
                upstream: up.into(),
                status: Some(status),
                outcome,
                error_class: (outcome != Outcome::Ok).then_some(outcome),
                latency_ms: ms,
            });
        }
        r
    }

    fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        s.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn a_failed_over_call_is_a_request_span_with_two_attempt_children() {
        let mut r = record();
        let tp =
            TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        r.trace_parent = Some(tp);
        let spans = spans_of(&r);
        assert_eq!(spans.len(), 3);
        let root = &spans[0];
        assert_eq!(root.trace_id, tp.trace_id.to_vec());
        assert_eq!(root.parent_span_id, tp.parent_id.to_vec());
        assert_eq!(root.name, "chat claude-x");
        assert_eq!(root.start_time_unix_nano, 1_000_000_000);
        assert_eq!(root.end_time_unix_nano, 1_050_000_000);
        use any_value::Value::{IntValue, StringValue};
        assert_eq!(
            attr(root, "gen_ai.request.model"),
            Some(&StringValue("claude-x".into()))
        );
        assert_eq!(
            attr(root, "gen_ai.response.model"),
            Some(&StringValue("claude-x-1".into()))
        );
        for key in ["gen_ai.system", "gen_ai.provider.name"] {
            assert_eq!(attr(root, key), Some(&StringValue("anthropic".into())));
        }
        assert_eq!(attr(root, "gen_ai.usage.input_tokens"), Some(&IntValue(7)));
        assert_eq!(attr(root, "gen_ai.usage.output_tokens"), Some(&IntValue(3)));
        assert_eq!(
            attr(root, "tokenbuddy.cost_usd_micros"),
            Some(&IntValue(12))
        );
        for (child, (up, start, end, code)) in spans[1..].iter().zip([
            ("a", 1_000, 1_010, StatusCode::Error),
            ("b", 1_010, 1_025, StatusCode::Ok),
        ]) {
            assert_eq!(child.trace_id, root.trace_id);
            assert_eq!(child.parent_span_id, root.span_id);
            assert_ne!(child.span_id, root.span_id);
            assert_eq!(
                attr(child, "tokenbuddy.upstream"),
                Some(&StringValue(up.into()))
            );
            assert_eq!(child.start_time_unix_nano, start * 1_000_000);
            assert_eq!(child.end_time_unix_nano, end * 1_000_000);
            assert_eq!(child.status.as_ref().unwrap().code, code as i32);
        }
        assert_ne!(spans[1].span_id, spans[2].span_id);
    }

    #[test]
    fn without_traceparent_the_trace_is_derived_and_a_root() {
        let r = record();
        let a = spans_of(&r);
        assert!(a[0].parent_span_id.is_empty());
        assert_eq!(a[0].trace_id.len(), 16);
        assert_eq!(a[0].span_id.len(), 8);
        assert_eq!(spans_of(&r)[0].trace_id, a[0].trace_id, "deterministic");
        let req = trace_request([&r, &r]);
        assert_eq!(req.resource_spans[0].scope_spans[0].spans.len(), 6);
    }
}
