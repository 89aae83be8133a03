use std::path::{Path, PathBuf};

use tb_installer::{Action, ClientInstaller, InstallError, Os, Target, client_by_id, mask};

use crate::support::*;

const SETTINGS: &str = ".claude/settings.json";
const GLOBAL: &str = ".claude.json";
const CODEX: &str = ".codex/config.toml";
const HERMES: &str = ".hermes/config.yaml";

const SETTINGS_TEXT: &str =
    "{\n  \"permissions\": { \"allow\": [\"Bash(ls)\"] },\n  \"hooks\": { \"Stop\": [] }\n}\n";
const CODEX_TEXT: &str = "# mine\nmodel = \"o3\"\n\n[projects.\"/p\"]\ntrust_level = \"trusted\"\n";

fn clients(ids: &[&str]) -> Vec<Box<dyn ClientInstaller>> {
    ids.iter().map(|id| client_by_id(id).unwrap()).collect()
}

fn refs(c: &[Box<dyn ClientInstaller>]) -> Vec<&dyn ClientInstaller> {
    c.iter().map(|b| b.as_ref()).collect()
}

/// Every file under `dir`, with contents (to compare whole trees).
fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.push((p.clone(), None));
                stack.push(p);
            } else {
                out.push((p.clone(), Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

fn setup_three_clients() -> Home {
    let h = Home::linux();
    h.write(SETTINGS, SETTINGS_TEXT);
    h.write(CODEX, CODEX_TEXT);
    // .claude.json and the Hermes config do not exist yet.
    h
}

#[test]
fn a_failed_write_in_the_middle_leaves_every_file_as_it_was() {
    let h = setup_three_clients();
    let cs = clients(&["claude-code", "codex", "hermes"]);
    let home_before = tree(h.home.path());
    let data_before = tree(h.data.path());
    let preview = h
        .installer()
        .preview(&refs(&cs), &target("gpt-5"), &opts())
        .unwrap();
    assert_eq!(preview.changes.len(), 4);
    for n in 1..=4 {
        let err = h.installer().with_fault(n).apply(&preview).unwrap_err();
        assert!(matches!(err, InstallError::Write { .. }), "{err:?}");
        assert!(err.to_string().contains("restored"), "{err}");
        assert_eq!(
            tree(h.home.path()),
            home_before,
            "home differs after failing write #{n}"
        );
        assert_eq!(
            tree(h.data.path()),
            data_before,
            "backups left after failing write #{n}"
        );
    }
    // Without the fault the same preview applies.
    let applied = h.installer().apply(&preview).unwrap();
    assert_eq!(applied.files.len(), 4);
    assert!(h.read(HERMES).is_some());
}

#[test]
fn a_real_write_failure_rolls_back_the_other_clients() {
    let h = Home::linux();
    h.write(SETTINGS, SETTINGS_TEXT);
    // ~/.codex is a file, so ~/.codex/config.toml cannot be created.
    h.write(".codex", "not a dir");
    let cs = clients(&["claude-code", "codex"]);
    let before = tree(h.home.path());
    let err = h
        .installer()
        .install(&refs(&cs), &target("gpt-5"), &opts())
        .unwrap_err();
    let InstallError::Write { path, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(path, &h.path(CODEX));
    assert_eq!(tree(h.home.path()), before);
}

#[test]
fn a_file_changed_since_planning_aborts_everything() {
    let h = setup_three_clients();
    let cs = clients(&["claude-code", "codex"]);
    let preview = h
        .installer()
        .preview(&refs(&cs), &target("gpt-5"), &opts())
        .unwrap();
    h.write(CODEX, &format!("{CODEX_TEXT}# edited meanwhile\n"));
    let err = h.installer().apply(&preview).unwrap_err();
    assert!(
        matches!(&err, InstallError::ChangedOnDisk { path } if path == &h.path(CODEX)),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("changed on disk") && msg.contains("run again"),
        "{msg}"
    );
    assert_eq!(h.read(SETTINGS).unwrap(), SETTINGS_TEXT);
    assert!(h.read(GLOBAL).is_none());
    // A file that appeared meanwhile counts too.
    let h = Home::linux();
    let preview = h.preview("hermes", &target("gpt-5"), &opts()).unwrap();
    h.write(HERMES, "model: mine\n");
    assert!(matches!(
        h.installer().apply(&preview),
        Err(InstallError::ChangedOnDisk { .. })
    ));
    assert_eq!(h.read(HERMES).unwrap(), "model: mine\n");
}

#[test]
fn the_last_ten_backups_are_kept_and_the_pristine_copy_stays() {
    let h = Home::linux();
    h.write(CODEX, CODEX_TEXT);
    for i in 0..12 {
        h.install("codex", &target(&format!("model-{i}")), &opts());
    }
    let dir = h.data.path().join("backups/codex");
    let mut stamps: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "pristine" && n != "installed")
        .collect();
    stamps.sort();
    assert_eq!(stamps.len(), 10, "{stamps:?}");
    // The newest backup holds the file as it was before the last install.
    let newest = dir.join(stamps.last().unwrap());
    let orig: Vec<String> = std::fs::read_dir(&newest)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "orig"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(orig.len(), 1);
    assert!(orig[0].contains("model = \"model-10\""), "{}", orig[0]);
    // The pristine copy is still the file before the first install.
    let pristine: Vec<String> = std::fs::read_dir(dir.join("pristine"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "orig"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(pristine, vec![CODEX_TEXT.to_owned()]);
    h.undo("codex");
    assert_eq!(h.read(CODEX).unwrap(), CODEX_TEXT);
}

#[test]
fn a_missing_file_is_recorded_as_did_not_exist() {
    let h = Home::linux();
    h.install("hermes", &target("gpt-5"), &opts());
    let dir = h.data.path().join("backups/hermes/pristine");
    let metas: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(metas.len(), 1, "only a marker, no copy");
    assert!(metas[0].contains("\"existed\": false"), "{}", metas[0]);
}

#[test]
fn the_dry_run_diff_never_shows_a_secret_whole() {
    let h = Home::new(Os::MacOs);
    h.write(SETTINGS, "{\n  \"env\": {\n    \"ANTHROPIC_API_KEY\": \"sk-ant-api03-THE-USERS-OWN-KEY-QRST\"\n  }\n}\n");
    h.write(
        ".openclaw/openclaw.json",
        "{\n  \"gateway\": { \"auth\": { \"token\": \"gateway-token-the-user-has-WXYZ\" } }\n}\n",
    );
    let long = format!("tb_{}", "x7Y".repeat(40));
    let t = Target::new(PROXY, long.clone(), "claude-sonnet-4-5");
    let all = tb_installer::all_clients();
    let preview = h.installer().preview(&refs(&all), &t, &force()).unwrap();
    assert!(preview.changes.len() >= 9, "{}", preview.changes.len());
    let diff = &preview.diff;
    assert!(!diff.contains(&long), "token in diff");
    assert!(!diff.contains(&long[..20]), "token prefix in diff");
    assert!(diff.contains(&mask(&long)), "{diff}");
    assert!(!diff.contains("THE-USERS-OWN-KEY"), "{diff}");
    assert!(!diff.contains("gateway-token-the-user"), "{diff}");
    assert!(
        diff.contains("+++ b") && diff.contains("--- /dev/null"),
        "{diff}"
    );
    assert!(diff.contains("experimental_bearer_token"), "{diff}");
    // Undo's dry run is redacted as well.
    h.installer().apply(&preview).unwrap();
    let undo = h.installer().preview_undo(&refs(&all)).unwrap();
    assert!(!undo.diff.contains(&long[..20]), "{}", undo.diff);
    assert!(!undo.diff.contains("THE-USERS-OWN-KEY"), "{}", undo.diff);
}

#[cfg(unix)]
#[test]
fn token_files_are_0600_and_other_files_keep_their_mode() {
    use std::os::unix::fs::PermissionsExt;
    let h = Home::linux();
    h.write(SETTINGS, SETTINGS_TEXT);
    h.write(GLOBAL, "{}");
    let set = |rel: &str, mode| {
        std::fs::set_permissions(h.path(rel), std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let mode = |rel: &str| std::fs::metadata(h.path(rel)).unwrap().permissions().mode() & 0o777;
    set(SETTINGS, 0o644);
    set(GLOBAL, 0o640);
    h.install("claude-code", &target("m"), &opts());
    assert_eq!(mode(SETTINGS), 0o600);
    assert_eq!(mode(GLOBAL), 0o640);
    h.install("hermes", &target("m"), &opts());
    assert_eq!(mode(HERMES), 0o600);
    // Backups hold secrets too.
    for (p, c) in tree(h.data.path()) {
        if c.is_some() {
            assert_eq!(
                std::fs::metadata(&p).unwrap().permissions().mode() & 0o077,
                0,
                "{}",
                p.display()
            );
        }
    }
}

#[test]
fn unchanged_files_are_not_rewritten() {
    let h = Home::linux();
    h.write(GLOBAL, "{\"hasCompletedOnboarding\": true}");
    let applied = h.install("claude-code", &target("m"), &opts());
    assert_eq!(applied.files.len(), 1, "only settings.json changes");
    assert_eq!(applied.files[0].action, Action::Created);
    let stamp = |rel: &str| std::fs::metadata(h.path(rel)).unwrap().modified().unwrap();
    let (s1, g1) = (stamp(SETTINGS), stamp(GLOBAL));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let again = h.install("claude-code", &target("m"), &opts());
    assert!(again.files.is_empty() && again.backups.is_empty());
    assert_eq!((stamp(SETTINGS), stamp(GLOBAL)), (s1, g1));
}

#[cfg(unix)]
#[test]
fn symlinked_configs_stay_symlinks() {
    let h = Home::linux();
    h.write("dotfiles/codex.toml", CODEX_TEXT);
    std::fs::create_dir_all(h.path(".codex")).unwrap();
    std::os::unix::fs::symlink(h.path("dotfiles/codex.toml"), h.path(CODEX)).unwrap();
    h.install("codex", &target("gpt-5"), &opts());
    assert!(
        std::fs::symlink_metadata(h.path(CODEX))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        h.read("dotfiles/codex.toml")
            .unwrap()
            .contains("tokenbuddy")
    );
    h.undo("codex");
    assert!(
        std::fs::symlink_metadata(h.path(CODEX))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(h.read("dotfiles/codex.toml").unwrap(), CODEX_TEXT);
}

#[test]
fn edits_after_install_survive_undo() {
    let h = Home::linux();
    h.write(CODEX, CODEX_TEXT);
    h.install("codex", &target("gpt-5"), &opts());
    let edited = h
        .read(CODEX)
        .unwrap()
        .replace("trust_level = \"trusted\"", "trust_level = \"untrusted\"");
    h.write(CODEX, &edited);
    // A second install over the user's edit, then undo: the edit stays and
    // the user's model comes back from the pristine copy.
    h.install("codex", &target("gpt-5-mini"), &opts());
    h.undo("codex");
    assert_eq!(
        h.read(CODEX).unwrap(),
        CODEX_TEXT.replace("\"trusted\"", "\"untrusted\"")
    );
}

#[test]
fn status_reports_detection_and_configuration() {
    let mut h = Home::linux();
    let bin = h.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("codex"), "#!/bin/sh\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("codex"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    h.env = h.env.clone().with_path_dir(&bin);
    std::fs::create_dir_all(h.path(".hermes")).unwrap();
    let rows = h.installer().status(PROXY);
    assert_eq!(rows.len(), 6);
    let row = |id: &str| rows.iter().find(|r| r.client == id).unwrap().clone();
    assert!(row("codex").detected && !row("codex").configured);
    assert!(row("hermes").detected);
    assert!(!row("opencode").detected && !row("claude-desktop").detected);
    assert_eq!(row("codex").paths, vec![h.path(CODEX)]);
    assert_eq!(h.installer().detected(), vec!["codex", "hermes"]);
    h.install("codex", &target("gpt-5"), &opts());
    assert!(
        h.installer()
            .status("http://localhost:8787/")
            .iter()
            .any(|r| r.client == "codex" && r.configured)
    );
}

#[test]
fn undo_of_nothing_is_a_no_op() {
    let h = Home::linux();
    h.write(CODEX, CODEX_TEXT);
    let applied = h.undo("codex");
    assert!(applied.files.is_empty());
    assert_eq!(h.read(CODEX).unwrap(), CODEX_TEXT);
}

#[test]
fn a_multi_client_undo_is_all_or_nothing() {
    let h = setup_three_clients();
    let cs = clients(&["claude-code", "codex", "hermes"]);
    h.installer()
        .install(&refs(&cs), &target("gpt-5"), &opts())
        .unwrap();
    let before = tree(h.home.path());
    let preview = h.installer().preview_undo(&refs(&cs)).unwrap();
    assert_eq!(preview.changes.len(), 4);
    let err = h.installer().with_fault(3).apply(&preview).unwrap_err();
    assert!(matches!(err, InstallError::Write { .. }));
    assert_eq!(tree(h.home.path()), before);
    h.installer().apply(&preview).unwrap();
    assert_eq!(h.read(SETTINGS).unwrap(), SETTINGS_TEXT);
    assert_eq!(h.read(CODEX).unwrap(), CODEX_TEXT);
    assert!(h.read(GLOBAL).is_none() && h.read(HERMES).is_none());
}

#[test]
fn an_undo_with_nothing_to_change_still_drops_the_pristine_copy() {
    let h = Home::linux();
    h.write(CODEX, CODEX_TEXT);
    h.install("codex", &target("gpt-5"), &opts());
    // The user takes tokenbuddy out by hand, exactly.
    h.write(CODEX, CODEX_TEXT);
    assert!(h.undo("codex").files.is_empty());
    assert!(!h.data.path().join("backups/codex/pristine").exists());
    // The next install records the file as it is now.
    let edited = format!("{CODEX_TEXT}# later\n");
    h.write(CODEX, &edited);
    h.install("codex", &target("gpt-5"), &opts());
    h.undo("codex");
    assert_eq!(h.read(CODEX).unwrap(), edited);
}
