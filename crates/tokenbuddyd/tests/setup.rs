//! End-to-end `tokenbuddyd setup`: in a temporary `HOME` and `TB_HOME`,
//! with provider keys in the environment (or only in an agent's file) and
//! mock providers that serve `GET /v1/models` and check the key, setup
//! writes a config that works (its closing test request goes through the
//! real daemon), installs the detected agents, never shows a key, keeps
//! the user's edits, and a re-run changes no byte.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::bin;
use tb_config::Config;
use tb_test_support::MockUpstream;
use tokio::io::AsyncWriteExt;

const OPENAI_SECRET: &str = "sk-openai-setup-secret-a1b2";
const DEEPSEEK_SECRET: &str = "sk-deepseek-setup-secret-c3d4";
const CODEX_SECRET: &str = "sk-codex-file-secret-e5f6";

/// Every variable setup reads a key or base URL from: cleared, so the
/// machine's own keys never leak into a test.
const KEY_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "DEEPSEEK_API_KEY",
    "DEEPSEEK_BASE_URL",
    "GEMINI_API_KEY",
    "XAI_API_KEY",
    "MISTRAL_API_KEY",
    "MOONSHOT_API_KEY",
    "DASHSCOPE_API_KEY",
    "ZAI_API_KEY",
    "MINIMAX_API_KEY",
    "OPENROUTER_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "FIREWORKS_API_KEY",
    "CODEX_HOME",
    "CLAUDE_CONFIG_DIR",
    "HERMES_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
];

/// A temporary machine: a home, a `TB_HOME`, an empty `PATH`.
struct Machine {
    home: tempfile::TempDir,
    tb_home: tempfile::TempDir,
    path: tempfile::TempDir,
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    fn assert_ok(&self) {
        assert_eq!(self.code, Some(0), "setup failed:\n{}", self.all());
    }
}

impl Machine {
    fn new() -> Machine {
        Machine {
            home: tempfile::tempdir().unwrap(),
            tb_home: tempfile::tempdir().unwrap(),
            path: tempfile::tempdir().unwrap(),
        }
    }

    /// Makes an agent look installed (its config directory exists).
    fn with_agent_dir(self, dir: &str) -> Machine {
        std::fs::create_dir_all(self.home.path().join(dir)).unwrap();
        self
    }

    fn config_path(&self) -> PathBuf {
        self.tb_home.path().join("config.toml")
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(self.config_path()).unwrap()
    }

    fn config(&self) -> Config {
        let c = Config::from_toml_str(&self.config_text()).unwrap();
        c.validate().unwrap();
        c
    }

    async fn setup(&self, env: &[(&str, &str)], args: &[&str], stdin: &str) -> Run {
        let mut cmd = tb_test_support::daemon::command(bin(), self.tb_home.path());
        for var in KEY_VARS {
            cmd.env_remove(var);
        }
        cmd.env("HOME", self.home.path())
            .env("PATH", self.path.path())
            .envs(env.iter().copied())
            .arg("setup")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Every file under the home and `TB_HOME`, with its bytes.
    fn files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for root in [self.home.path(), self.tb_home.path()] {
            collect(root, &mut out);
        }
        out
    }
}

fn collect(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

/// Both providers' keys, and their mocks as their base URLs.
fn both_keys<'a>(openai_url: &'a str, deepseek_url: &'a str) -> [(&'static str, &'a str); 4] {
    [
        ("OPENAI_API_KEY", OPENAI_SECRET),
        ("OPENAI_BASE_URL", openai_url),
        ("DEEPSEEK_API_KEY", DEEPSEEK_SECRET),
        ("DEEPSEEK_BASE_URL", deepseek_url),
    ]
}

/// A provider mock that lists `models` and answers only to `key`.
async fn provider(key: &str, models: &[&str]) -> MockUpstream {
    let mock = MockUpstream::start().await.unwrap();
    mock.require_key(key);
    mock.serve_models(models);
    mock
}

/// `text` (a run's output) contains `needle`; else the whole text is shown.
fn assert_says(text: &str, needle: &str) {
    assert!(text.contains(needle), "want {needle:?} in:\n{text}");
}

