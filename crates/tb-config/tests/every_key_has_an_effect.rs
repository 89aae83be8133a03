//! No configuration key that does nothing: every key of the schema is
//! listed in [`EFFECTS`] with the test that proves its effect, and this test
//! fails when
//!
//! - the schema has a key the list lacks (a new key added without a proof),
//! - the list names a key the schema no longer has,
//! - a named test does not exist, or its body never mentions the key,
//! - a field declared in `src/schema.rs` is missing from the list (catches
//!   an optional key that serialises to nothing and so escapes the first
//!   check).
//!
//! Keys are read by serialising the default configuration and a fixture
//! that sets every optional key, so the list follows the real schema.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tb_config::Config;

/// Every key → (test file relative to the workspace root, test function,
/// what its body must mention: the key's last segment when empty) whose
/// assertions fail when the key stops having its effect.
const EFFECTS: &[(&str, &str, &str, &str)] = &[
    (
        "breaker.cooldown_ms",
        "crates/tokenbuddyd/tests/routing.rs",
        "when_everything_is_benched_requests_are_still_tried",
        "",
    ),
    (
        "breaker.max_cooldown_ms",
        "crates/tokenbuddyd/tests/routing.rs",
        "when_everything_is_benched_requests_are_still_tried",
        "",
    ),
    (
        "breaker.max_failures",
        "crates/tokenbuddyd/tests/failover.rs",
        "a_client_that_goes_away_is_not_the_upstreams_failure",
        "",
    ),
    (
        "breaker.window_ms",
        "crates/tb-pool/tests/pool.rs",
        "window_keeps_only_recent_and_at_most_max_failures",
        "window",
    ),
    (
        "control.port",
        "crates/tokenbuddyd/tests/control.rs",
        "the_control_plane_reports_traffic_and_guards_itself",
        "control",
    ),
    (
        "ledger.retention_days",
        "crates/tb-store/tests/ledger.rs",
        "retention_deletes_old_calls",
        "delete_calls_before",
    ),
    (
        "log.format",
        "crates/tokenbuddyd/tests/lifecycle.rs",
        "json_logs_carry_the_request_id_and_no_secrets",
        "",
    ),
    (
        "log.level",
        "crates/tokenbuddyd/tests/lifecycle.rs",
        "json_logs_carry_the_request_id_and_no_secrets",
        "",
    ),
    (
        "models.aliases",
        "crates/tokenbuddyd/tests/proxy.rs",
        "aliases_and_prefixes_rewrite_only_the_model",
        "",
    ),
    (
        "prewarm.max_concurrent_probes",
        "crates/tb-prewarm/tests/scheduler.rs",
        "concurrency_never_exceeds_the_limit",
        "",
    ),
    (
        "prewarm.probe_timeout_ms",
        "crates/tb-prewarm/tests/scheduler.rs",
        "stop_leaves_no_probe_running",
        "",
    ),
    (
        "prewarm.refresh_secs",
        "crates/tb-prewarm/tests/scheduler.rs",
        "zero_jitter_sweeps_at_once_then_every_refresh_period",
        "refresh",
    ),
    (
        "prewarm.startup_jitter_ms",
        "crates/tb-prewarm/tests/scheduler.rs",
        "startup_sweep_runs_after_the_jitter",
        "jitter",
    ),
    (
        "provider.auto.enabled",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "auto_mode_misconfigurations_answer_503_saying_how_to_fix_them",
        "",
    ),
    (
        "provider.auto.range",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "auto_mode_misconfigurations_answer_503_saying_how_to_fix_them",
        "",
    ),
    (
        "provider.auto.seller_ids",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "auto_mode_misconfigurations_answer_503_saying_how_to_fix_them",
        "",
    ),
    (
        "provider.auto.selected_seller",
        "crates/tb-router/src/table.rs",
        "seller_selection_by_range",
        "",
    ),
    (
        "provider.mode",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "one_purchase_serves_many_requests_even_when_they_arrive_together",
        "auto_config",
    ),
    (
        "providers[].api_key",
        "crates/tokenbuddyd/tests/billing.rs",
        "a_model_without_a_list_price_saves_against_the_priciest_route",
        "",
    ),
    (
        "providers[].api_key_env",
        "crates/tokenbuddyd/tests/billing.rs",
        "embeddings_are_routed_failed_over_and_billed",
        "",
    ),
    (
        "providers[].api_key_file",
        "crates/tokenbuddyd/tests/setup.rs",
        "a_key_found_only_in_an_agent_file_is_referenced_by_api_key_file",
        "",
    ),
    (
        "providers[].base_url",
        "crates/tokenbuddyd/tests/billing.rs",
        "embeddings_are_routed_failed_over_and_billed",
        "",
    ),
    (
        "providers[].discount",
        "crates/tokenbuddyd/tests/billing.rs",
        "discounts_and_unpriced_models_are_recorded_honestly",
        "",
    ),
    (
        "providers[].drop_anthropic_betas",
        "crates/tokenbuddyd/tests/gateway.rs",
        "anthropic_betas_and_query_reach_native_routes_only",
        "DROPPED_BETA",
    ),
    (
        "providers[].id",
        "crates/tokenbuddyd/tests/billing.rs",
        "embeddings_are_routed_failed_over_and_billed",
        "",
    ),
    (
        "providers[].kind",
        "crates/tokenbuddyd/tests/billing.rs",
        "embeddings_are_routed_failed_over_and_billed",
        "",
    ),
    (
        "providers[].models",
        "crates/tokenbuddyd/tests/billing.rs",
        "embeddings_are_routed_failed_over_and_billed",
        "",
    ),
    (
        "providers[].prices",
        "crates/tokenbuddyd/tests/billing.rs",
        "a_model_without_a_list_price_saves_against_the_priciest_route",
        "",
    ),
    (
        "providers[].video_prices",
        "crates/tokenbuddyd/tests/video.rs",
        "a_refused_submit_fails_over_and_the_job_is_billed_once_on_produced_seconds",
        "",
    ),
    (
        "providers[].prices.*.input",
        "crates/tokenbuddyd/tests/billing.rs",
        "a_model_without_a_list_price_saves_against_the_priciest_route",
        "",
    ),
    (
        "providers[].prices.*.output",
        "crates/tokenbuddyd/tests/billing.rs",
        "a_model_without_a_list_price_saves_against_the_priciest_route",
        "",
    ),
    (
        "providers[].protocols",
        "crates/tokenbuddyd/tests/installer.rs",
        "installed_clients_reach_the_daemon_and_undo_restores_their_files",
        "",
    ),
    (
        "providers[].translate",
        "crates/tokenbuddyd/tests/translation.rs",
        "a_provider_with_translate_false_is_reached_natively_only",
        "",
    ),
    (
        "proxy.allow_remote",
        "crates/tokenbuddyd/tests/lifecycle.rs",
        "remote_bind_without_allow_remote_is_refused",
        "",
    ),
    (
        "proxy.bind",
        "crates/tokenbuddyd/tests/lifecycle.rs",
        "remote_bind_without_allow_remote_is_refused",
        "",
    ),
    (
        "proxy.drain_delay_ms",
        "crates/tokenbuddyd/tests/gateway_tls.rs",
        "sigterm_turns_readiness_503_while_new_requests_and_a_stream_are_served",
        "",
    ),
    (
        "proxy.header_read_timeout_ms",
        "crates/tokenbuddyd/tests/clients.rs",
        "slow_loris_heads_are_cut_off_and_extra_connections_get_a_protocol_shaped_503",
        "",
    ),
    (
        "proxy.max_body_bytes",
        "crates/tokenbuddyd/tests/proxy.rs",
        "chunked_body_over_the_limit_is_cut_off",
        "",
    ),
    (
        "proxy.max_connections",
        "crates/tokenbuddyd/tests/clients.rs",
        "slow_loris_heads_are_cut_off_and_extra_connections_get_a_protocol_shaped_503",
        "",
    ),
    (
        "proxy.max_response_bytes",
        "crates/tb-proxy/src/attempt/tests.rs",
        "walk_sellers",
        "",
    ),
    (
        "proxy.port",
        "crates/tokenbuddyd/tests/control.rs",
        "doctor_reports_broken_things_with_hints",
        "port",
    ),
    (
        "proxy.shutdown_grace_ms",
        "crates/tokenbuddyd/tests/lifecycle.rs",
        "grace_period_bounds_the_drain",
        "",
    ),
    (
        "proxy.tls.cert_file",
        "crates/tokenbuddyd/tests/gateway_tls.rs",
        "a_gateway_without_a_usable_certificate_refuses_to_start",
        "",
    ),
    (
        "proxy.tls.key_file",
        "crates/tokenbuddyd/tests/gateway_tls.rs",
        "a_gateway_without_a_usable_certificate_refuses_to_start",
        "",
    ),
    (
        "proxy.worker_threads",
        "crates/tokenbuddyd/tests/event_loops.rs",
        "connections_spread_over_event_loops_and_all_of_them_drain",
        "",
    ),
    (
        "purchase.rebuy_min_balance_micros",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "dry_or_expiring_tokens_are_bought_again",
        "",
    ),
    (
        "purchase.session_budget_usd_micros",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "the_session_budget_stops_purchases",
        "",
    ),
    (
        "purchase.token_expiry_margin_ms",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "dry_or_expiring_tokens_are_bought_again",
        "",
    ),
    (
        "registry.max_bytes",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "a_ten_thousand_seller_registry_loads_and_requests_keep_flowing",
        "",
    ),
    (
        "registry.refresh_secs",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "a_ten_thousand_seller_registry_loads_and_requests_keep_flowing",
        "",
    ),
    (
        "registry.url",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "one_purchase_serves_many_requests_even_when_they_arrive_together",
        "registry.url()",
    ),
    (
        "routing.auto_sort",
        "crates/tb-routing/src/planner.rs",
        "manual_auto_sort_is_cheapest_first_unpriced_last_stable",
        "",
    ),
    (
        "routing.failover_on_client_error",
        "crates/tb-proxy/src/attempt/tests.rs",
        "client_error_fails_fast_when_configured",
        "",
    ),
    (
        "routing.focus_models",
        "crates/tokenbuddyd/tests/routing.rs",
        "the_speed_scorer_prefers_the_fastest_seller_once_probed",
        "",
    ),
    (
        "routing.manual_policy",
        "crates/tb-routing/src/planner.rs",
        "locked_plans_only_the_first_listed_even_when_benched",
        "Locked",
    ),
    (
        "routing.max_attempts",
        "crates/tb-routing/src/planner.rs",
        "max_attempts_caps_distinct_upstreams",
        "",
    ),
    (
        "routing.request_deadline_ms",
        "crates/tokenbuddyd/tests/proxy.rs",
        "deadlines_and_idle_timeouts",
        "",
    ),
    (
        "routing.retry_same_on_5xx",
        "crates/tb-proxy/src/attempt/tests.rs",
        "give_up_passes_the_first_non_transient_answer",
        "",
    ),
    (
        "routing.scorer",
        "crates/tokenbuddyd/tests/routing.rs",
        "discount_and_cheapest_scorers_pick_the_cheapest_seller",
        "",
    ),
    (
        "routing.sticky_reset_ms",
        "crates/tokenbuddyd/tests/routing.rs",
        "after_a_failover_the_model_sticks_to_the_upstream_that_served",
        "",
    ),
    (
        "routing.stream_head_deadline_ms",
        "crates/tokenbuddyd/tests/failover.rs",
        "refused_and_silent_upstreams_are_failed_over",
        "",
    ),
    (
        "routing.stream_idle_timeout_ms",
        "crates/tokenbuddyd/tests/proxy.rs",
        "deadlines_and_idle_timeouts",
        "",
    ),
    (
        "routing.translate",
        "crates/tokenbuddyd/tests/translation.rs",
        "a_provider_with_translate_false_is_reached_natively_only",
        "",
    ),
    (
        "tls.extra_ca_file",
        "crates/tokenbuddyd/tests/tls.rs",
        "an_extra_ca_file_that_is_not_pem_stops_the_daemon_with_a_config_error",
        "",
    ),
    (
        "network.proxy",
        "crates/tokenbuddyd/tests/tls.rs",
        "network_proxy_in_config_wins_over_the_env_and_is_masked_in_config_show",
        "",
    ),
    (
        "network.no_proxy",
        "crates/tokenbuddyd/tests/tls.rs",
        "no_proxy_and_loopback_upstreams_go_direct",
        "",
    ),
    (
        "ledger.url",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "wasted_credit_is_shown_and_survives_a_restart_postgres",
        "ledger",
    ),
    (
        "providers[].headers",
        "crates/tokenbuddyd/tests/proxy.rs",
        "a_providers_extra_headers_reach_it",
        "headers",
    ),
    (
        "proxy.require_auth",
        "crates/tokenbuddyd/tests/proxy.rs",
        "without_require_auth_no_token_is_needed",
        "",
    ),
    (
        "purchase.fresh_window_ms",
        "crates/tb-seller/src/waste.rs",
        "failover_inside_the_fresh_window_wastes_the_balance",
        "",
    ),
    (
        "providers[].prices.*.cache_read",
        "crates/tokenbuddyd/tests/billing.rs",
        "explicit_cache_read_and_cache_write_prices_are_billed",
        "",
    ),
    (
        "providers[].prices.*.cache_write",
        "crates/tokenbuddyd/tests/billing.rs",
        "explicit_cache_read_and_cache_write_prices_are_billed",
        "",
    ),
    (
        "purchase.amount_credit_micros",
        "crates/tokenbuddyd/tests/routing.rs",
        "the_speed_scorer_prefers_the_fastest_seller_once_probed",
        "",
    ),
    (
        "control.bind",
        "crates/tokenbuddyd/tests/control.rs",
        "the_control_plane_listens_where_control_bind_says",
        "",
    ),
    (
        // `expiry_secs = 0`: the liar's findings count for nothing and it
        // keeps serving first; with the default it is pushed back.
        "probe.expiry_secs",
        "crates/tokenbuddyd/tests/probe.rs",
        "expired_results_are_ignored",
        "",
    ),
    (
        // 40 %: a 30 % over-count passes; the default 25 % fails it.
        "probe.overcount_threshold",
        "crates/tokenbuddyd/tests/probe.rs",
        "a_broken_tool_call_demotes_only_requests_with_tools",
        "",
    ),
    (
        "probe.max_cost_usd_micros",
        "crates/tokenbuddyd/tests/probe.rs",
        "without_yes_only_the_plan_and_its_cost_are_shown",
        "",
    ),
    (
        "prewarm.ttl_ms",
        "crates/tokenbuddyd/tests/control.rs",
        "prewarm_entries_live_for_prewarm_ttl_ms",
        "",
    ),
    (
        // `clawtip_market` sets `payment_method = "clawtip"`: with the
        // default `mock` the clawtip-only seller is never bought from and
        // no 402 naming a pay URL comes back.
        "provider.auto.payment_method",
        "crates/tokenbuddyd/tests/marketplace.rs",
        "clawtip_payments_are_shown_polled_and_expire_cleanly",
        "clawtip_market",
    ),
    (
        "team.enabled",
        "crates/tokenbuddyd/tests/team.rs",
        "three_daemons_buy_once_and_share_credit_and_budget",
        "team_config",
    ),
    (
        "team.key_file",
        "crates/tokenbuddyd/tests/team.rs",
        "three_daemons_buy_once_and_share_credit_and_budget",
        "key_file",
    ),
    (
        "team.lease_ms",
        "crates/tokenbuddyd/tests/team.rs",
        "a_daemon_killed_mid_purchase_blocks_the_team_only_until_its_lease_expires",
        "lease_ms",
    ),
    (
        "export.http.url",
        "crates/tokenbuddyd/tests/export.rs",
        "http_sink_batches_records_with_the_auth_header_and_survives_an_outage",
        "http_export",
    ),
    (
        "export.http.headers",
        "crates/tokenbuddyd/tests/export.rs",
        "http_sink_batches_records_with_the_auth_header_and_survives_an_outage",
        "authorization",
    ),
    (
        "export.http.batch_size",
        "crates/tokenbuddyd/tests/export.rs",
        "http_sink_batches_records_with_the_auth_header_and_survives_an_outage",
        "[2, 2, 1]",
    ),
    (
        "export.http.queue_capacity",
        "crates/tokenbuddyd/tests/export.rs",
        "a_small_queue_drops_exactly_past_its_bound",
        "queue_capacity",
    ),
    (
        "export.otlp.endpoint",
        "crates/tokenbuddyd/tests/export.rs",
        "otlp_traces_join_the_clients_traceparent_with_one_span_per_attempt",
        "",
    ),
    (
        "export.otlp.protocol",
        "crates/tokenbuddyd/tests/export.rs",
        "otlp_grpc_is_refused_at_start_with_the_key_named",
        "",
    ),
    (
        "ledger.queue_capacity",
        "crates/tb-store/tests/ledger.rs",
        "writer_full_queue_drops_without_blocking",
        "LedgerWriter::spawn(",
    ),
];

