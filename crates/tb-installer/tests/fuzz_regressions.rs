//! Inputs the `installer_editors` fuzz target found, replayed through the
//! same steps: plan an install, apply it, plan again (must plan nothing).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tb_installer::{Files, InstallEnv, Options, Os, Target, all_clients};

const PROXY: &str = "http://127.0.0.1:8787";
const TOKEN: &str = "tb_live_0123456789abcdefghijklmnopqrstuvwxyzSECRET9f3a";

/// Installs `client_byte`'s client over files made of `parts` and checks a
/// second install plans nothing.
fn install_twice(client_byte: u8, parts: &[&str]) {
    let clients = all_clients();
    let client = &clients[usize::from(client_byte) % clients.len()];
    let env = InstallEnv::new("/home/fuzz", Os::MacOs);
    let mut files = Files::new();
    for (i, p) in client.config_paths(&env).iter().enumerate() {
        files.insert(
            p.clone(),
            Some(parts.get(i).copied().unwrap_or("").to_owned()),
        );
    }
    let target = Target::new(PROXY, TOKEN, "gpt-5");
    let opts = Options { force: false };
    let Ok(changes) = client.plan(&files, &target, &opts) else {
        return;
    };
    let mut installed = files.clone();
    for c in &changes {
        installed.insert(c.path.clone(), c.after.clone());
    }
    match client.plan(&installed, &target, &opts) {
        Ok(again) => assert!(
            again.is_empty(),
            "a second install changes {:?}",
            again
                .iter()
                .map(|c| (c.before.clone(), c.after.clone()))
                .collect::<Vec<_>>()
        ),
        Err(e) => panic!(
            "{}: the installed files do not plan again: {e}\n{:#?}",
            client.name(),
            changes
        ),
    }
}

#[test]
fn a_file_of_whitespace_around_an_empty_object_installs_once() {
    // crash-00e6662c942aaa0d700011e323e44de994374194: "#\0\0\0 {} ".
    install_twice(0x23, &["", "", " {} "]);
}
