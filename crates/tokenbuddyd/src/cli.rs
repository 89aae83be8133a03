//! Command-line surface (clap) and the small commands that need no daemon.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::{Args, Parser, Subcommand};
use tb_config::{CliOverrides, LoadedConfig, LogFormat, PathOverrides, Paths, STARTER_CONFIG};

use crate::Failure;

/// tokenbuddy: a local LLM routing daemon.
#[derive(Debug, Parser)]
#[command(name = "tokenbuddyd", version, about, long_about = None)]
pub(crate) struct Cli {
    /// Config file (default: $TB_CONFIG, $TB_HOME/config.toml, or the XDG config dir).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (default: $TB_DATA_DIR, $TB_HOME/data, or the XDG data dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon (the default).
    Serve(ServeArgs),
    /// Inspect or create the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The bundled price of a model and, given token counts, their cost.
    Prices(crate::prices::PricesArgs),
    /// Point AI clients (Claude Code, Codex, opencode, OpenClaw, Hermes,
    /// Claude Desktop) at tokenbuddy, or take them back.
    Install(InstallArgs),
    /// From the keys you have to a working, tested config: finds provider
    /// keys, offers them with their models, picks focus models, writes the
    /// config, points the detected agents at tokenbuddy and sends a test
    /// request (interactive; `--yes` and flags for scripts).
    Setup(crate::setup::SetupArgs),
    /// A simulated marketplace, a burst of requests through the daemon,
    /// the call lines and the savings; the dashboard stays up until Ctrl-C.
    Demo {
        /// Exit after the summary instead of waiting for Ctrl-C.
        #[arg(long)]
        no_wait: bool,
        /// Buy with the clawtip wallet: the first request gets a 402 with
        /// the pay link and QR code, the demo pays in the simulated wallet.
        #[arg(long)]
        clawtip: bool,
    },
    /// Checks with a verdict and a fix hint each; exit 1 when one fails.
    Doctor {
        /// Print the report as JSON (`{"ok": …, "checks": [{"name",
        /// "verdict", "detail", "hint"}]}`) for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon as a per-user service that starts at login and
    /// restarts on failure (systemd user unit, launchd agent).
    Service(crate::service::ServiceArgs),
    /// A summary of the running daemon.
    Status,
    /// The wallet (clawtip) payments the daemon waits for: seller, amount,
    /// expiry, the pay URL and its QR code drawn in the terminal.
    Pay(crate::pay::PayArgs),
    /// Recent call records, one line each (or JSON Lines).
    Calls(crate::history::CallsArgs),
    /// Spend, savings and tokens over a window, grouped.
    Usage(crate::history::UsageArgs),
    /// Per marketplace seller: calls, failure share, settled vs estimated
    /// cost with the median drift, wasted credit, last purchase; `sellers
    /// audit` flags the ones that bill far off.
    Sellers(crate::sellers::SellersArgs),
    /// Vet manual providers: a few real calls per provider × model (plain,
    /// stream with usage, tool call, max_tokens, prompt tokens, model id),
    /// shown with their estimated cost first; `--yes` runs them. Routing
    /// pushes back what fails.
    Probe(crate::probe::ProbeArgs),
    /// Member keys of a team gateway: `keys create --member NAME`,
    /// `keys list`, `keys revoke --member NAME | --id KEY_ID`. Stored
    /// hashed in the ledger, so every daemon sharing it accepts them.
    Keys(crate::keys::KeysArgs),
    /// The team's shared purchase budget: `team budget show`, `team budget
    /// reset [--yes]` (a new budget period). Works on the PostgreSQL ledger
    /// the config points at; no daemon needed.
    Team(crate::team_budget::TeamArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// To stdout; needs no config, home or daemon. For example
    /// `tokenbuddyd completions bash > ~/.local/share/bash-completion/completions/tokenbuddyd`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Write the man pages (`tokenbuddyd.1` and one per subcommand) into a
    /// directory; `cargo xtask man` runs it.
    #[command(hide = true)]
    Man {
        /// The directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Debug, Args, Default)]
pub(crate) struct ServeArgs {
    /// Proxy port (0 = ephemeral); overrides proxy.port.
    #[arg(long)]
    port: Option<u16>,
    /// Control plane port (0 = ephemeral); overrides control.port.
    #[arg(long)]
    control_port: Option<u16>,
    /// Proxy bind address; overrides proxy.bind.
    #[arg(long)]
    bind: Option<std::net::IpAddr>,
    /// Log filter, e.g. `info` or `tb_proxy=debug`; overrides log.level.
    #[arg(long)]
    log_level: Option<String>,
    /// `pretty` or `json`; overrides log.format.
    #[arg(long, value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "pretty" => Ok(LogFormat::Pretty),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("{other:?} is not a log format; use pretty or json")),
    }
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// Clients to configure (default: every detected client; with --undo,
    /// every client tokenbuddy configured).
    clients: Vec<String>,
    /// Show the changes as a diff (secrets redacted) without writing.
    #[arg(long)]
    dry_run: bool,
    /// Remove what tokenbuddy wrote.
    #[arg(long)]
    undo: bool,
    /// The default model clients should use.
    #[arg(long)]
    model: Option<String>,
    /// Claude Code: move a conflicting ANTHROPIC_API_KEY into the backup.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, where each value came from, secrets masked.
    Show,
    /// Write a commented starter config file.
    Init {
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the config file and data directory paths.
    Path,
}

impl ServeArgs {
    fn overrides(&self) -> CliOverrides {
        let mut o = CliOverrides::default();
        o.proxy.port = self.port;
        o.proxy.bind = self.bind;
        o.control.port = self.control_port;
        o.log.level = self.log_level.clone();
        o.log.format = self.log_format;
        o
    }
}

pub(crate) fn run(cli: Cli) -> Result<(), Failure> {
    // The commands that need no config, home or daemon: before the paths
    // are resolved, which can fail without a home.
    let command = match cli.command {
        Some(Command::Completions { shell }) => return crate::manual::completions(shell),
        Some(Command::Man { out }) => return crate::manual::man(&out),
        other => other,
    };
    let flags = PathOverrides {
        config_file: cli.config,
        data_dir: cli.data_dir,
    };
    let paths =
        Paths::resolve(&flags, |k| std::env::var_os(k)).map_err(|e| Failure::Config(e.into()))?;
    match command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let loaded = load(paths, &args.overrides())?;
            crate::serve::run(loaded)
        }
        Command::Config(ConfigCommand::Path) => {
            println!("config: {}", paths.config_file.display());
            println!("data: {}", paths.data_dir.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Show) => {
            let loaded = load(paths, &CliOverrides::default())?;
            show(&loaded);
            Ok(())
        }
        Command::Config(ConfigCommand::Init { force }) => {
            init(&paths, force).map_err(Failure::Runtime)
        }
        Command::Prices(args) => crate::prices::run(&args),
        Command::Install(args) => {
            let loaded = load(paths, &CliOverrides::default())?;
            crate::install::run_cli(
                &loaded,
                &args.clients,
                args.dry_run,
                args.undo,
                args.model.as_deref(),
                args.force,
            )
            .map_err(Failure::Runtime)
        }
        Command::Setup(args) => crate::setup::run(paths, &args),
        Command::Doctor { json } => doctor(paths, json),
        Command::Service(args) => crate::service::run(&paths, &args),
        Command::Demo { no_wait, clawtip } => {
            crate::demo::run(!no_wait, clawtip).map_err(Failure::Runtime)
        }
        Command::Status => status(paths),
        Command::Pay(args) => crate::pay::run(&paths.data_dir, &args),
        Command::Calls(args) => {
            crate::history::calls(load(paths, &CliOverrides::default())?, &args)
        }
        Command::Usage(args) => {
            crate::history::usage(load(paths, &CliOverrides::default())?, &args)
        }
        Command::Sellers(args) => {
            crate::sellers::run(load(paths, &CliOverrides::default())?, &args)
        }
        Command::Probe(args) => crate::probe::run(load(paths, &CliOverrides::default())?, &args),
        Command::Keys(args) => crate::keys::run(&load(paths, &CliOverrides::default())?, &args),
        Command::Team(args) => {
            crate::team_budget::run(&load(paths, &CliOverrides::default())?, &args)
        }
        Command::Completions { shell } => crate::manual::completions(shell),
        Command::Man { out } => crate::manual::man(&out),
    }
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(e.into()))
}

/// `doctor`: the running daemon's live checks, else the offline ones.
fn doctor(paths: Paths, json: bool) -> Result<(), Failure> {
    use crate::doctor::{Check, DoctorReport};
    let data_dir = paths.data_dir.clone();
    let loaded = match tb_config::load(paths, &CliOverrides::default()) {
        Ok(l) => l,
        Err(e) => {
            let check = Check::fail(
                "config",
                e.to_string(),
                "fix the key named above, or run `tokenbuddyd config show`",
            );
            crate::doctor::print(&DoctorReport::new(vec![check]), json);
            return Err(Failure::Runtime(anyhow!("doctor found problems")));
        }
    };
    let report = runtime()?.block_on(async {
        let mut unanswered = None;
        if let Some(url) = crate::doctor::running_control_url(&data_dir) {
            match crate::doctor::get::<DoctorReport>(&format!("{url}/v1/doctor")).await {
                Ok(report) => return report,
                Err(e) => unanswered = Some(Check::warn(
                    "daemon",
                    format!("daemon.json names {url}, which did not answer the checks: {e:#}"),
                    "showing the checks that need no daemon; restart the daemon if it should be running",
                )),
            }
        }
        let mut checks = crate::doctor::offline_checks(&loaded).await;
        checks.extend(unanswered);
        DoctorReport::new(checks)
    });
    if crate::doctor::print(&report, json) {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow!("doctor found problems")))
    }
}

