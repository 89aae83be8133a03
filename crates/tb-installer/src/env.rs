//! The machine as the installer sees it: home, selected variables, `PATH`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The operating system, which decides some paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and other Unix-likes.
    Linux,
    /// macOS.
    MacOs,
    /// Windows.
    Windows,
}

impl Os {
    /// The OS this binary was built for.
    pub fn current() -> Self {
        if cfg!(target_os = "macos") {
            Os::MacOs
        } else if cfg!(windows) {
            Os::Windows
        } else {
            Os::Linux
        }
    }
}

/// Variables the installer reads; [`InstallEnv::from_process`] copies only
/// these (never the whole environment, which may hold secrets).
pub const ENV_VARS: &[&str] = &[
    "CLAUDE_CONFIG_DIR",
    "CODEX_HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "OPENCLAW_CONFIG_PATH",
    "OPENCLAW_STATE_DIR",
    "HERMES_HOME",
    "LOCALAPPDATA",
    "APPDATA",
    "NPM_CONFIG_PREFIX",
    "NVM_DIR",
    "FNM_DIR",
    "VOLTA_HOME",
    "BUN_INSTALL",
    "PNPM_HOME",
];

/// Everything the installer needs to know about the machine. Every path the
/// installer touches is derived from this, so tests build one over a
/// temporary directory and never see the real home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallEnv {
    /// The user's home directory (`~`, `%USERPROFILE%`).
    pub home: PathBuf,
    /// Selected environment variables (see [`ENV_VARS`]); empty values are
    /// treated as unset.
    pub vars: BTreeMap<String, String>,
    /// The directories of `PATH`, in order.
    pub path_dirs: Vec<PathBuf>,
    /// The operating system.
    pub os: Os,
}

/// The process has no home directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot find the home directory (set HOME, or USERPROFILE on Windows)")]
pub struct NoHomeDir;

impl InstallEnv {
    /// An environment with `home`, no variables and an empty `PATH`.
    pub fn new(home: impl Into<PathBuf>, os: Os) -> Self {
        Self {
            home: home.into(),
            vars: BTreeMap::new(),
            path_dirs: Vec::new(),
            os,
        }
    }

