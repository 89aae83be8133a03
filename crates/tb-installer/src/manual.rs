//! Clients shown as instructions only: there is no file tokenbuddy could
//! edit safely for them.

use crate::contract::Target;

/// A client configured by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualClient {
    /// Cursor: its requests come from Cursor's cloud, so localhost cannot
    /// work.
    Cursor,
    /// Cline (VS Code extension): settings UI.
    Cline,
    /// Continue: `~/.continue/config.yaml`.
    Continue,
    /// Aider: `~/.aider.conf.yml`.
    Aider,
}

impl ManualClient {
    /// Every manual client.
    pub const ALL: [ManualClient; 4] = [
        ManualClient::Cursor,
        ManualClient::Cline,
        ManualClient::Continue,
        ManualClient::Aider,
    ];

    /// Stable id.
    pub fn id(self) -> &'static str {
        match self {
            ManualClient::Cursor => "cursor",
            ManualClient::Cline => "cline",
            ManualClient::Continue => "continue",
            ManualClient::Aider => "aider",
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            ManualClient::Cursor => "Cursor",
            ManualClient::Cline => "Cline",
            ManualClient::Continue => "Continue",
            ManualClient::Aider => "Aider",
        }
    }

    /// The client with this id.
    pub fn by_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.id() == id)
    }
}

/// Quotes a YAML scalar (JSON strings are valid YAML double-quoted scalars).
fn q(s: &str) -> String {
    crate::jsonc::quote(s)
}

/// How to point `client` at the proxy by hand, with the exact snippet.
pub fn instructions(client: ManualClient, target: &Target) -> String {
    let v1 = target.v1();
    let (token, model) = (&target.token, &target.model);
    match client {
        ManualClient::Cursor => format!(
            "Cursor cannot use tokenbuddy on this machine: Cursor sends model requests from its own \
             cloud, not from your computer, so a localhost address such as {v1} is unreachable for \
             it. tokenbuddy does not configure Cursor. (Making the proxy reachable from the internet \
             would expose your access token and is not supported.)\n"
        ),
        ManualClient::Cline => format!(
            "Cline: open Cline's settings (the gear icon) and set\n\
             \x20 API Provider: OpenAI Compatible\n\
             \x20 Base URL:     {v1}\n\
             \x20 API Key:      {token}\n\
             \x20 Model ID:     {model}\n"
        ),
        ManualClient::Continue => format!(
            "Continue: add this model to ~/.continue/config.yaml (under the existing `models:` list \
             if there is one):\n\n\
             models:\n\
             \x20 - name: tokenbuddy {model}\n\
             \x20   provider: openai\n\
             \x20   model: {}\n\
             \x20   apiBase: {}\n\
             \x20   apiKey: {}\n\
             \x20   roles:\n\
             \x20     - chat\n\
             \x20     - edit\n\
             \x20     - apply\n",
            q(model),
            q(&v1),
            q(token)
        ),
        ManualClient::Aider => format!(
            "Aider: put these lines in ~/.aider.conf.yml:\n\n\
             openai-api-base: {}\n\
             openai-api-key: {}\n\
             model: {}\n",
            q(&v1),
            q(token),
            q(&format!("openai/{model}"))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets() {
        let t = Target::new("http://127.0.0.1:8787/", "tb_tok", "gpt-5");
        let c = instructions(ManualClient::Continue, &t);
        assert!(c.contains("~/.continue/config.yaml"));
        assert!(c.contains("    apiBase: \"http://127.0.0.1:8787/v1\"\n"));
        let a = instructions(ManualClient::Aider, &t);
        assert!(a.contains("~/.aider.conf.yml"));
        assert!(a.contains("openai-api-base: \"http://127.0.0.1:8787/v1\"\nopenai-api-key: \"tb_tok\"\nmodel: \"openai/gpt-5\"\n"));
        let cur = instructions(ManualClient::Cursor, &t);
        assert!(cur.contains("cloud") && cur.contains("localhost"));
        assert!(instructions(ManualClient::Cline, &t).contains("OpenAI Compatible"));
        assert_eq!(ManualClient::by_id("aider"), Some(ManualClient::Aider));
    }
}
