//! The model index: `(model, protocol, payment method)` → upstreams in
//! preference order, and the name resolution rules. Pure.
//!
//! Layout: each distinct model id gets a dense number; the routes of all
//! models live in one flat array, sliced per `(model, protocol, payment
//! method)` by an offset table (compressed sparse rows). Building is two
//! linear passes with no per-route allocation; a lookup hashes the model id
//! once (no allocation for the key) and reads at most three slices.

use std::collections::{BTreeMap, HashMap};

use tb_domain::{PaymentMethod, Protocol, UpstreamId};

use crate::doc::SellerEntry;

/// Every payment method, in the order diagnostics list them.
pub const ALL_PAYMENT_METHODS: [PaymentMethod; 3] = [
    PaymentMethod::ProviderKey,
    PaymentMethod::Mock,
    PaymentMethod::Clawtip,
];

/// The order in which a model's protocols are tried for prewarming.
pub const PREWARM_ORDER: [Protocol; 5] = [
    Protocol::ChatCompletions,
    Protocol::Messages,
    Protocol::Responses,
    Protocol::ImagesGenerations,
    Protocol::Embeddings,
];

/// The forward-path protocols plus [`Protocol::ImagesEdits`] and
/// [`Protocol::Videos`].
const PROTOCOLS: usize = Protocol::ALL.len() + 2;
const PAYMENTS: usize = ALL_PAYMENT_METHODS.len();
/// Route lists per model: one per (protocol, payment method).
const KEYS: usize = PROTOCOLS * PAYMENTS;

/// Dense protocol number, in [`Protocol::ALL`] order (which is also
/// `Protocol`'s `Ord` order), then [`Protocol::ImagesEdits`] and
/// [`Protocol::Videos`].
fn protocol_idx(p: Protocol) -> usize {
    match p {
        Protocol::ChatCompletions => 0,
        Protocol::Responses => 1,
        Protocol::Messages => 2,
        Protocol::ImagesGenerations => 3,
        Protocol::Embeddings => 4,
        Protocol::ImagesEdits => 5,
        Protocol::Videos => 6,
    }
}

/// Dense payment method number, in [`ALL_PAYMENT_METHODS`] order.
fn payment_idx(m: PaymentMethod) -> usize {
    match m {
        PaymentMethod::ProviderKey => 0,
        PaymentMethod::Mock => 1,
        PaymentMethod::Clawtip => 2,
    }
}

fn payment_mask(payments: &[PaymentMethod]) -> usize {
    payments.iter().fold(0, |m, p| m | 1 << payment_idx(*p))
}

/// What the index needs to know about one upstream (a manual provider or a
/// marketplace seller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedUpstream {
    /// The upstream's id (also usable as a `p/` model prefix).
    pub id: UpstreamId,
    /// Model ids it serves, exactly as sent upstream.
    pub models: Vec<String>,
    /// Protocols it speaks.
    pub protocols: Vec<Protocol>,
    /// How it can be paid: `[ProviderKey]` for a manual provider, the
    /// seller's methods for a seller. An upstream with none is listed (in
    /// [`ModelIndex::models`] and [`ModelIndex::sellers_of`]) but never
    /// routed to.
    pub payment_methods: Vec<PaymentMethod>,
}

impl IndexedUpstream {
    /// A manual provider: paid with the user's own key.
    pub fn manual(
        id: UpstreamId,
        models: Vec<String>,
        protocols: Vec<Protocol>,
    ) -> IndexedUpstream {
        IndexedUpstream {
            id,
            models,
            protocols,
            payment_methods: vec![PaymentMethod::ProviderKey],
        }
    }

    /// A marketplace seller, as the registry describes it.
    pub fn from_seller(seller: &SellerEntry) -> IndexedUpstream {
        IndexedUpstream {
            id: seller.id.clone(),
            models: seller.models.clone(),
            protocols: seller.protocols.clone(),
            payment_methods: seller.payment_methods.clone(),
        }
    }