fn assert_no_secret(run: &Run, machine: &Machine, secrets: &[&str]) {
    let config = machine.config_text();
    for s in secrets {
        assert!(!run.all().contains(s), "a key was printed:\n{}", run.all());
        assert!(!config.contains(s), "a key is in the config:\n{config}");
    }
}

#[tokio::test]
async fn setup_yes_writes_a_working_config_installs_the_agents_and_a_rerun_changes_nothing() {
    let openai = provider(OPENAI_SECRET, &["gpt-4o-mini", "gpt-5", "gpt-5-mini"]).await;
    let deepseek = provider(DEEPSEEK_SECRET, &["deepseek-chat", "deepseek-reasoner"]).await;
    let machine = Machine::new()
        .with_agent_dir(".codex")
        .with_agent_dir(".claude");
    let (o_url, d_url) = (openai.base_url(), deepseek.base_url());
    let env = both_keys(&o_url, &d_url);
    let started = std::time::Instant::now();
    let run = machine.setup(&env, &["--yes"], "").await;
    run.assert_ok();
    eprintln!("setup --yes took {:?}:\n{}", started.elapsed(), run.stdout);
    assert_no_secret(&run, &machine, &[OPENAI_SECRET, DEEPSEEK_SECRET]);
    assert!(
        run.stdout.contains("…a1b2"),
        "the masked key is shown:\n{}",
        run.stdout
    );

    let config = machine.config();
    let ids: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["openai", "deepseek"]);
    assert_eq!(
        config.providers[0].api_key_env.as_deref(),
        Some("OPENAI_API_KEY")
    );
    assert_eq!(
        config.providers[1].api_key_env.as_deref(),
        Some("DEEPSEEK_API_KEY")
    );
    assert_eq!(config.providers[0].base_url, o_url);
    assert_eq!(
        config.providers[1].models,
        ["deepseek-chat", "deepseek-reasoner"]
    );
    assert_eq!(
        config.routing.focus_models,
        ["gpt-5", "gpt-5-mini", "deepseek-chat", "deepseek-reasoner"]
    );
    assert_says(&run.stdout, "3 models from GET /v1/models");

    // The detected agents point at the proxy.
    let codex = std::fs::read_to_string(machine.home.path().join(".codex/config.toml")).unwrap();
    assert!(codex.contains("[model_providers.tokenbuddy]"), "{codex}");
    let claude =
        std::fs::read_to_string(machine.home.path().join(".claude/settings.json")).unwrap();
    assert!(claude.contains("ANTHROPIC_BASE_URL"), "{claude}");

    // The test request went to the OpenAI mock with its key, and was costed.
    let chat: Vec<_> = openai
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/v1/chat/completions")
        .collect();
    assert_eq!(chat.len(), 1, "one test request");
    assert_eq!(
        chat[0].headers["authorization"],
        format!("Bearer {OPENAI_SECRET}").as_str()
    );
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("test request: gpt-5 answered"))
        .unwrap_or_else(|| panic!("no test line:\n{}", run.stdout));
    assert!(line.contains("via openai"), "{line}");
    assert!(line.contains(", cost $0.000"), "{line}");
    assert!(
        line.contains(&format!("{} input", tb_test_support::canned::INPUT_TOKENS)),
        "{line}"
    );

    // A re-run changes no byte of any file.
    let before = machine.files();
    let again = machine.setup(&env, &["--yes"], "").await;
    again.assert_ok();
    assert_says(&again.stdout, "already in the config");
    assert_says(&again.stdout, "unchanged");
    let after = machine.files();
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &before {
        assert!(
            after[path] == *bytes,
            "{} changed on the re-run",
            path.display()
        );
    }
}

