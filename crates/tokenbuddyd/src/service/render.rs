//! The two service files as pure functions of a [`ServiceSpec`]: a systemd
//! user unit and a launchd agent plist. No I/O here, so every quoting rule
//! is unit tested (paths with spaces, quotes, `%`, `$`, `&`, `<`).

use std::path::{Path, PathBuf};

use anyhow::bail;

/// The launchd label (also the plist's file stem).
pub(crate) const LAUNCHD_LABEL: &str = "dev.tokenbuddy.tokenbuddyd";
/// The systemd unit's name.
pub(crate) const SYSTEMD_UNIT: &str = "tokenbuddyd.service";

/// What a service runs: the daemon's absolute path, and the config file,
/// data directory and log file fixed in it, so the service never depends on
/// the environment of the login session that happens to start it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceSpec {
    /// The `tokenbuddyd` executable (absolute).
    pub exe: PathBuf,
    /// The config file (absolute; it must exist).
    pub config_file: PathBuf,
    /// The data directory (absolute).
    pub data_dir: PathBuf,
    /// Where the daemon's stdout and stderr are appended.
    pub log_file: PathBuf,
    /// Variables for the daemon (`KEY=value` lines, e.g. the provider keys
    /// `api_key_env` names): a service does not inherit the login shell's
    /// environment. systemd reads it when it exists; launchd has no such
    /// file (`docs/service.md`).
    pub env_file: PathBuf,
}

impl ServiceSpec {
    /// The command line the service runs, the executable first.
    pub(crate) fn argv(&self) -> anyhow::Result<Vec<String>> {
        Ok(vec![
            text("the tokenbuddyd executable", &self.exe)?,
            "--config".into(),
            text("the config file", &self.config_file)?,
            "--data-dir".into(),
            text("the data directory", &self.data_dir)?,
            "serve".into(),
        ])
    }
}

/// A path as text a service file can hold: UTF-8, absolute, no control
/// characters (a newline would end the unit's line or the plist's string).
fn text(what: &str, path: &Path) -> anyhow::Result<String> {
    let Some(s) = path.to_str() else {
        bail!(
            "{what} {} is not valid UTF-8, which a service file cannot hold; move it to a plain path",
            path.display()
        );
    };
    if !path.is_absolute() {
        bail!("{what} {s:?} is not an absolute path");
    }
    if s.chars().any(char::is_control) {
        bail!("{what} {s:?} contains a control character, which a service file cannot hold");
    }
    Ok(s.to_owned())
}

