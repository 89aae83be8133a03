//! The client contract: what every installer takes and returns.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::env::InstallEnv;
use crate::redact::mask;

/// What [`ClientInstaller::detect`] found on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Installed {
    /// The client's executable, when found on `PATH` or a known install dir.
    pub binary: Option<PathBuf>,
    /// Whether the client's configuration directory exists.
    pub config_dir_exists: bool,
}

impl Installed {
    /// Detected: the binary was found or the config dir exists.
    pub fn detected(&self) -> bool {
        self.binary.is_some() || self.config_dir_exists
    }
}

/// The current contents of a client's config files: `None` = the file does
/// not exist. A path absent from the map is treated as a missing file.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Files {
    map: BTreeMap<PathBuf, Option<String>>,
}

impl Files {
    /// No files known (every file reads as missing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Builder: records `path` with `content` (`None` = missing).
    pub fn with(mut self, path: impl Into<PathBuf>, content: Option<&str>) -> Self {
        self.insert(path, content.map(str::to_owned));
        self
    }

    /// Records `path` with `content` (`None` = missing).
    pub fn insert(&mut self, path: impl Into<PathBuf>, content: Option<String>) {
        self.map.insert(path.into(), content);
    }

    /// The content of `path`, `None` when missing or unknown.
    pub fn get(&self, path: &Path) -> Option<&str> {
        self.map.get(path).and_then(|c| c.as_deref())
    }

    /// The recorded path whose file name is `name`. Planners find their
    /// files this way (paths come from [`ClientInstaller::config_paths`]).
    pub fn named(&self, name: &'static str) -> Result<PathBuf, PlanError> {
        self.map
            .keys()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .cloned()
            .ok_or(PlanError::NotProvided { file: name })
    }

    /// The only recorded path (for clients with a single file whose name
    /// can vary).
    pub fn single(&self, what: &'static str) -> Result<PathBuf, PlanError> {
        let mut keys = self.map.keys();
        match (keys.next(), keys.next()) {
            (Some(p), None) => Ok(p.clone()),
            _ => Err(PlanError::NotProvided { file: what }),
        }
    }

    /// Every recorded path and its content.
    pub fn iter(&self) -> impl Iterator<Item = (&Path, Option<&str>)> {
        self.map.iter().map(|(p, c)| (p.as_path(), c.as_deref()))
    }
}

impl fmt::Debug for Files {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Contents can hold secrets: show sizes only.
        let mut m = f.debug_map();
        for (p, c) in &self.map {
            m.entry(p, &c.as_ref().map(|c| format!("<{} bytes>", c.len())));
        }
        m.finish()
    }
}

/// Where clients should point: the proxy, the access token and the model.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://127.0.0.1:<proxy.port>` (a trailing `/` is ignored).
    pub proxy_url: String,
    /// The access token clients send to the proxy.
    pub token: String,
    /// The default model (see [`crate::default_model`]).
    pub model: String,
}

impl Target {
    /// Builds a target.
    pub fn new(
        proxy_url: impl Into<String>,
        token: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            proxy_url: proxy_url.into(),
            token: token.into(),
            model: model.into(),
        }
    }

    /// The proxy URL without trailing slashes.
    pub fn base(&self) -> &str {
        self.proxy_url.trim_end_matches('/')
    }

    /// `<proxy>/v1`, for OpenAI-style clients.
    pub fn v1(&self) -> String {
        format!("{}/v1", self.base())
    }

    /// Rejects targets no client could use.
    pub(crate) fn check(&self) -> Result<(), PlanError> {
        let base = self.base();
        let bad = |reason: String| Err(PlanError::InvalidTarget { reason });
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return bad(format!(
                "proxy URL `{base}` must start with http:// or https://"
            ));
        }
        if base.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return bad("proxy URL contains whitespace".into());
        }
        if self.token.trim().is_empty() || self.token.chars().any(char::is_control) {
            return bad("the access token is empty or contains control characters".into());
        }
        if self.model.trim().is_empty() || self.model.chars().any(char::is_control) {
            return bad("the model is empty or contains control characters; pass --model".into());
        }
        Ok(())
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("proxy_url", &self.proxy_url)
            .field("token", &mask(&self.token))
            .field("model", &self.model)
            .finish()
    }
}

