//! `tokenbuddyd setup`: from the keys a user already has to a working,
//! tested configuration. It finds provider keys (environment variables,
//! agents' own files), offers each as a manual provider with its models,
//! or the marketplace, picks the focus models, edits the config in place
//! (references to the keys, never the keys), points the detected agents
//! at the proxy, and ends with a live request that says what it cost.
//!
//! Interactive in a terminal; `--yes` answers every question with its
//! default and the flags choose, for scripts. The decisions are pure
//! functions over values — detection ([`detect`]), models and focus
//! ([`models`]), the config edit ([`plan`]), the test request's target and
//! report ([`live`]) — and this module is the I/O around them.

mod detect;
mod known;
mod live;
mod models;
mod plan;
mod prompt;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;
use tb_config::{CliOverrides, Config, LoadedConfig, Paths, ProviderMode};
use tb_installer::InstallEnv;

use crate::Failure;
use detect::{FoundKey, KeySource};
use models::ModelSource;
use plan::{Focus, KeyRef, Marketplace, NewProvider, Plan};
use prompt::Prompt;

/// `tokenbuddyd setup`'s flags: one per step.
#[derive(Debug, Args, Default)]
pub(crate) struct SetupArgs {
    /// Answer every question with its default, for scripts: add every key
    /// found, the default focus models, install the detected agents.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Only offer these found providers (ids such as openai, deepseek;
    /// repeatable or comma-separated).
    #[arg(long = "provider", value_name = "ID", value_delimiter = ',')]
    providers: Vec<String>,
    /// A focus model (repeatable); replaces routing.focus_models. Default:
    /// the providers' flagship models, or the ones the config has.
    #[arg(long = "focus", value_name = "MODEL")]
    focus: Vec<String>,
    /// Also use the marketplace, with this registry URL.
    #[arg(long, value_name = "URL")]
    registry: Option<String>,
    /// The marketplace purchase budget per daemon run, in USD (e.g. 2.50).
    #[arg(long, value_name = "USD", value_parser = parse_usd, requires = "registry")]
    budget_usd: Option<u64>,
    /// Point the detected agents at tokenbuddy (the default with --yes).
    #[arg(long, conflicts_with = "no_install")]
    install: bool,
    /// Leave the agents' configs alone.
    #[arg(long)]
    no_install: bool,
    /// Install and start the per-user service (`tokenbuddyd service install`).
    #[arg(long)]
    service: bool,
    /// Skip the closing test request.
    #[arg(long)]
    no_test: bool,
    /// Print the config diff and what would happen; write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `2.50` → 2 500 000 USD micros; at most six decimals.
pub(crate) fn parse_usd(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not an amount in USD such as 5 or 2.50");
    let (whole, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    if whole.is_empty() && frac.is_empty()
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(bad());
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let frac: u64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000)
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(bad)
}

/// A provider to add: a found key and the models it serves.
struct Offer {
    found: FoundKey,
    models: Vec<String>,
}

/// The I/O of one run: the paths, the flags, the questions (none with
/// `--yes`).
struct Session<'a> {
    paths: Paths,
    args: &'a SetupArgs,
    prompt: Option<Prompt<std::io::StdinLock<'static>, std::io::Stdout>>,
}

pub(crate) fn run(paths: Paths, args: &SetupArgs) -> Result<(), Failure> {
    for id in &args.providers {
        if known::by_id(id).is_none() {
            let ids: Vec<&str> = known::KNOWN.iter().map(|p| p.id).collect();
            return Err(Failure::Config(anyhow!(
                "--provider {id}: not a provider setup knows; use one of {}",
                ids.join(", ")
            )));
        }
    }
    if let Some(url) = &args.registry
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(Failure::Config(anyhow!(
            "--registry {url:?}: must be an http:// or https:// URL"
        )));
    }
    let prompt = (!args.yes).then(|| Prompt::new(std::io::stdin().lock(), std::io::stdout()));
    let mut session = Session {
        paths,
        args,
        prompt,
    };
    session.run()
}