/// Keys whose effect no test names yet, each with the product file that
/// reads it and the text that reads it (checked to exist, so a key that no
/// code reads any more fails here). Move a key to [`EFFECTS`] when a test
/// proves it; this list must only shrink.
const READ_BY_CODE_ONLY: &[(&str, &str, &str)] = &[];

/// User-keyed maps: their own keys are data (`*`), not schema keys.
const USER_MAPS: &[&str] = &[
    "models.aliases",
    "providers[].headers",
    "providers[].prices",
    "providers[].video_prices",
    "export.http.headers",
];

/// A configuration that sets every optional key, so that each shows up in
/// the serialised form.
const EVERY_OPTIONAL_KEY: &str = r#"
[registry]
url = "https://registry.example/doc.json"
[ledger]
url = "postgres://u@h/db"
[provider.auto]
selected_seller = "s"
[tls]
extra_ca_file = "/etc/ca.pem"
[proxy.tls]
cert_file = "/etc/gw.pem"
key_file = "/etc/gw-key.pem"
[export.http]
url = "https://collect.example/calls"
[export.otlp]
endpoint = "http://127.0.0.1:4318"
[team]
key_file = "/team-key"
[network]
proxy = "http://u:p@proxy.corp:3128"
no_proxy = ["internal.corp"]
[models.aliases]
fast = "gpt-4o-mini"
[[providers]]
id = "p"
kind = "openai"
base_url = "http://127.0.0.1:1/v1"
api_key = "k"
api_key_env = "K"
api_key_file = "/k"
models = ["m"]
protocols = ["chat_completions"]
discount = 0.1
headers = { x-extra = "1" }
prices = { m = { input = 1.0, output = 2.0, cache_read = 0.5, cache_write = 1.5 } }
video_prices = { m = 0.1 }
translate = false
drop_anthropic_betas = ["b"]
"#;

