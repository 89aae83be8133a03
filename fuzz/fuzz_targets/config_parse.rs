//! `tb_config::Config::from_toml_str` (defaults < TOML text, in memory, as
//! the config file layer is read) followed by `Config::validate`.
//!
//! Input: the TOML text (lossy UTF-8). Invariants: no panic; a bad document
//! is a `ConfigError` whose message is not empty; a parsed config validates
//! to Ok or a list of errors each naming a key; parsing is deterministic;
//! secrets never serialise in clear (every `api_key` serialises as the
//! mask).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tb_config::{Config, Secret};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let config = match Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error message");
            return;
        }
    };
    match config.validate() {
        Ok(()) => {}
        Err(errors) => {
            assert!(!errors.is_empty(), "Err with no errors");
            for e in &errors {
                assert!(!e.key.is_empty() && !e.message.is_empty(), "{e:?}");
            }
        }
    }
    let again = Config::from_toml_str(&text).map(|c| format!("{c:?}"));
    assert_eq!(again.ok(), Some(format!("{config:?}")), "not deterministic");

    let json = match serde_json::to_value(&config) {
        Ok(v) => v,
        Err(e) => panic!("a parsed config does not serialise: {e}"),
    };
    for (i, p) in config.providers.iter().enumerate() {
        let shown = &json["providers"][i]["api_key"];
        if p.api_key.is_some() {
            assert_eq!(
                shown,
                Secret::MASK,
                "providers[{i}].api_key serialised in clear"
            );
        } else {
            assert!(shown.is_null());
        }
        for _ in p.effective_protocols() {}
    }
});
