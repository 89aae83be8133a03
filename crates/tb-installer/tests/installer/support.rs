//! Test scaffolding: a temporary home and data dir, and helpers.

use std::path::{Path, PathBuf};

use tb_installer::{
    Applied, ClientInstaller, FileChange, Files, InstallEnv, InstallError, Installer, Options, Os,
    Preview, Pristine, Target, client_by_id,
};
use tempfile::TempDir;

/// A long access token: the dry-run diff must never show it whole.
pub const TOKEN: &str = "tb_live_0123456789abcdefghijklmnopqrstuvwxyzSECRET9f3a";
pub const PROXY: &str = "http://127.0.0.1:8787";

pub fn target(model: &str) -> Target {
    Target::new(PROXY, TOKEN, model)
}

pub fn opts() -> Options {
    Options::default()
}

pub fn force() -> Options {
    Options { force: true }
}

/// A fake home and data dir under tempfile.
pub struct Home {
    pub home: TempDir,
    pub data: TempDir,
    pub env: InstallEnv,
}

impl Home {
    pub fn new(os: Os) -> Self {
        let home = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let env = InstallEnv::new(home.path(), os);
        Self { home, data, env }
    }

    pub fn linux() -> Self {
        Self::new(Os::Linux)
    }

    pub fn with_var(mut self, name: &str, rel: &str) -> Self {
        let v = self.path(rel).to_string_lossy().into_owned();
        self.env = self.env.with_var(name, v);
        self
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.path(rel)).ok()
    }

    pub fn installer(&self) -> Installer {
        Installer::new(self.data.path(), self.env.clone())
    }

    pub fn preview(
        &self,
        id: &str,
        target: &Target,
        opts: &Options,
    ) -> Result<Preview, InstallError> {
        let c = client(id);
        self.installer().preview(&[c.as_ref()], target, opts)
    }

    pub fn install(&self, id: &str, target: &Target, opts: &Options) -> Applied {
        let p = self.preview(id, target, opts).unwrap();
        assert!(
            !p.diff.contains(TOKEN),
            "the diff shows the token:\n{}",
            p.diff
        );
        self.installer().apply(&p).unwrap()
    }

    pub fn undo(&self, id: &str) -> Applied {
        let c = client(id);
        self.installer().undo(&[c.as_ref()]).unwrap()
    }

    /// The client's files as on disk.
    pub fn files(&self, id: &str) -> Files {
        self.installer().read_files(client(id).as_ref()).unwrap()
    }

    /// Installs, checks that a second install plans nothing and that the
    /// status says configured, undoes, and checks every file is back.
    pub fn round_trip(&self, id: &str, target: &Target, opts: &Options, rels: &[&str]) {
        let before: Vec<Option<String>> = rels.iter().map(|r| self.read(r)).collect();
        self.install(id, target, opts);
        let again = self.preview(id, target, opts).unwrap();
        assert!(
            again.changes.is_empty(),
            "second install changes {:?}",
            again.changes
        );
        let c = client(id);
        assert!(c.is_configured(&self.files(id), PROXY));
        assert!(c.is_configured(&self.files(id), "http://localhost:8787/"));
        assert!(!c.is_configured(&self.files(id), "http://127.0.0.1:9999"));
        // What doctor reads: the URL and the token's fingerprint, recorded
        // as tokenbuddy's install.
        let pointer = c.pointer(&self.files(id)).expect("a pointer after install");
        assert!(
            tb_installer::same_url(&pointer.base_url, PROXY),
            "{pointer:?}"
        );
        assert!(pointer.sends(&target.token), "{pointer:?}");
        assert!(!format!("{pointer:?}").contains(&target.token));
        let listed = self.installer().pointers();
        assert!(
            listed
                .iter()
                .any(|p| p.client == id && p.installed_by_tokenbuddy && p.pointer == pointer),
            "{listed:?}"
        );
        self.undo(id);
        assert!(
            c.pointer(&self.files(id))
                .is_none_or(|p| !p.sends(&target.token)),
            "undo leaves no pointer with tokenbuddy's token"
        );
        let after: Vec<Option<String>> = rels.iter().map(|r| self.read(r)).collect();
        assert_eq!(before, after, "undo did not restore the original bytes");
        assert!(!c.is_configured(&self.files(id), PROXY));
        assert!(
            !self
                .data
                .path()
                .join("backups")
                .join(id)
                .join("pristine")
                .exists()
        );
    }
}

pub fn client(id: &str) -> Box<dyn ClientInstaller> {
    client_by_id(id).unwrap()
}

/// Pure planning over in-memory files at the client's paths.
pub fn plan(
    id: &str,
    env: &InstallEnv,
    contents: &[Option<&str>],
    target: &Target,
    opts: &Options,
) -> Result<Vec<FileChange>, tb_installer::PlanError> {
    let c = client(id);
    c.plan(&files_for(id, env, contents), target, opts)
}

/// Pure undo planning without any backup (the key-removal path).
pub fn plan_undo_bare(id: &str, env: &InstallEnv, contents: &[Option<&str>]) -> Vec<FileChange> {
    let c = client(id);
    c.plan_undo(&files_for(id, env, contents), &Pristine::none())
        .unwrap()
}

pub fn files_for(id: &str, env: &InstallEnv, contents: &[Option<&str>]) -> Files {
    let c = client(id);
    let paths = c.config_paths(env);
    assert_eq!(paths.len(), contents.len(), "one content per config path");
    let mut files = Files::new();
    for (p, t) in paths.into_iter().zip(contents) {
        files.insert(p, t.map(str::to_owned));
    }
    files
}

/// The `after` of the change to the file named `name`.
pub fn after_of<'a>(changes: &'a [FileChange], name: &str) -> Option<&'a str> {
    changes
        .iter()
        .find(|c| c.path.file_name().is_some_and(|n| n == name))
        .and_then(|c| c.after.as_deref())
}

pub fn rel(home: &Home, p: &Path) -> String {
    p.strip_prefix(home.home.path())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}
