//! Start the real `tokenbuddyd` binary for end-to-end tests: its own
//! `TB_HOME` in a temporary directory (never the real home), an ephemeral
//! port, and the URL and access token read from what the daemon prints and
//! writes — exactly as a user or tool would find them.

// A test helper: failing loudly with a clear message is the point.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a daemon may take to print its URL before the test fails.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);

/// A running `tokenbuddyd serve`. Dropping it kills the process.
pub struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT` as printed by the daemon.
    pub proxy_url: String,
    /// The control plane URL, when the daemon printed one (before the proxy line).
    pub control_url: Option<String>,
    /// The access token read from `<data_dir>/access-token`.
    pub token: String,
    home: tempfile::TempDir,
    stderr: watch::Receiver<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What went wrong starting the daemon (with its stderr).
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// A fresh `TB_HOME` with `config.toml` written in it.
pub fn home_with_config(config_toml: &str) -> std::io::Result<tempfile::TempDir> {
    let home = tempfile::tempdir()?;
    std::fs::write(home.path().join("config.toml"), config_toml)?;
    Ok(home)
}

/// A `Command` for `bin` with `TB_HOME=home` and no inherited `TB_*`
/// variables, so the developer's own settings never leak into a test.
pub fn command(bin: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        // The machine's own tokenbuddy and proxy settings never leak in:
        // a test that wants a proxy passes HTTPS_PROXY & co. itself.
        let name = k.to_string_lossy().to_ascii_uppercase();
        if name.starts_with("TB_")
            || ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"].contains(&name.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("TB_HOME", home)
        .env("HOME", home.join("no-real-home"))
        .kill_on_drop(true);
    cmd
}

impl Daemon {
    /// Starts `bin serve --port 0` with `config_toml` and extra `env`.
    pub async fn start(
        bin: &Path,
        config_toml: &str,
        env: &[(&str, &str)],
    ) -> Result<Daemon, StartError> {
        let home =
            home_with_config(config_toml).map_err(|e| StartError(format!("temp home: {e}")))?;
        Daemon::start_in(bin, home, env).await
    }

    /// Starts the daemon again in an existing `TB_HOME` (its config, ledger
    /// and token as a previous run left them): a restart.
    pub async fn start_in(
        bin: &Path,
        home: tempfile::TempDir,
        env: &[(&str, &str)],
    ) -> Result<Daemon, StartError> {
        let mut cmd = command(bin, home.path());
        cmd.args(["serve", "--port", "0", "--control-port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError(format!("spawning {}: {e}", bin.display())))?;

        let (sink, stderr) = watch::channel(String::new());
        if let Some(mut err) = child.stderr.take() {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    sink.send_modify(|s| s.push_str(&String::from_utf8_lossy(&buf[..n])));
                }
            });
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| StartError("no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let mut control_url = None;
        let found = tokio::time::timeout(STARTUP_LIMIT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix("control: ") {
                    control_url = Some(url.trim().to_string());
                }
                if let Some(url) = line.strip_prefix("proxy: ") {
                    return Some(url.trim().to_string());
                }
            }
            None
        })
        .await;
        let logs = || stderr.borrow().clone();
        let proxy_url = match found {
            Ok(Some(url)) => url,
            Ok(None) => {
                let status = child.wait().await.ok();
                // Let the stderr reader catch up with a process that already exited.
                tokio::task::yield_now().await;
                return Err(StartError(format!(
                    "daemon exited ({status:?}) before printing its URL; stderr:\n{}",
                    logs()
                )));
            }
            Err(_) => {
                return Err(StartError(format!(
                    "daemon printed no URL within {STARTUP_LIMIT:?}; stderr:\n{}",
                    logs()
                )));
            }
        };
        // Keep draining stdout so the daemon never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let token_path = home.path().join("data").join("access-token");
        let token = std::fs::read_to_string(&token_path)
            .map_err(|e| StartError(format!("reading {}: {e}", token_path.display())))?
            .trim()
            .to_string();
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Daemon {
            child,
            proxy_url,
            control_url,
            token,
            home,
            stderr,
            client,
        })
    }

    /// Gives up the `TB_HOME` (after the process ended) for a restart.
    pub fn into_home(self) -> tempfile::TempDir {
        self.home
    }

    /// The daemon's `TB_HOME`.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The data directory (`$TB_HOME/data`).
    pub fn data_dir(&self) -> PathBuf {
        self.home.path().join("data")
    }

    /// Everything the daemon wrote to stderr so far (its logs).
    pub fn logs(&self) -> String {
        self.stderr.borrow().clone()
    }

    /// Waits until the daemon's logs contain `needle` (event-driven, no polling).
    pub async fn wait_for_log(&self, needle: &str) {
        let mut rx = self.stderr.clone();
        let waited = tokio::time::timeout(STARTUP_LIMIT, rx.wait_for(|s| s.contains(needle))).await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "daemon never logged {needle:?}; logs:\n{}",
            self.logs()
        );
    }

    /// Waits until the daemon's logs contain `needle` at least `n` times
    /// (event-driven, no polling).
    pub async fn wait_for_log_count(&self, needle: &str, n: usize) {
        let mut rx = self.stderr.clone();
        let waited = tokio::time::timeout(
            STARTUP_LIMIT,
            rx.wait_for(|s| s.matches(needle).count() >= n),
        )
        .await;
        assert!(
            matches!(waited, Ok(Ok(_))),
            "daemon never logged {needle:?} {n} times; logs:\n{}",
            self.logs()
        );
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends SIGTERM (as `kill -TERM` would).
    pub fn sigterm(&self) -> std::io::Result<()> {
        self.signal("TERM")
    }

    /// Sends SIGKILL (`kill -9`): no drain, no flush, nothing runs.
    pub fn sigkill(&self) -> std::io::Result<()> {
        self.signal("KILL")
    }

    fn signal(&self, name: &str) -> std::io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| std::io::Error::other("daemon already exited"))?;
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -{name} {pid}: {status}"
            )))
        }
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// A cheap, cloneable client for concurrent requests (tasks can own it).
    pub fn client(&self) -> DaemonClient {
        DaemonClient {
            proxy_url: self.proxy_url.clone(),
            token: self.token.clone(),
            client: self.client.clone(),
        }
    }

    /// Sends a request to the proxy.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        self.client().request(method, path, headers, body).await
    }

    /// POSTs JSON with the access token as a Bearer header.
    pub async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Response<Incoming> {
        self.client().post_json(path, body).await
    }
}

/// Sends requests to a running daemon; owns everything it needs.
#[derive(Clone)]
pub struct DaemonClient {
    proxy_url: String,
    token: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl DaemonClient {
    /// Sends a request to the proxy.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<Incoming> {
        let mut req = Request::new(Full::new(body.into()));
        *req.method_mut() = method;
        *req.uri_mut() = format!("{}{path}", self.proxy_url)
            .parse()
            .expect("test URL");
        let map: &mut HeaderMap = req.headers_mut();
        for (k, v) in headers {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        self.client.request(req).await.expect("the daemon answered")
    }

    /// POSTs JSON with the access token as a Bearer header.
    pub async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Response<Incoming> {
        let auth = format!("Bearer {}", self.token);
        self.request(Method::POST, path, &json_with_bearer(&auth), body)
            .await
    }
}

/// The headers of a JSON POST authorised by `auth` (`Bearer …`).
fn json_with_bearer(auth: &str) -> [(&str, &str); 2] {
    [
        ("authorization", auth),
        ("content-type", "application/json"),
    ]
}

impl DaemonClient {
    /// POSTs JSON and reads the whole answer, or says why it could not:
    /// for load that must outlive a daemon being killed.
    pub async fn try_post_json(
        &self,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let auth = format!("Bearer {}", self.token);
        self.try_request(Method::POST, path, &json_with_bearer(&auth), body)
            .await
    }

    /// Sends a request and reads the whole answer, or says why it could
    /// not (the daemon is gone, the connection broke).
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<(http::response::Parts, Bytes), String> {
        let mut req = Request::new(Full::new(body.into()));
        *req.method_mut() = method;
        *req.uri_mut() = format!("{}{path}", self.proxy_url)
            .parse()
            .map_err(|e| format!("bad test URL: {e}"))?;
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("{k}: {e}"))?;
            let value = HeaderValue::from_str(v).map_err(|e| format!("{k}: {e}"))?;
            req.headers_mut().append(name, value);
        }
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((parts, bytes))
    }
}

/// Reads a whole response body.
pub async fn body_bytes(resp: Response<Incoming>) -> Bytes {
    resp.into_body()
        .collect()
        .await
        .expect("reading the response body")
        .to_bytes()
}

/// Reads a whole response body as JSON.
pub async fn body_json(resp: Response<Incoming>) -> serde_json::Value {
    let bytes = body_bytes(resp).await;
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "response is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}
