//! End-to-end: `tokenbuddyd service install | uninstall | status | logs`
//! in a temporary HOME (with a space in the paths): the systemd unit is
//! accepted by `systemd-analyze --user verify`, the launchd plist by
//! `plutil -lint` or the `plist` crate, and `status` tells a stopped, a
//! running and a failed daemon apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use tb_test_support::daemon::{Daemon, command};

/// A TB_HOME whose path holds a space, with a config file, and a HOME
/// beside it (never the real one).
struct Homes {
    dir: tempfile::TempDir,
}

impl Homes {
    fn new(config: &str) -> Homes {
        let dir = tempfile::Builder::new()
            .prefix("tb service ")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("tb home")).unwrap();
        std::fs::write(dir.path().join("tb home/config.toml"), config).unwrap();
        Homes { dir }
    }

    fn tb_home(&self) -> PathBuf {
        self.dir.path().join("tb home")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("user")
    }
}

/// Runs `tokenbuddyd ARGS` with `tb_home` and `home` (no XDG directories
/// of the machine's own user leak in).
async fn run_in(tb_home: &Path, home: &Path, args: &[&str]) -> Output {
    command(bin(), tb_home)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .args(args)
        .output()
        .await
        .unwrap()
}

/// [`run_in`], which must succeed; its stdout.
async fn ok_in(tb_home: &Path, home: &Path, args: &[&str]) -> String {
    let out = run_in(tb_home, home, args).await;
    assert!(
        out.status.success(),
        "tokenbuddyd {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn found(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok()
}

#[tokio::test]
async fn the_systemd_unit_is_verified_reinstalls_unchanged_and_uninstalls() {
    let h = Homes::new("[proxy]\nport = 0\n");
    let (tb, home) = (h.tb_home(), h.home());
    let args = [
        "service",
        "install",
        "--files-only",
        "--platform",
        "systemd",
    ];
    let out = ok_in(&tb, &home, &args).await;
    let unit = home.join(".config/systemd/user/tokenbuddyd.service");
    assert!(out.contains(&format!("wrote {}", unit.display())), "{out}");
    let text = std::fs::read_to_string(&unit).unwrap();
    let exec = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let config = tb.join("config.toml").canonicalize().unwrap();
    assert!(
        exec.contains(&format!("\"--config\" \"{}\"", config.display())),
        "{exec}"
    );
    assert!(
        exec.contains(&format!("\"--data-dir\" \"{}\"", tb.join("data").display())),
        "{exec}"
    );
    assert!(text.contains("\nRestart=on-failure\n"), "{text}");
    assert!(text.contains("\nWantedBy=default.target\n"), "{text}");

    if found("systemd-analyze") {
        let runtime = h.dir.path().join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        let verify = std::process::Command::new("systemd-analyze")
            .args(["--user", "verify"])
            .arg(&unit)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("XDG_CONFIG_HOME")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(verify.status.success(), "systemd-analyze: {stderr}");
        // A bad setting is only a warning to verify: none may be printed.
        assert!(!stderr.contains("tokenbuddyd.service:"), "{stderr}");
    } else {
        println!("skipped systemd-analyze --user verify: systemd-analyze is not installed");
    }

    let again = ok_in(&tb, &home, &args).await;
    assert!(again.contains("is up to date"), "{again}");
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), text);

    let dry = ok_in(&tb, &home, &["service", "uninstall", "--dry-run"]).await;
    assert!(dry.contains("would remove"), "{dry}");
    assert!(unit.exists());
    let out = ok_in(&tb, &home, &["service", "uninstall", "--files-only"]).await;
    assert!(out.contains("removed"), "{out}");
    assert!(!unit.exists());
    let out = ok_in(&tb, &home, &["service", "uninstall", "--files-only"]).await;
    assert!(out.contains("not installed"), "{out}");
}

