//! Member keys (issue 19): `tokenbuddyd keys create|list|revoke`, and the
//! in-memory directory the proxy checks them against.
//!
//! Keys live in the ledger (`member_keys`), so every daemon sharing a
//! PostgreSQL ledger accepts the same keys. The proxy never reads the
//! database per request: [`KeyDirectory`] holds a snapshot of the valid
//! keys that a task replaces every [`REFRESH`], so a key revoked through
//! any daemon (or the CLI) is refused by every daemon within one refresh
//! plus one query.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail};
use clap::{Args, Subcommand};
use tb_config::LoadedConfig;
use tb_proxy::{
    Member, MemberKey, MemberKeys, MemberLimits, MemberUsage, Reservation, ReservationKind,
};
use tb_store::{KeySelector, Ledger, MemberAdmission, MemberKeyRow};

use crate::Failure;
use crate::history::{now_ms, open, runtime};

/// How often the directory reloads the valid keys. Half the one-second
/// revocation promise, leaving the other half for the query.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);

/// The longest member name.
const MAX_MEMBER_LEN: usize = 64;

/// `tokenbuddyd keys …`.
#[derive(Debug, Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a member; the key is printed once, alone on the
    /// last line.
    Create {
        /// The member's name (letters, digits, `.`, `_`, `-`, `@`).
        #[arg(long)]
        member: String,
        /// Models the key may use, comma-separated (default: every model).
        #[arg(long, value_name = "A,B")]
        models: Option<String>,
        /// The member's total budget in USD (e.g. 25 or 0.50): once the
        /// recorded spend reaches it, requests get a 402.
        #[arg(long, value_name = "USD", value_parser = crate::setup::parse_usd)]
        budget_usd: Option<u64>,
        /// Requests per minute (across every daemon); over it, a 429.
        #[arg(long)]
        rpm: Option<u32>,
        /// Tokens (input + output) per minute (across every daemon).
        #[arg(long)]
        tpm: Option<u32>,
    },
    /// Every key: id, member, models, created, revoked. Never the key.
    List,
    /// Revoke every key of a member, or one key by id.
    Revoke {
        /// Revoke every key of this member.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        member: Option<String>,
        /// Revoke the key with this id (from `keys list`).
        #[arg(long)]
        id: Option<String>,
    },
}

pub(crate) fn run(loaded: &LoadedConfig, args: &KeysArgs) -> Result<(), Failure> {
    runtime()?.block_on(async {
        let ledger = open(loaded).await?;
        let done = match &args.command {
            KeysCommand::Create {
                member,
                models,
                budget_usd,
                rpm,
                tpm,
            } => {
                let (member, models) =
                    checked(member, models.as_deref()).map_err(Failure::Config)?;
                let budget = budget_usd
                    .map(i64::try_from)
                    .transpose()
                    .map_err(|_| Failure::Config(anyhow!("--budget-usd is too large")))?;
                let limits = MemberLimits {
                    budget_usd_micros: budget,
                    rpm: rpm.map(u64::from),
                    tpm: tpm.map(u64::from),
                };
                create(&ledger, member, models, limits).await
            }
            KeysCommand::List => list(&ledger).await,
            KeysCommand::Revoke { member, id } => {
                let which = match (member, id) {
                    (Some(m), _) => KeySelector::Member(m),
                    (None, Some(id)) => KeySelector::Id(id),
                    (None, None) => {
                        return Err(Failure::Config(anyhow!(
                            "keys revoke needs --member NAME or --id KEY_ID"
                        )));
                    }
                };
                revoke(&ledger, which).await
            }
        };
        ledger.close().await;
        done.map_err(Failure::Runtime)
    })
}

/// The member name and model list, checked.
fn checked(member: &str, models: Option<&str>) -> anyhow::Result<(String, Option<Vec<String>>)> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if member.is_empty() || member.len() > MAX_MEMBER_LEN || !member.chars().all(ok_char) {
        bail!(
            "--member {member:?} is not a member name: use 1 to {MAX_MEMBER_LEN} letters, digits, `.`, `_`, `-` or `@`"
        );
    }
    let models = match models {
        None => None,
        Some(list) => {
            let names: Vec<String> = list.split(',').map(|m| m.trim().to_string()).collect();
            if names.iter().any(String::is_empty) {
                bail!(
                    "--models {list:?} has an empty model name; give model ids separated by commas, e.g. --models gpt-4o-mini,claude-haiku-4-5"
                );
            }
            Some(names)
        }
    };
    Ok((member.to_string(), models))
}