/// Where a client's files point it: what `doctor` compares with the running
/// daemon to find a stale port or an old access token. Holds no secret: the
/// token is kept as a fingerprint only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    /// The proxy URL as the client holds it, without a trailing `/v1` (so
    /// it compares with the daemon's proxy URL through [`same_url`]).
    pub base_url: String,
    /// [`token_fingerprint`] of the token the client sends (`None`: the
    /// files hold no token).
    pub token_fingerprint: Option<String>,
}

impl Pointer {
    /// A pointer from the URL a client holds (`…/v1` or the bare proxy
    /// URL) and the token next to it.
    pub fn new(url: &str, token: Option<&str>) -> Pointer {
        let url = url.trim().trim_end_matches('/');
        Pointer {
            base_url: url.strip_suffix("/v1").unwrap_or(url).to_owned(),
            token_fingerprint: token.map(token_fingerprint),
        }
    }

    /// Whether the client sends `token`.
    pub fn sends(&self, token: &str) -> bool {
        self.token_fingerprint.as_deref() == Some(token_fingerprint(token).as_str())
    }
}

/// A short, one-way fingerprint of an access token (16 hex digits of its
/// SHA-256): enough to tell two tokens apart, useless to send.
pub fn token_fingerprint(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(token.trim().as_bytes());
    const_hex::encode(&digest[..8])
}

/// Install options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Resolve conflicts in tokenbuddy's favour (Claude Code: move the
    /// user's own `ANTHROPIC_API_KEY` into the pristine backup).
    pub force: bool,
}

/// One planned change of one file.
#[derive(Clone, PartialEq, Eq)]
pub struct FileChange {
    /// The client id (`claude-code`, `codex`, …).
    pub client: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What the change does, for people.
    pub description: String,
    /// The content the plan was made from (`None` = the file did not exist).
    pub before: Option<String>,
    /// The new content; `None` = delete the file (undo of a file tokenbuddy
    /// created).
    pub after: Option<String>,
    /// The new content holds the access token: the file is written `0600`.
    pub secret: bool,
    /// Values of the user's that the change removes and undo must put back
    /// (dotted key path → raw value text), e.g. a displaced
    /// `env.ANTHROPIC_API_KEY`. Kept in the pristine backup.
    pub stash: BTreeMap<String, String>,
}

impl FileChange {
    /// Whether applying the change would alter the file.
    pub fn is_noop(&self) -> bool {
        self.before == self.after
    }
}

impl fmt::Debug for FileChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |c: &Option<String>| c.as_ref().map(|c| format!("<{} bytes>", c.len()));
        f.debug_struct("FileChange")
            .field("client", &self.client)
            .field("path", &self.path)
            .field("description", &self.description)
            .field("before", &size(&self.before))
            .field("after", &size(&self.after))
            .field("secret", &self.secret)
            .field("stash", &self.stash.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// What the backups know about one file, for [`ClientInstaller::plan_undo`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PristineFile {
    /// The file before tokenbuddy first touched it (`None` = did not exist).
    pub original: Option<String>,
    /// What tokenbuddy last wrote (`None` = unknown). Used to tell which
    /// keys still hold tokenbuddy's values.
    pub installed: Option<String>,
    /// Nobody but tokenbuddy changed the file between `original` and
    /// `installed`: when the file still equals `installed`, restoring
    /// `original` loses nothing.
    pub restorable: bool,
    /// Values removed by an install that undo puts back (see
    /// [`FileChange::stash`]).
    pub stash: BTreeMap<String, String>,
}

impl fmt::Debug for PristineFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PristineFile")
            .field("original", &self.original.as_ref().map(|c| c.len()))
            .field("installed", &self.installed.as_ref().map(|c| c.len()))
            .field("restorable", &self.restorable)
            .field("stash", &self.stash.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The pristine backups of one client, by path. A path without an entry has
/// no backup (undo then only removes tokenbuddy's keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pristine {
    /// Per-file backup knowledge.
    pub files: BTreeMap<PathBuf, PristineFile>,
}

impl Pristine {
    /// No backups.
    pub fn none() -> Self {
        Self::default()
    }

    /// The backup of `path`, if any.
    pub fn get(&self, path: &Path) -> Option<&PristineFile> {
        self.files.get(path)
    }
}