#[tokio::test]
async fn the_launchd_plist_lints() {
    let h = Homes::new("[proxy]\nport = 0\n");
    let (tb, home) = (h.tb_home(), h.home());
    let dry = ok_in(
        &tb,
        &home,
        &["service", "install", "--dry-run", "--platform", "launchd"],
    )
    .await;
    assert!(dry.contains("would write"), "{dry}");
    let plist_path = home.join("Library/LaunchAgents/dev.tokenbuddy.tokenbuddyd.plist");
    assert!(!plist_path.exists(), "--dry-run writes nothing");
    ok_in(
        &tb,
        &home,
        &[
            "service",
            "install",
            "--files-only",
            "--platform",
            "launchd",
        ],
    )
    .await;
    if found("plutil") {
        let lint = std::process::Command::new("plutil")
            .arg("-lint")
            .arg(&plist_path)
            .output()
            .unwrap();
        assert!(lint.status.success(), "{lint:?}");
    }
    let doc = plist::Value::from_file(&plist_path).unwrap();
    let dict = doc.as_dictionary().unwrap();
    assert_eq!(
        dict.get("Label").and_then(|v| v.as_string()),
        Some("dev.tokenbuddy.tokenbuddyd")
    );
    let args: Vec<&str> = dict
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .map(|v| v.as_string().unwrap())
        .collect();
    let config = tb.join("config.toml").canonicalize().unwrap();
    let data = tb.join("data");
    assert_eq!(
        args[1..],
        [
            "--config",
            config.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "serve"
        ]
    );
    assert_eq!(
        Path::new(args[0]).canonicalize().unwrap(),
        bin().canonicalize().unwrap()
    );
    assert_eq!(
        dict.get("RunAtLoad").and_then(|v| v.as_boolean()),
        Some(true)
    );
    let keep_alive = dict.get("KeepAlive").and_then(|v| v.as_dictionary());
    assert_eq!(
        keep_alive
            .and_then(|k| k.get("SuccessfulExit"))
            .and_then(|v| v.as_boolean()),
        Some(false)
    );
    let log = data.join("tokenbuddyd.log");
    assert_eq!(
        dict.get("StandardErrorPath").and_then(|v| v.as_string()),
        log.to_str()
    );
    ok_in(
        &tb,
        &home,
        &[
            "service",
            "uninstall",
            "--files-only",
            "--platform",
            "launchd",
        ],
    )
    .await;
    assert!(!plist_path.exists());
}

#[tokio::test]
async fn install_without_a_config_file_says_how_to_make_one() {
    let h = Homes::new("");
    std::fs::remove_file(h.tb_home().join("config.toml")).unwrap();
    let out = run_in(
        &h.tb_home(),
        &h.home(),
        &["service", "install", "--files-only"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tokenbuddyd config init"), "{stderr}");
    assert!(!h.home().join(".config/systemd").exists());
}

#[tokio::test]
async fn status_tells_stopped_running_and_failed_and_logs_shows_the_tail() {
    let upstream = tb_test_support::MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), "");
    let mut daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let tb = daemon.home().to_path_buf();
    let home = tb.join("user");

    let running = ok_in(&tb, &home, &["service", "status"]).await;
    let pid = daemon.pid().unwrap();
    assert!(
        running.starts_with(&format!(
            "daemon: running — pid {pid}, proxy {} answering",
            daemon.proxy_url
        )),
        "{running}"
    );
    assert!(running.contains("service: not installed"), "{running}");

    daemon.sigterm().unwrap();
    assert!(daemon.wait().await.unwrap().success());
    let stopped = ok_in(&tb, &home, &["service", "status"]).await;
    assert!(
        stopped.starts_with("daemon: stopped — no daemon.json"),
        "{stopped}"
    );

    // Installed, and a daemon that died without cleaning up: failed.
    ok_in(&tb, &home, &["service", "install", "--files-only"]).await;
    let data = tb.join("data");
    std::fs::write(
        data.join("daemon.json"),
        format!(
            r#"{{"pid":{},"proxy_url":"http://127.0.0.1:1","control_url":"http://127.0.0.1:1","started_at":""}}"#,
            u32::MAX - 1
        ),
    )
    .unwrap();
    let lines: String = (1..=30).map(|i| format!("log line {i}\n")).collect();
    std::fs::write(data.join("tokenbuddyd.log"), &lines).unwrap();
    let failed = ok_in(&tb, &home, &["service", "status", "-n", "3"]).await;
    assert!(failed.starts_with("daemon: failed — "), "{failed}");
    assert!(failed.contains("did not exit cleanly"), "{failed}");
    assert!(failed.contains("service: installed ("), "{failed}");
    assert!(
        failed.ends_with("  log line 28\n  log line 29\n  log line 30\n"),
        "{failed}"
    );
    assert!(!failed.contains("log line 27\n"), "{failed}");

    let logs = ok_in(&tb, &home, &["service", "logs", "-n", "2"]).await;
    assert_eq!(logs, "log line 29\nlog line 30\n");
}
