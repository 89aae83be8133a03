//! Where configuration comes from: paths, layers, and errors that name the
//! key and the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Source};
use serde::Serialize;

use crate::schema::{Config, ValidationError};

/// Paths given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct PathOverrides {
    /// `--config FILE`.
    pub config_file: Option<PathBuf>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
}

/// Where the config file and the data directory are, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The config file (it may not exist).
    pub config_file: PathBuf,
    /// True when the user named the file (flag or `TB_CONFIG`): then it must exist.
    pub config_file_explicit: bool,
    /// The data directory (access token, ledger, daemon.json).
    pub data_dir: PathBuf,
}

impl Paths {
    /// Resolves the paths: flag > `TB_CONFIG` / `TB_DATA_DIR` > `TB_HOME`
    /// (`$TB_HOME/config.toml`, `$TB_HOME/data/`) > XDG (`$XDG_CONFIG_HOME`,
    /// `$XDG_DATA_HOME`, else under `$HOME`). `env` reads one variable, so
    /// tests never touch the process environment.
    pub fn resolve(
        flags: &PathOverrides,
        env: impl Fn(&str) -> Option<OsString>,
    ) -> Result<Paths, ConfigError> {
        let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let tb_home = var("TB_HOME");
        let home = || var("HOME").ok_or(ConfigError::NoHome);

        let (config_file, config_file_explicit) = if let Some(f) = &flags.config_file {
            (f.clone(), true)
        } else if let Some(f) = var("TB_CONFIG") {
            (f, true)
        } else if let Some(h) = &tb_home {
            (h.join("config.toml"), false)
        } else {
            let base = match var("XDG_CONFIG_HOME") {
                Some(x) => x,
                None => home()?.join(".config"),
            };
            (base.join("tokenbuddy").join("config.toml"), false)
        };

        let data_dir = if let Some(d) = &flags.data_dir {
            d.clone()
        } else if let Some(d) = var("TB_DATA_DIR") {
            d
        } else if let Some(h) = &tb_home {
            h.join("data")
        } else {
            let base = match var("XDG_DATA_HOME") {
                Some(x) => x,
                None => home()?.join(".local").join("share"),
            };
            base.join("tokenbuddy")
        };

        Ok(Paths {
            config_file,
            config_file_explicit,
            data_dir,
        })
    }
}

/// Settings given as command-line flags (highest precedence). Only the
/// fields that are `Some` override anything.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CliOverrides {
    /// `[proxy]` flags.
    #[serde(skip_serializing_if = "ProxyFlags::is_empty")]
    pub proxy: ProxyFlags,
    /// `[log]` flags.
    #[serde(skip_serializing_if = "LogFlags::is_empty")]
    pub log: LogFlags,
    /// `[control]` flags.
    #[serde(skip_serializing_if = "ControlFlags::is_empty")]
    pub control: ControlFlags,
}

/// `serve --control-port`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ControlFlags {
    /// `--control-port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl ControlFlags {
    fn is_empty(&self) -> bool {
        self.port.is_none()
    }
}

/// `serve --port/--bind`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProxyFlags {
    /// `--port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `--bind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<std::net::IpAddr>,
}

impl ProxyFlags {
    fn is_empty(&self) -> bool {
        self.port.is_none() && self.bind.is_none()
    }
}

/// `--log-level/--log-format`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LogFlags {
    /// `--log-level`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// `--log-format`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::LogFormat>,
}

impl LogFlags {
    fn is_empty(&self) -> bool {
        self.level.is_none() && self.format.is_none()
    }
}

/// A loaded, validated configuration and the layers it came from (so
/// `config show` can say where each value was set).
#[derive(Debug)]
pub struct LoadedConfig {
    /// The effective configuration.
    pub config: Config,
    /// The paths it was resolved with.
    pub paths: Paths,
    /// Whether the config file existed.
    pub file_found: bool,
    pub(crate) figment: Figment,
}

/// Why a configuration could not be loaded. Every variant says what, where
/// and how to fix it; the binary exits with code 2 on any of them.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither a tokenbuddy path variable nor `HOME` is set.
    #[error(
        "cannot find a home directory: set TB_HOME (or HOME, or XDG_CONFIG_HOME and XDG_DATA_HOME)"
    )]
    NoHome,
    /// A config file named by flag or `TB_CONFIG` is missing.
    #[error(
        "config file {path} does not exist (named by --config or TB_CONFIG); create it with `tokenbuddyd config init` or fix the path"
    )]
    MissingFile {
        /// The file.
        path: PathBuf,
    },
    /// A key is unknown, of the wrong type, or the file is not TOML.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<InvalidKey>),
    /// The values parse but break a rule.
    #[error("{}", render_validation(.source_desc, .errors))]
    Rules {
        /// Where the config came from, for the message.
        source_desc: String,
        /// Every broken rule.
        errors: Vec<ValidationError>,
    },
}