impl Session<'_> {
    fn ask_yes_no(&mut self, question: &str, default: bool) -> Result<bool, Failure> {
        match &mut self.prompt {
            Some(p) => p.yes_no(question, default).map_err(Failure::Config),
            None => Ok(default),
        }
    }

    fn run(&mut self) -> Result<(), Failure> {
        let current =
            tb_config::load(self.paths.clone(), &CliOverrides::default()).map_err(|e| {
                Failure::Config(anyhow!(
                    "{e}; fix the config file first, then run setup again"
                ))
            })?;
        let existing = read_existing(&self.paths.config_file).map_err(Failure::Runtime)?;
        let present = plan::present(existing.as_deref());
        let install_env = InstallEnv::from_process().map_err(|e| Failure::Runtime(e.into()))?;
        let found = self.found_keys(&install_env)?;
        let offers = self.choose(found, &present)?;
        let offers = with_models(&current.config, offers).map_err(Failure::Runtime)?;
        let marketplace = self.marketplace()?;
        if offers.is_empty()
            && present.is_empty()
            && marketplace.is_none()
            && current.config.registry.url.is_none()
        {
            let vars: Vec<&str> = known::KNOWN.iter().take(4).map(|p| p.key_var).collect();
            return Err(Failure::Runtime(anyhow!(
                "no provider to configure: set a provider key (e.g. {}, …) and run setup again, or pass --registry URL to use the marketplace",
                vars.join(", ")
            )));
        }
        let focus = self.focus(&offers, &present, &current.config, marketplace.is_some())?;
        let (providers, key_files) = self.new_providers(&offers);
        let plan = Plan {
            providers,
            focus,
            marketplace,
        };
        let after = plan::edit(existing.as_deref(), &plan).map_err(|e| {
            Failure::Config(e.context(format!("editing {}", self.paths.config_file.display())))
        })?;
        check_written(&after).map_err(|e| {
            Failure::Config(e.context(format!(
                "the edited {} would not be a valid config; nothing was written",
                self.paths.config_file.display()
            )))
        })?;
        let secrets: Vec<&str> = offers.iter().map(|o| o.found.key.as_str()).collect();
        if self.args.dry_run {
            self.print_dry_run(existing.as_deref(), &after, &key_files, &secrets);
            return Ok(());
        }
        write_key_files(&key_files).map_err(Failure::Runtime)?;
        if existing.as_deref() == Some(after.as_str()) {
            println!("config: {} unchanged", self.paths.config_file.display());
        } else {
            write_config(&self.paths.config_file, &after).map_err(Failure::Runtime)?;
            println!("config: wrote {}", self.paths.config_file.display());
        }
        let loaded = tb_config::load(self.paths.clone(), &CliOverrides::default())
            .map_err(|e| Failure::Config(anyhow!("the written config does not load: {e}")))?;
        // Claude Code refuses tokenbuddy's token next to its own
        // env.ANTHROPIC_API_KEY; when setup took that key, the install moves
        // it into its backup (undo restores it).
        let claude_key_taken = offers.iter().any(|o| {
            matches!(&o.found.source, KeySource::AgentFile { agent, .. } if *agent == detect::CLAUDE_CODE)
        });
        self.install(&loaded, &install_env, claude_key_taken)?;
        self.service(&loaded)?;
        self.test(&loaded)
    }

    /// The found keys to add: shown (masked), the ones already in the
    /// config left out, each one asked about.
    fn choose(
        &mut self,
        found: Vec<FoundKey>,
        present: &[plan::Present],
    ) -> Result<Vec<FoundKey>, Failure> {
        println!("provider keys found:");
        if found.is_empty() {
            println!("  none");
        }
        let mut chosen = Vec::new();
        for f in found {
            let line = format!(
                "  {}: {} ({}) at {}",
                f.provider.id,
                f.source,
                f.masked(),
                tb_config::mask_url(&f.base_url)
            );
            if plan::is_present(present, f.provider.id, &f.base_url) {
                println!("{line}: already in the config, left as you have it");
                continue;
            }
            println!("{line}");
            let question = format!("Add {} as a provider?", f.provider.id);
            if self.ask_yes_no(&question, true)? {
                chosen.push(f);
            }
        }
        Ok(chosen)
    }

    /// The keys found, without the access token (an agent pointed at
    /// tokenbuddy keeps it where a key would be), narrowed by `--provider`.
    fn found_keys(&self, env: &InstallEnv) -> Result<Vec<FoundKey>, Failure> {
        let vars: BTreeMap<String, String> = known::variables()
            .filter_map(|v| Some((v.to_string(), std::env::var(v).ok()?)))
            .collect();
        let files: Vec<detect::AgentFile> = detect::agent_key_files(env)
            .into_iter()
            .map(|(agent, format, path)| detect::AgentFile {
                agent,
                content: std::fs::read_to_string(&path).ok(),
                path,
                format,
            })
            .collect();
        let token = std::fs::read_to_string(self.paths.data_dir.join(tb_proxy::ACCESS_TOKEN_FILE))
            .ok()
            .map(|t| t.trim().to_string());
        let found: Vec<FoundKey> = detect::detect(&vars, &files)
            .into_iter()
            .filter(|f| token.as_deref() != Some(f.key.as_str()))
            .filter(|f| {
                self.args.providers.is_empty()
                    || self.args.providers.iter().any(|p| p == f.provider.id)
            })
            .collect();
        if let Some(missing) = self
            .args
            .providers
            .iter()
            .find(|id| !found.iter().any(|f| f.provider.id == id.as_str()))
        {
            let var = known::by_id(missing).map_or("", |p| p.key_var);
            return Err(Failure::Config(anyhow!(
                "--provider {missing}: no key found; set {var} (or log in to an agent that keeps one) and run setup again"
            )));
        }
        Ok(found)
    }

    /// `--registry`, else (interactive) the question.
    fn marketplace(&mut self) -> Result<Option<Marketplace>, Failure> {
        if let Some(url) = &self.args.registry {
            return Ok(Some(Marketplace {
                registry_url: url.clone(),
                budget_usd_micros: self.args.budget_usd,
            }));
        }
        let Some(p) = &mut self.prompt else {
            return Ok(None);
        };
        if !p
            .yes_no("Also buy from the marketplace?", false)
            .map_err(Failure::Config)?
        {
            return Ok(None);
        }
        let url = p.text("Registry URL", "").map_err(Failure::Config)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(Failure::Config(anyhow!(
                "{url:?} is not an http:// or https:// URL; run setup again with --registry URL"
            )));
        }
        let budget = p
            .text("Purchase budget per run in USD", "5")
            .map_err(Failure::Config)?;
        let budget = parse_usd(&budget).map_err(|e| Failure::Config(anyhow!(e)))?;
        Ok(Some(Marketplace {
            registry_url: url,
            budget_usd_micros: Some(budget),
        }))
    }

    /// `--focus`, else the numbered choice, else the default.
    fn focus(
        &mut self,
        offers: &[Offer],
        present: &[plan::Present],
        config: &Config,
        marketplace: bool,
    ) -> Result<Focus, Failure> {
        let lists: Vec<(&known::KnownProvider, &[String])> = offers
            .iter()
            .map(|o| (o.found.provider, o.models.as_slice()))
            .collect();
        if !self.args.focus.is_empty() {
            let anything = marketplace || config.provider.mode != ProviderMode::Manual;
            let served = |m: &String| {
                offers.iter().any(|o| o.models.contains(m))
                    || present.iter().any(|p| p.models.contains(m))
            };
            if let Some(m) = self.args.focus.iter().find(|m| !anything && !served(m)) {
                return Err(Failure::Config(anyhow!(
                    "--focus {m}: no configured or found provider serves it; name a model of the providers above"
                )));
            }
            return Ok(Focus::Chosen(self.args.focus.clone()));
        }
        let default = models::default_focus(&lists);
        let Some(p) = &mut self.prompt else {
            return Ok(Focus::Default(default));
        };
        // The choice also lists the models of the providers the config has.
        let configured = present
            .iter()
            .filter_map(|p| Some((known::by_id(&p.id)?, p.models.as_slice())));
        let all: Vec<(&known::KnownProvider, &[String])> =
            configured.chain(lists.iter().copied()).collect();
        let candidates = models::candidates(&all, 8);
        if candidates.is_empty() {
            return Ok(Focus::Default(default));
        }
        println!("focus models (kept warm, and what agents default to):");
        let current = &config.routing.focus_models;
        let preselected = if current.is_empty() {
            &default
        } else {
            println!("  (Enter keeps the current ones: {})", current.join(", "));
            current
        };
        let chosen = p
            .pick("Focus models, by number", &candidates, preselected)
            .map_err(Failure::Config)?;
        Ok(chosen.map_or(Focus::Default(default), Focus::Chosen))
    }

    /// The `[[providers]]` entries and the key files to write for them.
    fn new_providers(&self, offers: &[Offer]) -> (Vec<NewProvider>, Vec<KeyFile>) {
        let mut files = Vec::new();
        let providers = offers
            .iter()
            .map(|o| {
                let p = o.found.provider;
                let key = match &o.found.source {
                    KeySource::Env(var) => KeyRef::Env((*var).to_string()),
                    KeySource::AgentFile { .. } => {
                        let path = self
                            .paths
                            .data_dir
                            .join("keys")
                            .join(format!("{}.key", p.id));
                        files.push(KeyFile {
                            path: path.clone(),
                            key: o.found.key.clone(),
                            from: o.found.source.to_string(),
                        });
                        KeyRef::File(path)
                    }
                };
                NewProvider {
                    id: p.id.to_string(),
                    kind: p.kind,
                    base_url: o.found.base_url.clone(),
                    key,
                    models: o.models.clone(),
                    protocols: p.protocols.map(<[_]>::to_vec),
                }
            })
            .collect();
        (providers, files)
    }

    fn print_dry_run(
        &self,
        before: Option<&str>,
        after: &str,
        key_files: &[KeyFile],
        secrets: &[&str],
    ) {
        let diff =
            tb_installer::unified_diff(&self.paths.config_file, before, Some(after), secrets);
        if diff.is_empty() {
            println!(
                "config: {} would not change",
                self.paths.config_file.display()
            );
        } else {
            print!("{diff}");
        }
        for f in key_files {
            println!(
                "would write {} (mode 0600) holding the key from {} ({})",
                f.path.display(),
                f.from,
                tb_installer::mask(&f.key)
            );
        }
        println!("dry run: nothing written, no agent configured, no test request sent");
    }

    /// Points the detected agents at the proxy: `install`'s own code path.
    fn install(
        &mut self,
        loaded: &LoadedConfig,
        env: &InstallEnv,
        claude_key_taken: bool,
    ) -> Result<(), Failure> {
        if self.args.no_install {
            return Ok(());
        }
        let installer = tb_installer::Installer::new(&loaded.paths.data_dir, env.clone());
        let detected: Vec<&str> = installer
            .status("")
            .iter()
            .filter(|r| r.detected)
            .map(|r| r.client)
            .collect();
        if detected.is_empty() {
            println!("agents: none detected (`tokenbuddyd install CLIENT` configures one by name)");
            return Ok(());
        }
        let question = format!("Point {} at tokenbuddy?", detected.join(", "));
        if !self.args.install && !self.ask_yes_no(&question, true)? {
            return Ok(());
        }
        if claude_key_taken {
            println!(
                "Claude Code: its env.ANTHROPIC_API_KEY is now in tokenbuddy's key file; the install moves it into tokenbuddy's backup (`tokenbuddyd install --undo claude-code` puts it back)"
            );
        }
        crate::install::run_cli(loaded, &[], false, false, None, claude_key_taken).map_err(|e| {
            Failure::Runtime(e.context("installing the agents (`--no-install` skips this step)"))
        })
    }

    /// `--service` (or yes to the question) installs and starts the
    /// per-user service; otherwise the command is named for later.
    fn service(&mut self, loaded: &LoadedConfig) -> Result<(), Failure> {
        let command = "tokenbuddyd service install";
        let wanted = self.args.service
            || self.ask_yes_no("Start tokenbuddy at login as a per-user service?", false)?;
        if !wanted {
            println!("next: `{command}` starts tokenbuddy at login (or run `tokenbuddyd serve`)");
            return Ok(());
        }
        let installed = crate::service::install(&loaded.paths, crate::service::Activation::Now)
            .map_err(|e| {
                Failure::Runtime(
                    e.context(format!("installing the service (`{command}` retries it)")),
                )
            })?;
        if installed.started {
            println!("service: tokenbuddy starts at login and is running now");
        }
        Ok(())
    }

    fn test(&self, loaded: &LoadedConfig) -> Result<(), Failure> {
        if self.args.no_test {
            return Ok(());
        }
        let Some(target) = live::target(&loaded.config) else {
            println!("test request: skipped, the config names no model");
            return Ok(());
        };
        println!(
            "test request: asking {} through a daemon running the new config…",
            target.model
        );
        let _ = std::io::stdout().flush();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Failure::Runtime(e.into()))?;
        let line = runtime
            .block_on(live::run(&loaded.paths.config_file, &target))
            .map_err(Failure::Runtime)?;
        println!("{line}");
        Ok(())
    }
}

