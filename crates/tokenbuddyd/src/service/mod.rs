//! `tokenbuddyd service install | uninstall | status | logs`: the daemon as
//! a per-user service that starts at login and restarts on failure — a
//! systemd user unit on Linux, a launchd agent on macOS (Windows:
//! `docs/service.md`).
//!
//! The files are pure renderings of a [`ServiceSpec`] (`render`), the
//! managers sit behind [`manager::ServiceManager`], and `status` judges what
//! it observes with a pure function (`status`). This module does the I/O:
//! where the files go, writing and removing them, running the manager's
//! commands, reading the log.
//!
//! `tokenbuddyd setup` installs the service through [`install`].

mod manager;
mod render;
mod status;

use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use tb_config::Paths;

use crate::Failure;
pub(crate) use manager::Activity;
use manager::{Launchd, ServiceManager, SystemdUser};
pub(crate) use render::ServiceSpec;
use status::Judgement;
pub(crate) use status::{DaemonSeen, daemon_seen};

/// The log file the service appends the daemon's output to, in the data
/// directory.
pub(crate) const LOG_FILE: &str = "tokenbuddyd.log";
/// The environment file the systemd unit reads, in the data directory.
pub(crate) const ENV_FILE: &str = "service.env";

/// `tokenbuddyd service …`.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
    /// The service manager to write for: `systemd` (user unit) or
    /// `launchd` (agent). Default: launchd on macOS, systemd elsewhere.
    #[arg(long, global = true, value_enum)]
    platform: Option<Platform>,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Write the service file with the config and data paths fixed in it,
    /// then load and start it (`systemctl --user enable --now`, `launchctl
    /// bootstrap`) when the service manager is reachable.
    Install {
        /// Print the file and the commands instead of writing or running
        /// anything.
        #[arg(long)]
        dry_run: bool,
        /// Write the file only; do not talk to the service manager.
        #[arg(long, conflicts_with = "dry_run")]
        files_only: bool,
    },
    /// Stop and disable the service, then remove its file.
    Uninstall {
        /// Print what would be removed and run.
        #[arg(long)]
        dry_run: bool,
        /// Remove the file only; do not talk to the service manager.
        #[arg(long, conflicts_with = "dry_run")]
        files_only: bool,
    },
    /// Running, stopped or failed (from the service manager when it knows
    /// the unit, else from daemon.json, the pid and the port), with the
    /// last log lines.
    Status {
        /// How many log lines to show.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
    },
    /// The service's log (the daemon's output, appended to
    /// `<data dir>/tokenbuddyd.log`).
    Logs {
        /// How many lines to show.
        #[arg(short = 'n', long, default_value_t = 50)]
        lines: usize,
        /// Keep printing what is appended (until Ctrl-C).
        #[arg(short, long)]
        follow: bool,
    },
}

/// A service manager family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Platform {
    /// A systemd user unit (Linux).
    Systemd,
    /// A launchd agent (macOS).
    Launchd,
}

impl Platform {
    fn native() -> Platform {
        if cfg!(target_os = "macos") {
            Platform::Launchd
        } else {
            Platform::Systemd
        }
    }

    /// Where the service file goes: `$XDG_CONFIG_HOME/systemd/user` (else
    /// `~/.config/systemd/user`) or `~/Library/LaunchAgents`.
    fn unit_path(self, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
        let var = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let home = || {
            var("HOME")
                .ok_or_else(|| anyhow!("HOME is not set: cannot tell where the service file goes"))
        };
        Ok(match self {
            Platform::Systemd => var("XDG_CONFIG_HOME")
                .map_or_else(|| home().map(|h| h.join(".config")), Ok)?
                .join("systemd/user")
                .join(render::SYSTEMD_UNIT),
            Platform::Launchd => home()?
                .join("Library/LaunchAgents")
                .join(format!("{}.plist", render::LAUNCHD_LABEL)),
        })
    }

