//! The model index: which upstreams serve a model over a protocol, and how a
//! client's model name resolves to the id sent upstream.
//!
//! Today the index is built from the manual providers of the config; the
//! marketplace registry (sellers) feeds the same index later. The crate is
//! pure: it takes values, returns values, does no I/O and knows no clock,
//! so every resolution rule is tested exhaustively here.
//!
//! ```
//! use std::collections::BTreeMap;
//! use tb_domain::{Protocol, UpstreamId};
//! use tb_registry::{IndexedUpstream, ModelIndex};
//!
//! let index = ModelIndex::new(
//!     vec![IndexedUpstream {
//!         id: UpstreamId::new("openrouter"),
//!         models: vec!["deepseek-chat".into()],
//!         protocols: vec![Protocol::ChatCompletions],
//!     }],
//!     BTreeMap::from([("ds".to_string(), "deepseek-chat".to_string())]),
//! );
//! let found = index.lookup("tokenbuddy/ds", Protocol::ChatCompletions);
//! assert_eq!(found.model, "deepseek-chat");
//! assert_eq!(found.upstreams, vec![0]);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use tb_domain::{Protocol, UpstreamId};

/// What the index needs to know about one upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedUpstream {
    /// The upstream's id (also usable as a `p/` model prefix).
    pub id: UpstreamId,
    /// Model ids it serves, exactly as sent upstream.
    pub models: Vec<String>,
    /// Protocols it speaks.
    pub protocols: Vec<Protocol>,
}

/// How a client's model name became the upstream model id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolutionRule {
    /// Used as given (after stripping `tokenbuddy/`, if present).
    Exact,
    /// Mapped by `[models.aliases]`.
    Alias,
    /// A leading `<upstream id>/` was stripped and the request pinned to it.
    UpstreamPrefix,
}

/// The answer to "who serves this model over this protocol?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The model id to send upstream.
    pub model: String,
    /// How it was resolved.
    pub rule: ResolutionRule,
    /// Indices (into the upstream list, in preference order) that serve
    /// `model` over the protocol. Empty means no route.
    pub upstreams: Vec<usize>,
    /// How many upstreams were considered (for the `model_not_found` message).
    pub considered: usize,
    /// Protocols over which the model *is* served, when it is not served over
    /// the requested one (lets the error say "use /v1/messages instead").
    pub other_protocols: Vec<Protocol>,
}

/// An immutable index from (model, protocol) to upstreams.
#[derive(Debug, Clone, Default)]
pub struct ModelIndex {
    upstreams: Vec<IndexedUpstream>,
    aliases: BTreeMap<String, String>,
    by_model: HashMap<String, Vec<usize>>,
    upstream_by_id: HashMap<String, usize>,
}

/// The prefix a client may put before any model name.
const TOKENBUDDY_PREFIX: &str = "tokenbuddy/";

impl ModelIndex {
    /// Builds the index. Upstream order is preference order.
    pub fn new(upstreams: Vec<IndexedUpstream>, aliases: BTreeMap<String, String>) -> ModelIndex {
        let mut by_model: HashMap<String, Vec<usize>> = HashMap::new();
        let mut upstream_by_id = HashMap::new();
        for (i, u) in upstreams.iter().enumerate() {
            upstream_by_id.entry(u.id.as_str().to_string()).or_insert(i);
            for m in &u.models {
                let list = by_model.entry(m.clone()).or_default();
                if !list.contains(&i) {
                    list.push(i);
                }
            }
        }
        ModelIndex {
            upstreams,
            aliases,
            by_model,
            upstream_by_id,
        }
    }

    /// The upstreams, in preference order.
    pub fn upstreams(&self) -> &[IndexedUpstream] {
        &self.upstreams
    }

    /// Every model some upstream serves, sorted and de-duplicated.
    pub fn models(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.by_model.keys().map(String::as_str).collect();
        set.into_iter().collect()
    }