    /// The route keys (protocol × payment method, de-duplicated) it serves.
    fn keys(&self) -> KeySet {
        let mut protocols = 0usize;
        let mut set = KeySet {
            keys: [0; KEYS],
            len: 0,
        };
        for p in &self.protocols {
            let pi = protocol_idx(*p);
            if protocols & (1 << pi) != 0 {
                continue;
            }
            protocols |= 1 << pi;
            let mut payments = 0usize;
            for m in &self.payment_methods {
                let mi = payment_idx(*m);
                if payments & (1 << mi) != 0 {
                    continue;
                }
                payments |= 1 << mi;
                set.keys[set.len] = (pi * PAYMENTS + mi) as u8;
                set.len += 1;
            }
        }
        set
    }
}

struct KeySet {
    keys: [u8; KEYS],
    len: usize,
}

impl KeySet {
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.keys[..self.len].iter().map(|k| usize::from(*k))
    }
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

/// The answer to "who serves this model over this protocol, paid in one of
/// these ways?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// The model id to send upstream.
    pub model: String,
    /// How it was resolved.
    pub rule: ResolutionRule,
    /// Indices (into the upstream list, in preference order, each once)
    /// that serve `model` over the protocol with one of the payment
    /// methods. Empty means no route.
    pub upstreams: Vec<usize>,
    /// How many upstreams were considered (for the `model_not_found`
    /// message): those accepting one of the payment methods, or 1 when the
    /// name pinned an upstream.
    pub considered: usize,
    /// Protocols over which the model *is* served (with the same payment
    /// methods), when it is not served over the requested one (lets the
    /// error say "use /v1/messages instead"). Sorted.
    pub other_protocols: Vec<Protocol>,
    /// Other payment methods with which the model is served over the
    /// requested protocol, when none of the requested ones is (lets the
    /// error say "only sellers taking `clawtip` serve it").
    pub other_payment_methods: Vec<PaymentMethod>,
}

/// An immutable index from (model, protocol, payment method) to upstreams.
#[derive(Debug, Clone, Default)]
pub struct ModelIndex {
    upstreams: Vec<IndexedUpstream>,
    aliases: BTreeMap<String, String>,
    /// Model id → dense model number.
    model_ids: HashMap<String, u32>,
    /// Routes of model `m` under key `k`:
    /// `routes[route_start[m * KEYS + k]..route_start[m * KEYS + k + 1]]`,
    /// ascending upstream indices.
    route_start: Vec<u32>,
    routes: Vec<u32>,
    /// Every upstream listing model `m`, whatever the protocol or payment:
    /// `serving[serving_start[m]..serving_start[m + 1]]`, ascending.
    serving_start: Vec<u32>,
    serving: Vec<u32>,
    upstream_by_id: HashMap<String, usize>,
    /// How many upstreams accept a payment method of each payment mask.
    considered_by_mask: [usize; 1 << PAYMENTS],
}

/// The prefix a client may put before any model name.
const TOKENBUDDY_PREFIX: &str = "tokenbuddy/";

/// Exclusive prefix sum, in place: counts (shifted by one) become offsets.
fn prefix_sum(counts: &mut [u32]) {
    let mut acc = 0u32;
    for c in counts.iter_mut() {
        acc += *c;
        *c = acc;
    }
}