/// Why a plan could not be made. Every variant about a file names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The file cannot be parsed (or uses a construct tokenbuddy will not
    /// edit, such as an odd YAML `model:` value).
    #[error("{}: {reason}; fix or move the file and run again (tokenbuddy never rebuilds it)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong, with a line and column where known.
        reason: String,
    },
    /// The document's root is not what the format expects.
    #[error("{}: the top level is {found}, expected {expected}; tokenbuddy will not rebuild it", path.display())]
    UnexpectedRoot {
        /// The file.
        path: PathBuf,
        /// E.g. "a JSON object".
        expected: &'static str,
        /// E.g. "a JSON array".
        found: String,
    },
    /// A key tokenbuddy needs holds the wrong kind of value.
    #[error("{}: `{key}` is {found}, expected {expected}; tokenbuddy will not overwrite it", path.display())]
    WrongType {
        /// The file.
        path: PathBuf,
        /// The dotted key path.
        key: String,
        /// E.g. "an object".
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The user's own settings conflict with tokenbuddy's.
    #[error("{}: {message}", path.display())]
    Conflict {
        /// The file.
        path: PathBuf,
        /// What conflicts and how to resolve it.
        message: String,
    },
    /// The client cannot be configured on this OS.
    #[error("{client}: {reason}")]
    Unsupported {
        /// The client's name.
        client: &'static str,
        /// Why.
        reason: String,
    },
    /// The caller did not pass the file in [`Files`] (build it from
    /// [`ClientInstaller::config_paths`]).
    #[error("the files to plan from do not include {file} (read every path of config_paths)")]
    NotProvided {
        /// The file's name.
        file: &'static str,
    },
    /// The proxy URL, token or model is unusable.
    #[error("invalid install target: {reason}")]
    InvalidTarget {
        /// Why.
        reason: String,
    },
}

/// One AI client tokenbuddy can point at the proxy.
///
/// Planning is pure: file contents in, new contents out. Reading and writing
/// files is [`crate::Installer`]'s job.
pub trait ClientInstaller: Send + Sync {
    /// Stable id (`claude-code`, `codex`, `opencode`, `openclaw`, `hermes`,
    /// `claude-desktop`).
    fn id(&self) -> &'static str;
    /// Human name.
    fn name(&self) -> &'static str;
    /// Whether the client is installed (binary on `PATH`, or config dir).
    fn detect(&self, env: &InstallEnv) -> Installed;
    /// Every file the client's plans read (and may write).
    fn config_paths(&self, env: &InstallEnv) -> Vec<PathBuf>;
    /// Where the files point tokenbuddy's provider in this client: the
    /// proxy URL and a fingerprint of the token they send. `None` when the
    /// files do not configure it (or cannot be parsed).
    fn pointer(&self, files: &Files) -> Option<Pointer>;
    /// Whether the files point the client at `proxy_url` (trailing slashes
    /// and `localhost` ↔ `127.0.0.1` normalised). Unparsable files are not
    /// configured.
    fn is_configured(&self, files: &Files, proxy_url: &str) -> bool {
        self.pointer(files)
            .is_some_and(|p| same_url(&p.base_url, proxy_url))
    }
    /// The changes that point the client at `target`. Files whose content
    /// would not change are left out, so an already configured client
    /// plans nothing.
    fn plan(
        &self,
        files: &Files,
        target: &Target,
        opts: &Options,
    ) -> Result<Vec<FileChange>, PlanError>;
    /// The changes that take tokenbuddy out again: restore the pristine copy
    /// when nobody else edited the file since, else remove only the keys
    /// tokenbuddy owns (putting back what it replaced); delete files
    /// tokenbuddy created.
    fn plan_undo(&self, files: &Files, pristine: &Pristine) -> Result<Vec<FileChange>, PlanError>;
}

/// Compares URLs the way `is_configured` does: case-insensitively, without
/// trailing slashes, with `localhost` read as `127.0.0.1`.
pub fn same_url(a: &str, b: &str) -> bool {
    normalize_url(a) == normalize_url(b)
}

/// The normalised form used by [`same_url`].
pub(crate) fn normalize_url(url: &str) -> String {
    let mut u = url.trim().trim_end_matches('/').to_ascii_lowercase();
    for scheme in ["http://", "https://"] {
        if let Some(rest) = u.strip_prefix(scheme) {
            if let Some(after) = rest.strip_prefix("localhost")
                && (after.is_empty() || after.starts_with(':') || after.starts_with('/'))
            {
                u = format!("{scheme}127.0.0.1{after}");
            }
            break;
        }
    }
    u
}