async fn create(
    ledger: &Ledger,
    member: String,
    models: Option<Vec<String>>,
    limits: MemberLimits,
) -> anyhow::Result<()> {
    let key = MemberKey::generate()?;
    let hash = key.hash();
    // The id is a prefix of the hash: stable, unique in practice, and it
    // says nothing about the key (the hash is one-way).
    let id = format!("key_{}", &hash[..12]);
    let row = MemberKeyRow {
        id: id.clone(),
        member,
        key_hash: hash,
        models,
        created_at_ms: now_ms(),
        revoked_at_ms: None,
        budget_usd_micros: limits.budget_usd_micros,
        rpm: limits.rpm.and_then(|n| i64::try_from(n).ok()),
        tpm: limits.tpm.and_then(|n| i64::try_from(n).ok()),
    };
    ledger
        .create_member_key(&row)
        .await
        .map_err(|e| anyhow!(e).context("storing the member key in the ledger"))?;
    println!(
        "created key {id} for member {} (models: {}; {}); it is shown only this once:",
        row.member,
        models_text(row.models.as_deref()),
        limits_text(&row)
    );
    println!("{}", key.expose());
    Ok(())
}

fn limits_text(r: &MemberKeyRow) -> String {
    let mut parts = Vec::new();
    if let Some(b) = r.budget_usd_micros {
        parts.push(format!("budget {}", tb_billing::record::usd(b)));
    }
    if let Some(n) = r.rpm {
        parts.push(format!("{n} rpm"));
    }
    if let Some(n) = r.tpm {
        parts.push(format!("{n} tpm"));
    }
    if parts.is_empty() {
        "no limits".to_string()
    } else {
        parts.join(", ")
    }
}

fn models_text(models: Option<&[String]>) -> String {
    models.map_or_else(|| "all".to_string(), |m| m.join(","))
}

async fn list(ledger: &Ledger) -> anyhow::Result<()> {
    let rows = ledger
        .member_keys()
        .await
        .map_err(|e| anyhow!(e).context("reading the member keys"))?;
    if rows.is_empty() {
        println!("no member keys; create one with `tokenbuddyd keys create --member NAME`");
        return Ok(());
    }
    print!("{}", keys_table(&rows));
    Ok(())
}

fn keys_table(rows: &[MemberKeyRow]) -> String {
    use std::fmt::Write as _;
    let width = rows
        .iter()
        .map(|r| r.member.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<16}  {:<width$}  {:<24}  {:<28}  {:<20}  status\n",
        "id", "member", "models", "limits", "created"
    );
    for r in rows {
        let status = match r.revoked_at_ms {
            None => "valid".to_string(),
            Some(at) => format!("revoked {}", utc(at)),
        };
        let _ = writeln!(
            out,
            "{:<16}  {:<width$}  {:<24}  {:<28}  {:<20}  {status}",
            r.id,
            r.member,
            models_text(r.models.as_deref()),
            limits_text(r),
            utc(r.created_at_ms)
        );
    }
    out
}

fn utc(ms: i64) -> String {
    let secs = u64::try_from(ms / 1000).unwrap_or(0);
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

async fn revoke(ledger: &Ledger, which: KeySelector<'_>) -> anyhow::Result<()> {
    let n = ledger
        .revoke_member_keys(which, now_ms())
        .await
        .map_err(|e| anyhow!(e).context("revoking in the ledger"))?;
    let what = match which {
        KeySelector::Member(m) => format!("member {m}"),
        KeySelector::Id(id) => format!("key id {id}"),
    };
    if n == 0 {
        bail!("no valid key for {what}; `tokenbuddyd keys list` shows the keys");
    }
    println!("revoked {n} key(s) of {what}; every daemon refuses them within a second");
    Ok(())
}

/// The valid member keys, by hash, as the proxy reads them.
pub(crate) struct KeyDirectory {
    by_hash: RwLock<Arc<HashMap<String, Arc<Member>>>>,
    /// Where the shared counters are (`None` in unit tests).
    ledger: Option<Ledger>,
}

impl KeyDirectory {
    /// Replaces the snapshot with `rows`.
    fn replace(&self, rows: Vec<MemberKeyRow>) {
        let map = rows
            .into_iter()
            .map(|r| {
                let limit = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
                let member = Member {
                    name: r.member,
                    models: r.models,
                    limits: MemberLimits {
                        budget_usd_micros: r.budget_usd_micros,
                        rpm: limit(r.rpm),
                        tpm: limit(r.tpm),
                    },
                };
                (r.key_hash, Arc::new(member))
            })
            .collect();
        let mut slot = self
            .by_hash
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(map);
    }

    /// Reloads the valid keys from the ledger. On failure the previous
    /// snapshot stays (the caller logs).
    fn new(ledger: Option<Ledger>) -> KeyDirectory {
        KeyDirectory {
            by_hash: RwLock::default(),
            ledger,
        }
    }

    pub(crate) async fn reload(&self, ledger: &Ledger) -> Result<(), tb_store::StoreError> {
        let rows = ledger.active_member_keys().await?;
        self.replace(rows);
        Ok(())
    }
}

impl MemberKeys for KeyDirectory {
    fn member_for(&self, hash: &str) -> Option<Arc<Member>> {
        let map = Arc::clone(
            &self
                .by_hash
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        map.get(hash).cloned()
    }

    fn admit<'a>(
        &'a self,
        member: &'a Member,
        reservation: &'a Reservation,
    ) -> tb_proxy::UsageFuture<'a> {
        Box::pin(async move {
            let ledger = self.ledger.as_ref().ok_or("no ledger")?;
            let now = now_ms();
            let window_start = now - now.rem_euclid(WINDOW_MS);
            let signed = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            let (hold_ms, must_fit_usd_micros) = match reservation.kind {
                ReservationKind::Call => (RESERVATION_TTL_MS, 0),
                ReservationKind::VideoJob { hold_ms } => (
                    signed(Some(hold_ms)).unwrap_or(RESERVATION_TTL_MS),
                    signed(Some(reservation.cost_usd_micros)).unwrap_or(0),
                ),
            };
            let ask = MemberAdmission {
                member: &member.name,
                reservation_id: &reservation.id,
                window_start_ms: window_start,
                budget_usd_micros: member.limits.budget_usd_micros,
                rpm: signed(member.limits.rpm),
                tpm: signed(member.limits.tpm),
                cost_usd_micros: signed(Some(reservation.cost_usd_micros)).unwrap_or(0),
                tokens: signed(Some(reservation.tokens)).unwrap_or(0),
                expires_at_ms: now.saturating_add(hold_ms),
                must_fit_usd_micros,
            };
            let c = ledger.admit_member(&ask).await.map_err(|e| e.to_string())?;
            let left_ms = window_start + WINDOW_MS - now;
            Ok(MemberUsage {
                admitted: c.admitted,
                requests: c.requests,
                tokens: c.tokens,
                spent_usd_micros: c.spent_usd_micros,
                reserved_usd_micros: c.reserved_usd_micros,
                retry_after_secs: u64::try_from(left_ms.div_euclid(1000) + 1).unwrap_or(1),
            })
        })
    }
}

