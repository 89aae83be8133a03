//! The one module that touches the disk: status, dry-run previews,
//! all-or-nothing apply with backups, and undo.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::{
    ClientInstaller, FileChange, Files, Options, PlanError, Pointer, Pristine, PristineFile, Target,
};
use crate::env::InstallEnv;
use crate::redact::redact;

/// How many timestamped backups are kept per client.
pub const KEEP_BACKUPS: usize = 10;

/// One row of the status table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRow {
    /// Client id.
    pub client: &'static str,
    /// Client name.
    pub name: &'static str,
    /// Binary found or config dir present.
    pub detected: bool,
    /// Already points at the proxy.
    pub configured: bool,
    /// The client's config files.
    pub paths: Vec<PathBuf>,
}

/// Where one client points (see [`Installer::pointers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPointer {
    /// Client id.
    pub client: &'static str,
    /// tokenbuddy installed it (its install record is in the data dir:
    /// taken at the first install, dropped by undo).
    pub installed_by_tokenbuddy: bool,
    /// Where its files point tokenbuddy's provider.
    pub pointer: Pointer,
}

/// Whether a preview installs or undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewKind {
    /// From [`Installer::preview`].
    Install,
    /// From [`Installer::preview_undo`].
    Undo,
}

/// The planned changes and their diff, for `--dry-run` and for
/// [`Installer::apply`].
#[derive(Debug, Clone)]
pub struct Preview {
    /// What the changes are for.
    pub kind: PreviewKind,
    /// The clients previewed (also those with nothing to change).
    pub clients: Vec<&'static str>,
    /// Only files whose content changes.
    pub changes: Vec<FileChange>,
    /// A unified diff per file, secrets shown as `…last4`.
    pub diff: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The file did not exist and was written.
    Created,
    /// The file was rewritten.
    Updated,
    /// The file was deleted (undo of a file tokenbuddy created).
    Deleted,
}

/// One file [`Installer::apply`] or [`Installer::undo`] changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedFile {
    /// Client id.
    pub client: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What was done.
    pub action: Action,
    /// The change's description.
    pub description: String,
}

/// The result of an apply or undo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// The files changed (unchanged files are not listed: they were not
    /// rewritten).
    pub files: Vec<AppliedFile>,
    /// The timestamped backup dirs written, one per client.
    pub backups: Vec<PathBuf>,
}

/// Why an install or undo did not happen. Nothing was changed unless the
/// variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A client could not plan.
    #[error("{client}: {source}")]
    Plan {
        /// Client id.
        client: &'static str,
        /// Why.
        #[source]
        source: PlanError,
    },
    /// No client has this id.
    #[error("unknown client `{0}`")]
    UnknownClient(String),
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A config file is not UTF-8 text.
    #[error("{} is not UTF-8 text; tokenbuddy will not edit it", path.display())]
    NotUtf8 {
        /// The file.
        path: PathBuf,
    },
    /// A file changed between planning and applying.
    #[error("{} changed on disk since the change was planned; nothing was written, run again", path.display())]
    ChangedOnDisk {
        /// The file.
        path: PathBuf,
    },
    /// Two changes for one file.
    #[error("more than one change for {}", path.display())]
    DuplicatePath {
        /// The file.
        path: PathBuf,
    },
    /// Backups could not be written; no config file was touched.
    #[error("cannot write the backup {}: {source}; nothing was changed", path.display())]
    Backup {
        /// The backup file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing a config file failed; every file was put back as it was.
    #[error("writing {} failed: {source}; every file was restored to how it was", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing failed and so did putting some files back.
    #[error("writing {} failed: {source}; restoring also failed for: {}; backups are in {}",
        path.display(), failures.join("; "), backups.display())]
    RollbackFailed {
        /// The file whose write failed.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
        /// The files that could not be restored, with the reason.
        failures: Vec<String>,
        /// Where the backups are.
        backups: PathBuf,
    },
}

/// Reads, previews, applies and undoes client configuration.
#[derive(Debug, Clone)]
pub struct Installer {
    data_dir: PathBuf,
    env: InstallEnv,
    fail_write: Option<usize>,
}

#[derive(Serialize, Deserialize)]
struct PristineMeta {
    path: String,
    existed: bool,
}

