//! Golden files: one directory per row of the mapping table in
//! docs/translation.md (`tests/golden/<row>/`). Each `<case>.in` starts
//! with a header line naming what it is and in which protocol:
//!
//! - `request <client>`: a client body, translated for both other
//!   protocols as upstreams;
//! - `answer <upstream>`, `stream <upstream>`: an upstream's JSON answer or
//!   SSE stream, translated for both other protocols as clients;
//! - `error <upstream> <status>`: an upstream error body, likewise.
//!
//! The rest of the file is the input. Each direction's result is compared
//! with `<case>.<other protocol>.out` (JSON re-indented, member order
//! kept; streams as they are; a refusal as `REFUSED <field>: <reason>`).
//! `UPDATE_GOLDEN=1 cargo test -p tb-translate --test golden` rewrites
//! the `.out` files; review the diff before committing it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};

use tb_domain::Protocol;
use tb_translate::{
    AnswerContext, Route, StreamTranslator, translate_answer, translate_error, translate_request,
};

const TEXT: [Protocol; 3] = [
    Protocol::ChatCompletions,
    Protocol::Responses,
    Protocol::Messages,
];

#[test]
fn golden_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases = Vec::new();
    collect(&root, &mut cases);
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden cases under {}",
        root.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let text = fs::read_to_string(case).unwrap();
        let (header, input) = text.split_once('\n').unwrap_or((&text, ""));
        for (other, got) in run(header, input) {
            let out = case.with_extension(format!("{other}.out"));
            if update {
                fs::write(&out, &got).unwrap();
                continue;
            }
            let want = fs::read_to_string(&out).unwrap_or_default();
            if want != got {
                failures.push(format!(
                    "{}\n--- want\n{want}\n--- got\n{got}",
                    out.display()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden file(s) differ (UPDATE_GOLDEN=1 to rewrite):\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "in") {
            out.push(path);
        }
    }
}

fn protocol(name: &str) -> Protocol {
    TEXT.into_iter()
        .find(|p| p.as_str() == name)
        .unwrap_or_else(|| panic!("unknown protocol {name}"))
}

/// Runs one case for both other protocols: `(other protocol, output)`.
fn run(header: &str, input: &str) -> Vec<(Protocol, String)> {
    let words: Vec<&str> = header.split_whitespace().collect();
    let (kind, own) = (words[0], protocol(words[1]));
    let others = TEXT.into_iter().filter(|p| *p != own);
    others
        .map(|other| {
            let out = match kind {
                "request" => request(own, other, input),
                "answer" => json(
                    &route(other, own),
                    translate_answer(&route(other, own), input.as_bytes()),
                ),
                "stream" => stream(&route(other, own), input),
                "error" => {
                    let status = words[2].parse().unwrap();
                    pretty(
                        &String::from_utf8(translate_error(
                            &route(other, own),
                            status,
                            input.as_bytes(),
                        ))
                        .unwrap(),
                    )
                }
                _ => panic!("unknown kind {kind}"),
            };
            (other, out)
        })
        .collect()
}

fn route(client: Protocol, upstream: Protocol) -> Route<'static> {
    Route {
        client,
        upstream,
        upstream_name: "golden-upstream",
    }
}

fn request(client: Protocol, upstream: Protocol, input: &str) -> String {
    match translate_request(&route(client, upstream), input.as_bytes()) {
        Ok(t) => pretty(&String::from_utf8(t.body).unwrap()),
        Err(r) => format!("REFUSED {}: {}\n", r.field, r.reason),
    }
}

fn json<E: std::fmt::Display>(_: &Route<'_>, out: Result<Vec<u8>, E>) -> String {
    match out {
        Ok(body) => pretty(&String::from_utf8(body).unwrap()),
        Err(e) => format!("ERROR {e}\n"),
    }
}

fn stream(route: &Route<'_>, input: &str) -> String {
    let ctx = AnswerContext {
        created: 1_700_000_000,
        ..AnswerContext::default()
    };
    let mut t = StreamTranslator::with_context(route, "req-model", &ctx);
    let mut out = Vec::new();
    t.push(input.as_bytes(), &mut out);
    t.finish(&mut out);
    String::from_utf8(out).unwrap()
}

/// Re-indents compact JSON two spaces per level, keeping member order and
/// string contents exactly (so equal output means equal bytes).
fn pretty(json: &str) -> String {
    let mut out = String::with_capacity(json.len() * 2);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = json.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out.push('\n');
    out
}

#[test]
fn pretty_keeps_order_and_strings() {
    assert_eq!(
        pretty(r#"{"b":[1,{}],"a":"x, {y}: \"z\"","c":[]}"#),
        "{\n  \"b\": [\n    1,\n    {}\n  ],\n  \"a\": \"x, {y}: \\\"z\\\"\",\n  \"c\": []\n}\n"
    );
}