/// Whether `url` points at this machine (used to recognise tokenbuddy's
/// own entries when no backup says what it wrote).
pub fn is_loopback_url(url: &str) -> bool {
    let u = normalize_url(url);
    [
        "http://127.0.0.1",
        "https://127.0.0.1",
        "http://[::1]",
        "https://[::1]",
    ]
    .iter()
    .any(|p| {
        u.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '/']))
    })
}

/// Builds the change list entry for one file, or nothing when unchanged.
pub(crate) fn change(
    client: &'static str,
    path: &Path,
    description: impl Into<String>,
    before: Option<&str>,
    after: Option<String>,
    secret: bool,
) -> Option<FileChange> {
    if before == after.as_deref() {
        return None;
    }
    Some(FileChange {
        client,
        path: path.to_path_buf(),
        description: description.into(),
        before: before.map(str::to_owned),
        after,
        secret,
        stash: BTreeMap::new(),
    })
}

/// The shared undo recipe for one file: restore the original when only
/// tokenbuddy touched the file since, else run `strip` (remove our keys) on
/// the current content. `strip` returns `None` to delete the file.
pub(crate) fn undo_file(
    client: &'static str,
    path: &Path,
    files: &Files,
    pristine: &Pristine,
    strip: impl FnOnce(&str, Option<&PristineFile>) -> Result<Option<String>, PlanError>,
) -> Result<Option<FileChange>, PlanError> {
    let Some(current) = files.get(path) else {
        return Ok(None); // Gone already: nothing to undo, never recreate.
    };
    let pf = pristine.get(path);
    if let Some(pf) = pf
        && pf.restorable
        && pf.installed.as_deref() == Some(current)
    {
        let description = match &pf.original {
            Some(_) => "restore the file as it was before tokenbuddy".to_owned(),
            None => "delete the file tokenbuddy created".to_owned(),
        };
        return Ok(change(
            client,
            path,
            description,
            Some(current),
            pf.original.clone(),
            false,
        ));
    }
    let after = strip(current, pf)?;
    let description = match &after {
        Some(_) => "remove tokenbuddy's settings (everything else kept)",
        None => "delete the file tokenbuddy created (nothing else was in it)",
    };
    Ok(change(
        client,
        path,
        description,
        Some(current),
        after,
        false,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_normalisation() {
        assert!(same_url("http://localhost:8080/", "http://127.0.0.1:8080"));
        assert!(same_url(
            "HTTP://LOCALHOST:8080/v1//",
            "http://127.0.0.1:8080/v1"
        ));
        assert!(!same_url(
            "http://localhost.evil:8080",
            "http://127.0.0.1:8080"
        ));
        assert!(!same_url("http://127.0.0.1:8081", "http://127.0.0.1:8080"));
        assert!(is_loopback_url("http://localhost:9/v1"));
        assert!(!is_loopback_url("https://api.anthropic.com"));
        assert!(!is_loopback_url("http://127.0.0.10"));
    }

    #[test]
    fn pointers_strip_v1_and_keep_only_a_fingerprint() {
        let p = Pointer::new("http://127.0.0.1:8787/v1/", Some("tb-secret-token"));
        assert_eq!(p.base_url, "http://127.0.0.1:8787");
        assert!(p.sends("tb-secret-token"));
        assert!(!p.sends("tb-other-token"));
        assert!(!format!("{p:?}").contains("tb-secret-token"));
        assert_eq!(Pointer::new("http://h:1", None).base_url, "http://h:1");
        assert!(!Pointer::new("http://h:1", None).sends("x"));
        assert_eq!(token_fingerprint("abc").len(), 16);
        // Pinned: the first 8 bytes of SHA-256("abc"), lower-case hex, as
        // in files earlier releases wrote.
        assert_eq!(token_fingerprint(" abc\n"), "ba7816bf8f01cfea");
    }

    #[test]
    fn target_debug_hides_the_token() {
        let t = Target::new("http://127.0.0.1:1", "tb-secret-token-123456", "m");
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("tb-secret-token-123456"));
        assert!(dbg.contains("…3456"));
    }
}
