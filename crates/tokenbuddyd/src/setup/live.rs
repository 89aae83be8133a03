//! The closing test request: one small request for the first focus model
//! through a daemon running the written config (a child `serve` in a
//! temporary home, so the user's own data directory is untouched), and
//! what it says: the answer's first words, the upstream, tokens, cost.

use std::path::Path;

use anyhow::anyhow;
use serde::Deserialize;
use tb_billing::record::{CallRecord, usd};
use tb_config::Config;
use tb_domain::{Protocol, ProviderKind};

use crate::child::{ChildConfig, ChildDaemon};

/// What to send: the model and the protocol to speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TestTarget {
    /// The model asked for.
    pub model: String,
    /// Messages for a model whose first provider is Anthropic-kind, else
    /// Chat Completions (nothing is translated).
    pub protocol: Protocol,
    /// The provider serving it natively, with where its key comes from.
    pub provider: Option<(String, String)>,
}

/// The first focus model (else the first model served) and how to ask
/// for it; `None` when the config names no model at all.
pub(crate) fn target(config: &Config) -> Option<TestTarget> {
    let model = config
        .routing
        .focus_models
        .first()
        .or_else(|| config.providers.iter().find_map(|p| p.models.first()))?
        .clone();
    let provider = config.providers.iter().find(|p| p.models.contains(&model));
    let protocol = match provider.map(|p| p.kind) {
        Some(ProviderKind::Anthropic) => Protocol::Messages,
        _ => Protocol::ChatCompletions,
    };
    let provider = provider.map(|p| {
        let key = match (&p.api_key_env, &p.api_key_file) {
            (Some(var), _) => format!("the key in ${var}"),
            (None, Some(file)) => format!("the key in {}", file.display()),
            _ => "its api_key".to_string(),
        };
        (p.id.clone(), format!("{key} and base_url {}", p.base_url))
    });
    Some(TestTarget {
        model,
        protocol,
        provider,
    })
}