/// One word of a systemd `ExecStart=` line: always double-quoted, with `\`
/// and `"` escaped, `%` doubled (specifiers) and `$` doubled (variable
/// expansion), so a path with spaces stays one argument.
fn systemd_word(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The systemd user unit (`~/.config/systemd/user/tokenbuddyd.service`).
///
/// `Restart=on-failure` brings a crashed daemon back; exit code 2 (a
/// configuration error) is not retried — restarting cannot fix the file —
/// so the unit shows `failed` at once and `service status` says why.
pub(crate) fn systemd_unit(spec: &ServiceSpec) -> anyhow::Result<String> {
    let exec: Vec<String> = spec.argv()?.iter().map(|w| systemd_word(w)).collect();
    // `append:` takes the rest of the line as the path (spaces included);
    // only specifiers need escaping there.
    let log = text("the log file", &spec.log_file)?.replace('%', "%%");
    let env_file = text("the environment file", &spec.env_file)?.replace('%', "%%");
    Ok(format!(
        "# Written by `tokenbuddyd service install`; `tokenbuddyd service uninstall` removes it.\n\
         [Unit]\n\
         Description=tokenbuddy LLM routing daemon\n\
         StartLimitIntervalSec=120\n\
         StartLimitBurst=5\n\
         \n\
         [Service]\n\
         Type=simple\n\
         EnvironmentFile=-{env_file}\n\
         ExecStart={exec}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         RestartPreventExitStatus=2\n\
         StandardOutput=append:{log}\n\
         StandardError=append:{log}\n\
         \n\
         [Install]\n\
         WantedBy=default.target\n",
        exec = exec.join(" "),
    ))
}

/// Escapes text for an XML element's content.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The launchd agent (`~/Library/LaunchAgents/dev.tokenbuddy.tokenbuddyd.plist`):
/// started at login (`RunAtLoad`), restarted when it exits unsuccessfully
/// (`KeepAlive` / `SuccessfulExit = false`), output appended to the log file.
pub(crate) fn launchd_plist(spec: &ServiceSpec) -> anyhow::Result<String> {
    let args: String = spec
        .argv()?
        .iter()
        .map(|a| format!("\t\t<string>{}</string>\n", xml(a)))
        .collect();
    let log = xml(&text("the log file", &spec.log_file)?);
    Ok(format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by `tokenbuddyd service install`; `tokenbuddyd service uninstall` removes it. -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{LAUNCHD_LABEL}</string>
	<key>ProgramArguments</key>
	<array>
{args}	</array>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>10</integer>
	<key>ProcessType</key>
	<string>Background</string>
	<key>StandardOutPath</key>
	<string>{log}</string>
	<key>StandardErrorPath</key>
	<string>{log}</string>
</dict>
</plist>
"#
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &str) -> ServiceSpec {
        ServiceSpec {
            exe: PathBuf::from(format!("{dir}/bin/tokenbuddyd")),
            config_file: PathBuf::from(format!("{dir}/config.toml")),
            data_dir: PathBuf::from(format!("{dir}/data")),
            log_file: PathBuf::from(format!("{dir}/data/tokenbuddyd.log")),
            env_file: PathBuf::from(format!("{dir}/data/service.env")),
        }
    }

    fn line<'a>(text: &'a str, key: &str) -> &'a str {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    }

    #[test]
    fn the_unit_fixes_the_paths_and_restarts_on_failure() {
        let unit = systemd_unit(&spec("/home/a")).unwrap();
        assert_eq!(
            line(&unit, "ExecStart="),
            r#""/home/a/bin/tokenbuddyd" "--config" "/home/a/config.toml" "--data-dir" "/home/a/data" "serve""#
        );
        assert_eq!(line(&unit, "Restart="), "on-failure");
        assert_eq!(line(&unit, "RestartPreventExitStatus="), "2");
        assert_eq!(line(&unit, "WantedBy="), "default.target");
        assert_eq!(line(&unit, "EnvironmentFile="), "-/home/a/data/service.env");
        assert_eq!(
            line(&unit, "StandardError="),
            "append:/home/a/data/tokenbuddyd.log"
        );
    }

    #[test]
    fn unit_words_with_spaces_quotes_percent_and_dollar_stay_one_argument() {
        let cases = [
            ("/My Home/x", r#""/My Home/x""#),
            (r#"/a"b"#, r#""/a\"b""#),
            (r"/a\b", r#""/a\\b""#),
            ("/100%/x", r#""/100%%/x""#),
            ("/$HOME", r#""/$$HOME""#),
        ];
        for (input, want) in cases {
            assert_eq!(systemd_word(input), want, "{input}");
        }
        let unit = systemd_unit(&spec("/Users/Jane Doe/50% off")).unwrap();
        assert!(
            line(&unit, "ExecStart=").starts_with(r#""/Users/Jane Doe/50%% off/bin/tokenbuddyd" "#)
        );
        assert_eq!(
            line(&unit, "StandardOutput="),
            "append:/Users/Jane Doe/50%% off/data/tokenbuddyd.log"
        );
    }

    #[test]
    fn the_plist_escapes_xml_and_keeps_arguments_apart() {
        let plist = launchd_plist(&spec("/Users/Tom & Jerry <dev>")).unwrap();
        assert!(
            plist.contains("<string>/Users/Tom &amp; Jerry &lt;dev&gt;/bin/tokenbuddyd</string>")
        );
        assert!(plist.contains("<string>--data-dir</string>"));
        assert!(plist.contains(&format!("<string>{LAUNCHD_LABEL}</string>")));
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"));
        assert!(plist.contains("<key>SuccessfulExit</key>\n\t\t<false/>"));
        assert!(!plist.contains("Tom & Jerry"));
    }

    #[test]
    fn unrepresentable_paths_are_refused_with_the_reason() {
        let mut s = spec("/a");
        s.config_file = PathBuf::from("relative/config.toml");
        let e = systemd_unit(&s).unwrap_err().to_string();
        assert!(
            e.contains("the config file") && e.contains("not an absolute path"),
            "{e}"
        );
        let mut s = spec("/a");
        s.data_dir = PathBuf::from("/a\nExecStartPre=/bin/evil");
        let e = launchd_plist(&s).unwrap_err().to_string();
        assert!(e.contains("control character"), "{e}");
    }
}