/// How long a call's reservation holds when no record replaces it (its
/// daemon died mid-call): longer than any call the proxy lets run, so a
/// live call keeps its reservation.
const RESERVATION_TTL_MS: i64 = 15 * 60_000;

/// The rate-limit window: one minute, aligned to the clock so every daemon
/// counts in the same window.
const WINDOW_MS: i64 = 60_000;

/// Loads the keys once, then keeps reloading them every [`REFRESH`] until
/// the daemon stops (the task is dropped with the runtime).
pub(crate) async fn start_directory(ledger: Ledger) -> Arc<KeyDirectory> {
    let directory = Arc::new(KeyDirectory::new(Some(ledger.clone())));
    if let Err(e) = directory.reload(&ledger).await {
        tracing::warn!(target: "keys.unreadable", error = %e, "member keys could not be read; only the access token works until they can");
    }
    let dir = Arc::clone(&directory);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REFRESH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            ticks += 1;
            // Reservations of daemons that died lapse, checked about
            // every 30 s (so a lapsed one is given back within TTL + 30 s).
            if ticks.is_multiple_of(60)
                && let Err(e) = ledger.expire_member_reservations(now_ms()).await
            {
                tracing::warn!(target: "keys.unreadable", error = %e, "lapsed member reservations could not be given back; retrying in 30 s");
            }
            match dir.reload(&ledger).await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(target: "keys.unreadable", error = %e, "member keys could not be reloaded; the last snapshot stays in use");
                }
                Err(_) => {}
            }
        }
    });
    directory
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_names_and_model_lists_are_checked() {
        assert_eq!(
            checked("ana.b@team", Some("a, b")).unwrap(),
            (
                "ana.b@team".to_string(),
                Some(vec!["a".to_string(), "b".to_string()])
            )
        );
        assert_eq!(checked("bo", None).unwrap().1, None);
        assert!(checked("", None).is_err());
        assert!(checked("has space", None).is_err());
        assert!(checked(&"x".repeat(65), None).is_err());
        let err = checked("bo", Some("a,,b")).unwrap_err().to_string();
        assert!(err.contains("empty model name"), "{err}");
    }

    #[test]
    fn the_directory_answers_from_its_latest_snapshot() {
        let dir = KeyDirectory::new(None);
        let row = |hash: &str, member: &str| MemberKeyRow {
            id: format!("key_{hash}"),
            member: member.into(),
            key_hash: hash.into(),
            models: None,
            created_at_ms: 1,
            revoked_at_ms: None,
            budget_usd_micros: None,
            rpm: Some(5),
            tpm: None,
        };
        dir.replace(vec![row("h1", "ana"), row("h2", "bo")]);
        assert_eq!(dir.member_for("h1").unwrap().name, "ana");
        assert_eq!(dir.member_for("h1").unwrap().limits.rpm, Some(5));
        assert!(dir.member_for("h3").is_none());
        dir.replace(vec![row("h2", "bo")]);
        assert!(
            dir.member_for("h1").is_none(),
            "a revoked key is gone after the next reload"
        );
    }
}