/// The request: `(path, body)`.
pub(crate) fn request(t: &TestTarget) -> (&'static str, String) {
    let prompt = "Say hello to a new tokenbuddy user in one short sentence.";
    match t.protocol {
        Protocol::Messages => (
            "/v1/messages",
            serde_json::json!({
                "model": t.model,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": prompt}],
            })
            .to_string(),
        ),
        _ => (
            "/v1/chat/completions",
            serde_json::json!({
                "model": t.model,
                "messages": [{"role": "user", "content": prompt}],
            })
            .to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct ChatAnswer {
    choices: Vec<ChatChoice>,
}

#[derive(Deserialize)]
struct ChatChoice {
    message: ChatMessage,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize)]
struct MessagesAnswer {
    content: Vec<ContentBlock>,
}

#[derive(Deserialize)]
struct ContentBlock {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// The answer's text (`None`: not an answer of that protocol).
pub(crate) fn answer_text(protocol: Protocol, body: &[u8]) -> Option<String> {
    match protocol {
        Protocol::Messages => {
            let a: MessagesAnswer = serde_json::from_slice(body).ok()?;
            Some(
                a.content
                    .into_iter()
                    .filter_map(|b| b.text)
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        }
        _ => {
            let a: ChatAnswer = serde_json::from_slice(body).ok()?;
            a.choices.into_iter().next()?.message.content
        }
    }
}

/// The first `n` words of `text`, `…` when there were more.
pub(crate) fn first_words(text: &str, n: usize) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut out = words.iter().take(n).copied().collect::<Vec<_>>().join(" ");
    if words.len() > n {
        out.push('…');
    }
    out
}

/// What an error answer says (either protocol's shape), else its start.
pub(crate) fn error_message(body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorAnswer>(body) {
        Ok(e) => e.error.message,
        Err(_) => first_words(&String::from_utf8_lossy(body), 30),
    }
}

/// The line that reports a successful test.
pub(crate) fn report(
    t: &TestTarget,
    words: &str,
    upstream: &str,
    call: Option<&CallRecord>,
) -> String {
    let tokens = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    let (input, output, cost) = match call {
        Some(c) => (
            tokens(c.input_tokens),
            tokens(c.output_tokens),
            c.cost_usd_micros
                .map_or_else(|| "unknown (no price for this model)".to_string(), usd),
        ),
        None => (
            "?".into(),
            "?".into(),
            "unknown (the call record did not arrive)".into(),
        ),
    };
    format!(
        "test request: {} answered \"{words}\" via {upstream}; {input} input + {output} output tokens, cost {cost}",
        t.model
    )
}

/// Sends the test request through a child daemon running `config_file`;
/// the report line, or why it failed with a fix.
pub(crate) async fn run(config_file: &Path, t: &TestTarget) -> anyhow::Result<String> {
    let daemon = ChildDaemon::start(ChildConfig::File(config_file)).await?;
    let (path, body) = request(t);
    let answer = daemon.post_json(path, body).await;
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            daemon.stop().await;
            return Err(e);
        }
    };
    let text =
        answer_text(t.protocol, &answer.body).filter(|_| (200..300).contains(&answer.status));
    let Some(text) = text else {
        daemon.stop().await;
        let fix = match &t.provider {
            Some((id, key)) => {
                format!("check provider {id:?}: {key} (`tokenbuddyd doctor` checks the config)")
            }
            None => {
                "check registry.url and the marketplace budget (`tokenbuddyd doctor`)".to_string()
            }
        };
        return Err(anyhow!(
            "the test request for {} failed: HTTP {}: {}\nfix: {fix}; then run `tokenbuddyd setup` again (`--no-test` skips this request)",
            t.model,
            answer.status,
            error_message(&answer.body)
        ));
    };
    let calls = daemon.recent_calls(1).await;
    daemon.stop().await;
    let calls = calls?;
    let upstream = answer.upstream.as_deref().unwrap_or("(not named)");
    Ok(report(t, &first_words(&text, 8), upstream, calls.first()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap()
    }

    const TWO: &str = "[[providers]]\nid = \"an\"\nkind = \"anthropic\"\nbase_url = \"http://a/v1\"\napi_key_env = \"A\"\nmodels = [\"claude-x\"]\n[[providers]]\nid = \"oa\"\nkind = \"openai\"\nbase_url = \"http://o/v1\"\napi_key_file = \"/k\"\nmodels = [\"gpt-x\"]\n";

    #[test]
    fn the_target_is_the_first_focus_model_in_its_providers_protocol() {
        let t = target(&config(&format!(
            "[routing]\nfocus_models = [\"gpt-x\"]\n{TWO}"
        )))
        .unwrap();
        assert_eq!(
            (t.model.as_str(), t.protocol),
            ("gpt-x", Protocol::ChatCompletions)
        );
        assert_eq!(
            t.provider.as_ref().unwrap().1,
            "the key in /k and base_url http://o/v1"
        );
        let t = target(&config(TWO)).unwrap();
        assert_eq!(
            (t.model.as_str(), t.protocol),
            ("claude-x", Protocol::Messages)
        );
        assert_eq!(request(&t).0, "/v1/messages");
        assert!(target(&Config::default()).is_none());
    }

    #[test]
    fn answers_and_errors_are_read_in_either_shape() {
        let chat = br#"{"choices":[{"message":{"role":"assistant","content":"Hello there, new friend of tokens and routes!"}}]}"#;
        let text = answer_text(Protocol::ChatCompletions, chat).unwrap();
        assert_eq!(first_words(&text, 3), "Hello there, new…");
        let msg = br#"{"content":[{"type":"text","text":"Hi!"}],"usage":{}}"#;
        assert_eq!(answer_text(Protocol::Messages, msg).unwrap(), "Hi!");
        assert_eq!(answer_text(Protocol::Messages, chat), None);
        assert_eq!(
            error_message(br#"{"type":"error","error":{"type":"x","message":"bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_message(b"upstream down"), "upstream down");
    }
}
