//! The checks that find what is actually wrong with a setup (issue 17):
//! nothing can serve, a key variable is missing, a focus model nobody
//! serves, clients pointed at a stale port or an old token, clients
//! pointed at a daemon that is not running, a failing service. Each is a
//! pure function of values the caller gathered, so each is unit tested.

use tb_config::{Config, ProviderMode};
use tb_control::api::Check;
use tb_installer::{ClientPointer, is_loopback_url, same_url};

/// Whether anything can serve a request: manual mode needs a provider,
/// auto and both need the registry (both: or a provider).
pub(crate) fn serving_check(config: &Config) -> Check {
    let providers = config.providers.len();
    let registry = config.registry.url.is_some();
    let (mode, can_serve) = match config.provider.mode {
        ProviderMode::Manual => ("manual", providers > 0),
        ProviderMode::Auto => ("auto", registry),
        ProviderMode::Both => ("both", providers > 0 || registry),
    };
    if can_serve {
        let market = if registry && config.provider.mode != ProviderMode::Manual {
            " and the marketplace registry"
        } else {
            ""
        };
        return Check::pass(
            "upstreams",
            format!("provider.mode {mode}: {providers} manual providers{market}"),
        );
    }
    let (detail, hint) = match config.provider.mode {
        ProviderMode::Manual => (
            "provider.mode is manual and no [[providers]] is configured: every request gets 404 model_not_found",
            "add a [[providers]] entry (`tokenbuddyd setup` finds the keys you have; `tokenbuddyd config init` shows the format), or set provider.mode = \"auto\" with registry.url",
        ),
        _ => (
            "provider.mode needs the marketplace registry but registry.url is not set, and no [[providers]] is configured",
            "set registry.url to the marketplace registry, or add a [[providers]] entry and set provider.mode = \"manual\"",
        ),
    };
    Check::fail("upstreams", format!("{detail} (mode {mode})"), hint)
}

/// A provider whose key variable (`api_key_env`) is unset or empty: the
/// daemon refuses to start with it. `service_env` names the file a
/// service reads variables from, when a service is installed.
pub(crate) fn key_checks(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    service_env: Option<&str>,
) -> Vec<Check> {
    let where_ = service_env.map_or_else(
        || "in the environment the daemon starts from".to_owned(),
        |f| {
            format!("in {f} (KEY=value lines; the service does not inherit your shell's variables)")
        },
    );
    config
        .providers
        .iter()
        .filter_map(|p| {
            let var = p.api_key_env.as_deref()?;
            let name = format!("provider {} key", p.id);
            Some(match env(var) {
                None => Check::fail(
                    name,
                    format!("{var} (providers[].api_key_env) is not set"),
                    format!("set {var} to the provider's key {where_}"),
                ),
                Some(v) if v.trim().is_empty() => Check::fail(
                    name,
                    format!("{var} (providers[].api_key_env) is set but empty"),
                    format!("set {var} to the provider's key {where_}"),
                ),
                Some(_) => Check::pass(name, format!("{var} is set")),
            })
        })
        .collect()
}

/// Focus models nobody serves (`served`: every model an upstream offers,
/// `None` when that is unknown, e.g. the registry could not be read).
/// `tokenbuddy/` prefixes and `models.aliases` resolve as routing does.
pub(crate) fn focus_check(config: &Config, served: Option<&[String]>) -> Option<Check> {
    let focus = &config.routing.focus_models;
    let served = served?;
    if focus.is_empty() {
        return None;
    }
    let serves = |m: &str| served.iter().any(|s| s == m);
    let unserved: Vec<&str> = focus
        .iter()
        .map(|m| m.trim())
        .filter(|m| {
            let m = m.strip_prefix(tb_installer::MODEL_PREFIX).unwrap_or(m);
            let target = config.models.aliases.get(m).map_or(m, String::as_str);
            !serves(m) && !serves(target)
        })
        .collect();
    Some(if unserved.is_empty() {
        Check::pass(
            "focus models",
            format!("{} focus models, each served", focus.len()),
        )
    } else {
        Check::fail(
            "focus models",
            format!(
                "routing.focus_models names {} that no upstream serves",
                unserved.join(", ")
            ),
            "add the model to a provider's models, or take it out of routing.focus_models",
        )
    })
}

/// Where clients point compared with the daemon: `proxy_url` (the running
/// daemon's, else the configured port's) and the current access token
/// (`None`: no token file yet). Tokens are compared by fingerprint and
/// never shown.
pub(crate) fn pointer_checks(
    pointers: &[ClientPointer],
    proxy_url: &str,
    token: Option<&str>,
) -> Vec<Check> {
    pointers
        .iter()
        .filter_map(|c| {
            let p = &c.pointer;
            let name = format!("client {}", c.client);
            let reinstall = format!(
                "run `tokenbuddyd install {}` to point it at the daemon again",
                c.client
            );
            if !same_url(&p.base_url, proxy_url) {
                // A URL elsewhere that tokenbuddy never wrote is the
                // user's own choice, not a stale setup.
                if !c.installed_by_tokenbuddy {
                    return None;
                }
                return Some(if is_loopback_url(&p.base_url) {
                    Check::fail(
                        name,
                        format!(
                            "points at {}, but the daemon is at {proxy_url} (a stale port)",
                            p.base_url
                        ),
                        reinstall,
                    )
                } else {
                    Check::warn(
                        name,
                        format!("installed by tokenbuddy but now points at {}", p.base_url),
                        format!("{reinstall}, or `tokenbuddyd install --undo {}`", c.client),
                    )
                });
            }
            Some(match token {
                Some(t) if !p.sends(t) => Check::fail(
                    name,
                    "points at the daemon with an old access token: its requests get 401",
                    format!("{reinstall} with the current token"),
                ),
                _ => Check::pass(name, "points at tokenbuddy"),
            })
        })
        .collect()
}