/// A key copied out of an agent's file into a file of its own.
struct KeyFile {
    path: PathBuf,
    key: String,
    /// Where it was found, for people.
    from: String,
}

/// The models of each offer: its `GET /v1/models`, else the price table;
/// an offer with neither is dropped with a note.
fn with_models(config: &Config, found: Vec<FoundKey>) -> anyhow::Result<Vec<Offer>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    let env = |k: &str| std::env::var(k).ok();
    let client = tb_proxy::outbound_client(config, &env).context("building the HTTP client")?;
    let runtime = crate::cli::runtime().map_err(|_| anyhow!("starting the async runtime"))?;
    let mut offers = Vec::new();
    for f in found {
        let (models, source) =
            runtime.block_on(models::models_of(&client, f.provider, &f.base_url, &f.key));
        let id = f.provider.id;
        match (&source, models.is_empty()) {
            (_, true) => {
                let why = match &source {
                    ModelSource::PriceTable(why) => why.as_str(),
                    ModelSource::Listed => "",
                };
                println!(
                    "  {id}: skipped: GET /v1/models failed ({why}) and the price table has no {id} models; add it by hand with its models"
                );
                continue;
            }
            (ModelSource::Listed, false) => {
                println!("  {id}: {} models from GET /v1/models", models.len());
            }
            (ModelSource::PriceTable(why), false) => println!(
                "  {id}: GET /v1/models failed ({why}); {} models from the price table",
                models.len()
            ),
        }
        offers.push(Offer { found: f, models });
    }
    Ok(offers)
}

