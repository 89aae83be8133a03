//! The installer as the daemon offers it: `tokenbuddyd install` and the
//! control plane's `/v1/install*` share these operations.

use std::path::Path;

use anyhow::{Context, anyhow};
use tb_control::api::{
    Change, ChangedFile, FileAction, InstallChanged, InstallClient, InstallPreview, InstallStatus,
    Instruction,
};
use tb_installer::{
    Applied, ClientInstaller, InstallEnv, Installer, ManualClient, Options, Preview, Target,
};

/// Everything an install needs: where the files are, what to point at.
pub(crate) struct InstallOps {
    installer: Installer,
    proxy_url: String,
    token: String,
    /// Where the token lives: what unauthenticated readers are shown
    /// instead of the token itself.
    token_path: String,
    focus: Vec<String>,
    served: Vec<String>,
}

impl InstallOps {
    pub(crate) fn new(
        data_dir: &Path,
        proxy_url: String,
        token: String,
        focus: Vec<String>,
        served: Vec<String>,
    ) -> anyhow::Result<InstallOps> {
        let env = InstallEnv::from_process().map_err(|e| anyhow!("{e}"))?;
        Ok(InstallOps {
            installer: Installer::new(data_dir, env),
            proxy_url,
            token,
            token_path: data_dir
                .join(tb_proxy::ACCESS_TOKEN_FILE)
                .display()
                .to_string(),
            focus,
            served,
        })
    }

    fn target(&self, model: Option<&str>) -> anyhow::Result<Target> {
        let model = tb_installer::default_model(model, &self.focus, &self.served)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Target {
            proxy_url: self.proxy_url.clone(),
            token: self.token.clone(),
            model,
        })
    }

    /// The clients named, or every detected one (install) / every
    /// configured one (undo) when none is named.
    fn select(&self, ids: &[String], undo: bool) -> anyhow::Result<Vec<Box<dyn ClientInstaller>>> {
        if ids.is_empty() {
            let rows = self.installer.status(&self.proxy_url);
            let chosen: Vec<&str> = rows
                .iter()
                .filter(|r| if undo { r.configured } else { r.detected })
                .map(|r| r.client)
                .collect();
            return Ok(chosen
                .into_iter()
                .filter_map(tb_installer::client_by_id)
                .collect());
        }
        ids.iter()
            .map(|id| {
                tb_installer::client_by_id(id).ok_or_else(|| {
                    let known: Vec<&str> =
                        tb_installer::all_clients().iter().map(|c| c.id()).collect();
                    anyhow!("unknown client {id:?}; known clients: {}", known.join(", "))
                })
            })
            .collect()
    }

    /// The installer, for `doctor`'s client checks.
    pub(crate) fn installer(&self) -> &Installer {
        &self.installer
    }

    pub(crate) fn status(&self) -> InstallStatus {
        let clients: Vec<InstallClient> = self
            .installer
            .status(&self.proxy_url)
            .into_iter()
            .map(|r| InstallClient {
                id: r.client.to_string(),
                name: r.name.to_string(),
                detected: r.detected,
                configured: r.configured,
                paths: r.paths.iter().map(|p| p.display().to_string()).collect(),
            })
            .collect();
        // `GET /v1/install` needs no token, so it must not hand one out
        // (any local user can reach loopback): the snippets name the file.
        let instructions: Vec<Instruction> = match self.target(None) {
            Ok(mut target) => {
                target.token = format!("<the access token in {}>", self.token_path);
                ManualClient::ALL
                    .iter()
                    .map(|c| Instruction {
                        client: c.id().to_string(),
                        name: c.name().to_string(),
                        text: tb_installer::instructions(*c, &target),
                    })
                    .collect()
            }
            Err(_) => Vec::new(),
        };
        InstallStatus {
            clients,
            instructions,
        }
    }

    pub(crate) fn preview(
        &self,
        ids: &[String],
        model: Option<&str>,
        undo: bool,
        force: bool,
    ) -> anyhow::Result<Preview> {
        let clients = self.select(ids, undo)?;
        let refs: Vec<&dyn ClientInstaller> = clients.iter().map(|c| c.as_ref()).collect();
        if undo {
            return self
                .installer
                .preview_undo(&refs)
                .map_err(|e| anyhow!("{e}"));
        }
        let target = self.target(model)?;
        self.installer
            .preview(&refs, &target, &Options { force })
            .map_err(|e| anyhow!("{e}"))
    }

    pub(crate) fn apply(&self, preview: &Preview) -> anyhow::Result<Applied> {
        self.installer.apply(preview).map_err(|e| anyhow!("{e}"))
    }
}