#[tokio::test]
async fn the_users_edits_survive_a_rerun() {
    let openai = provider(OPENAI_SECRET, &["gpt-5"]).await;
    let deepseek = provider(DEEPSEEK_SECRET, &["deepseek-chat"]).await;
    let machine = Machine::new();
    let (o_url, d_url) = (openai.base_url(), deepseek.base_url());
    let quiet = ["--yes", "--no-test", "--no-install"];
    machine
        .setup(
            &[
                ("OPENAI_API_KEY", OPENAI_SECRET),
                ("OPENAI_BASE_URL", &o_url),
            ],
            &quiet,
            "",
        )
        .await
        .assert_ok();
    let edited = format!(
        "# my notes: keep this\n[proxy]\nport = 18787 # my port\n\n{}",
        machine.config_text().replace(
            "\nmodels = [\"gpt-5\"]",
            "\nmodels = [\"gpt-5\", \"my-model\"] # mine"
        )
    );
    std::fs::write(machine.config_path(), &edited).unwrap();
    let run = machine.setup(&both_keys(&o_url, &d_url), &quiet, "").await;
    run.assert_ok();
    let text = machine.config_text();
    assert!(
        text.starts_with(&edited),
        "the user's part changed:\n{text}"
    );
    let config = machine.config();
    assert_eq!(config.proxy.port, 18787);
    assert_eq!(config.providers[0].models, ["gpt-5", "my-model"]);
    assert_eq!(config.providers[1].id, "deepseek");
    assert_eq!(
        config.routing.focus_models,
        ["gpt-5"],
        "the focus the file had is kept"
    );
}

#[tokio::test]
async fn a_key_found_only_in_an_agent_file_is_referenced_by_api_key_file() {
    let openai = provider(CODEX_SECRET, &["gpt-5"]).await;
    let machine = Machine::new().with_agent_dir(".codex");
    std::fs::write(
        machine.home.path().join(".codex/auth.json"),
        format!("{{\"OPENAI_API_KEY\": \"{CODEX_SECRET}\", \"tokens\": null}}"),
    )
    .unwrap();
    let url = openai.base_url();
    let run = machine
        .setup(
            &[("OPENAI_BASE_URL", url.as_str())],
            &["--yes", "--no-install"],
            "",
        )
        .await;
    run.assert_ok();
    assert_no_secret(&run, &machine, &[CODEX_SECRET]);
    let config = machine.config();
    let key_file = machine.tb_home.path().join("data/keys/openai.key");
    assert_eq!(
        config.providers[0].api_key_file.as_deref(),
        Some(key_file.as_path())
    );
    assert_eq!(config.providers[0].api_key_env, None);
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        format!("{CODEX_SECRET}\n")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_says(&run.stdout, "Codex's");
    // The daemon read the key from api_key_file: the mock, which answers
    // only to that key, served the test request.
    assert_says(&run.stdout, "test request: gpt-5 answered");
    assert!(
        openai
            .requests()
            .iter()
            .any(|r| r.path() == "/v1/chat/completions"
                && r.headers["authorization"] == format!("Bearer {CODEX_SECRET}").as_str())
    );
}

#[tokio::test]
async fn unreachable_model_lists_fall_back_to_the_price_table_and_dry_run_writes_nothing() {
    let machine = Machine::new();
    let closed = "http://127.0.0.1:1/v1";
    let env = [
        ("DEEPSEEK_API_KEY", DEEPSEEK_SECRET),
        ("DEEPSEEK_BASE_URL", closed),
    ];
    let dry = machine.setup(&env, &["--yes", "--dry-run"], "").await;
    dry.assert_ok();
    assert!(
        !machine.config_path().exists(),
        "a dry run wrote the config"
    );
    assert_says(&dry.stdout, "+[[providers]]");
    assert_says(&dry.stdout, "dry run: nothing written");

    let run = machine
        .setup(&env, &["--yes", "--no-install", "--no-test"], "")
        .await;
    run.assert_ok();
    assert_says(&run.stdout, "models from the price table");
    let config = machine.config();
    let table: Vec<&str> = tb_prices::table()
        .iter()
        .filter(|p| p.provider == "deepseek" && p.mode == tb_prices::Mode::Chat)
        .map(|p| p.id)
        .collect();
    assert_eq!(config.providers[0].models, table);
    assert_eq!(
        config.routing.focus_models,
        ["deepseek-chat", "deepseek-reasoner"]
    );
}