impl ModelIndex {
    /// Builds the index. Upstream order is preference order (manual
    /// providers first in mode `both`, then sellers with the default seller
    /// first).
    pub fn new(upstreams: Vec<IndexedUpstream>, aliases: BTreeMap<String, String>) -> ModelIndex {
        let total_listed: usize = upstreams.iter().map(|u| u.models.len()).sum();
        let mut model_ids: HashMap<String, u32> = HashMap::new();
        // Pass 1: number the models; per upstream, its distinct model numbers.
        let mut listed: Vec<u32> = Vec::with_capacity(total_listed);
        let mut listed_start: Vec<usize> = Vec::with_capacity(upstreams.len() + 1);
        // Per model: 1 + the last upstream that listed it (de-duplication).
        let mut last_seen: Vec<usize> = Vec::new();
        let mut upstream_by_id = HashMap::with_capacity(upstreams.len());
        let mut considered_by_mask = [0usize; 1 << PAYMENTS];
        for (i, u) in upstreams.iter().enumerate() {
            upstream_by_id.entry(u.id.as_str().to_string()).or_insert(i);
            let own = payment_mask(&u.payment_methods);
            for (mask, n) in considered_by_mask.iter_mut().enumerate() {
                if own & mask != 0 {
                    *n += 1;
                }
            }
            listed_start.push(listed.len());
            for m in &u.models {
                let id = match model_ids.get(m.as_str()) {
                    Some(&id) => id,
                    None => {
                        let id = model_ids.len() as u32;
                        model_ids.insert(m.clone(), id);
                        last_seen.push(0);
                        id
                    }
                };
                if last_seen[id as usize] != i + 1 {
                    last_seen[id as usize] = i + 1;
                    listed.push(id);
                }
            }
        }
        listed_start.push(listed.len());
        drop(last_seen);

        // Pass 2: count, then place, each upstream under each of its keys.
        let n_models = model_ids.len();
        let mut route_start = vec![0u32; n_models * KEYS + 1];
        let mut serving_start = vec![0u32; n_models + 1];
        let keys: Vec<KeySet> = upstreams.iter().map(IndexedUpstream::keys).collect();
        for (i, ks) in keys.iter().enumerate() {
            for &m in &listed[listed_start[i]..listed_start[i + 1]] {
                let m = m as usize;
                serving_start[m + 1] += 1;
                for k in ks.iter() {
                    route_start[m * KEYS + k + 1] += 1;
                }
            }
        }
        prefix_sum(&mut route_start);
        prefix_sum(&mut serving_start);
        let mut routes = vec![0u32; route_start[n_models * KEYS] as usize];
        let mut serving = vec![0u32; serving_start[n_models] as usize];
        let mut route_next = route_start.clone();
        let mut serving_next = serving_start.clone();
        for (i, ks) in keys.iter().enumerate() {
            let i32 = i as u32;
            for &m in &listed[listed_start[i]..listed_start[i + 1]] {
                let m = m as usize;
                let slot = &mut serving_next[m];
                serving[*slot as usize] = i32;
                *slot += 1;
                for k in ks.iter() {
                    let slot = &mut route_next[m * KEYS + k];
                    routes[*slot as usize] = i32;
                    *slot += 1;
                }
            }
        }

        ModelIndex {
            upstreams,
            aliases,
            model_ids,
            route_start,
            routes,
            serving_start,
            serving,
            upstream_by_id,
            considered_by_mask,
        }
    }

    /// The upstreams, in preference order.
    pub fn upstreams(&self) -> &[IndexedUpstream] {
        &self.upstreams
    }

    /// The index of the upstream with this id (the first, if repeated).
    pub fn upstream_index(&self, id: &str) -> Option<usize> {
        self.upstream_by_id.get(id).copied()
    }

    /// Every model some upstream lists, sorted and de-duplicated (for
    /// `/v1/models`).
    pub fn models(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.model_ids.keys().map(String::as_str).collect();
        all.sort_unstable();
        all
    }

    /// Every upstream listing `model` (an exact model id, e.g.
    /// [`Lookup::model`]) whatever the protocol or payment method, in
    /// preference order: "the model exists, but not over `messages`".
    pub fn sellers_of(&self, model: &str) -> Vec<usize> {
        match self.model_ids.get(model) {
            Some(&m) => {
                let m = m as usize;
                let (a, b) = (self.serving_start[m], self.serving_start[m + 1]);
                self.serving[a as usize..b as usize]
                    .iter()
                    .map(|&i| i as usize)
                    .collect()
            }
            None => Vec::new(),
        }
    }

    /// The protocol `model` (an exact model id) can be prewarmed on: the
    /// first of [`PREWARM_ORDER`] that some upstream routes it over, with
    /// any payment method.
    pub fn prewarm_protocol(&self, model: &str) -> Option<Protocol> {
        let m = *self.model_ids.get(model)?;
        let all = (1 << PAYMENTS) - 1;
        PREWARM_ORDER
            .into_iter()
            .find(|p| self.serves(m, *p, all, None))
    }