/// Clients configured to the daemon while it is not running: their
/// requests get "connection refused". `down` says why it is not running
/// (`None`: it is running).
pub(crate) fn daemon_down_check(pointers: &[ClientPointer], down: Option<&str>) -> Option<Check> {
    let down = down?;
    let ours: Vec<&str> = pointers
        .iter()
        .filter(|c| c.installed_by_tokenbuddy || is_loopback_url(&c.pointer.base_url))
        .map(|c| c.client)
        .collect();
    if ours.is_empty() {
        return None;
    }
    Some(Check::fail(
        "daemon",
        format!(
            "not running ({down}), but {} {} configured to it: their requests are refused",
            ours.join(", "),
            if ours.len() == 1 { "is" } else { "are" }
        ),
        "start it with `tokenbuddyd serve`, or keep it running with `tokenbuddyd service install`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tb_control::api::Verdict;
    use tb_installer::Pointer;

    fn config(toml: &str) -> Config {
        Config::from_toml_str(toml).unwrap()
    }

    const PROVIDER: &str = "[[providers]]\nid = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"P_KEY\"\nmodels = [\"m1\"]\n";

    #[test]
    fn nothing_to_serve_fails_with_the_fix() {
        let c = serving_check(&config(""));
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.hint.contains("[[providers]]"), "{c:?}");
        assert_eq!(serving_check(&config(PROVIDER)).verdict, Verdict::Pass);
        let auto = config("[provider]\nmode = \"both\"\n");
        assert_eq!(serving_check(&auto).verdict, Verdict::Fail);
        assert!(serving_check(&auto).hint.contains("registry.url"));
        let market = config("[provider]\nmode = \"auto\"\n[registry]\nurl = \"http://r\"\n");
        assert_eq!(serving_check(&market).verdict, Verdict::Pass);
    }

    #[test]
    fn key_variables_unset_or_empty_fail() {
        let c = config(PROVIDER);
        let unset = key_checks(&c, &|_| None, None);
        assert_eq!(unset[0].verdict, Verdict::Fail);
        assert_eq!(
            unset[0].detail,
            "P_KEY (providers[].api_key_env) is not set"
        );
        let empty = key_checks(&c, &|_| Some(" ".into()), Some("/d/service.env"));
        assert_eq!(empty[0].verdict, Verdict::Fail);
        assert!(empty[0].hint.contains("/d/service.env"), "{:?}", empty[0]);
        let set = key_checks(&c, &|_| Some("sk-x".into()), None);
        assert_eq!(set[0].verdict, Verdict::Pass);
        assert!(!format!("{set:?}").contains("sk-x"));
    }

    #[test]
    fn a_focus_model_nobody_serves_fails() {
        let c = config(&format!(
            "[routing]\nfocus_models = [\"tokenbuddy/m1\", \"short\", \"gone\"]\n[models.aliases]\nshort = \"m1\"\n{PROVIDER}"
        ));
        let served = vec!["m1".to_owned()];
        let check = focus_check(&c, Some(&served)).unwrap();
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(
            check.detail.contains("gone") && !check.detail.contains("short"),
            "{check:?}"
        );
        assert_eq!(focus_check(&c, None), None);
        assert_eq!(focus_check(&config(PROVIDER), Some(&served)), None);
    }

    fn client(id: &'static str, url: &str, token: &str, ours: bool) -> ClientPointer {
        ClientPointer {
            client: id,
            installed_by_tokenbuddy: ours,
            pointer: Pointer::new(url, Some(token)),
        }
    }

    #[test]
    fn stale_ports_and_old_tokens_fail_other_urls_are_left_alone() {
        let daemon = "http://127.0.0.1:8787";
        let clients = [
            client("codex", "http://127.0.0.1:8787/v1", "tok", true),
            client("opencode", "http://localhost:9999/v1", "tok", true),
            client("hermes", "http://127.0.0.1:8787/v1", "old", true),
            client("claude-code", "https://gateway.corp", "x", false),
            client("openclaw", "https://gateway.corp/v1", "tok", true),
        ];
        let checks = pointer_checks(&clients, daemon, Some("tok"));
        let verdicts: Vec<(&str, Verdict)> = checks
            .iter()
            .map(|c| (c.name.as_str(), c.verdict))
            .collect();
        assert_eq!(
            verdicts,
            [
                ("client codex", Verdict::Pass),
                ("client opencode", Verdict::Fail),
                ("client hermes", Verdict::Fail),
                ("client openclaw", Verdict::Warn),
            ]
        );
        assert!(checks[1].detail.contains("stale port"), "{:?}", checks[1]);
        assert!(checks[2].detail.contains("old access token"));
        assert!(checks[2].hint.contains("tokenbuddyd install hermes"));
        assert!(!format!("{checks:?}").contains("old\""));
    }

    #[test]
    fn a_stopped_daemon_fails_only_when_clients_point_at_it() {
        let clients = [client("codex", "http://127.0.0.1:8787/v1", "t", true)];
        let c = daemon_down_check(&clients, Some("no daemon.json")).unwrap();
        assert_eq!(c.verdict, Verdict::Fail);
        assert!(c.detail.contains("codex is configured"), "{c:?}");
        assert_eq!(daemon_down_check(&clients, None), None);
        assert_eq!(daemon_down_check(&[], Some("no daemon.json")), None);
        let elsewhere = [client("claude-code", "https://gateway.corp", "t", false)];
        assert_eq!(daemon_down_check(&elsewhere, Some("x")), None);
    }
}