#[tokio::test]
async fn bad_flags_exit_2_with_a_clear_message() {
    let machine = Machine::new();
    let closed = [
        ("OPENAI_API_KEY", OPENAI_SECRET),
        ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1"),
    ];
    for (args, want) in [
        (
            &[
                "--registry",
                "https://r.example/doc.json",
                "--budget-usd",
                "lots",
            ][..],
            "not an amount in USD",
        ),
        (&["--budget-usd", "5"][..], "--registry"),
        (&["--install", "--no-install"][..], "cannot be used with"),
        (&["--provider", "nosuch"][..], "not a provider setup knows"),
        (
            &["--provider", "deepseek"][..],
            "no key found; set DEEPSEEK_API_KEY",
        ),
        (
            &["--yes", "--focus", "no-such-model"][..],
            "no configured or found provider serves it",
        ),
        (
            &["--registry", "ftp://r"][..],
            "must be an http:// or https:// URL",
        ),
    ] {
        let run = machine.setup(&closed, args, "").await;
        assert_eq!(run.code, Some(2), "{args:?}:\n{}", run.all());
        assert!(
            run.stderr.contains(want),
            "{args:?}: want {want:?}:\n{}",
            run.stderr
        );
        assert!(!run.all().contains(OPENAI_SECRET));
    }
    // A base URL the config would reject: nothing is written.
    let odd = [
        ("OPENAI_API_KEY", OPENAI_SECRET),
        ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1?x=1"),
    ];
    let run = machine.setup(&odd, &["--yes", "--no-test"], "").await;
    assert_eq!(run.code, Some(2), "{}", run.all());
    assert_says(
        &run.stderr,
        "would not be a valid config; nothing was written",
    );
    assert_says(
        &run.stderr,
        "providers[0].base_url: must not contain a query string",
    );
    assert!(!machine.config_path().exists());
}

#[tokio::test]
async fn interactive_answers_choose_providers_and_focus() {
    let openai = provider(OPENAI_SECRET, &["gpt-4o", "gpt-5", "gpt-5-mini"]).await;
    let deepseek = provider(DEEPSEEK_SECRET, &["deepseek-chat"]).await;
    let machine = Machine::new();
    let (o_url, d_url) = (openai.base_url(), deepseek.base_url());
    let env = both_keys(&o_url, &d_url);
    // Add openai, not deepseek; no marketplace; focus: the second model;
    // no service.
    let run = machine.setup(&env, &["--no-test"], "y\nn\n\n2\nn\n").await;
    run.assert_ok();
    assert_says(
        &run.stdout,
        "Start tokenbuddy at login as a per-user service? [y/N]",
    );
    assert_says(&run.stdout, "Add openai as a provider? [Y/n]");
    assert_says(&run.stdout, "Also buy from the marketplace? [y/N]");
    assert_says(&run.stdout, "   2. gpt-5-mini");
    let config = machine.config();
    assert_eq!(config.providers.len(), 1);
    assert_eq!(config.providers[0].id, "openai");
    assert_eq!(config.routing.focus_models, ["gpt-5-mini"]);

    // Input that ends before an answer: stop, and say to use --yes.
    let ended = machine.setup(&env, &["--no-test"], "").await;
    assert_eq!(ended.code, Some(2), "{}", ended.all());
    assert_says(&ended.stderr, "pass --yes");

    // A re-run where Enter takes each default keeps the focus chosen above.
    let before = machine.config_text();
    let again = machine.setup(&env, &["--no-test"], "n\n\n\nn\n").await;
    again.assert_ok();
    assert_says(&again.stdout, "Enter keeps the current ones: gpt-5-mini");
    assert_eq!(machine.config_text(), before);
}

#[tokio::test]
async fn a_failed_test_request_exits_1_with_the_upstreams_error_and_a_fix() {
    let openai = provider("sk-the-right-key-0000", &["gpt-5"]).await;
    let machine = Machine::new();
    let url = openai.base_url();
    let run = machine
        .setup(
            &[
                ("OPENAI_API_KEY", OPENAI_SECRET),
                ("OPENAI_BASE_URL", url.as_str()),
            ],
            &["--yes", "--no-install"],
            "",
        )
        .await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.contains("401"),
        "the model list was refused:\n{}",
        run.stdout
    );
    assert_says(&run.stderr, "the test request for gpt-5 failed: HTTP 401");
    assert_says(&run.stderr, "incorrect API key");
    assert_says(
        &run.stderr,
        "check provider \"openai\": the key in $OPENAI_API_KEY",
    );
    assert_no_secret(&run, &machine, &[OPENAI_SECRET]);
}

