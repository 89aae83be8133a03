//! The service managers behind one small trait: systemd's user manager
//! (`systemctl --user`) and launchd (`launchctl`, the `gui/<uid>` domain).
//! What they are asked is a command line built by a pure function, and what
//! they answer is parsed by a pure function; only [`ServiceManager::run`]
//! and [`ServiceManager::query`] spawn anything, so `status` is unit tested
//! with a scripted manager.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::render::{LAUNCHD_LABEL, SYSTEMD_UNIT};

/// What the manager says about the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activity {
    /// Running (or starting for the first time).
    Running,
    /// Not running, and not because it failed.
    Stopped,
    /// Failed, or waiting to be restarted after a failure.
    Failed,
}

/// The manager's view of the service: its activity and its own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ManagerState {
    pub activity: Activity,
    /// E.g. `active (running)`, `failed (exit-code, status 1)`.
    pub detail: String,
}

/// A per-user service manager.
pub(crate) trait ServiceManager {
    /// `systemd --user` or `launchd`.
    fn name(&self) -> &'static str;
    /// Whether the manager answers (a user bus / a GUI session).
    fn reachable(&self) -> bool;
    /// The commands that load and start the service from `unit`.
    fn activation(&self, unit: &Path) -> Vec<Vec<String>>;
    /// The commands that stop, disable and unload it.
    fn deactivation(&self, unit: &Path) -> Vec<Vec<String>>;
    /// The service's state, when the manager knows *this* file (`None`:
    /// unreachable, not loaded, or loaded from another file).
    fn state(&self, unit: &Path) -> Option<ManagerState>;
    /// Runs one command; fails with its output when it fails.
    fn run(&self, argv: &[String]) -> anyhow::Result<()> {
        let out = query(argv)?;
        if !out.success {
            bail!("`{}` failed: {}", argv.join(" "), out.stderr.trim());
        }
        Ok(())
    }
}