fn keys_of(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    let Value::Object(map) = value else { return };
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if USER_MAPS.contains(&key.as_str()) {
            // The map is one key; the fields of its values (a price's
            // `input`, …) are keys too, under `*`.
            out.insert(key.clone());
            if let Value::Object(entries) = v {
                for entry in entries.values().filter(|e| e.is_object()) {
                    keys_of(entry, &format!("{key}.*"), out);
                }
            }
            continue;
        }
        match v {
            Value::Object(m) if !m.is_empty() => keys_of(v, &key, out),
            // Arrays of tables (`[[providers]]`): the table's keys; the
            // default's empty list says nothing about them.
            Value::Array(items) if key == "providers" => {
                for item in items {
                    keys_of(item, &format!("{key}[]"), out);
                }
            }
            _ => {
                out.insert(key);
            }
        }
    }
}

/// Every key of the schema, dotted (`proxy.port`, `providers[].id`,
/// `providers[].prices.*.input`).
fn schema_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for config in [
        Config::default(),
        Config::from_toml_str(EVERY_OPTIONAL_KEY).unwrap(),
    ] {
        keys_of(&serde_json::to_value(&config).unwrap(), "", &mut keys);
    }
    keys
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The body of `fn name` in `source`: from its line to the next line that
/// closes an item at the same indentation.
fn body_of<'a>(source: &'a str, name: &str) -> Option<&'a str> {
    let start = source.find(&format!("fn {name}("))?;
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let indent = &source[line_start..start];
    let indent: String = indent.chars().take_while(|c| c.is_whitespace()).collect();
    let close = format!("\n{indent}}}");
    let end = source[start..].find(&close)? + start;
    Some(&source[start..end])
}

