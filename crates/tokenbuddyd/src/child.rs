//! This program's `serve` as a child process in a temporary `TB_HOME` on
//! ephemeral ports: what `demo` runs its burst through and `setup` sends
//! its closing test request through. It is exactly what a user runs (its
//! own runtime and signal handling), and the temporary home keeps the
//! user's own data directory (its `daemon.json`, ledger and token) out of
//! it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// How long the daemon may take to print its URLs.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// The header naming the upstream that answered.
const UPSTREAM_HEADER: &str = "x-tokenbuddy-upstream";

/// Which config the child runs with.
pub(crate) enum ChildConfig<'a> {
    /// This text, written as the temporary home's `config.toml`.
    Text(&'a str),
    /// This file (`--config FILE`).
    File(&'a Path),
}

/// A running child daemon; dropping it kills the process.
pub(crate) struct ChildDaemon {
    child: Child,
    pub(crate) proxy_url: String,
    pub(crate) control_url: String,
    token: String,
    client: tb_proxy::UpstreamClient,
    /// Deleted when the child is dropped; the daemon is stopped first.
    _home: tempfile::TempDir,
}

/// The proxy's answer to one request.
pub(crate) struct ProxyAnswer {
    /// The HTTP status.
    pub(crate) status: u16,
    /// `x-tokenbuddy-upstream`: who served it.
    pub(crate) upstream: Option<String>,
    /// The whole body.
    pub(crate) body: bytes::Bytes,
}

impl ChildDaemon {
    /// Starts `serve` in a fresh home with `config`, then reads the URLs it
    /// prints and the access token it writes.
    pub(crate) async fn start(config: ChildConfig<'_>) -> anyhow::Result<ChildDaemon> {
        let home = tempfile::tempdir().context("creating a temporary home")?;
        let config_file = match config {
            ChildConfig::Text(text) => {
                std::fs::write(home.path().join("config.toml"), text)
                    .context("writing the child daemon's config")?;
                None
            }
            ChildConfig::File(path) => Some(path.to_path_buf()),
        };
        let mut child = serve_command(home.path(), config_file.as_deref())?
            .spawn()
            .context("running this program's `serve`")?;
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let (Some(stdout), Some(stderr)) = (stdout, stderr) else {
            return Err(anyhow!("no output pipes from the daemon"));
        };
        let logs = tokio::spawn(head_of(stderr));
        let mut lines = BufReader::new(stdout).lines();
        let urls = tokio::time::timeout(STARTUP_LIMIT, read_urls(&mut lines)).await;
        let (control_url, proxy_url) = match urls {
            Ok(Some(urls)) => urls,
            Ok(None) => {
                let status = child.wait().await.ok();
                let logs = logs.await.unwrap_or_default();
                return Err(anyhow!(
                    "the daemon exited ({status:?}) before printing its URLs; it said:\n{logs}"
                ));
            }
            Err(_) => {
                return Err(anyhow!(
                    "the daemon printed no URL within {STARTUP_LIMIT:?}"
                ));
            }
        };
        tokio::spawn(drain(lines));
        let token_path = home.path().join("data").join(tb_proxy::ACCESS_TOKEN_FILE);
        let token = std::fs::read_to_string(&token_path)
            .with_context(|| format!("reading {}", token_path.display()))?
            .trim()
            .to_string();
        Ok(ChildDaemon {
            child,
            proxy_url,
            control_url,
            token,
            client: tb_proxy::build_client(None, &tb_proxy::ProxySettings::default())?,
            _home: home,
        })
    }

    /// POSTs a JSON body to the proxy with the access token and reads the
    /// whole answer, whatever its status.
    pub(crate) async fn post_json(&self, path: &str, body: String) -> anyhow::Result<ProxyAnswer> {
        use http_body_util::BodyExt;
        let req = http::Request::post(format!("{}{path}", self.proxy_url))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status().as_u16();
        let upstream = resp
            .headers()
            .get(UPSTREAM_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = resp
            .into_body()
            .collect()
            .await
            .with_context(|| format!("reading the answer to POST {path}"))?
            .to_bytes();
        Ok(ProxyAnswer {
            status,
            upstream,
            body,
        })
    }

    /// An empty `POST` to `url` (the simulated wallet's pay link).
    pub(crate) async fn post_to(&self, url: &str) -> anyhow::Result<(u16, bytes::Bytes)> {
        use http_body_util::BodyExt;
        let req = http::Request::post(url)
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .with_context(|| format!("{url} is not a URL"))?;
        let resp = self
            .client
            .request(req)
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// The newest call records, newest first: waits (10 s at most) until
    /// the ledger holds `n` of them — its writer commits within 50 ms of a
    /// call — and returns what it has then.
    pub(crate) async fn recent_calls(
        &self,
        n: usize,
    ) -> anyhow::Result<Vec<tb_billing::record::CallRecord>> {
        let url = format!("{}/v1/calls?limit={}", self.control_url, n.max(1));
        let mut calls = Vec::new();
        for _ in 0..200 {
            let page: tb_control::api::Calls = crate::doctor::get(&url).await?;
            calls = page.calls;
            if calls.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(calls)
    }

    /// Stops the daemon. Its home is thrown away, so there is nothing to
    /// drain: it is killed (after Ctrl-C in a terminal it is already
    /// stopping, having had the same SIGINT).
    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `<this program> [--config FILE] serve --port 0 --control-port 0` with
/// `TB_HOME=home` and none of the caller's other `TB_*` settings (the
/// config is the whole story); stdout piped for the URLs, stderr piped so
/// its logs do not interleave with the caller's lines.
fn serve_command(home: &Path, config: Option<&Path>) -> anyhow::Result<Command> {
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TB_") {
            cmd.env_remove(key);
        }
    }
    if let Some(config) = config {
        cmd.arg("--config").arg(PathBuf::from(config));
    }
    cmd.env("TB_HOME", home)
        .args(["serve", "--port", "0", "--control-port", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

/// Reads `serve`'s start-up lines until `proxy: URL` (printed after
/// `control: URL`): `(control, proxy)`, or `None` if the output ended first.
async fn read_urls<R: AsyncBufRead + Unpin>(lines: &mut Lines<R>) -> Option<(String, String)> {
    let mut control = None;
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(url) = line.strip_prefix("control: ") {
            control = Some(url.trim().to_string());
        }
        if let Some(url) = line.strip_prefix("proxy: ") {
            return Some((control?, url.trim().to_string()));
        }
    }
    None
}

/// How much of the daemon's stderr is kept to explain a failed start.
const LOG_HEAD: usize = 16 * 1024;

/// Reads `out` to its end (so the daemon never blocks on a full pipe) and
/// returns its first [`LOG_HEAD`] bytes as text.
async fn head_of<R: AsyncRead + Unpin>(mut out: R) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = out.read(&mut buf).await {
        let room = LOG_HEAD.saturating_sub(head.len());
        head.extend_from_slice(&buf[..n.min(room)]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Keeps reading the daemon's stdout so it never blocks on a full pipe.
async fn drain(mut lines: Lines<BufReader<ChildStdout>>) {
    while let Ok(Some(_)) = lines.next_line().await {}
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn urls_of(output: &str) -> Option<(String, String)> {
        read_urls(&mut BufReader::new(output.as_bytes()).lines()).await
    }

    #[tokio::test]
    async fn read_urls_takes_control_then_proxy() {
        let out = "control: http://127.0.0.1:1\nproxy: http://127.0.0.1:2 \naccess token: x\n";
        assert_eq!(
            urls_of(out).await,
            Some(("http://127.0.0.1:1".into(), "http://127.0.0.1:2".into()))
        );
    }

    #[tokio::test]
    async fn read_urls_needs_both_lines() {
        assert_eq!(urls_of("proxy: http://127.0.0.1:2\n").await, None);
        assert_eq!(urls_of("control: http://127.0.0.1:1\n").await, None);
        assert_eq!(urls_of("").await, None);
    }

    #[tokio::test]
    async fn head_of_reads_to_the_end_and_keeps_the_head() {
        let long = "e".repeat(LOG_HEAD + 10_000);
        let head = head_of(long.as_bytes()).await;
        assert_eq!(head.len(), LOG_HEAD);
        assert_eq!(head_of(&b"config error"[..]).await, "config error");
    }

    #[test]
    fn serve_command_uses_only_the_demo_home() {
        let home = std::path::Path::new("/tmp/tb-demo-home");
        let Ok(cmd) = serve_command(home, None) else {
            panic!("no serve command");
        };
        for (key, value) in cmd.as_std().get_envs() {
            if key == "TB_HOME" {
                assert_eq!(value, Some(home.as_os_str()));
            } else if key.to_string_lossy().starts_with("TB_") {
                assert_eq!(value, None, "{key:?} is passed on");
            }
        }
        assert!(cmd.as_std().get_envs().any(|(k, _)| k == "TB_HOME"));
        let args: Vec<_> = cmd.as_std().get_args().collect();
        assert_eq!(args, ["serve", "--port", "0", "--control-port", "0"]);
        let Ok(cmd) = serve_command(home, Some(std::path::Path::new("/etc/tb.toml"))) else {
            panic!("no serve command");
        };
        let args: Vec<_> = cmd.as_std().get_args().collect();
        assert_eq!(
            args,
            [
                "--config",
                "/etc/tb.toml",
                "serve",
                "--port",
                "0",
                "--control-port",
                "0"
            ]
        );
    }
}