#[tokio::test]
async fn claude_codes_own_key_configures_anthropic_and_claude_code_is_pointed_at_tokenbuddy() {
    const CLAUDE_SECRET: &str = "sk-ant-claude-settings-9z8y";
    let anthropic = provider(CLAUDE_SECRET, &["claude-haiku-4-5", "claude-sonnet-4-5"]).await;
    let machine = Machine::new().with_agent_dir(".claude");
    let settings = machine.home.path().join(".claude/settings.json");
    std::fs::write(
        &settings,
        format!("{{\n  \"env\": {{\n    \"ANTHROPIC_API_KEY\": \"{CLAUDE_SECRET}\"\n  }}\n}}\n"),
    )
    .unwrap();
    // ANTHROPIC_BASE_URL names the root, as Anthropic's SDKs take it.
    let root = anthropic.root_url();
    let run = machine
        .setup(&[("ANTHROPIC_BASE_URL", root.as_str())], &["--yes"], "")
        .await;
    run.assert_ok();
    assert_no_secret(&run, &machine, &[CLAUDE_SECRET]);
    let config = machine.config();
    let p = &config.providers[0];
    assert_eq!(
        (p.id.as_str(), p.kind),
        ("anthropic", tb_domain::ProviderKind::Anthropic)
    );
    assert_eq!(p.base_url, anthropic.base_url(), "/v1 is added to the root");
    assert!(p.api_key_file.is_some());
    assert_eq!(
        config.routing.focus_models,
        ["claude-sonnet-4-5", "claude-haiku-4-5"]
    );
    // The test request spoke Messages, with the key as x-api-key.
    let messages: Vec<_> = anthropic
        .requests()
        .into_iter()
        .filter(|r| r.path() == "/v1/messages")
        .collect();
    assert_eq!(messages.len(), 1, "{}", run.all());
    assert_eq!(messages[0].headers["x-api-key"], CLAUDE_SECRET);
    assert_says(&run.stdout, "test request: claude-sonnet-4-5 answered");
    // Claude Code now points at tokenbuddy; its own key went to the backup.
    let now = std::fs::read_to_string(&settings).unwrap();
    assert!(
        now.contains("ANTHROPIC_AUTH_TOKEN") && !now.contains(CLAUDE_SECRET),
        "{now}"
    );
    assert_says(&run.stdout, "install --undo claude-code");
}

#[tokio::test]
async fn service_flag_installs_the_per_user_service_for_the_written_config() {
    let machine = Machine::new();
    let openai = provider(OPENAI_SECRET, &["gpt-4o-mini"]).await;
    let url = openai.base_url();
    let env = [("OPENAI_API_KEY", OPENAI_SECRET), ("OPENAI_BASE_URL", &url)];
    // `PATH` is empty: no service manager answers, so setup writes the
    // unit and names the commands that start it.
    let args = ["--yes", "--no-install", "--no-test", "--service"];
    let run = machine.setup(&env, &args, "").await;
    run.assert_ok();
    let unit = machine
        .home
        .path()
        .join(".config/systemd/user/tokenbuddyd.service");
    let text = std::fs::read_to_string(&unit).expect("setup --service wrote no unit");
    let config = machine.config_path().canonicalize().unwrap();
    assert_says(&text, &config.display().to_string());
    assert_says(
        &run.stdout,
        "systemctl --user enable --now tokenbuddyd.service",
    );
    assert_no_secret(&run, &machine, &[OPENAI_SECRET]);

    let again = machine.setup(&env, &args, "").await;
    again.assert_ok();
    assert_says(&again.stdout, "is up to date");

    let without = machine
        .setup(&env, &["--yes", "--no-install", "--no-test"], "")
        .await;
    without.assert_ok();
    assert_says(&without.stdout, "next: `tokenbuddyd service install`");
}
