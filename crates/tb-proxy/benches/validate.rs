//! Request validation cost on a 1 KB chat body and a 200 KB Claude-Code-like
//! Messages body (system prompt, 30 tool definitions, a conversation with
//! file contents read by tools: long strings full of `\n`, `\t` and `\"`
//! escapes, some non-ASCII). Budget: ≤ 20 µs for 200 KB. The serde_json
//! rows are the baseline: `IgnoredAny` (syntax only, no UTF-8 check inside
//! strings), `Value` (a full tree) and the former probe (three members as
//! `RawValue`, the rest skipped).
//!
//! The `prompt_hash` group times the call record's prompt hash over the
//! same bodies, against the `Value` round trip it replaced.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tb_domain::Protocol;
use tb_proxy::validate::validate;

const PROSE: &str = "You are an interactive CLI tool that helps users with software engineering tasks. \
Use the instructions below and the tools available to you to assist the user. IMPORTANT: never guess URLs. \
When the user asks about “naïve” approaches, explain trade-offs — briefly — and prefer editing existing files. ";

const CODE: &[&str] = &[
    "use std::collections::HashMap;",
    "",
    "/// Parses the \"config\" section and returns the map.",
    "pub fn parse(input: &str) -> Result<HashMap<String, String>, Error> {",
    "    let mut out = HashMap::new();",
    "    for line in input.lines().filter(|l| !l.trim().is_empty()) {",
    "        let (k, v) = line.split_once('=').ok_or(Error::Syntax)?;",
    "        out.insert(k.trim().to_string(), v.trim().to_string()); // café",
    "    }",
    "    Ok(out)",
    "}",
];

/// `cat -n`-style file content, as Claude Code's Read tool returns it.
fn file_content(lines: usize) -> String {
    (0..lines)
        .map(|i| format!("{:>6}\t{}\n", i + 1, CODE[i % CODE.len()]))
        .collect()
}

fn tool(i: usize) -> Value {
    let props: serde_json::Map<String, Value> = (0..5)
        .map(|p| {
            (
                format!("param_{p}"),
                json!({"type": if p % 2 == 0 { "string" } else { "integer" },
                       "description": format!("Parameter {p}: {}", &PROSE[..120])}),
            )
        })
        .collect();
    json!({
        "name": format!("Tool{i}"),
        "description": PROSE.repeat(4) + "\n\nUsage:\n- Example: `tool --flag \"value\"`\n",
        "input_schema": {"type": "object", "properties": props, "required": ["param_0"],
                          "additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"},
    })
}

/// A Claude-Code-like Messages request of at least `target` bytes.
fn claude_code_body(target: usize) -> Vec<u8> {
    let tools: Vec<Value> = (0..30).map(tool).collect();
    let mut messages = Vec::new();
    let mut body = Vec::new();
    let mut turn = 0;
    while body.len() < target {
        messages.push(json!({"role": "user", "content": [{"type": "text", "text": format!("Please look at src/file{turn}.rs and fix the bug — merci 🙏")}]}));
        messages.push(json!({"role": "assistant", "content": [
            {"type": "text", "text": "I'll read the file first."},
            {"type": "tool_use", "id": format!("toolu_{turn:024}"), "name": "Read", "input": {"file_path": format!("/home/u/p/src/file{turn}.rs")}},
        ]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{turn:024}"), "content": file_content(60)},
        ]}));
        turn += 1;
        body = serde_json::to_vec(&json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": true,
            "system": [{"type": "text", "text": PROSE.repeat(60), "cache_control": {"type": "ephemeral"}}],
            "tools": tools,
            "messages": messages,
            "metadata": {"user_id": "user_abc"},
        }))
        .unwrap();
    }
    body
}

