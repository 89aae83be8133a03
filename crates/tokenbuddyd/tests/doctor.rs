//! End-to-end: `doctor --json` finds what is actually wrong — nothing to
//! serve, a missing key variable, a focus model nobody serves, the registry
//! down, a failing service, clients configured to a stopped daemon, to a
//! stale port or with an old access token — each a failure with its fix,
//! while a healthy setup stays green.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use tb_control::api::{Check, DoctorReport, Verdict};
use tb_test_support::MockUpstream;
use tb_test_support::daemon::{Daemon, command, home_with_config};

/// `tokenbuddyd doctor --json` in `tb_home` (HOME is `tb_home/no-real-home`,
/// as for the daemon): the exit code and the typed report.
async fn doctor(tb_home: &Path) -> (i32, DoctorReport) {
    let out = command(bin(), tb_home)
        .args(["doctor", "--json"])
        .output()
        .await
        .unwrap();
    let report: DoctorReport = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json printed no report ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap(), report)
}

/// The one check named `name`.
fn check<'a>(report: &'a DoctorReport, name: &str) -> &'a Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#?}"))
}

/// Asserts `name` failed with a hint containing `fix`, and the exit code.
fn assert_fails(code: i32, report: &DoctorReport, name: &str, fix: &str) -> Check {
    let c = check(report, name).clone();
    assert_eq!(c.verdict, Verdict::Fail, "{c:#?}");
    assert!(c.hint.contains(fix), "hint {:?} lacks {fix:?}", c.hint);
    assert_eq!(code, 1, "a failed check exits 1");
    assert!(!report.ok);
    c
}

/// A loopback port nothing listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ports(proxy: u16) -> String {
    format!("[proxy]\nport = {proxy}\n[control]\nport = 0\n")
}

async fn run_ok(tb_home: &Path, args: &[&str]) -> String {
    home_stdout(tb_home, args).await
}

/// Makes `codex` look installed in the daemon's HOME.
fn codex_present(tb_home: &Path) -> std::path::PathBuf {
    let dir = tb_home.join("no-real-home/.codex");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("config.toml")
}

#[tokio::test]
async fn nothing_to_serve_fails() {
    let home = home_with_config(&ports(0)).unwrap();
    let (code, report) = doctor(home.path()).await;
    let c = assert_fails(code, &report, "upstreams", "[[providers]]");
    assert!(c.detail.contains("model_not_found"), "{c:?}");
}

#[tokio::test]
async fn an_unset_key_variable_and_an_unserved_focus_model_fail() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = format!(
        "{}[routing]\nfocus_models = [\"m1\", \"ghost-model\"]\n[[providers]]\nid = \"p\"\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"DOCTOR_E2E_UNSET_KEY\"\nmodels = [\"m1\"]\n",
        ports(0),
        upstream.base_url()
    );
    let home = home_with_config(&config).unwrap();
    let (code, report) = doctor(home.path()).await;
    let key = assert_fails(code, &report, "provider p key", "DOCTOR_E2E_UNSET_KEY");
    assert!(key.detail.contains("is not set"), "{key:?}");
    let focus = assert_fails(code, &report, "focus models", "routing.focus_models");
    assert!(focus.detail.contains("ghost-model"), "{focus:?}");
    assert!(!focus.detail.contains("m1"), "{focus:?}");
    assert_eq!(check(&report, "upstreams").verdict, Verdict::Pass);
}

#[tokio::test]
async fn an_unreachable_registry_fails() {
    let config = format!(
        "{}[provider]\nmode = \"auto\"\n[registry]\nurl = \"http://127.0.0.1:{}/registry.json\"\n",
        ports(0),
        free_port()
    );
    let home = home_with_config(&config).unwrap();
    let (code, report) = doctor(home.path()).await;
    assert_fails(code, &report, "registry", "registry.url");
    // What sellers serve is unknown: no focus verdict either way.
    assert!(report.checks.iter().all(|c| c.name != "focus models"));
}