    /// Builder: sets a variable.
    pub fn with_var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Builder: appends a `PATH` directory.
    pub fn with_path_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_dirs.push(dir.into());
        self
    }

    /// The daemon's view: the real home, [`ENV_VARS`] and `PATH`.
    pub fn from_process() -> Result<Self, NoHomeDir> {
        let os = Os::current();
        let home_var = if os == Os::Windows {
            "USERPROFILE"
        } else {
            "HOME"
        };
        let home = std::env::var_os(home_var)
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(std::env::home_dir)
            .ok_or(NoHomeDir)?;
        let vars = ENV_VARS
            .iter()
            .filter_map(|k| {
                std::env::var(k)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .map(|v| ((*k).to_owned(), v))
            })
            .collect();
        let path_dirs = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .filter(|d| !d.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            home,
            vars,
            path_dirs,
            os,
        })
    }

    /// A variable's value, `None` when unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// A variable as a path (a leading `~/` expands to the home).
    pub fn var_path(&self, name: &str) -> Option<PathBuf> {
        self.var(name).map(|v| self.expand(v))
    }

    fn expand(&self, v: &str) -> PathBuf {
        match v.strip_prefix("~/").or_else(|| v.strip_prefix("~\\")) {
            Some(rest) => self.home.join(rest),
            None if v == "~" => self.home.clone(),
            None => PathBuf::from(v),
        }
    }

    /// `$XDG_CONFIG_HOME`, else `~/.config` (also on macOS and Windows,
    /// where the clients that use it follow the same rule).
    pub fn xdg_config_home(&self) -> PathBuf {
        self.var_path("XDG_CONFIG_HOME")
            .unwrap_or_else(|| self.home.join(".config"))
    }

    /// `%LOCALAPPDATA%`, else `~\AppData\Local`.
    pub fn local_app_data(&self) -> PathBuf {
        self.var_path("LOCALAPPDATA")
            .unwrap_or_else(|| self.home.join("AppData").join("Local"))
    }

    /// Every directory searched for client binaries: `PATH`, then
    /// `~/.local/bin`, the npm global prefix, nvm/fnm/volta/bun/pnpm dirs
    /// when present.
    pub fn binary_dirs(&self) -> Vec<PathBuf> {
        let h = &self.home;
        let mut dirs = self.path_dirs.clone();
        dirs.push(h.join(".local").join("bin"));
        if let Some(p) = self.var_path("NPM_CONFIG_PREFIX") {
            dirs.push(if self.os == Os::Windows {
                p
            } else {
                p.join("bin")
            });
        }
        dirs.push(h.join(".npm-global").join("bin"));
        if self.os == Os::Windows {
            let appdata = self
                .var_path("APPDATA")
                .unwrap_or_else(|| h.join("AppData").join("Roaming"));
            dirs.push(appdata.join("npm"));
        }
        let nvm = self.var_path("NVM_DIR").unwrap_or_else(|| h.join(".nvm"));
        dirs.extend(
            subdirs(&nvm.join("versions").join("node"))
                .into_iter()
                .map(|d| d.join("bin")),
        );
        let fnm_default = match self.os {
            Os::MacOs => h.join("Library").join("Application Support").join("fnm"),
            Os::Windows => self
                .var_path("APPDATA")
                .unwrap_or_else(|| h.join("AppData").join("Roaming"))
                .join("fnm"),
            Os::Linux => self
                .var_path("XDG_DATA_HOME")
                .unwrap_or_else(|| h.join(".local").join("share"))
                .join("fnm"),
        };
        for fnm in [
            self.var_path("FNM_DIR").unwrap_or(fnm_default),
            h.join(".fnm"),
        ] {
            dirs.extend(
                subdirs(&fnm.join("node-versions"))
                    .into_iter()
                    .map(|d| d.join("installation").join("bin")),
            );
        }
        dirs.push(
            self.var_path("VOLTA_HOME")
                .unwrap_or_else(|| h.join(".volta"))
                .join("bin"),
        );
        dirs.push(
            self.var_path("BUN_INSTALL")
                .unwrap_or_else(|| h.join(".bun"))
                .join("bin"),
        );
        if let Some(p) = self.var_path("PNPM_HOME") {
            dirs.push(p);
        }
        dirs
    }

    /// The first executable called `name` in [`Self::binary_dirs`] (on
    /// Windows also `name.exe` / `.cmd` / `.bat`).
    pub fn find_binary(&self, name: &str) -> Option<PathBuf> {
        let names: Vec<String> = if self.os == Os::Windows {
            ["exe", "cmd", "bat"]
                .iter()
                .map(|e| format!("{name}.{e}"))
                .chain([name.to_owned()])
                .collect()
        } else {
            vec![name.to_owned()]
        };
        self.binary_dirs()
            .iter()
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| is_executable(p))
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn finds_binaries_in_extra_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let env = InstallEnv::new(tmp.path(), Os::Linux);
        assert_eq!(env.find_binary("codex"), None);
        let dir = tmp.path().join(".nvm/versions/node/v22.1.0/bin");
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("codex");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(env.find_binary("codex"), Some(bin));
    }

    #[test]
    fn empty_vars_are_unset_and_tilde_expands() {
        let env = InstallEnv::new("/h", Os::Linux)
            .with_var("CODEX_HOME", "")
            .with_var("HERMES_HOME", "~/hh");
        assert_eq!(env.var("CODEX_HOME"), None);
        assert_eq!(env.var_path("HERMES_HOME"), Some(PathBuf::from("/h/hh")));
        assert_eq!(env.xdg_config_home(), PathBuf::from("/h/.config"));
    }
}