/// What a command printed.
pub(crate) struct Output {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `argv` and collects its output (never through a shell).
pub(crate) fn query(argv: &[String]) -> anyhow::Result<Output> {
    let (program, args) = argv.split_first().context("an empty command")?;
    let out = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running {program}"))?;
    Ok(Output {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

fn words(w: &[&str]) -> Vec<String> {
    w.iter().map(|s| (*s).to_owned()).collect()
}

/// systemd's per-user manager.
pub(crate) struct SystemdUser;

impl ServiceManager for SystemdUser {
    fn name(&self) -> &'static str {
        "systemd --user"
    }

    fn reachable(&self) -> bool {
        query(&words(&["systemctl", "--user", "show-environment"])).is_ok_and(|o| o.success)
    }

    fn activation(&self, _unit: &Path) -> Vec<Vec<String>> {
        vec![
            words(&["systemctl", "--user", "daemon-reload"]),
            words(&["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT]),
        ]
    }

    fn deactivation(&self, _unit: &Path) -> Vec<Vec<String>> {
        vec![words(&[
            "systemctl",
            "--user",
            "disable",
            "--now",
            SYSTEMD_UNIT,
        ])]
    }

    fn state(&self, unit: &Path) -> Option<ManagerState> {
        let out = query(&words(&[
            "systemctl",
            "--user",
            "show",
            SYSTEMD_UNIT,
            "--property=LoadState,ActiveState,SubState,Result,FragmentPath,ExecMainStatus",
        ]))
        .ok()?;
        out.success
            .then(|| parse_systemd_show(&out.stdout, unit))
            .flatten()
    }
}

/// Reads `systemctl show` (`Key=value` lines): `None` unless the unit is
/// loaded from `unit` (the real user manager of a test's temporary home
/// must not be mistaken for the service under test).
pub(crate) fn parse_systemd_show(text: &str, unit: &Path) -> Option<ManagerState> {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or("")
    };
    if get("LoadState") != "loaded" || Path::new(get("FragmentPath")) != unit {
        return None;
    }
    let (active, sub, result) = (get("ActiveState"), get("SubState"), get("Result"));
    let activity = match (active, sub) {
        ("failed", _) | ("activating", "auto-restart") => Activity::Failed,
        ("active" | "activating" | "reloading", _) => Activity::Running,
        _ => Activity::Stopped,
    };
    let detail = match activity {
        Activity::Failed => format!(
            "{active} ({sub}; result {result}, exit status {})",
            get("ExecMainStatus")
        ),
        _ => format!("{active} ({sub})"),
    };
    Some(ManagerState { activity, detail })
}

/// launchd, in the logged-in user's GUI domain.
pub(crate) struct Launchd {
    /// `gui/<uid>`.
    pub domain: String,
}

impl Launchd {
    /// The current user's GUI domain (`id -u` names the user).
    pub(crate) fn current() -> anyhow::Result<Launchd> {
        let out = query(&words(&["id", "-u"]))?;
        let uid: u32 = out
            .stdout
            .trim()
            .parse()
            .with_context(|| format!("`id -u` printed {:?}", out.stdout.trim()))?;
        Ok(Launchd {
            domain: format!("gui/{uid}"),
        })
    }

    fn target(&self) -> String {
        format!("{}/{LAUNCHD_LABEL}", self.domain)
    }
}

impl ServiceManager for Launchd {
    fn name(&self) -> &'static str {
        "launchd"
    }

    fn reachable(&self) -> bool {
        query(&["launchctl".into(), "print".into(), self.domain.clone()]).is_ok_and(|o| o.success)
    }

    fn activation(&self, unit: &Path) -> Vec<Vec<String>> {
        vec![vec![
            "launchctl".into(),
            "bootstrap".into(),
            self.domain.clone(),
            unit.display().to_string(),
        ]]
    }

    fn deactivation(&self, _unit: &Path) -> Vec<Vec<String>> {
        vec![vec!["launchctl".into(), "bootout".into(), self.target()]]
    }

    fn state(&self, _unit: &Path) -> Option<ManagerState> {
        let out = query(&["launchctl".into(), "print".into(), self.target()]).ok()?;
        out.success.then(|| parse_launchctl_print(&out.stdout))
    }
}

/// Reads `launchctl print gui/<uid>/<label>`: `state = running`, and the
/// `last exit code` that tells a failure from a stop.
pub(crate) fn parse_launchctl_print(text: &str) -> ManagerState {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().strip_prefix('='))
            .map(str::trim)
    };
    let state = get("state").unwrap_or("unknown");
    let exit = get("last exit code").unwrap_or("(never exited)");
    let activity = if state == "running" {
        Activity::Running
    } else if exit.parse::<i64>().is_ok_and(|c| c != 0) {
        Activity::Failed
    } else {
        Activity::Stopped
    };
    ManagerState {
        activity,
        detail: format!("state {state}, last exit code {exit}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIT: &str = "/h/.config/systemd/user/tokenbuddyd.service";

    fn show(active: &str, sub: &str, path: &str) -> String {
        format!(
            "LoadState=loaded\nActiveState={active}\nSubState={sub}\nResult=exit-code\nFragmentPath={path}\nExecMainStatus=1\n"
        )
    }

    #[test]
    fn systemd_states() {
        let cases = [
            ("active", "running", Activity::Running),
            ("activating", "start", Activity::Running),
            ("activating", "auto-restart", Activity::Failed),
            ("failed", "failed", Activity::Failed),
            ("inactive", "dead", Activity::Stopped),
        ];
        for (active, sub, want) in cases {
            let s = parse_systemd_show(&show(active, sub, UNIT), Path::new(UNIT)).unwrap();
            assert_eq!(s.activity, want, "{active} {sub}");
        }
        let failed = parse_systemd_show(&show("failed", "failed", UNIT), Path::new(UNIT)).unwrap();
        assert_eq!(
            failed.detail,
            "failed (failed; result exit-code, exit status 1)"
        );
    }

    #[test]
    fn a_unit_from_another_file_or_not_loaded_is_not_ours() {
        let other = show("active", "running", "/real/home/.config/systemd/user/x");
        assert_eq!(parse_systemd_show(&other, Path::new(UNIT)), None);
        let missing = "LoadState=not-found\nActiveState=inactive\nFragmentPath=\n";
        assert_eq!(parse_systemd_show(missing, Path::new(UNIT)), None);
    }

    #[test]
    fn launchd_states() {
        let running = "gui/501/dev.tokenbuddy.tokenbuddyd = {\n\tstate = running\n\tpid = 42\n\tlast exit code = (never exited)\n}";
        assert_eq!(parse_launchctl_print(running).activity, Activity::Running);
        let failed = "\tstate = waiting\n\tlast exit code = 1\n";
        let s = parse_launchctl_print(failed);
        assert_eq!(s.activity, Activity::Failed);
        assert_eq!(s.detail, "state waiting, last exit code 1");
        let stopped = "\tstate = not running\n\tlast exit code = 0\n";
        assert_eq!(parse_launchctl_print(stopped).activity, Activity::Stopped);
    }
}