/// `status`: what the running daemon says about itself.
fn status(paths: Paths) -> Result<(), Failure> {
    let url = crate::doctor::running_control_url(&paths.data_dir).ok_or_else(|| {
        Failure::Runtime(anyhow!(
            "no daemon is running (no {})",
            paths.data_dir.join("daemon.json").display()
        ))
    })?;
    let rt = runtime()?;
    let ask = |e: anyhow::Error| Failure::Runtime(e.context(format!("asking the daemon at {url}")));
    let s: tb_control::api::Status = rt
        .block_on(crate::doctor::get(&format!("{url}/v1/status")))
        .map_err(ask)?;
    print!("{}", status_text(&s));
    let credit: tb_control::api::Credit = rt
        .block_on(crate::doctor::get(&format!("{url}/v1/credit")))
        .map_err(ask)?;
    if let Some(c) = credit {
        print!("{}", credit_text(&c));
    }
    Ok(())
}

/// The seller credit lines of `status`: one per seller, then the totals
/// (credit in seller micros, as `/v1/credit` gives it).
fn credit_text(c: &tb_control::api::CreditReport) -> String {
    use std::fmt::Write as _;
    let line = |out: &mut String, name: &str, n: &tb_control::api::CreditCounters| {
        let _ = writeln!(
            out,
            "  {name}: bought {} spent {} remaining {} wasted {} ({} purchases, {} failed, {} USD micros paid)",
            n.credit_bought_micros,
            n.credit_spent_micros,
            n.credit_remaining_micros,
            n.credit_wasted_micros,
            n.purchases,
            n.failed_purchases,
            n.usd_paid_micros
        );
    };
    let mut out = String::from("seller credit (micros):\n");
    for s in &c.sellers {
        line(
            &mut out,
            &s.seller_id,
            &tb_control::api::CreditCounters {
                purchases: s.purchases,
                failed_purchases: s.failed_purchases,
                credit_bought_micros: s.credit_bought_micros,
                usd_paid_micros: s.usd_paid_micros,
                credit_spent_micros: s.credit_spent_micros,
                credit_remaining_micros: s.credit_remaining_micros,
                credit_wasted_micros: s.credit_wasted_micros,
            },
        );
    }
    line(&mut out, "total", &c.totals);
    out
}