/// A preview as the API answers it (secrets redacted in the diff).
pub(crate) fn preview_doc(p: &Preview) -> InstallPreview {
    InstallPreview {
        changes: p
            .changes
            .iter()
            .map(|c| Change {
                client: c.client.to_string(),
                path: c.path.display().to_string(),
                description: c.description.clone(),
            })
            .collect(),
        diff: p.diff.clone(),
    }
}

/// What an apply or undo changed, as the API answers it.
pub(crate) fn applied_doc(a: &Applied) -> InstallChanged {
    InstallChanged {
        changed: a
            .files
            .iter()
            .map(|f| ChangedFile {
                client: f.client.to_string(),
                path: f.path.display().to_string(),
                description: f.description.clone(),
                action: match f.action {
                    tb_installer::Action::Created => FileAction::Created,
                    tb_installer::Action::Updated => FileAction::Updated,
                    tb_installer::Action::Deleted => FileAction::Deleted,
                },
            })
            .collect(),
    }
}

/// The proxy URL clients should use: the running daemon's, else the
/// configured port's.
pub(crate) fn proxy_url_for(data_dir: &Path, port: u16) -> String {
    std::fs::read(data_dir.join("daemon.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::doctor::DaemonFile>(&b).ok())
        .map_or_else(|| format!("http://127.0.0.1:{port}"), |f| f.proxy_url)
}

/// `tokenbuddyd install`.
pub(crate) fn run_cli(
    loaded: &tb_config::LoadedConfig,
    clients: &[String],
    dry_run: bool,
    undo: bool,
    model: Option<&str>,
    force: bool,
) -> anyhow::Result<()> {
    let config = &loaded.config;
    let data_dir = &loaded.paths.data_dir;
    let (token, _) =
        tb_proxy::AccessToken::load_or_create(data_dir).context("reading the access token")?;
    let served: Vec<String> = config
        .providers
        .iter()
        .flat_map(|p| p.models.iter().cloned())
        .collect();
    let ops = InstallOps::new(
        data_dir,
        proxy_url_for(data_dir, config.proxy.port),
        token.expose().to_string(),
        config.routing.focus_models.clone(),
        served,
    )?;
    let preview = ops.preview(clients, model, undo, force)?;
    if preview.changes.is_empty() {
        println!("nothing to do");
        print_status(&ops);
        return Ok(());
    }
    if dry_run {
        print!("{}", preview.diff);
        return Ok(());
    }
    let applied = ops.apply(&preview)?;
    for f in &applied.files {
        println!(
            "{:?} {} ({}): {}",
            f.action,
            f.path.display(),
            f.client,
            f.description
        );
    }
    Ok(())
}

fn print_status(ops: &InstallOps) {
    let status = ops.status();
    println!(
        "{:<16} {:<9} {:<11} path",
        "client", "detected", "configured"
    );
    let yes = |b: bool| if b { "yes" } else { "no" };
    for c in &status.clients {
        let path = c.paths.first().map_or("-", String::as_str);
        println!(
            "{:<16} {:<9} {:<11} {path}",
            c.id,
            yes(c.detected),
            yes(c.configured)
        );
    }
}
