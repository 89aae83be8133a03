//! End-to-end: `completions <shell>` scripts and the hidden `man --out DIR`
//! pages, checked against the subcommands the binary's own `--help` lists
//! (so a new subcommand is covered without editing this file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{bin, home_stdout};
use tb_test_support::daemon::command;

async fn run(home: &Path, args: &[&str]) -> Output {
    command(bin(), home).args(args).output().await.unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The names under `Commands:` in `tokenbuddyd <path> --help`, without `help`.
async fn listed(home: &Path, path: &[&str]) -> Vec<String> {
    let mut args = path.to_vec();
    args.push("--help");
    let text = home_stdout(home, &args).await;
    text.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// Every visible subcommand as a path: `["config"]`, `["config", "init"]`, …
async fn subcommand_paths(home: &Path) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for top in listed(home, &[]).await {
        for nested in listed(home, &[top.as_str()]).await {
            paths.push(vec![top.clone(), nested]);
        }
        paths.push(vec![top]);
    }
    assert!(
        paths.iter().any(|p| p == &["config", "init"]),
        "the --help parsing found the nested subcommands: {paths:?}"
    );
    assert!(paths.iter().any(|p| p == &["completions"]), "{paths:?}");
    paths
}

fn has_program(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What bash's completion function offers after `words` (the last one is
/// the word being completed).
async fn bash_offers(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prog = format!(
        "source '{}' && COMP_WORDS=({}) && COMP_CWORD={cword} && COMP_LINE='{}' && COMP_POINT=${{#COMP_LINE}} && _tokenbuddyd tokenbuddyd '{}' '{}' && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.join(" "),
        words[cword],
        words[cword.saturating_sub(1)],
    );
    let out = tokio::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .output()
        .await
        .unwrap();
    stdout(&out).lines().map(str::to_owned).collect()
}

#[tokio::test]
async fn bash_completion_is_valid_registered_and_offers_every_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let script = home_stdout(home.path(), &["completions", "bash"]).await;
    let file = home.path().join("tokenbuddyd.bash");
    std::fs::write(&file, &script).unwrap();

    let syntax = tokio::process::Command::new("bash")
        .arg("-n")
        .arg(&file)
        .output()
        .await
        .unwrap();
    stdout(&syntax);

    let registered = tokio::process::Command::new("bash")
        .args(["--norc", "--noprofile", "-c"])
        .arg(format!(
            "source '{}' && complete -p tokenbuddyd",
            file.display()
        ))
        .output()
        .await
        .unwrap();
    assert!(
        stdout(&registered).contains("-F _tokenbuddyd tokenbuddyd"),
        "sourcing registers the completion function"
    );

    let paths = subcommand_paths(home.path()).await;
    let top = bash_offers(&file, &["tokenbuddyd", ""]).await;
    let config = bash_offers(&file, &["tokenbuddyd", "config", ""]).await;
    let sellers = bash_offers(&file, &["tokenbuddyd", "sellers", ""]).await;
    for path in &paths {
        let offered = match path.as_slice() {
            [name] => top.contains(name),
            [parent, name] if parent == "config" => config.contains(name),
            [parent, name] if parent == "sellers" => sellers.contains(name),
            [parent, name] => {
                let words = ["tokenbuddyd", parent.as_str(), ""];
                bash_offers(&file, &words).await.contains(name)
            }
            _ => false,
        };
        assert!(offered, "bash completes {path:?}; top level: {top:?}");
    }
    assert_eq!(
        bash_offers(&file, &["tokenbuddyd", "con"]).await,
        ["config"],
        "a prefix narrows to the one subcommand"
    );
    let shells = bash_offers(&file, &["tokenbuddyd", "completions", ""]).await;
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.iter().any(|s| s == shell), "{shells:?}");
    }
}

#[tokio::test]
async fn zsh_and_fish_scripts_name_every_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let paths = subcommand_paths(home.path()).await;
    for (shell, ext) in [("zsh", "zsh"), ("fish", "fish")] {
        let script = home_stdout(home.path(), &["completions", shell]).await;
        assert!(script.contains("tokenbuddyd"), "{shell}: {script}");
        for path in &paths {
            let name = path.last().unwrap();
            assert!(
                script.contains(name.as_str()),
                "the {shell} script names {path:?}"
            );
        }
        if has_program(shell) {
            let file = home.path().join(format!("tokenbuddyd.{ext}"));
            std::fs::write(&file, &script).unwrap();
            let check = tokio::process::Command::new(shell)
                .arg("-n")
                .arg(&file)
                .output()
                .await
                .unwrap();
            stdout(&check);
        } else {
            eprintln!("{shell} is not installed: skipping its syntax check");
        }
    }
}

#[tokio::test]
async fn an_unknown_shell_is_a_usage_error() {
    let home = tempfile::tempdir().unwrap();
    let out = run(home.path(), &["completions", "tcsh"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "no script on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tcsh'"), "{err}");
    assert!(
        err.contains("bash") && err.contains("zsh") && err.contains("fish"),
        "{err}"
    );
}

#[tokio::test]
async fn completions_need_no_config_home_or_daemon() {
    let home = tempfile::tempdir().unwrap();
    // A config file that would fail to load, and no HOME or XDG dirs at all.
    std::fs::write(home.path().join("config.toml"), "not = [valid").unwrap();
    let out = command(bin(), home.path())
        .args(["completions", "fish"])
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .output()
        .await
        .unwrap();
    assert!(stdout(&out).contains("complete -c tokenbuddyd"));
    assert!(
        std::fs::read_dir(home.path()).unwrap().count() == 1,
        "nothing was written into the home"
    );
}

#[tokio::test]
async fn man_writes_a_page_per_subcommand() {
    let home = tempfile::tempdir().unwrap();
    let out_dir = home.path().join("man/man1");
    let printed = home_stdout(home.path(), &["man", "--out", out_dir.to_str().unwrap()]).await;

    let main = std::fs::read_to_string(out_dir.join("tokenbuddyd.1")).unwrap();
    let th = main.lines().find(|l| l.starts_with(".TH ")).unwrap();
    assert!(th.starts_with(".TH tokenbuddyd 1"), "{th}");
    let paths = subcommand_paths(home.path()).await;
    for path in &paths {
        if path.len() == 1 {
            assert!(
                main.contains(path[0].as_str()),
                "tokenbuddyd.1 names {path:?}"
            );
        }
        let page = out_dir.join(format!("tokenbuddyd-{}.1", path.join("-")));
        let roff =
            std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        assert!(
            roff.contains(&format!(".TH tokenbuddyd-{} 1", path.join("-"))),
            "{}",
            page.display()
        );
        assert!(printed.contains(&page.display().to_string()), "{printed}");
    }
    assert!(
        !out_dir.join("tokenbuddyd-man.1").exists(),
        "the hidden man command gets no page"
    );

    if has_program("man") {
        let rendered = tokio::process::Command::new("man")
            .arg("-l")
            .arg(out_dir.join("tokenbuddyd.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .await
            .unwrap();
        let text = stdout(&rendered);
        assert!(
            text.contains("SYNOPSIS") && text.contains("completions"),
            "{text}"
        );
    } else {
        eprintln!("man is not installed: skipping the rendering check");
    }
}

#[tokio::test]
async fn man_into_an_unwritable_place_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = run(
        home.path(),
        &["man", "--out", file.join("sub").to_str().unwrap()],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("creating") && err.contains("a-file"), "{err}");
}