/// The lines `status` prints.
fn status_text(s: &tb_control::api::Status) -> String {
    use std::fmt::Write as _;
    let mode = s.mode.as_str();
    let u = &s.upstreams;
    let mut out = format!(
        "tokenbuddyd {} up {} s, mode {mode}\nproxy: {}\ncontrol: {}\nupstreams: {} ({} manual, {} sellers), {} open circuits\n",
        s.version,
        s.uptime_s,
        s.proxy_url,
        s.control_url,
        u.total,
        u.manual,
        u.sellers,
        u.open_circuits
    );
    if let Some(r) = &s.registry {
        let stale = if r.stale { " (stale)" } else { "" };
        let _ = writeln!(
            out,
            "registry: {} sellers, version {}{stale}",
            r.sellers, r.version
        );
    }
    if let Some(b) = &s.budget {
        let _ = writeln!(
            out,
            "purchase budget left: {} of {} USD micros",
            b.left_usd_micros, b.session_usd_micros
        );
    }
    let _ = writeln!(
        out,
        "ledger: {} ({} records dropped){}",
        s.ledger.backend,
        s.ledger.dropped,
        s.ledger
            .error
            .as_deref()
            .map(|e| format!(", failing: {e}"))
            .unwrap_or_default()
    );
    if let Some(t) = &s.team {
        let _ = writeln!(
            out,
            "team: on (key from {}, purchase lease {} ms, {} PostgreSQL round trips)",
            t.key_source, t.lease_ms, t.pg_round_trips
        );
        match (&t.budget, &t.budget_error) {
            (Some(b), _) => {
                let _ = writeln!(out, "team budget: {}", crate::team_budget::figures_text(b));
            }
            (None, error) => {
                let _ = writeln!(
                    out,
                    "team budget: unreadable ({})",
                    error.as_deref().unwrap_or("no answer")
                );
            }
        }
    }
    for e in &s.export {
        let _ = writeln!(
            out,
            "export {}: {} to {} ({} sent, {} dropped, queue {}/{})",
            e.sink,
            e.state.as_str(),
            e.target,
            e.sent,
            e.dropped,
            e.queue_depth,
            e.queue_capacity
        );
    }
    out
}

fn load(paths: Paths, overrides: &CliOverrides) -> Result<LoadedConfig, Failure> {
    tb_config::load(paths, overrides).map_err(|e| Failure::Config(anyhow!(e)))
}

fn show(loaded: &LoadedConfig) {
    let state = if loaded.file_found {
        "found"
    } else {
        "not found: defaults apply"
    };
    println!(
        "# config file: {} ({state})",
        loaded.paths.config_file.display()
    );
    println!("# data dir: {}", loaded.paths.data_dir.display());
    let rows = tb_config::describe(loaded);
    let width = rows
        .iter()
        .map(|r| r.key.len() + r.value.len() + 3)
        .max()
        .unwrap_or(0);
    for r in rows {
        let kv = format!("{} = {}", r.key, r.value);
        println!("{kv:<width$}  # {}", r.source);
    }
}

fn init(paths: &Paths, force: bool) -> anyhow::Result<()> {
    let path = &paths.config_file;
    if path.exists() && !force {
        return Err(anyhow!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        ));
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::write(path, STARTER_CONFIG).with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