/// The field names of the `deny_unknown_fields` structs of `src/schema.rs`
/// (the configuration's tables), as declared (`pub name: Type`).
fn declared_fields() -> BTreeSet<String> {
    let schema = std::fs::read_to_string(root().join("crates/tb-config/src/schema.rs")).unwrap();
    let mut fields = BTreeSet::new();
    for table in schema.split("#[serde(deny_unknown_fields").skip(1) {
        let Some(start) = table.find("pub struct ") else {
            continue;
        };
        let body = &table[start..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        for line in body.lines().skip(1) {
            if let Some((name, _)) = line
                .trim()
                .strip_prefix("pub ")
                .and_then(|l| l.split_once(':'))
            {
                fields.insert(name.to_string());
            }
        }
    }
    fields
}

/// The last segment of a key, as a test would spell it in TOML or Rust.
fn leaf(key: &str) -> &str {
    key.rsplit('.')
        .find(|s| *s != "*")
        .unwrap_or(key)
        .trim_end_matches("[]")
}

#[test]
fn every_schema_key_is_proven_to_have_an_effect() {
    let keys = schema_keys();
    let mut problems = Vec::new();
    let mut listed = BTreeSet::new();
    for key in EFFECTS
        .iter()
        .map(|e| e.0)
        .chain(READ_BY_CODE_ONLY.iter().map(|e| e.0))
    {
        if !listed.insert(key.to_string()) {
            problems.push(format!("{key}: listed twice"));
        }
    }
    for key in keys.difference(&listed) {
        problems.push(format!(
            "{key}: no test proves it has an effect; add one and list it in EFFECTS (or remove the key)"
        ));
    }
    for key in listed.difference(&keys) {
        problems.push(format!("{key}: listed but not in the schema"));
    }
    for (key, file, test, needle) in EFFECTS {
        let needle = if needle.is_empty() { leaf(key) } else { needle };
        let Ok(source) = std::fs::read_to_string(root().join(file)) else {
            problems.push(format!("{key}: {file} does not exist"));
            continue;
        };
        match body_of(&source, test) {
            None => problems.push(format!("{key}: {file} has no fn {test}")),
            Some(body) if !body.contains(needle) => {
                problems.push(format!("{key}: {file}::{test} never mentions `{needle}`"))
            }
            Some(_) => {}
        }
    }
    for (key, file, needle) in READ_BY_CODE_ONLY {
        let source = std::fs::read_to_string(root().join(file)).unwrap_or_default();
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        if !code.contains(needle) {
            problems.push(format!("{key}: {file} no longer reads it (`{needle}`)"));
        }
    }
    let segments: BTreeSet<&str> = keys
        .iter()
        .flat_map(|k| k.split('.'))
        .map(|s| s.trim_end_matches("[]"))
        .collect();
    for field in declared_fields() {
        if !segments.contains(field.as_str()) {
            problems.push(format!(
                "src/schema.rs declares `{field}`, which no listed key ends with; set it in \
                 EVERY_OPTIONAL_KEY and list it in EFFECTS"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_fixture_is_a_valid_file_and_the_helpers_work() {
    assert!(Config::from_toml_str(EVERY_OPTIONAL_KEY).is_ok());
    let src = "fn a() {\n    x\n}\n\nfn b() {\n    y\n}\n";
    assert_eq!(body_of(src, "a"), Some("fn a() {\n    x"));
    assert_eq!(body_of(src, "c"), None);
    assert_eq!(leaf("providers[].prices.*.input"), "input");
    assert_eq!(leaf("models.aliases"), "aliases");
    assert_eq!(leaf("proxy.port"), "port");
    let keys = schema_keys();
    for k in [
        "proxy.port",
        "providers[].id",
        "providers[].prices.*.cache_write",
        "models.aliases",
        "tls.extra_ca_file",
        "ledger.url",
    ] {
        assert!(keys.contains(k), "{k} in {keys:#?}");
    }
    assert!(!keys.iter().any(|k| k.contains("fast") || k.contains(".m.")));
    assert!(!keys.contains("providers"), "only its tables' keys");
    let fields = declared_fields();
    for f in [
        "port",
        "store_bodies",
        "drop_anthropic_betas",
        "cache_write",
    ] {
        assert_eq!(fields.contains(f), f != "store_bodies", "{f} in {fields:?}");
    }
    assert!(!fields.contains("message"), "ValidationError is no table");
}