#[derive(Serialize, Deserialize)]
struct InstalledMeta {
    path: String,
    restorable: bool,
}

#[derive(Serialize, Deserialize)]
struct BackupMeta {
    path: String,
    existed: bool,
    description: String,
}

/// A file as it was before the apply started.
struct Snapshot<'a> {
    change: &'a FileChange,
    /// The file written (symlinks followed).
    real: PathBuf,
    existed: bool,
    #[cfg_attr(not(unix), allow(dead_code))]
    mode: Option<u32>,
}

/// Backup bookkeeping of one apply, undone on rollback.
#[derive(Default)]
struct BackupLog {
    /// Files created in the backups area (removed on rollback).
    created: Vec<PathBuf>,
    /// Dirs created in the backups area (removed on rollback, if empty).
    dirs: Vec<PathBuf>,
    /// Files overwritten (restored on rollback).
    replaced: Vec<(PathBuf, Vec<u8>)>,
    timestamped: Vec<PathBuf>,
}

fn key_of(path: &Path) -> String {
    let digest = Sha256::digest(path.to_string_lossy().as_bytes());
    const_hex::encode(&digest[..8])
}

fn read_opt(path: &Path) -> Result<Option<String>, InstallError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| InstallError::NotUtf8 {
                path: path.to_path_buf(),
            }),
        // A path under a non-directory cannot exist either; writing it
        // will fail (and roll back) if it is attempted.
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(InstallError::Read {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Follows symlinks so that dotfile managers' links stay links.
fn resolve(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..16 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match fs::read_link(&p) {
                Ok(t) => {
                    p = if t.is_absolute() {
                        t
                    } else {
                        p.parent().unwrap_or(Path::new("")).join(t)
                    }
                }
                Err(_) => break,
            },
            _ => break,
        }
    }
    p
}

