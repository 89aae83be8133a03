//! Where the ledger lives.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where the ledger lives: a SQLite file (the default) or a PostgreSQL
/// database shared by several daemons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerTarget {
    /// A SQLite database file, created (with its directory) if missing.
    Sqlite(PathBuf),
    /// A PostgreSQL server.
    Postgres {
        /// `postgres://…` or `postgresql://…`.
        url: String,
        /// A schema to use instead of the default `search_path` (set on
        /// every connection, created if missing). Tests give each test its
        /// own; a team can keep several ledgers in one database.
        schema: Option<String>,
    },
}

impl LedgerTarget {
    /// The default ledger: `<data_dir>/ledger.db`.
    pub fn default_in(data_dir: &Path) -> LedgerTarget {
        LedgerTarget::Sqlite(data_dir.join("ledger.db"))
    }

    /// Reads a `ledger.url` setting: `postgres://…` / `postgresql://…`
    /// selects PostgreSQL; `sqlite://PATH`, `sqlite:PATH` or a bare path
    /// selects SQLite.
    pub fn parse(url: &str) -> LedgerTarget {
        let url = url.trim();
        if is_postgres_url(url) {
            return LedgerTarget::Postgres {
                url: url.to_owned(),
                schema: None,
            };
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        LedgerTarget::Sqlite(PathBuf::from(path))
    }

    /// The `ledger.url` setting if there is one, else the default file in
    /// the data directory.
    pub fn from_config(url: Option<&str>, data_dir: &Path) -> LedgerTarget {
        match url.map(str::trim).filter(|u| !u.is_empty()) {
            Some(url) => LedgerTarget::parse(url),
            None => LedgerTarget::default_in(data_dir),
        }
    }

    /// The backend this target selects.
    pub fn backend(&self) -> Backend {
        match self {
            LedgerTarget::Sqlite(_) => Backend::Sqlite,
            LedgerTarget::Postgres { .. } => Backend::Postgres,
        }
    }
}

/// Prints the target for logs, with any password in a URL masked.
impl fmt::Display for LedgerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerTarget::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            LedgerTarget::Postgres { url, schema } => {
                f.write_str(&redact_url(url))?;
                if let Some(schema) = schema {
                    write!(f, " (schema {schema})")?;
                }
                Ok(())
            }
        }
    }
}

/// Which database engine a ledger uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// SQLite, embedded.
    Sqlite,
    /// PostgreSQL, over the network.
    Postgres,
}

impl Backend {
    /// `sqlite` or `postgres`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub(crate) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &userinfo[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// A schema name we can put in SQL without quoting tricks.
pub(crate) fn valid_schema_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_selects_the_backend() {
        assert_eq!(
            LedgerTarget::parse("postgres://u@h/db"),
            LedgerTarget::Postgres {
                url: "postgres://u@h/db".into(),
                schema: None
            }
        );
        assert_eq!(
            LedgerTarget::parse("postgresql://h/db").backend(),
            Backend::Postgres
        );
        assert_eq!(
            LedgerTarget::parse("sqlite:///var/x.db"),
            LedgerTarget::Sqlite("/var/x.db".into())
        );
        assert_eq!(
            LedgerTarget::parse("sqlite:rel.db"),
            LedgerTarget::Sqlite("rel.db".into())
        );
        assert_eq!(
            LedgerTarget::parse("/tmp/l.db"),
            LedgerTarget::Sqlite("/tmp/l.db".into())
        );
    }

    #[test]
    fn from_config_defaults_to_the_data_dir() {
        assert_eq!(
            LedgerTarget::from_config(None, Path::new("/d")),
            LedgerTarget::Sqlite("/d/ledger.db".into())
        );
        assert_eq!(
            LedgerTarget::from_config(Some("  "), Path::new("/d")),
            LedgerTarget::Sqlite("/d/ledger.db".into())
        );
    }

    #[test]
    fn display_masks_passwords() {
        let t = LedgerTarget::Postgres {
            url: "postgres://bob:hunter2@db:5432/ledger?sslmode=require".into(),
            schema: Some("team".into()),
        };
        let shown = t.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            shown,
            "postgres://bob:***@db:5432/ledger?sslmode=require (schema team)"
        );
        assert_eq!(
            LedgerTarget::parse("postgres://bob@db/x").to_string(),
            "postgres://bob@db/x"
        );
    }

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(valid_schema_name("tb_test_1"));
        assert!(valid_schema_name("_x"));
        assert!(!valid_schema_name(""));
        assert!(!valid_schema_name("1abc"));
        assert!(!valid_schema_name("a\"b"));
        assert!(!valid_schema_name("a-b"));
        assert!(!valid_schema_name(&"a".repeat(64)));
    }
}