/// The edited text is a valid config: checked before it replaces the file.
fn check_written(text: &str) -> anyhow::Result<()> {
    let config = Config::from_toml_str(text).map_err(|e| anyhow!("{e}"))?;
    config.validate().map_err(|problems| {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        anyhow!("{}", lines.join("; "))
    })
}

fn read_existing(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading {}", path.display()))),
    }
}

/// Writes the config through a temporary file and a rename (keeping an
/// existing file's permissions), so it is never half written.
fn write_config(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), meta.permissions())
            .with_context(|| format!("setting the permissions of {}", tmp.path().display()))?;
    }
    tmp.persist(path)
        .map_err(|e| anyhow::Error::new(e.error).context(format!("writing {}", path.display())))?;
    Ok(())
}

/// Writes each key file (mode 0600, in a 0700 directory) unless it holds
/// that key already.
fn write_key_files(files: &[KeyFile]) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for f in files {
        let content = format!("{}\n", f.key);
        if std::fs::read_to_string(&f.path).is_ok_and(|c| c == content) {
            continue;
        }
        let dir = f.path.parent().unwrap_or(Path::new("."));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&f.path)
            .with_context(|| format!("writing {}", f.path.display()))?;
        file.write_all(content.as_bytes())
            .with_context(|| format!("writing {}", f.path.display()))?;
        // An existing file keeps its mode through `open`: make it private.
        std::fs::set_permissions(&f.path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .with_context(|| format!("making {} private", f.path.display()))?;
        println!(
            "key file: wrote {} (mode 0600) with the key from {}",
            f.path.display(),
            f.from
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_amounts_become_micros() {
        assert_eq!(parse_usd("5"), Ok(5_000_000));
        assert_eq!(parse_usd("2.50"), Ok(2_500_000));
        assert_eq!(parse_usd(".000001"), Ok(1));
        for bad in [
            "",
            ".",
            "-1",
            "1.2345678",
            "1e3",
            "x",
            "18446744073709.551616",
        ] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
    }
}