fn render_validation(source_desc: &str, errors: &[ValidationError]) -> String {
    let mut out = format!("invalid configuration ({source_desc}):");
    for e in errors {
        out.push_str("\n  ");
        out.push_str(&e.to_string());
    }
    out
}

/// One key-level error from parsing, with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}{}", key.as_deref().map(|k| format!(" (key `{k}`)")).unwrap_or_default(), origin.as_deref().map(|o| format!(" in {o}")).unwrap_or_default())]
pub struct InvalidKey {
    /// What is wrong (serde/figment wording, e.g. "unknown field: found `prot`, expected …").
    pub message: String,
    /// The dotted key path, when known.
    pub key: Option<String>,
    /// The file or variable it came from.
    pub origin: Option<String>,
}

/// Keys tokenbuddy accepted once and no longer has, with what to do about
/// them: a config file (or `TB_…` variable) that still sets one gets this
/// message instead of a bare "unknown field".
pub const REMOVED_KEYS: &[(&str, &str)] = &[
    (
        "ledger.store_bodies",
        "was removed: tokenbuddy never stores prompt or completion text (the ledger keeps only \
         `prompt_hash`, a SHA-256 of the prompt); delete the key",
    ),
    (
        "log.bodies",
        "was removed: tokenbuddy never logs prompt or completion text; delete the key",
    ),
];

pub(crate) fn from_figment_error(err: figment::Error) -> ConfigError {
    let mut out = Vec::new();
    for e in err {
        let origin = e.metadata.as_ref().map(|md| match &md.source {
            Some(Source::File(path)) => format!("config file {}", path.display()),
            Some(other) => format!("{} ({other})", md.name),
            None => md.name.to_string(),
        });
        let mut key = (!e.path.is_empty()).then(|| e.path.join("."));
        let mut message = e.kind.to_string();
        if let figment::error::Kind::UnknownField(field, _) = &e.kind {
            let full = match &key {
                // Figment's path may or may not already end at the field.
                Some(k) if k == field || k.ends_with(&format!(".{field}")) => k.clone(),
                Some(k) => format!("{k}.{field}"),
                None => field.clone(),
            };
            if let Some((_, why)) = REMOVED_KEYS.iter().find(|(k, _)| *k == full) {
                message = format!("`{full}` {why}");
                key = Some(full);
            }
        }
        out.push(InvalidKey {
            message,
            key,
            origin,
        });
    }
    ConfigError::Invalid(out)
}

/// The `TB_<SECTION>__<KEY>` environment layer. Reserved variables
/// (`TB_HOME`, `TB_CONFIG`, `TB_DATA_DIR`, `TB_WARMUP_MODELS`) have no `__`
/// and are therefore never read as keys.
fn env_layer() -> Env {
    Env::prefixed("TB_")
        .filter(|k| k.as_str().contains("__"))
        .split("__")
}

pub(crate) fn figment_for(path: Option<&Path>, flags: &CliOverrides) -> Figment {
    let mut fig = Figment::from(Serialized::defaults(Config::default()));
    if let Some(path) = path {
        fig = fig.merge(Toml::file_exact(path));
    }
    fig.merge(env_layer())
        .merge(Serialized::defaults(flags.clone()))
}

