//! `service status`: is the daemon running, stopped or failed? The service
//! manager's word when it knows this unit, else what `daemon.json`, the
//! pid and the proxy port say. Observing does I/O; judging is pure.

use std::path::Path;
use std::time::Duration;

use super::manager::{Activity, ManagerState, ServiceManager};

/// What `daemon.json` and the process table say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DaemonSeen {
    /// No (readable) `daemon.json`: no daemon, or one that exited cleanly.
    NoFile,
    /// The pid in `daemon.json` is alive; `answering` is whether its proxy
    /// port accepts a connection.
    Alive {
        pid: u32,
        proxy_url: String,
        answering: bool,
    },
    /// `daemon.json` names a pid that is gone: the daemon did not exit
    /// cleanly (a clean exit removes the file).
    Dead { pid: u32 },
}

/// Everything `status` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The service file exists.
    pub installed: bool,
    /// The manager's view of this unit (`None`: unreachable or unknown).
    pub manager: Option<ManagerState>,
    pub daemon: DaemonSeen,
}

/// The verdict: running, stopped or failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judgement {
    pub activity: Activity,
    pub summary: String,
}

/// Judges what was observed: the manager first (it knows about restarts
/// and exit codes), then the daemon's own traces.
pub(crate) fn judge(o: &Observed) -> Judgement {
    let daemon = match &o.daemon {
        DaemonSeen::Alive {
            pid,
            proxy_url,
            answering: true,
        } => format!("pid {pid}, proxy {proxy_url} answering"),
        DaemonSeen::Alive {
            pid,
            proxy_url,
            answering: false,
        } => format!("pid {pid} is alive but its proxy {proxy_url} does not answer"),
        DaemonSeen::Dead { pid } => {
            format!("daemon.json names pid {pid}, which is gone: the daemon did not exit cleanly")
        }
        DaemonSeen::NoFile => "no daemon.json".to_owned(),
    };
    if let Some(m) = &o.manager {
        return Judgement {
            activity: m.activity,
            summary: format!("{} ({daemon})", m.detail),
        };
    }
    let activity = match &o.daemon {
        DaemonSeen::Alive {
            answering: true, ..
        } => Activity::Running,
        DaemonSeen::Alive { .. } | DaemonSeen::Dead { .. } => Activity::Failed,
        DaemonSeen::NoFile => Activity::Stopped,
    };
    Judgement {
        activity,
        summary: daemon,
    }
}

/// Looks at the manager (when the unit file exists), `daemon.json`, the
/// pid and the proxy port.
pub(crate) fn observe(
    manager: Option<&dyn ServiceManager>,
    unit: &Path,
    data_dir: &Path,
) -> Observed {
    let installed = unit.exists();
    Observed {
        installed,
        manager: manager.filter(|_| installed).and_then(|m| m.state(unit)),
        daemon: daemon_seen(data_dir),
    }
}

/// What `daemon.json`, the pid and the port say.
pub(crate) fn daemon_seen(data_dir: &Path) -> DaemonSeen {
    let Some(file) = std::fs::read(data_dir.join("daemon.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::doctor::DaemonFile>(&b).ok())
    else {
        return DaemonSeen::NoFile;
    };
    if !pid_alive(file.pid) {
        return DaemonSeen::Dead { pid: file.pid };
    }
    DaemonSeen::Alive {
        pid: file.pid,
        answering: answers(&file.proxy_url),
        proxy_url: file.proxy_url,
    }
}

/// Whether a process with this pid exists (`/proc` on Linux, `kill -0`
/// elsewhere).
fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self").exists() {
        return Path::new("/proc").join(pid.to_string()).exists();
    }
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `http://host:port` accepts a TCP connection within a second.
fn answers(url: &str) -> bool {
    use std::net::ToSocketAddrs;
    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let (Some(host), Some(port)) = (uri.host(), uri.port_u16()) else {
        return false;
    };
    let host = host.trim_matches(['[', ']']);
    (host, port).to_socket_addrs().is_ok_and(|mut addrs| {
        addrs.any(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_secs(1)).is_ok())
    })
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A manager that answers from a script and records what it is asked.
    struct Scripted {
        state: Option<ManagerState>,
        asked: RefCell<usize>,
    }

    impl ServiceManager for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn reachable(&self) -> bool {
            true
        }
        fn activation(&self, _: &Path) -> Vec<Vec<String>> {
            Vec::new()
        }
        fn deactivation(&self, _: &Path) -> Vec<Vec<String>> {
            Vec::new()
        }
        fn state(&self, _: &Path) -> Option<ManagerState> {
            *self.asked.borrow_mut() += 1;
            self.state.clone()
        }
    }

    fn scripted(activity: Activity, detail: &str) -> Scripted {
        Scripted {
            state: Some(ManagerState {
                activity,
                detail: detail.into(),
            }),
            asked: RefCell::new(0),
        }
    }

    #[test]
    fn the_manager_is_asked_only_when_the_unit_is_installed_and_its_word_wins() {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("tokenbuddyd.service");
        let failed = scripted(Activity::Failed, "failed (exit-code)");
        let o = observe(Some(&failed), &unit, dir.path());
        assert_eq!(*failed.asked.borrow(), 0);
        assert_eq!(judge(&o).activity, Activity::Stopped);

        std::fs::write(&unit, "x").unwrap();
        let o = observe(Some(&failed), &unit, dir.path());
        assert_eq!(*failed.asked.borrow(), 1);
        let j = judge(&o);
        assert_eq!(j.activity, Activity::Failed);
        assert_eq!(j.summary, "failed (exit-code) (no daemon.json)");

        let running = scripted(Activity::Running, "active (running)");
        assert_eq!(
            judge(&observe(Some(&running), &unit, dir.path())).activity,
            Activity::Running
        );
    }

    #[test]
    fn without_a_manager_the_daemon_traces_decide() {
        let judge_of = |daemon: DaemonSeen| {
            judge(&Observed {
                installed: true,
                manager: None,
                daemon,
            })
        };
        assert_eq!(judge_of(DaemonSeen::NoFile).activity, Activity::Stopped);
        let alive = |answering| DaemonSeen::Alive {
            pid: 7,
            proxy_url: "http://127.0.0.1:9".into(),
            answering,
        };
        assert_eq!(judge_of(alive(true)).activity, Activity::Running);
        let j = judge_of(alive(false));
        assert_eq!(j.activity, Activity::Failed);
        assert!(j.summary.contains("does not answer"), "{}", j.summary);
        let j = judge_of(DaemonSeen::Dead { pid: 7 });
        assert_eq!(j.activity, Activity::Failed);
        assert!(j.summary.contains("did not exit cleanly"), "{}", j.summary);
    }

    #[test]
    fn a_daemon_json_with_a_dead_pid_is_seen_dead() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(daemon_seen(dir.path()), DaemonSeen::NoFile);
        let file = crate::doctor::DaemonFile {
            pid: u32::MAX - 1,
            proxy_url: "http://127.0.0.1:1".into(),
            control_url: "http://127.0.0.1:1".into(),
            started_at: String::new(),
        };
        std::fs::write(
            dir.path().join("daemon.json"),
            serde_json::to_vec(&file).unwrap(),
        )
        .unwrap();
        assert_eq!(
            daemon_seen(dir.path()),
            DaemonSeen::Dead { pid: u32::MAX - 1 }
        );
    }

    #[test]
    fn last_lines_takes_the_tail() {
        assert_eq!(last_lines("a\nb\nc\n", 2), ["b", "c"]);
        assert_eq!(last_lines("a", 5), ["a"]);
        assert!(last_lines("", 3).is_empty());
    }
}