    /// The routes of model number `m` under key `k`.
    fn routes(&self, m: u32, k: usize) -> &[u32] {
        let at = m as usize * KEYS + k;
        let (a, b) = (self.route_start[at], self.route_start[at + 1]);
        &self.routes[a as usize..b as usize]
    }

    /// The route lists of model `m` over `protocol` for each payment method
    /// in `mask`.
    fn lists(&self, m: u32, protocol: Protocol, mask: usize) -> impl Iterator<Item = &[u32]> + '_ {
        let base = protocol_idx(protocol) * PAYMENTS;
        (0..PAYMENTS)
            .filter(move |pi| mask & (1 << pi) != 0)
            .map(move |pi| self.routes(m, base + pi))
            .filter(|l| !l.is_empty())
    }

    /// Whether some (or the pinned) upstream routes `m` over `protocol` with
    /// a method of `mask`.
    fn serves(&self, m: u32, protocol: Protocol, mask: usize, pinned: Option<usize>) -> bool {
        let mut lists = self.lists(m, protocol, mask);
        match pinned {
            None => lists.next().is_some(),
            Some(p) => lists.any(|l| l.binary_search(&(p as u32)).is_ok()),
        }
    }

    /// The upstreams routing `m` over `protocol` with a method of `mask`,
    /// ascending and de-duplicated.
    fn collect(
        &self,
        m: u32,
        protocol: Protocol,
        mask: usize,
        pinned: Option<usize>,
    ) -> Vec<usize> {
        if let Some(p) = pinned {
            return if self.serves(m, protocol, mask, Some(p)) {
                vec![p]
            } else {
                Vec::new()
            };
        }
        let mut lists: Vec<&[u32]> = self.lists(m, protocol, mask).collect();
        match lists.len() {
            0 => Vec::new(),
            1 => lists[0].iter().map(|&i| i as usize).collect(),
            _ => {
                // Merge ascending lists, keeping each upstream once.
                let mut out = Vec::with_capacity(lists.iter().map(|l| l.len()).max().unwrap_or(0));
                while let Some(min) = lists.iter().filter_map(|l| l.first()).min().copied() {
                    out.push(min as usize);
                    for l in &mut lists {
                        if l.first() == Some(&min) {
                            *l = &l[1..];
                        }
                    }
                }
                out
            }
        }
    }

    /// Resolves a client model name and finds the upstreams serving it over
    /// `protocol` with any of `payments` (none: no route). Rules, in order:
    /// a leading `tokenbuddy/` is stripped; an alias maps the name; a
    /// leading `p/` is stripped (and the request pinned to upstream `p`)
    /// only when `p` is an upstream id **and** the full name is not itself
    /// a listed model.
    pub fn lookup(
        &self,
        requested: &str,
        protocol: Protocol,
        payments: &[PaymentMethod],
    ) -> Lookup {
        let name = requested
            .strip_prefix(TOKENBUDDY_PREFIX)
            .unwrap_or(requested);
        let (model, rule, pinned) = if let Some(target) = self.aliases.get(name) {
            (target.as_str(), ResolutionRule::Alias, None)
        } else if self.model_ids.contains_key(name) {
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

        let mask = payment_mask(payments);
        let m = self.model_ids.get(model).copied();
        let upstreams = m.map_or_else(Vec::new, |m| self.collect(m, protocol, mask, pinned));
        let (other_protocols, other_payment_methods) = match m {
            Some(m) if upstreams.is_empty() => (
                Protocol::ALL
                    .into_iter()
                    .filter(|p| *p != protocol && self.serves(m, *p, mask, pinned))
                    .collect(),
                ALL_PAYMENT_METHODS
                    .into_iter()
                    .filter(|pm| {
                        let bit = 1 << payment_idx(*pm);
                        mask & bit == 0 && self.serves(m, protocol, bit, pinned)
                    })
                    .collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        let considered = match pinned {
            Some(_) => 1,
            None => self.considered_by_mask[mask],
        };
        Lookup {
            model: model.to_string(),
            rule,
            upstreams,
            considered,
            other_protocols,
            other_payment_methods,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use PaymentMethod::{Clawtip, Mock, ProviderKey};

    fn up(id: &str, models: &[&str], protocols: &[Protocol]) -> IndexedUpstream {
        IndexedUpstream::manual(
            UpstreamId::new(id),
            models.iter().map(|m| m.to_string()).collect(),
            protocols.to_vec(),
        )
    }

    fn seller(
        id: &str,
        models: &[&str],
        protocols: &[Protocol],
        payments: &[PaymentMethod],
    ) -> IndexedUpstream {
        IndexedUpstream {
            payment_methods: payments.to_vec(),
            ..up(id, models, protocols)
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
        let got = index().lookup(requested, protocol, &[ProviderKey]);
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
        let got = index().lookup(
            "claude-sonnet-4-5",
            Protocol::ImagesGenerations,
            &[ProviderKey],
        );
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
        assert!(got.other_payment_methods.is_empty());
        let got = index().lookup("backup/deepseek-chat", Protocol::Responses, &[ProviderKey]);
        assert_eq!(got.considered, 1);
        assert_eq!(got.other_protocols, vec![Protocol::ChatCompletions]);
        // Unknown models have no other protocols.
        let got = index().lookup("gpt-9", Protocol::ChatCompletions, &[ProviderKey]);
        assert!(got.other_protocols.is_empty() && got.other_payment_methods.is_empty());
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

    /// Manual providers first, then sellers (default first), as the proxy
    /// builds it in mode `both`.
    fn mixed() -> ModelIndex {
        use Protocol::*;
        ModelIndex::new(
            vec![
                up("manual", &["m1", "m2"], &[ChatCompletions]),
                seller(
                    "s-default",
                    &["m1", "m1", "m3"],
                    &[ChatCompletions, Messages],
                    &[Mock],
                ),
                seller(
                    "s-both",
                    &["m1", "m3"],
                    &[ChatCompletions, ChatCompletions],
                    &[Mock, Clawtip, Mock],
                ),
                seller(
                    "s-claw",
                    &["m1", "m2"],
                    &[ChatCompletions, Responses],
                    &[Clawtip],
                ),
                seller("s-nopay", &["m1", "m4"], &[ChatCompletions], &[]),
                seller("s-img", &["m4"], &[ImagesGenerations, Responses], &[Mock]),
                // A repeated id: listed, but `s-both/…` pins the first one.
                seller("s-both", &["m2"], &[ChatCompletions], &[Mock]),
            ],
            BTreeMap::new(),
        )
    }

    #[test]
    fn payment_methods_filter_and_keep_order_without_duplicates() {
        use Protocol::*;
        let ix = mixed();
        let cases: &[(&str, Protocol, &[PaymentMethod], &[usize])] = &[
            ("m1", ChatCompletions, &[ProviderKey], &[0]),
            ("m1", ChatCompletions, &[Mock], &[1, 2]),
            ("m1", ChatCompletions, &[Clawtip], &[2, 3]),
            ("m1", ChatCompletions, &[Mock, Clawtip], &[1, 2, 3]),
            ("m1", ChatCompletions, &[Clawtip, Mock], &[1, 2, 3]),
            ("m1", ChatCompletions, &[Clawtip, Mock, Clawtip], &[1, 2, 3]),
            ("m1", ChatCompletions, &ALL_PAYMENT_METHODS, &[0, 1, 2, 3]),
            ("m1", ChatCompletions, &[], &[]),
            ("m1", Messages, &ALL_PAYMENT_METHODS, &[1]),
            ("m2", ChatCompletions, &ALL_PAYMENT_METHODS, &[0, 3, 6]),
            ("m2", ChatCompletions, &[Mock], &[6]),
            ("m3", ChatCompletions, &[Mock, Clawtip], &[1, 2]),
            ("m4", ChatCompletions, &ALL_PAYMENT_METHODS, &[]),
            ("m4", ImagesGenerations, &[Mock], &[5]),
            // Pinning still honours the payment methods.
            ("s-claw/m1", ChatCompletions, &[Clawtip], &[3]),
            ("s-claw/m1", ChatCompletions, &[Mock], &[]),
            ("s-both/m2", ChatCompletions, &[Mock], &[]),
            ("s-both/m1", ChatCompletions, &[Clawtip], &[2]),
        ];
        for (model, protocol, payments, want) in cases {
            let got = ix.lookup(model, *protocol, payments);
            assert_eq!(
                got.upstreams, *want,
                "{model} over {protocol} with {payments:?}"
            );
        }
    }

    #[test]
    fn considered_counts_upstreams_taking_a_requested_payment_method() {
        use Protocol::*;
        let ix = mixed();
        let n = |p: &[PaymentMethod]| ix.lookup("nothing", ChatCompletions, p).considered;
        assert_eq!(n(&[ProviderKey]), 1);
        assert_eq!(n(&[Mock]), 4);
        assert_eq!(n(&[Clawtip]), 2);
        assert_eq!(n(&[Mock, Clawtip]), 5);
        assert_eq!(n(&ALL_PAYMENT_METHODS), 6);
        assert_eq!(n(&[]), 0);
    }

    #[test]
    fn diagnostics_name_other_protocols_and_payment_methods() {
        use Protocol::*;
        let ix = mixed();
        // Served over messages only by a mock seller.
        let got = ix.lookup("m1", Messages, &[Clawtip]);
        assert!(got.upstreams.is_empty());
        assert_eq!(got.other_protocols, vec![ChatCompletions, Responses]);
        assert_eq!(got.other_payment_methods, vec![Mock]);
        // The other protocols only count routes with the requested methods.
        let got = ix.lookup("m1", Messages, &[ProviderKey]);
        assert_eq!(got.other_protocols, vec![ChatCompletions]);
        assert_eq!(got.other_payment_methods, vec![Mock]);
        // Nothing else is said when there is a route.
        let got = ix.lookup("m1", ChatCompletions, &[Mock]);
        assert!(got.other_protocols.is_empty() && got.other_payment_methods.is_empty());
        // Pinned: only what the pinned upstream does.
        let got = ix.lookup("s-claw/m1", Messages, &[Mock]);
        assert_eq!(got.other_protocols, Vec::<Protocol>::new());
        assert_eq!(got.other_payment_methods, Vec::<PaymentMethod>::new());
        let got = ix.lookup("s-claw/m1", Responses, &[Mock]);
        assert_eq!(got.other_payment_methods, vec![Clawtip]);
    }

    #[test]
    fn diagnostics_queries() {
        use Protocol::*;
        let ix = mixed();
        assert_eq!(ix.models(), vec!["m1", "m2", "m3", "m4"]);
        assert_eq!(ix.sellers_of("m1"), vec![0, 1, 2, 3, 4]);
        assert_eq!(ix.sellers_of("m4"), vec![4, 5]);
        assert_eq!(ix.sellers_of("nothing"), Vec::<usize>::new());
        assert_eq!(ix.prewarm_protocol("m1"), Some(ChatCompletions));
        assert_eq!(ix.prewarm_protocol("m2"), Some(ChatCompletions));
        // m4: s-nopay cannot be paid; s-img does responses before images.
        assert_eq!(ix.prewarm_protocol("m4"), Some(Responses));
        assert_eq!(ix.prewarm_protocol("nothing"), None);
        let ix = ModelIndex::new(
            vec![
                seller("a", &["x"], &[ImagesGenerations, Responses], &[Mock]),
                seller("b", &["x"], &[Messages], &[Clawtip]),
            ],
            BTreeMap::new(),
        );
        assert_eq!(ix.prewarm_protocol("x"), Some(Messages));
        assert_eq!(ix.upstream_index("b"), Some(1));
        assert_eq!(ix.upstream_index("c"), None);
    }

    #[test]
    fn empty_index() {
        let ix = ModelIndex::default();
        let got = ix.lookup("x", Protocol::Messages, &ALL_PAYMENT_METHODS);
        assert!(got.upstreams.is_empty());
        assert_eq!(got.considered, 0);
        assert!(ix.models().is_empty());
        let ix = ModelIndex::new(Vec::new(), BTreeMap::new());
        assert!(
            ix.lookup("x", Protocol::Messages, &ALL_PAYMENT_METHODS)
                .upstreams
                .is_empty()
        );
    }
}

#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    const MODELS: [&str; 5] = ["m0", "m1", "m2", "vendor/m3", "m4"];

    fn upstream() -> impl Strategy<Value = (Vec<usize>, Vec<usize>, Vec<usize>)> {
        (
            proptest::sample::subsequence((0..MODELS.len()).collect::<Vec<_>>(), 0..=3),
            proptest::sample::subsequence((0..4).collect::<Vec<_>>(), 0..=4),
            proptest::sample::subsequence((0..3).collect::<Vec<_>>(), 0..=3),
        )
    }

    proptest! {
        /// The compressed index answers exactly what a linear scan of the
        /// upstream list would, in preference order, each upstream once.
        #[test]
        fn lookup_matches_a_linear_scan(
            ups in proptest::collection::vec(upstream(), 0..12),
            model in 0..MODELS.len(),
            protocol in 0..4usize,
            payments in proptest::sample::subsequence(vec![0usize, 1, 2], 0..=3),
        ) {
            let list: Vec<IndexedUpstream> = ups
                .iter()
                .enumerate()
                .map(|(i, (models, protocols, pays))| IndexedUpstream {
                    id: UpstreamId::new(format!("u{i}")),
                    models: models.iter().map(|m| MODELS[*m].to_string()).collect(),
                    protocols: protocols.iter().map(|p| Protocol::ALL[*p]).collect(),
                    payment_methods: pays.iter().map(|m| ALL_PAYMENT_METHODS[*m]).collect(),
                })
                .collect();
            let index = ModelIndex::new(list.clone(), BTreeMap::new());
            let protocol = Protocol::ALL[protocol];
            let payments: Vec<PaymentMethod> =
                payments.iter().map(|m| ALL_PAYMENT_METHODS[*m]).collect();
            let got = index.lookup(MODELS[model], protocol, &payments);
            let want: Vec<usize> = list
                .iter()
                .enumerate()
                .filter(|(_, u)| {
                    u.models.iter().any(|m| m == MODELS[model])
                        && u.protocols.contains(&protocol)
                        && u.payment_methods.iter().any(|m| payments.contains(m))
                })
                .map(|(i, _)| i)
                .collect();
            prop_assert_eq!(&got.upstreams, &want);
            prop_assert_eq!(got.model.as_str(), MODELS[model]);
            if want.is_empty() {
                // The hints name only protocols that would have worked.
                for p in &got.other_protocols {
                    prop_assert!(list.iter().any(|u| u.models.iter().any(|m| m == MODELS[model])
                        && u.protocols.contains(p)
                        && u.payment_methods.iter().any(|m| payments.contains(m))));
                }
            } else {
                prop_assert!(got.other_protocols.is_empty());
            }
        }

        /// Any client-supplied name resolves without panicking, and a name
        /// that is neither a model, an alias nor `upstream/model` is looked
        /// up as itself.
        #[test]
        fn arbitrary_names_resolve_safely(name in "\\PC{0,40}") {
            let index = ModelIndex::new(
                vec![IndexedUpstream::manual(
                    UpstreamId::new("u0"),
                    vec!["m0".into()],
                    vec![Protocol::ChatCompletions],
                )],
                BTreeMap::from([("fast".to_string(), "m0".to_string())]),
            );
            let got = index.lookup(&name, Protocol::ChatCompletions, &[PaymentMethod::ProviderKey]);
            let bare = name.strip_prefix(TOKENBUDDY_PREFIX).unwrap_or(&name);
            if bare != "fast" && bare != "m0" && !bare.starts_with("u0/") {
                prop_assert_eq!(got.model.as_str(), bare);
                prop_assert!(got.upstreams.is_empty());
            }
        }
    }
}
