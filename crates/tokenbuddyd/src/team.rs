//! Team mode at start-up (`[team]`, docs/team.md "Shared seller credit"):
//! the team key from `TB_TEAM_KEY` or `[team] key_file`, and joining the
//! team's shared state in PostgreSQL. The key is never logged, shown or
//! put in an error; only where it came from is.

use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use tb_config::Config;
use tb_seller::{TeamCredit, TokenCipher};

/// The environment variable holding the team key (wins over the file).
pub(crate) const TEAM_KEY_ENV: &str = "TB_TEAM_KEY";
/// The shortest team key accepted, characters.
const MIN_KEY_CHARS: usize = 32;

/// The team key and where it came from.
pub(crate) struct TeamKey {
    key: String,
    /// `TB_TEAM_KEY` or `key_file <path>`: what `status` shows.
    pub(crate) source: String,
}

/// Shows where the key came from, never the key.
impl std::fmt::Debug for TeamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Reads the team key: `TB_TEAM_KEY` when set and not empty, else
/// `[team] key_file` (surrounding whitespace trimmed). Pure over `env` and
/// `read`, so the rules are unit tested.
pub(crate) fn team_key(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
    read: &dyn Fn(&std::path::Path) -> std::io::Result<String>,
) -> anyhow::Result<TeamKey> {
    let (key, source) = match env(TEAM_KEY_ENV).filter(|k| !k.trim().is_empty()) {
        Some(key) => (key.trim().to_owned(), TEAM_KEY_ENV.to_owned()),
        None => match &config.team.key_file {
            Some(path) => {
                let text = read(path).with_context(|| {
                    format!("team.key_file {}: cannot read the team key", path.display())
                })?;
                (
                    text.trim().to_owned(),
                    format!("key_file {}", path.display()),
                )
            }
            None => bail!(
                "team.enabled = true needs the team key: set {TEAM_KEY_ENV} or [team] key_file \
                 to a file holding it (the same key on every daemon of the team; make one with \
                 `openssl rand -base64 32`)"
            ),
        },
    };
    if key.chars().count() < MIN_KEY_CHARS {
        bail!(
            "the team key from {source} is {} characters; use at least {MIN_KEY_CHARS} \
             (`openssl rand -base64 32`)",
            key.chars().count()
        );
    }
    Ok(TeamKey { key, source })
}

/// Joins the team when `[team] enabled`: the cipher for shared tokens and
/// the team's state (key checked against the team's). `None` when team
/// mode is off.
pub(crate) async fn join(
    config: &Config,
    ledger: &tb_store::Ledger,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<(TokenCipher, tb_store::TeamStore, Arc<TeamCredit>)>> {
    if !config.team.enabled {
        return Ok(None);
    }
    let key = team_key(config, env, &|p| std::fs::read_to_string(p))?;
    let store = ledger
        .team_store()
        .ok_or_else(|| anyhow!("team mode needs a PostgreSQL ledger (ledger.url)"))?;
    let cipher = TokenCipher::from_team_key(&key.key);
    let team = TeamCredit::open(store.clone(), &cipher, config.team.lease_ms)
        .await
        .context("joining the team's shared state")?;
    tracing::info!(target: "team.joined", key_source = %key.source, lease_ms = config.team.lease_ms, "team mode: seller credit and the purchase budget are shared");
    Ok(Some((
        cipher,
        store,
        Arc::new(team.with_source(key.source)),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn config(file: Option<&str>) -> Config {
        let mut c = Config::default();
        c.team.enabled = true;
        c.team.key_file = file.map(Into::into);
        c
    }

    fn read(_: &std::path::Path) -> std::io::Result<String> {
        Ok(format!("  {KEY}x\n"))
    }

    #[test]
    fn the_environment_wins_over_the_file_and_keys_are_never_shown() {
        let env = |k: &str| (k == TEAM_KEY_ENV).then(|| KEY.to_owned());
        let k = team_key(&config(Some("/k")), &env, &read).unwrap();
        assert_eq!((k.key.as_str(), k.source.as_str()), (KEY, TEAM_KEY_ENV));
        let k = team_key(&config(Some("/k")), &|_| None, &read).unwrap();
        assert_eq!(k.key, format!("{KEY}x"), "trimmed");
        assert_eq!(k.source, "key_file /k");
        // An empty variable does not count.
        let k = team_key(&config(Some("/k")), &|_| Some(" ".into()), &read).unwrap();
        assert_eq!(k.source, "key_file /k");
    }

    #[test]
    fn a_missing_short_or_unreadable_key_says_how_to_fix_it() {
        let e = team_key(&config(None), &|_| None, &read)
            .unwrap_err()
            .to_string();
        assert!(e.contains("TB_TEAM_KEY") && e.contains("key_file"), "{e}");
        let short = "short-secret-key";
        let e = team_key(&config(None), &|_| Some(short.into()), &read)
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 32") && !e.contains(short), "{e}");
        let e = team_key(&config(Some("/nope")), &|_| None, &|_| {
            Err(std::io::Error::from(std::io::ErrorKind::NotFound))
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("/nope"), "{e:#}");
    }
}