    fn render(self, spec: &ServiceSpec) -> anyhow::Result<String> {
        match self {
            Platform::Systemd => render::systemd_unit(spec),
            Platform::Launchd => render::launchd_plist(spec),
        }
    }

    fn manager(self) -> anyhow::Result<Box<dyn ServiceManager>> {
        Ok(match self {
            Platform::Systemd => Box::new(SystemdUser),
            Platform::Launchd => Box::new(Launchd::current()?),
        })
    }
}

/// How far `install` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Print the file and the commands; change nothing.
    DryRun,
    /// Write the file; leave the service manager alone.
    FilesOnly,
    /// Write the file, then load and start the service when the manager
    /// is reachable (else say which commands to run later).
    Now,
}

/// What `install` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Installed {
    /// The service file.
    pub unit: PathBuf,
    /// The file was written (it did not exist or differed).
    pub written: bool,
    /// The service was (re)loaded and started by the manager.
    pub started: bool,
}

fn process_env(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// Installs the service for the native platform (for `tokenbuddyd setup`):
/// writes the file for `paths` and, with [`Activation::Now`], starts it.
/// Prints what it does. Fails when the config file does not exist (a
/// service must not depend on a file that is not there).
pub(crate) fn install(paths: &Paths, activation: Activation) -> anyhow::Result<Installed> {
    install_for(Platform::native(), paths, activation)
}

/// The spec of the service for `paths`: this executable, absolute paths.
fn spec_for(paths: &Paths) -> anyhow::Result<ServiceSpec> {
    let config_file = paths.config_file.canonicalize().map_err(|e| {
        anyhow!(
            "the config file {} cannot be used by a service ({e}); write one first with `tokenbuddyd config init` (or `tokenbuddyd setup`)",
            paths.config_file.display()
        )
    })?;
    let data_dir = std::path::absolute(&paths.data_dir)
        .with_context(|| format!("resolving {}", paths.data_dir.display()))?;
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .context("finding the tokenbuddyd executable")?;
    Ok(ServiceSpec {
        exe,
        config_file,
        log_file: data_dir.join(LOG_FILE),
        env_file: data_dir.join(ENV_FILE),
        data_dir,
    })
}

fn install_for(
    platform: Platform,
    paths: &Paths,
    activation: Activation,
) -> anyhow::Result<Installed> {
    let spec = spec_for(paths)?;
    let unit = platform.unit_path(&process_env)?;
    let content = platform.render(&spec)?;
    let current = std::fs::read_to_string(&unit).ok();
    let written = current.as_deref() != Some(content.as_str());
    let manager = match activation {
        Activation::FilesOnly => None,
        _ => Some(platform.manager()?),
    };
    if activation == Activation::DryRun {
        let verb = if written { "would write" } else { "unchanged" };
        println!("{verb} {}:\n{content}", unit.display());
        if let Some(m) = &manager {
            for cmd in m.activation(&unit) {
                println!("would run: {}", cmd.join(" "));
            }
        }
        return Ok(Installed {
            unit,
            written: false,
            started: false,
        });
    }
    std::fs::create_dir_all(&spec.data_dir)
        .with_context(|| format!("creating {}", spec.data_dir.display()))?;
    if written {
        write_atomically(&unit, &content)?;
        println!("wrote {}", unit.display());
    } else {
        println!("{} is up to date", unit.display());
    }
    key_env_note(platform, paths, &spec);
    let started = match manager {
        Some(m) => activate(m.as_ref(), &unit, written)?,
        None => false,
    };
    Ok(Installed {
        unit,
        written,
        started,
    })
}

/// Loads and starts the service: reloaded when the file changed under a
/// loaded service, left alone when it is loaded and unchanged.
fn activate(m: &dyn ServiceManager, unit: &Path, changed: bool) -> anyhow::Result<bool> {
    if !m.reachable() {
        println!(
            "{} is not reachable (no user session bus?): the file is in place; to start it now run:",
            m.name()
        );
        for cmd in m.activation(unit) {
            println!("  {}", cmd.join(" "));
        }
        return Ok(false);
    }
    let loaded = m.state(unit).is_some();
    if loaded && !changed {
        println!("the service is loaded and unchanged");
        return Ok(false);
    }
    let mut commands = if loaded {
        m.deactivation(unit)
    } else {
        Vec::new()
    };
    commands.extend(m.activation(unit));
    for cmd in &commands {
        m.run(cmd)
            .context("starting the service (rerun with --files-only to only write the file)")?;
        println!("ran: {}", cmd.join(" "));
    }
    Ok(true)
}

fn write_atomically(path: &Path, content: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    tmp.write_all(content.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn uninstall(platform: Platform, dry_run: bool, files_only: bool) -> anyhow::Result<()> {
    let unit = platform.unit_path(&process_env)?;
    if !unit.exists() {
        println!("not installed ({} does not exist)", unit.display());
        return Ok(());
    }
    let manager = if files_only {
        None
    } else {
        Some(platform.manager()?)
    };
    // Only a unit the manager loaded from this very file is stopped.
    let commands = manager
        .as_ref()
        .filter(|m| m.state(&unit).is_some())
        .map(|m| m.deactivation(&unit))
        .unwrap_or_default();
    if dry_run {
        for cmd in &commands {
            println!("would run: {}", cmd.join(" "));
        }
        println!("would remove {}", unit.display());
        return Ok(());
    }
    if let Some(m) = &manager {
        for cmd in &commands {
            m.run(cmd).context(
                "stopping the service (rerun with --files-only to only remove the file)",
            )?;
            println!("ran: {}", cmd.join(" "));
        }
    }
    std::fs::remove_file(&unit).with_context(|| format!("removing {}", unit.display()))?;
    println!("removed {}", unit.display());
    Ok(())
}

/// The file an installed systemd service reads its variables from (for
/// `doctor`'s key hint); `None` when no such service is installed.
pub(crate) fn env_file_if_installed(data_dir: &Path) -> Option<String> {
    let platform = Platform::native();
    (platform == Platform::Systemd && platform.unit_path(&process_env).ok()?.exists())
        .then(|| data_dir.join(ENV_FILE).display().to_string())
}

/// The variables the config names in `api_key_env`, which a service does
/// not inherit from the shell: where to put them.
fn key_env_note(platform: Platform, paths: &Paths, spec: &ServiceSpec) {
    let Ok(loaded) = tb_config::load(paths.clone(), &tb_config::CliOverrides::default()) else {
        return;
    };
    let vars: Vec<&str> = loaded
        .config
        .providers
        .iter()
        .filter_map(|p| p.api_key_env.as_deref())
        .collect();
    if vars.is_empty() {
        return;
    }
    let list = vars.join(", ");
    match platform {
        Platform::Systemd => println!(
            "note: the service does not inherit your shell's variables; put {list} in {} (KEY=value lines, chmod 600)",
            spec.env_file.display()
        ),
        Platform::Launchd => println!(
            "note: the agent does not inherit your shell's variables; set {list} with `launchctl setenv` or in the plist's EnvironmentVariables (docs/service.md)"
        ),
    }
}

/// The service's state for `doctor`: `None` when it is not installed.
pub(crate) fn installed_state(data_dir: &Path) -> Option<(PathBuf, Judgement)> {
    let platform = Platform::native();
    let unit = platform.unit_path(&process_env).ok()?;
    if !unit.exists() {
        return None;
    }
    let manager = platform.manager().ok();
    let observed = status::observe(manager.as_deref(), &unit, data_dir);
    Some((unit, status::judge(&observed)))
}

fn print_status(platform: Platform, data_dir: &Path, lines: usize) -> anyhow::Result<()> {
    let unit = platform.unit_path(&process_env)?;
    let manager = platform.manager().ok();
    let observed = status::observe(manager.as_deref(), &unit, data_dir);
    let j = status::judge(&observed);
    let word = match j.activity {
        Activity::Running => "running",
        Activity::Stopped => "stopped",
        Activity::Failed => "failed",
    };
    println!("daemon: {word} — {}", j.summary);
    if observed.installed {
        let by = match (&manager, &observed.manager) {
            (Some(m), Some(_)) => format!("loaded by {}", m.name()),
            (Some(m), None) => format!("not loaded by {} (or it is not reachable)", m.name()),
            (None, _) => "service manager not available".into(),
        };
        println!("service: installed ({}), {by}", unit.display());
    } else {
        println!(
            "service: not installed (`tokenbuddyd service install` writes {})",
            unit.display()
        );
    }
    let log = data_dir.join(LOG_FILE);
    match tail(&log, lines) {
        Ok(text) if !text.is_empty() => {
            println!("last log lines ({}):", log.display());
            for l in status::last_lines(&text, lines) {
                println!("  {l}");
            }
        }
        _ => println!("log: {} (empty or missing)", log.display()),
    }
    Ok(())
}

/// The end of `path` holding at least `lines` lines (up to 1 MiB).
fn tail(path: &Path, lines: usize) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let want = (lines as u64).saturating_mul(512).clamp(64 * 1024, 1 << 20);
    f.seek(SeekFrom::Start(len.saturating_sub(want)))?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn logs(data_dir: &Path, lines: usize, follow: bool) -> anyhow::Result<()> {
    let log = data_dir.join(LOG_FILE);
    let text = tail(&log, lines).with_context(|| {
        format!(
            "reading {} (the service appends the daemon's output there; a daemon started by hand logs to its terminal)",
            log.display()
        )
    })?;
    let mut out = std::io::stdout().lock();
    for l in status::last_lines(&text, lines) {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    if !follow {
        return Ok(());
    }
    let mut offset = std::fs::metadata(&log)?.len();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(500));
        let len = std::fs::metadata(&log).map_or(0, |m| m.len());
        if len < offset {
            offset = 0; // Truncated or rotated: start over.
        }
        if len > offset {
            let mut f = std::fs::File::open(&log)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = Vec::new();
            f.read_to_end(&mut buf)?;
            offset += buf.len() as u64;
            out.write_all(&buf)?;
            out.flush()?;
        }
    }
}

/// `tokenbuddyd service …`.
pub(crate) fn run(paths: &Paths, args: &ServiceArgs) -> Result<(), Failure> {
    let platform = args.platform.unwrap_or_else(Platform::native);
    let result = match &args.command {
        ServiceCommand::Install {
            dry_run,
            files_only,
        } => {
            let activation = if *dry_run {
                Activation::DryRun
            } else if *files_only {
                Activation::FilesOnly
            } else {
                Activation::Now
            };
            match args.platform {
                None => install(paths, activation),
                Some(p) => install_for(p, paths, activation),
            }
            .map(|_| ())
        }
        ServiceCommand::Uninstall {
            dry_run,
            files_only,
        } => uninstall(platform, *dry_run, *files_only),
        ServiceCommand::Status { lines } => print_status(platform, &paths.data_dir, *lines),
        ServiceCommand::Logs { lines, follow } => logs(&paths.data_dir, *lines, *follow),
    };
    result.map_err(Failure::Runtime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_follow_xdg_and_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            Platform::Systemd
                .unit_path(&env(&[("HOME", "/h")]))
                .unwrap(),
            Path::new("/h/.config/systemd/user/tokenbuddyd.service")
        );
        assert_eq!(
            Platform::Systemd
                .unit_path(&env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")]))
                .unwrap(),
            Path::new("/x/systemd/user/tokenbuddyd.service")
        );
        assert_eq!(
            Platform::Launchd
                .unit_path(&env(&[("HOME", "/h")]))
                .unwrap(),
            Path::new("/h/Library/LaunchAgents/dev.tokenbuddy.tokenbuddyd.plist")
        );
        let e = Platform::Launchd.unit_path(&env(&[])).unwrap_err();
        assert!(e.to_string().contains("HOME is not set"), "{e}");
    }
}