    /// Resolves a client model name and finds the upstreams serving it over
    /// `protocol`. Rules, in order: a leading `tokenbuddy/` is stripped; an
    /// alias maps the name; a leading `p/` is stripped (and the request pinned
    /// to upstream `p`) only when `p` is an upstream id **and** the full name
    /// is not itself a listed model.
    pub fn lookup(&self, requested: &str, protocol: Protocol) -> Lookup {
        let name = requested
            .strip_prefix(TOKENBUDDY_PREFIX)
            .unwrap_or(requested);
        let (model, rule, pinned) = if let Some(target) = self.aliases.get(name) {
            (target.as_str(), ResolutionRule::Alias, None)
        } else if self.by_model.contains_key(name) {
            (name, ResolutionRule::Exact, None)
        } else {
            match name.split_once('/') {
                Some((prefix, rest)) if !rest.is_empty() => match self.upstream_by_id.get(prefix) {
                    Some(&i) => (rest, ResolutionRule::UpstreamPrefix, Some(i)),
                    None => (name, ResolutionRule::Exact, None),
                },
                _ => (name, ResolutionRule::Exact, None),
            }
        };

        let serving: &[usize] = self.by_model.get(model).map(Vec::as_slice).unwrap_or(&[]);
        let eligible = |i: &&usize| pinned.is_none_or(|p| p == **i);
        let upstreams: Vec<usize> = serving
            .iter()
            .filter(eligible)
            .filter(|&&i| self.upstreams[i].protocols.contains(&protocol))
            .copied()
            .collect();
        let other_protocols = if upstreams.is_empty() {
            let set: BTreeSet<Protocol> = serving
                .iter()
                .filter(eligible)
                .flat_map(|&i| self.upstreams[i].protocols.iter().copied())
                .filter(|p| *p != protocol)
                .collect();
            set.into_iter().collect()
        } else {
            Vec::new()
        };
        let considered = match pinned {
            Some(_) => 1,
            None => self.upstreams.len(),
        };
        Lookup {
            model: model.to_string(),
            rule,
            upstreams,
            considered,
            other_protocols,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(id: &str, models: &[&str], protocols: &[Protocol]) -> IndexedUpstream {
        IndexedUpstream {
            id: UpstreamId::new(id),
            models: models.iter().map(|m| m.to_string()).collect(),
            protocols: protocols.to_vec(),
        }
    }

    fn index() -> ModelIndex {
        use Protocol::*;
        ModelIndex::new(
            vec![
                up(
                    "openrouter",
                    &[
                        "deepseek-chat",
                        "deepseek/deepseek-chat",
                        "claude-sonnet-4-5",
                    ],
                    &[ChatCompletions, Responses],
                ),
                up("anthropic", &["claude-sonnet-4-5"], &[Messages]),
                up("backup", &["deepseek-chat"], &[ChatCompletions]),
                up("deepseek", &["other"], &[ChatCompletions]),
            ],
            BTreeMap::from([
                ("claude-sonnet".to_string(), "claude-sonnet-4-5".to_string()),
                ("openrouter/alias".to_string(), "deepseek-chat".to_string()),
            ]),
        )
    }

    fn check(
        requested: &str,
        protocol: Protocol,
        model: &str,
        rule: ResolutionRule,
        ups: &[usize],
    ) {
        let got = index().lookup(requested, protocol);
        assert_eq!(
            (got.model.as_str(), got.rule, got.upstreams.as_slice()),
            (model, rule, ups),
            "{requested} over {protocol}"
        );
    }

    #[test]
    fn resolution_rules() {
        use Protocol::*;
        use ResolutionRule::*;
        check(
            "deepseek-chat",
            ChatCompletions,
            "deepseek-chat",
            Exact,
            &[0, 2],
        );
        check(
            "tokenbuddy/deepseek-chat",
            ChatCompletions,
            "deepseek-chat",
            Exact,
            &[0, 2],
        );
        check("claude-sonnet", Messages, "claude-sonnet-4-5", Alias, &[1]);
        check(
            "tokenbuddy/claude-sonnet",
            ChatCompletions,
            "claude-sonnet-4-5",
            Alias,
            &[0],
        );
        // A listed full id stays whole even though `deepseek` is an upstream id.
        check(
            "deepseek/deepseek-chat",
            ChatCompletions,
            "deepseek/deepseek-chat",
            Exact,
            &[0],
        );
        // `p/` is stripped and pinned when p is an upstream and the full id is unlisted.
        check(
            "backup/deepseek-chat",
            ChatCompletions,
            "deepseek-chat",
            UpstreamPrefix,
            &[2],
        );
        check(
            "anthropic/claude-sonnet-4-5",
            Messages,
            "claude-sonnet-4-5",
            UpstreamPrefix,
            &[1],
        );
        check(
            "anthropic/claude-sonnet-4-5",
            ChatCompletions,
            "claude-sonnet-4-5",
            UpstreamPrefix,
            &[],
        );
        // Aliases win over prefixes.
        check(
            "openrouter/alias",
            ChatCompletions,
            "deepseek-chat",
            Alias,
            &[0, 2],
        );
        // Unknown prefixes and names are kept as they are.
        check(
            "nobody/deepseek-chat",
            ChatCompletions,
            "nobody/deepseek-chat",
            Exact,
            &[],
        );
        check("gpt-9", ChatCompletions, "gpt-9", Exact, &[]);
        check("backup/", ChatCompletions, "backup/", Exact, &[]);
        check("", ChatCompletions, "", Exact, &[]);
    }

    #[test]
    fn diagnostics_for_missing_routes() {
        let got = index().lookup("claude-sonnet-4-5", Protocol::ImagesGenerations);
        assert!(got.upstreams.is_empty());
        assert_eq!(got.considered, 4);
        assert_eq!(
            got.other_protocols,
            vec![
                Protocol::ChatCompletions,
                Protocol::Responses,
                Protocol::Messages
            ]
        );
        let got = index().lookup("backup/deepseek-chat", Protocol::Responses);
        assert_eq!(got.considered, 1);
        assert_eq!(got.other_protocols, vec![Protocol::ChatCompletions]);
    }

    #[test]
    fn models_are_listed_once_sorted() {
        assert_eq!(
            index().models(),
            vec![
                "claude-sonnet-4-5",
                "deepseek-chat",
                "deepseek/deepseek-chat",
                "other"
            ]
        );
    }
}
