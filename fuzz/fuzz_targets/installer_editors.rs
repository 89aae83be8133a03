//! tb-installer's planners over arbitrary existing files: the JSONC text
//! patcher (Claude Code, opencode, OpenClaw, Claude Desktop), the Codex TOML
//! editor (`toml_edit`) and the Hermes YAML section editor, through the
//! public `ClientInstaller` API (plan, is_configured, plan_undo).
//!
//! Input: `[client, flags, file contents separated by NUL…]`. flags: bits
//! 0–1 the model, bit 2 `--force`, bit 3 the proxy URL spelling, bits 4–7
//! which files are missing. Invariants: planning returns Ok or a typed
//! error, never panics; when Ok, each change starts from the file's current
//! content and alters it; the result is configured, plans nothing more,
//! still parses (TOML for Codex, strict JSON in → strict JSON out); undo
//! with the pristine backup restores the original bytes; undo without a
//! usable backup succeeds and leaves the client unconfigured (when it was
//! not configured before).

#![no_main]

use std::collections::BTreeSet;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use tb_installer::{
    FileChange, Files, InstallEnv, Options, Os, PlanError, Pristine, PristineFile, Target,
    all_clients,
};
use tokenbuddy_fuzz::Input;

const PROXY: &str = "http://127.0.0.1:8787";
const TOKEN: &str = "tb_live_0123456789abcdefghijklmnopqrstuvwxyzSECRET9f3a";
const MODELS: [&str; 4] = [
    "gpt-5",
    "tokenbuddy/claude-sonnet-4",
    "odd \"quoted\" \\ model: #x'",
    "模型-ü",
];

fn apply(files: &Files, changes: &[FileChange]) -> Files {
    let mut out = files.clone();
    for c in changes {
        out.insert(c.path.clone(), c.after.clone());
    }
    out
}

fn contents(files: &Files, paths: &[PathBuf]) -> Vec<Option<String>> {
    paths
        .iter()
        .map(|p| files.get(p).map(str::to_owned))
        .collect()
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok()
}

fn unreadable(e: &PlanError) -> bool {
    matches!(
        e,
        PlanError::Malformed { .. } | PlanError::UnexpectedRoot { .. }
    )
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let clients = all_clients();
    let client = &clients[usize::from(input.byte()) % clients.len()];
    let flags = input.byte();
    let text = String::from_utf8_lossy(input.rest()).into_owned();

    let env = InstallEnv::new("/home/fuzz", Os::MacOs);
    let paths = client.config_paths(&env);
    let mut parts = text.split('\0');
    let mut files = Files::new();
    for (i, p) in paths.iter().enumerate() {
        let part = parts.next().unwrap_or("");
        let missing = flags >> 4 & (1 << i) != 0;
        files.insert(p.clone(), (!missing).then(|| part.to_owned()));
    }
    let proxy = if flags & 8 != 0 {
        "http://localhost:8787/"
    } else {
        PROXY
    };
    let target = Target::new(proxy, TOKEN, MODELS[usize::from(flags & 3)]);
    let opts = Options {
        force: flags & 4 != 0,
    };

    let configured_before = client.is_configured(&files, PROXY);
    let changes = match client.plan(&files, &target, &opts) {
        Ok(changes) => changes,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };

    // Each change starts from the current content, changes it, once.
    let mut seen = BTreeSet::new();
    for c in &changes {
        assert!(
            paths.contains(&c.path),
            "a change to an unknown path {:?}",
            c.path
        );
        assert!(seen.insert(c.path.clone()), "two changes to {:?}", c.path);
        assert_eq!(
            c.before.as_deref(),
            files.get(&c.path),
            "before is not the current content"
        );
        assert!(!c.is_noop(), "a no-op change is planned");
        assert!(c.after.is_some(), "an install deletes {:?}", c.path);
    }
    let installed = apply(&files, &changes);

    // The result points at the proxy, and installing again plans nothing.
    assert!(
        client.is_configured(&installed, PROXY),
        "not configured after install"
    );
    assert!(client.is_configured(&installed, "http://localhost:8787/"));
    match client.plan(&installed, &target, &opts) {
        Ok(again) => assert!(again.is_empty(), "a second install changes {again:?}"),
        Err(e) => panic!("the installed files do not plan again: {e}"),
    }

    // The result still parses as what it was.
    for c in &changes {
        let after = c.after.as_deref().unwrap_or("");
        if client.id() == "codex" {
            if let Err(e) = after.parse::<toml_edit::DocumentMut>() {
                panic!("codex: the result is not TOML: {e}\n{after}");
            }
        } else if client.id() != "hermes" {
            let strict_before = c.before.as_deref().is_none_or(is_json);
            if strict_before {
                assert!(
                    is_json(after),
                    "strict JSON in, not strict JSON out:\n{after}"
                );
            }
        }
    }

    // Undo with the pristine backup the installer records: the original bytes.
    let pristine = Pristine {
        files: changes
            .iter()
            .map(|c| {
                let pf = PristineFile {
                    original: c.before.clone(),
                    installed: c.after.clone(),
                    restorable: true,
                    stash: c.stash.clone(),
                };
                (c.path.clone(), pf)
            })
            .collect(),
    };
    let undo = match client.plan_undo(&installed, &pristine) {
        Ok(u) => u,
        Err(e) => panic!("undo with a pristine backup fails: {e}"),
    };
    let undone = apply(&installed, &undo);
    assert_eq!(
        contents(&undone, &paths),
        contents(&files, &paths),
        "undo did not restore the original bytes"
    );

    // Undo when someone else touched the files since (backup not
    // restorable) and with no backup at all: tokenbuddy's keys go.
    let mut touched = pristine.clone();
    for pf in touched.files.values_mut() {
        pf.restorable = false;
    }
    for (how, p) in [
        ("a non-restorable backup", &touched),
        ("no backup", &Pristine::none()),
    ] {
        let undo = match client.plan_undo(&installed, p) {
            Ok(u) => u,
            Err(e) => panic!("undo with {how} fails: {e}"),
        };
        let stripped = apply(&installed, &undo);
        if !configured_before {
            assert!(
                !client.is_configured(&stripped, PROXY),
                "still configured after undo with {how}"
            );
        }
        if let Err(e) = client.plan(&stripped, &target, &opts)
            && unreadable(&e)
        {
            panic!("undo with {how} left a file that does not parse: {e}");
        }
    }
});