fn file_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Creates `dir` and its missing parents, recording those it created.
fn create_dirs(dir: &Path, created: &mut Vec<PathBuf>, private: bool) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut d = dir;
    while !d.as_os_str().is_empty() && fs::symlink_metadata(d).is_err() {
        missing.push(d.to_path_buf());
        match d.parent() {
            Some(p) => d = p,
            None => break,
        }
    }
    for d in missing.into_iter().rev() {
        let mut b = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(if private { 0o700 } else { 0o755 });
        }
        #[cfg(not(unix))]
        let _ = private;
        match b.create(&d) {
            Ok(()) => created.push(d),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temp file in the same dir,
/// fsync, rename, fsync the dir. `mode` is the final mode on Unix.
fn write_atomic(path: &Path, bytes: &[u8], mode: Option<u32>, fail: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tokenbuddy-{}-{n}.tmp", std::process::id()));
    let result = (|| {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        f.write_all(bytes)?;
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        f.sync_all()?;
        drop(f);
        if fail {
            return Err(io::Error::other("injected write failure (test hook)"));
        }
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    #[cfg(unix)]
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The error means the file is not there (so there is nothing to delete).
fn gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

fn timestamp() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now())
        .to_string()
        .replace(':', "-")
}

impl Installer {
    /// An installer keeping its backups under `<data_dir>/backups/`.
    pub fn new(data_dir: impl Into<PathBuf>, env: InstallEnv) -> Self {
        Self {
            data_dir: data_dir.into(),
            env,
            fail_write: None,
        }
    }

    /// Test hook: the `n`-th config-file write or delete of the next
    /// applies (1-based, counted per apply) fails after its temp file is
    /// written, as a full disk would.
    pub fn with_fault(mut self, n: usize) -> Self {
        self.fail_write = Some(n);
        self
    }

    /// The environment paths come from.
    pub fn env(&self) -> &InstallEnv {
        &self.env
    }

    /// `<data_dir>/backups/<client>`.
    pub fn backup_dir(&self, client: &str) -> PathBuf {
        self.data_dir.join("backups").join(client)
    }

    /// Reads every config file of `client` (missing files are `None`).
    pub fn read_files(&self, client: &dyn ClientInstaller) -> Result<Files, InstallError> {
        let mut files = Files::new();
        for p in client.config_paths(&self.env) {
            let content = read_opt(&resolve(&p))?;
            files.insert(p, content);
        }
        Ok(files)
    }

    /// The status table over every known client.
    pub fn status(&self, proxy_url: &str) -> Vec<StatusRow> {
        crate::all_clients()
            .iter()
            .map(|c| {
                let installed = c.detect(&self.env);
                let configured = self
                    .read_files(c.as_ref())
                    .is_ok_and(|f| c.is_configured(&f, proxy_url));
                StatusRow {
                    client: c.id(),
                    name: c.name(),
                    detected: installed.detected(),
                    configured,
                    paths: c.config_paths(&self.env),
                }
            })
            .collect()
    }

    /// Where every client whose files configure tokenbuddy's provider
    /// points (unreadable files are skipped): for `doctor`'s stale port and
    /// old token checks.
    pub fn pointers(&self) -> Vec<ClientPointer> {
        crate::all_clients()
            .iter()
            .filter_map(|c| {
                let pointer = c.pointer(&self.read_files(c.as_ref()).ok()?)?;
                Some(ClientPointer {
                    client: c.id(),
                    installed_by_tokenbuddy: self
                        .pristine(c.as_ref())
                        .is_ok_and(|p| !p.files.is_empty()),
                    pointer,
                })
            })
            .collect()
    }

    /// The ids of the detected clients (what `install` with no client
    /// selects).
    pub fn detected(&self) -> Vec<&'static str> {
        crate::all_clients()
            .iter()
            .filter(|c| c.detect(&self.env).detected())
            .map(|c| c.id())
            .collect()
    }

    /// Plans `clients` against the files on disk, with a redacted diff.
    pub fn preview(
        &self,
        clients: &[&dyn ClientInstaller],
        target: &Target,
        opts: &Options,
    ) -> Result<Preview, InstallError> {
        let mut changes = Vec::new();
        for c in clients {
            let files = self.read_files(*c)?;
            let planned = c
                .plan(&files, target, opts)
                .map_err(|source| InstallError::Plan {
                    client: c.id(),
                    source,
                })?;
            changes.extend(planned.into_iter().filter(|ch| !ch.is_noop()));
        }
        let diff = diff(&changes, &[&target.token]);
        Ok(Preview {
            kind: PreviewKind::Install,
            clients: clients.iter().map(|c| c.id()).collect(),
            changes,
            diff,
        })
    }

    /// Plans taking `clients` out again, with a redacted diff.
    pub fn preview_undo(&self, clients: &[&dyn ClientInstaller]) -> Result<Preview, InstallError> {
        let mut changes = Vec::new();
        for c in clients {
            let files = self.read_files(*c)?;
            let pristine = self.pristine(*c)?;
            let planned = c
                .plan_undo(&files, &pristine)
                .map_err(|source| InstallError::Plan {
                    client: c.id(),
                    source,
                })?;
            changes.extend(planned.into_iter().filter(|ch| !ch.is_noop()));
        }
        let diff = diff(&changes, &[]);
        Ok(Preview {
            kind: PreviewKind::Undo,
            clients: clients.iter().map(|c| c.id()).collect(),
            changes,
            diff,
        })
    }

    /// Preview and apply in one go.
    pub fn install(
        &self,
        clients: &[&dyn ClientInstaller],
        target: &Target,
        opts: &Options,
    ) -> Result<Applied, InstallError> {
        self.apply(&self.preview(clients, target, opts)?)
    }

    /// Undoes `clients`: all or nothing; their backups' pristine copies are
    /// dropped afterwards, so the next install records new ones.
    pub fn undo(&self, clients: &[&dyn ClientInstaller]) -> Result<Applied, InstallError> {
        self.apply(&self.preview_undo(clients)?)
    }

    /// What the backups know about `client`'s files.
    pub fn pristine(&self, client: &dyn ClientInstaller) -> Result<Pristine, InstallError> {
        let mut out = Pristine::none();
        let dir = self.backup_dir(client.id());
        for path in client.config_paths(&self.env) {
            let key = key_of(&path);
            let meta_path = dir.join("pristine").join(format!("{key}.json"));
            let Some(meta) = read_opt(&meta_path)? else {
                continue;
            };
            let meta: PristineMeta =
                serde_json::from_str(&meta).map_err(|e| InstallError::Read {
                    path: meta_path.clone(),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
            let original = if meta.existed {
                let p = dir.join("pristine").join(format!("{key}.orig"));
                Some(read_opt(&p)?.ok_or_else(|| InstallError::Read {
                    path: p,
                    source: io::Error::new(io::ErrorKind::NotFound, "pristine copy missing"),
                })?)
            } else {
                None
            };
            let stash = match read_opt(&dir.join("pristine").join(format!("{key}.stash.json")))? {
                Some(s) => serde_json::from_str(&s).unwrap_or_default(),
                None => BTreeMap::new(),
            };
            let inst_meta = read_opt(&dir.join("installed").join(format!("{key}.json")))?
                .and_then(|m| serde_json::from_str::<InstalledMeta>(&m).ok());
            let installed = read_opt(&dir.join("installed").join(format!("{key}.content")))?;
            let restorable = inst_meta.is_some_and(|m| m.restorable) && installed.is_some();
            out.files.insert(
                path,
                PristineFile {
                    original,
                    installed,
                    restorable,
                    stash,
                },
            );
        }
        Ok(out)
    }

    /// Applies a preview: all or nothing over every file of every client.
    ///
    /// Each file is re-read first ("changed on disk, run again" if it is no
    /// longer what was planned from); backups are written (the pristine
    /// copy on first install, a timestamped copy every time, the last
    /// [`KEEP_BACKUPS`] kept); then each file is written atomically. If any
    /// write fails, every file already written is put back.
    pub fn apply(&self, preview: &Preview) -> Result<Applied, InstallError> {
        let changes: Vec<&FileChange> = preview.changes.iter().filter(|c| !c.is_noop()).collect();
        let mut seen = BTreeSet::new();
        for c in &changes {
            if !seen.insert(&c.path) {
                return Err(InstallError::DuplicatePath {
                    path: c.path.clone(),
                });
            }
        }
        let mut snaps = Vec::new();
        for c in &changes {
            let real = resolve(&c.path);
            let current = read_opt(&real)?;
            if current != c.before {
                return Err(InstallError::ChangedOnDisk {
                    path: c.path.clone(),
                });
            }
            snaps.push(Snapshot {
                change: c,
                existed: current.is_some(),
                mode: file_mode(&real),
                real,
            });
        }
        if snaps.is_empty() {
            if preview.kind == PreviewKind::Undo {
                self.forget_clients(&preview.clients);
            }
            return Ok(Applied::default());
        }
        let mut log = BackupLog::default();
        if let Err(e) = self.write_backups(&snaps, preview.kind, &mut log) {
            self.rollback_backups(&log);
            return Err(e);
        }

        let mut created_dirs = Vec::new();
        for (i, s) in snaps.iter().enumerate() {
            let fail = self.fail_write == Some(i + 1);
            let result = match &s.change.after {
                Some(text) => create_dirs(
                    s.real.parent().unwrap_or(Path::new("")),
                    &mut created_dirs,
                    false,
                )
                .and_then(|()| {
                    let mode = if s.change.secret {
                        Some(0o600)
                    } else {
                        Some(s.mode.unwrap_or(0o644))
                    };
                    write_atomic(&s.real, text.as_bytes(), mode, fail)
                }),
                None if fail => Err(io::Error::other("injected write failure (test hook)")),
                None => match fs::remove_file(&s.real) {
                    Err(e) if !gone(&e) => Err(e),
                    _ => Ok(()),
                },
            };
            if let Err(source) = result {
                let failures = rollback(&snaps[..=i], &created_dirs);
                self.rollback_backups(&log);
                let path = s.change.path.clone();
                if failures.is_empty() {
                    return Err(InstallError::Write { path, source });
                }
                let backups = log
                    .timestamped
                    .first()
                    .cloned()
                    .unwrap_or_else(|| self.data_dir.join("backups"));
                return Err(InstallError::RollbackFailed {
                    path,
                    source,
                    failures,
                    backups,
                });
            }
        }

        for dir in &log.timestamped {
            if let Some(base) = dir.parent() {
                self.prune_backups(base);
            }
        }
        match preview.kind {
            PreviewKind::Install => self.record_installed(&snaps),
            PreviewKind::Undo => self.forget_clients(&preview.clients),
        }
        let files = snaps
            .iter()
            .map(|s| AppliedFile {
                client: s.change.client,
                path: s.change.path.clone(),
                action: match (&s.change.after, s.existed) {
                    (None, _) => Action::Deleted,
                    (Some(_), false) => Action::Created,
                    (Some(_), true) => Action::Updated,
                },
                description: s.change.description.clone(),
            })
            .collect();
        Ok(Applied {
            files,
            backups: log.timestamped,
        })
    }

    fn write_private(
        &self,
        path: &Path,
        bytes: &[u8],
        log: &mut BackupLog,
    ) -> Result<(), InstallError> {
        let err = |source| InstallError::Backup {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            create_dirs(parent, &mut log.dirs, true).map_err(err)?;
        }
        match fs::read(path) {
            Ok(old) => log.replaced.push((path.to_path_buf(), old)),
            Err(_) => log.created.push(path.to_path_buf()),
        }
        write_atomic(path, bytes, Some(0o600), false).map_err(err)
    }

    fn write_backups(
        &self,
        snaps: &[Snapshot<'_>],
        kind: PreviewKind,
        log: &mut BackupLog,
    ) -> Result<(), InstallError> {
        let stamp = timestamp();
        let clients: BTreeSet<&'static str> = snaps.iter().map(|s| s.change.client).collect();
        for client in clients {
            let base = self.backup_dir(client);
            let mut dir = base.join(&stamp);
            let mut n = 1;
            while dir.exists() {
                dir = base.join(format!("{stamp}-{n}"));
                n += 1;
            }
            for s in snaps.iter().filter(|s| s.change.client == client) {
                let key = key_of(&s.change.path);
                let meta = BackupMeta {
                    path: s.change.path.to_string_lossy().into_owned(),
                    existed: s.existed,
                    description: s.change.description.clone(),
                };
                let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
                self.write_private(&dir.join(format!("{key}.json")), &json, log)?;
                if let Some(before) = &s.change.before {
                    self.write_private(&dir.join(format!("{key}.orig")), before.as_bytes(), log)?;
                }
                if kind == PreviewKind::Install {
                    let pdir = base.join("pristine");
                    let meta_path = pdir.join(format!("{key}.json"));
                    if !meta_path.exists() {
                        if let Some(before) = &s.change.before {
                            self.write_private(
                                &pdir.join(format!("{key}.orig")),
                                before.as_bytes(),
                                log,
                            )?;
                        }
                        let meta = PristineMeta {
                            path: meta.path.clone(),
                            existed: s.existed,
                        };
                        let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
                        self.write_private(&meta_path, &json, log)?;
                    }
                    if !s.change.stash.is_empty() {
                        let stash_path = pdir.join(format!("{key}.stash.json"));
                        let mut stash: BTreeMap<String, String> = fs::read_to_string(&stash_path)
                            .ok()
                            .and_then(|s| serde_json::from_str(&s).ok())
                            .unwrap_or_default();
                        stash.extend(s.change.stash.clone());
                        let json = serde_json::to_vec_pretty(&stash).unwrap_or_default();
                        self.write_private(&stash_path, &json, log)?;
                    }
                }
            }
            log.timestamped.push(dir);
        }
        Ok(())
    }

    /// Keeps the newest [`KEEP_BACKUPS`] timestamped backups of a client.
    fn prune_backups(&self, base: &Path) {
        let Ok(rd) = fs::read_dir(base) else { return };
        let mut dirs: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_digit())
            })
            .map(|e| e.path())
            .collect();
        dirs.sort();
        let excess = dirs.len().saturating_sub(KEEP_BACKUPS);
        for d in &dirs[..excess] {
            if let Err(e) = fs::remove_dir_all(d) {
                tracing::warn!(dir = %d.display(), error = %e, "cannot remove an old backup");
            }
        }
    }

    fn rollback_backups(&self, log: &BackupLog) {
        for (p, old) in &log.replaced {
            let _ = write_atomic(p, old, Some(0o600), false);
        }
        for p in log.created.iter().rev() {
            let _ = fs::remove_file(p);
        }
        for d in log.dirs.iter().rev() {
            let _ = fs::remove_dir(d);
        }
    }

    /// Records what was written, for undo.
    fn record_installed(&self, snaps: &[Snapshot<'_>]) {
        for s in snaps {
            let dir = self.backup_dir(s.change.client).join("installed");
            let key = key_of(&s.change.path);
            let result = (|| -> Result<(), InstallError> {
                let previous = self.pristine_entry(s.change.client, &s.change.path)?;
                let Some(after) = &s.change.after else {
                    let _ = fs::remove_file(dir.join(format!("{key}.content")));
                    let _ = fs::remove_file(dir.join(format!("{key}.json")));
                    return Ok(());
                };
                let restorable = previous.is_some_and(|pf| {
                    pf.original == s.change.before
                        || (pf.restorable
                            && pf.installed.is_some()
                            && pf.installed == s.change.before)
                });
                let mut log = BackupLog::default();
                self.write_private(
                    &dir.join(format!("{key}.content")),
                    after.as_bytes(),
                    &mut log,
                )?;
                let meta = InstalledMeta {
                    path: s.change.path.to_string_lossy().into_owned(),
                    restorable,
                };
                let json = serde_json::to_vec_pretty(&meta).unwrap_or_default();
                self.write_private(&dir.join(format!("{key}.json")), &json, &mut log)
            })();
            if let Err(e) = result {
                // Undo still works (by removing tokenbuddy's keys).
                let _ = fs::remove_file(dir.join(format!("{key}.json")));
                tracing::warn!(error = %e, "cannot record the installed copy");
            }
        }
    }

    fn pristine_entry(
        &self,
        client: &'static str,
        path: &Path,
    ) -> Result<Option<PristineFile>, InstallError> {
        let Some(c) = crate::client_by_id(client) else {
            return Ok(None);
        };
        Ok(self.pristine(c.as_ref())?.files.remove(path))
    }

    /// After an undo: the clients' pristine copies and install records are
    /// dropped (their timestamped backups stay).
    fn forget_clients(&self, clients: &[&'static str]) {
        for client in clients {
            for sub in ["pristine", "installed"] {
                let d = self.backup_dir(client).join(sub);
                if let Err(e) = fs::remove_dir_all(&d)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot drop the pristine backup");
                }
            }
        }
    }
}

/// Puts every snapshot back; returns what could not be restored.
fn rollback(snaps: &[Snapshot<'_>], created_dirs: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for s in snaps.iter().rev() {
        let now = fs::read(&s.real).ok();
        let result = match &s.change.before {
            Some(before) if now.as_deref() == Some(before.as_bytes()) => Ok(()),
            Some(before) => write_atomic(&s.real, before.as_bytes(), s.mode, false),
            None => match fs::remove_file(&s.real) {
                Err(e) if !gone(&e) => Err(e),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", s.change.path.display()));
        }
    }
    for d in created_dirs.iter().rev() {
        let _ = fs::remove_dir(d);
    }
    failures
}

/// A unified diff per change, secrets redacted.
fn diff(changes: &[FileChange], secrets: &[&str]) -> String {
    let mut out = String::new();
    for c in changes {
        out.push_str(&format!("# {}: {}\n", c.client, c.description));
        out.push_str(&unified_diff(
            &c.path,
            c.before.as_deref(),
            c.after.as_deref(),
            secrets,
        ));
    }
    out
}

/// The unified diff (3 lines of context) of one file from `before` to
/// `after` (`None`: the file does not exist), with `secrets` and the
/// values of secret-looking keys redacted; empty when nothing changes.
pub fn unified_diff(
    path: &Path,
    before: Option<&str>,
    after: Option<&str>,
    secrets: &[&str],
) -> String {
    let path = path.display().to_string();
    let old_text = redact(before.unwrap_or(""), secrets);
    let new_text = redact(after.unwrap_or(""), secrets);
    let old = if before.is_some() {
        format!("a{}{path}", sep(&path))
    } else {
        "/dev/null".into()
    };
    let new = if after.is_some() {
        format!("b{}{path}", sep(&path))
    } else {
        "/dev/null".into()
    };
    let d = similar::TextDiff::from_lines(&old_text, &new_text);
    d.unified_diff()
        .context_radius(3)
        .header(&old, &new)
        .to_string()
}

fn sep(path: &str) -> &'static str {
    if path.starts_with('/') { "" } else { "/" }
}