#[tokio::test]
async fn an_installed_service_whose_daemon_died_fails() {
    let home = home_with_config(&ports(0)).unwrap();
    run_ok(home.path(), &["service", "install", "--files-only"]).await;
    let data = home.path().join("data");
    std::fs::write(
        data.join("daemon.json"),
        format!(
            r#"{{"pid":{},"proxy_url":"http://127.0.0.1:1","control_url":"http://127.0.0.1:{}","started_at":""}}"#,
            u32::MAX - 1,
            free_port()
        ),
    )
    .unwrap();
    let (code, report) = doctor(home.path()).await;
    let c = assert_fails(code, &report, "service", "tokenbuddyd service logs");
    assert!(c.detail.contains("did not exit cleanly"), "{c:?}");
}

#[tokio::test]
async fn clients_pointed_at_a_stopped_daemon_then_at_a_stale_port_fail() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), &ports(free_port()));
    let home = home_with_config(&config).unwrap();
    let codex = codex_present(home.path());
    // Installed with no daemon running: pointed at the configured port.
    run_ok(home.path(), &["install", "codex"]).await;
    assert!(codex.exists());

    let (code, report) = doctor(home.path()).await;
    let down = assert_fails(code, &report, "daemon", "tokenbuddyd service install");
    assert!(down.detail.contains("codex is configured"), "{down:?}");
    assert_eq!(check(&report, "client codex").verdict, Verdict::Pass);

    // The daemon comes up on another port: codex now points at a stale one.
    let daemon = Daemon::start_in(bin(), home, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let (code, report) = doctor(daemon.home()).await;
    let stale = assert_fails(code, &report, "client codex", "tokenbuddyd install codex");
    assert!(stale.detail.contains("stale port"), "{stale:?}");
    assert!(stale.detail.contains(&daemon.proxy_url), "{stale:?}");
    assert!(report.checks.iter().all(|c| c.name != "daemon"));
}

#[tokio::test]
async fn a_client_with_an_old_access_token_fails_and_the_token_is_never_shown() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = two_provider_config(&upstream.base_url(), &ports(0));
    let daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    let codex = codex_present(daemon.home());
    run_ok(daemon.home(), &["install", "codex"]).await;
    let text = std::fs::read_to_string(&codex).unwrap();
    assert!(text.contains(&daemon.token));
    let old = "tb-an-access-token-from-an-earlier-data-dir";
    std::fs::write(&codex, text.replace(&daemon.token, old)).unwrap();

    let (code, report) = doctor(daemon.home()).await;
    let c = assert_fails(code, &report, "client codex", "tokenbuddyd install codex");
    assert!(c.detail.contains("old access token"), "{c:?}");
    let printed = serde_json::to_string(&report).unwrap();
    assert!(!printed.contains(old) && !printed.contains(&daemon.token));
}

#[tokio::test]
async fn a_healthy_setup_is_all_green() {
    let upstream = MockUpstream::start().await.unwrap();
    let config = two_provider_config(
        &upstream.base_url(),
        &format!("{}[routing]\nfocus_models = [\"gpt-test\"]\n", ports(0)),
    );
    let daemon = Daemon::start(bin(), &config, &[("TEST_OPENAI_KEY", OPENAI_KEY)])
        .await
        .unwrap();
    codex_present(daemon.home());
    let installed = run_ok(daemon.home(), &["install"]).await;
    assert!(installed.contains("codex"), "{installed}");

    let (code, report) = doctor(daemon.home()).await;
    let not_green: Vec<&Check> = report
        .checks
        .iter()
        .filter(|c| c.verdict != Verdict::Pass)
        .collect();
    assert!(not_green.is_empty(), "{not_green:#?}");
    assert_eq!(code, 0);
    for name in [
        "upstreams",
        "provider oa key",
        "focus models",
        "client codex",
    ] {
        assert_eq!(check(&report, name).verdict, Verdict::Pass, "{name}");
    }
    // The plain form says the same.
    let text = run_ok(daemon.home(), &["doctor"]).await;
    assert!(
        text.contains("✓ client codex: points at tokenbuddy"),
        "{text}"
    );
}