fn small_body() -> Vec<u8> {
    let body = serde_json::to_vec(&json!({
        "model": "gpt-4o-mini",
        "stream": true,
        "stream_options": {"include_usage": true},
        "temperature": 0.2,
        "messages": [
            {"role": "system", "content": PROSE},
            {"role": "user", "content": PROSE.repeat(2) + "Résumé: what does \"parse\" do?\n"},
        ],
    }))
    .unwrap();
    assert!((900..1300).contains(&body.len()), "{}", body.len());
    body
}

/// The probe before strict validation (body.rs, until this bench's commit).
#[derive(Deserialize)]
struct OldProbe<'a> {
    #[serde(borrow, default)]
    #[allow(dead_code)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    #[allow(dead_code)]
    stream_options: Option<&'a RawValue>,
}

fn bench(c: &mut Criterion) {
    let bodies = [
        ("1k", Protocol::ChatCompletions, small_body()),
        ("200k", Protocol::Messages, claude_code_body(200 * 1024)),
    ];
    let mut g = c.benchmark_group("validate");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, protocol, body) in &bodies {
        validate(body, *protocol).unwrap();
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("tokenbuddy", name), body, |b, body| {
            b.iter(|| validate(black_box(body), *protocol).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("std_from_utf8", name), body, |b, body| {
            b.iter(|| std::str::from_utf8(black_box(body)).is_ok())
        });
        g.bench_with_input(
            BenchmarkId::new("serde_ignored_any", name),
            body,
            |b, body| b.iter(|| serde_json::from_slice::<IgnoredAny>(black_box(body)).unwrap()),
        );
        g.bench_with_input(
            BenchmarkId::new("serde_old_probe", name),
            body,
            |b, body| b.iter(|| serde_json::from_slice::<OldProbe<'_>>(black_box(body)).is_ok()),
        );
        g.bench_with_input(BenchmarkId::new("serde_value", name), body, |b, body| {
            b.iter(|| serde_json::from_slice::<Value>(black_box(body)).unwrap())
        });
    }
    g.finish();

    // The prompt hash every call record carries (billing.md), over the same
    // bodies: `tokenbuddy` writes the canonical JSON directly; `via_value`
    // is how it was computed before (parse into a `Value`, write it back).
    let mut g = c.benchmark_group("prompt_hash");
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(2));
    for (name, protocol, body) in &bodies {
        assert_eq!(
            tb_billing::record::prompt_hash(*protocol, body),
            prompt_hash_via_value(*protocol, body)
        );
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_with_input(BenchmarkId::new("tokenbuddy", name), body, |b, body| {
            b.iter(|| tb_billing::record::prompt_hash(*protocol, black_box(body)).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("via_value", name), body, |b, body| {
            b.iter(|| prompt_hash_via_value(*protocol, black_box(body)).unwrap())
        });
    }
    g.finish();
}

/// The prompt hash as it was computed before: the prompt fields parsed into
/// `Value`s and written back compact.
fn prompt_hash_via_value(protocol: Protocol, body: &[u8]) -> Option<String> {
    use sha2::{Digest, Sha256};
    #[derive(Deserialize)]
    struct PromptFields<'a> {
        #[serde(borrow, default)]
        messages: Option<&'a RawValue>,
        #[serde(borrow, default)]
        system: Option<&'a RawValue>,
    }
    let fields: PromptFields<'_> = serde_json::from_slice(body).ok()?;
    let value = |raw: Option<&RawValue>| serde_json::from_str::<Value>(raw?.get()).ok();
    let mut hasher = Sha256::new();
    match protocol {
        Protocol::Messages => {
            let system = match fields.system {
                Some(raw) => value(Some(raw))?,
                None => Value::Null,
            };
            serde_json::to_writer(&mut hasher, &(system, value(fields.messages)?)).ok()?;
        }
        _ => serde_json::to_writer(&mut hasher, &value(fields.messages)?).ok()?,
    }
    Some(format!("{:x}", hasher.finalize()))
}

criterion_group!(benches, bench);
criterion_main!(benches);