/// Loads the configuration: defaults < file < env < flags, then validates.
pub fn load(paths: Paths, flags: &CliOverrides) -> Result<LoadedConfig, ConfigError> {
    let file_found = paths.config_file.is_file();
    if !file_found && paths.config_file_explicit {
        return Err(ConfigError::MissingFile {
            path: paths.config_file,
        });
    }
    let figment = figment_for(file_found.then_some(paths.config_file.as_path()), flags);
    let config: Config = figment.extract().map_err(from_figment_error)?;
    if let Err(errors) = config.validate() {
        let source_desc = if file_found {
            format!(
                "config file {} and environment",
                paths.config_file.display()
            )
        } else {
            "defaults and environment; no config file".to_string()
        };
        return Err(ConfigError::Rules {
            source_desc,
            errors,
        });
    }
    Ok(LoadedConfig {
        config,
        paths,
        file_found,
        figment,
    })
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large by design.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn path_precedence() {
        let none = PathOverrides::default();
        let p = Paths::resolve(&none, env_of(&[("HOME", "/h")])).unwrap();
        assert_eq!(
            p.config_file,
            PathBuf::from("/h/.config/tokenbuddy/config.toml")
        );
        assert_eq!(p.data_dir, PathBuf::from("/h/.local/share/tokenbuddy"));
        assert!(!p.config_file_explicit);

        let p = Paths::resolve(
            &none,
            env_of(&[
                ("HOME", "/h"),
                ("XDG_CONFIG_HOME", "/xc"),
                ("XDG_DATA_HOME", "/xd"),
            ]),
        )
        .unwrap();
        assert_eq!(p.config_file, PathBuf::from("/xc/tokenbuddy/config.toml"));
        assert_eq!(p.data_dir, PathBuf::from("/xd/tokenbuddy"));

        let p = Paths::resolve(&none, env_of(&[("HOME", "/h"), ("TB_HOME", "/tb")])).unwrap();
        assert_eq!(p.config_file, PathBuf::from("/tb/config.toml"));
        assert_eq!(p.data_dir, PathBuf::from("/tb/data"));

        let p = Paths::resolve(
            &none,
            env_of(&[
                ("TB_HOME", "/tb"),
                ("TB_CONFIG", "/c.toml"),
                ("TB_DATA_DIR", "/d"),
            ]),
        )
        .unwrap();
        assert_eq!(p.config_file, PathBuf::from("/c.toml"));
        assert!(p.config_file_explicit);
        assert_eq!(p.data_dir, PathBuf::from("/d"));

        let flags = PathOverrides {
            config_file: Some("/f.toml".into()),
            data_dir: Some("/fd".into()),
        };
        let p = Paths::resolve(
            &flags,
            env_of(&[("TB_CONFIG", "/c.toml"), ("TB_DATA_DIR", "/d")]),
        )
        .unwrap();
        assert_eq!(p.config_file, PathBuf::from("/f.toml"));
        assert_eq!(p.data_dir, PathBuf::from("/fd"));

        assert!(matches!(
            Paths::resolve(&none, env_of(&[])),
            Err(ConfigError::NoHome)
        ));
    }

    fn paths_in(dir: &Path, explicit: bool) -> Paths {
        Paths {
            config_file: dir.join("config.toml"),
            config_file_explicit: explicit,
            data_dir: dir.join("data"),
        }
    }

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            jail.create_file(
                "config.toml",
                "[proxy]\nport = 1111\nshutdown_grace_ms = 5000\n[log]\nlevel = \"debug\"\n",
            )?;
            jail.set_env("TB_PROXY__PORT", "2222");
            jail.set_env("TB_HOME", "/ignored-as-a-key");
            let flags = CliOverrides {
                log: LogFlags {
                    level: Some("warn".into()),
                    format: None,
                },
                ..Default::default()
            };
            let loaded = load(paths_in(&dir, false), &flags).unwrap();
            assert_eq!(loaded.config.proxy.port, 2222);
            assert_eq!(loaded.config.proxy.shutdown_grace_ms, 5000);
            assert_eq!(loaded.config.log.level, "warn");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            jail.create_file("config.toml", "[proxy]\nport = 1\nbogus_key = true\n")?;
            let err = load(paths_in(&dir, false), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("bogus_key"), "{err}");
            assert!(
                err.contains(&dir.join("config.toml").display().to_string()),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            jail.set_env("TB_PROXY__NOPE", "1");
            let err = load(paths_in(&dir, false), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("nope"), "{err}");
            assert!(err.contains("environment"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn removed_keys_say_they_were_removed_from_file_and_env() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            for (key, why) in REMOVED_KEYS {
                let (section, field) = key.split_once('.').ok_or("a dotted key")?;
                jail.create_file("config.toml", &format!("[{section}]\n{field} = true\n"))?;
                let err = load(paths_in(&dir, false), &CliOverrides::default())
                    .unwrap_err()
                    .to_string();
                assert!(err.contains(&format!("`{key}` {why}")), "{key}: {err}");
                assert!(err.contains(&format!("(key `{key}`)")), "{key}: {err}");
                assert!(
                    err.contains(&dir.join("config.toml").display().to_string()),
                    "{err}"
                );
            }
            std::fs::remove_file(dir.join("config.toml")).map_err(|e| e.to_string())?;
            jail.set_env("TB_LOG__BODIES", "true");
            let err = load(paths_in(&dir, false), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("`log.bodies` was removed"), "{err}");
            assert!(err.contains("environment"), "{err}");
            Ok(())
        });
        // A key merely named like a removed one elsewhere stays unknown.
        let err = Config::from_toml_str("[proxy]\nbodies = true\n")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("removed") && err.contains("bodies"), "{err}");
    }

    #[test]
    fn explicit_missing_file_is_an_error_implicit_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(paths_in(dir.path(), true), &CliOverrides::default()).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile { .. }));
        figment::Jail::expect_with(|_| {
            let loaded = load(paths_in(dir.path(), false), &CliOverrides::default()).unwrap();
            assert!(!loaded.file_found);
            Ok(())
        });
    }

    #[test]
    fn not_toml_is_reported_with_the_file() {
        figment::Jail::expect_with(|jail| {
            let dir = jail.directory().to_path_buf();
            jail.create_file("config.toml", "[proxy\nport = ")?;
            let err = load(paths_in(&dir, false), &CliOverrides::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("config.toml"), "{err}");
            Ok(())
        });
    }
}
