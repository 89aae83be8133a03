//! The documents never call something "later" or "not yet" once it
//! exists: every such phrase in docs/*.md and README.md fails the check
//! unless the allow-list below vouches that the sentence is still true.

use anyhow::{Context, Result};

/// Phrases that promise future work, matched case-insensitively as whole
/// words.
const PHRASES: &[&str] = &[
    "later",
    "not yet",
    "yet",
    "for now",
    "todo",
    "fixme",
    "tbd",
    "eventually",
    "coming soon",
];

/// Sentences that use such a phrase and are true today: (file, a piece of
/// the line). Check the code before adding one.
const ALLOWED: &[(&str, &str)] = &[
    // Past tense: the second leak was found after the first.
    ("docs/reliability.md", "second, found later"),
];

/// A phrase found on a line that the allow-list does not cover.
#[derive(Debug, PartialEq)]
struct Hit {
    file: String,
    line: usize,
    phrase: &'static str,
    text: String,
}

#[test]
fn docs_do_not_call_anything_later() -> Result<()> {
    let mut hits = Vec::new();
    for file in documents()? {
        hits.extend(find(&file, &crate::read(&file)?));
    }
    let (allowed, rest): (Vec<Hit>, Vec<Hit>) = hits.into_iter().partition(is_allowed);
    let mut problems: Vec<String> = rest
        .iter()
        .map(|h| {
            format!(
                "{}:{}: \"{}\" — reword it if the thing exists now, else add the line to \
                 ALLOWED in xtask/tests/tidy/wording.rs: {}",
                h.file, h.line, h.phrase, h.text
            )
        })
        .collect();
    problems.extend(unused_allowances(&allowed));
    crate::report("future-tense wording in the docs", &problems)
}

/// README.md and docs/*.md, relative to the workspace root, sorted.
fn documents() -> Result<Vec<String>> {
    let docs = crate::root()?.join("docs");
    let mut files = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(&docs).with_context(|| format!("listing {}", docs.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    files.sort();
    Ok(files)
}

/// Every line of `text` with a phrase, first phrase only, lines from 1.
fn find(file: &str, text: &str) -> Vec<Hit> {
    text.lines()
        .enumerate()
        .filter_map(|(index, line)| {
            let lower = line.to_lowercase();
            let phrase = PHRASES.iter().find(|p| contains_word(&lower, p))?;
            Some(Hit {
                file: file.to_string(),
                line: index + 1,
                phrase,
                text: line.trim().to_string(),
            })
        })
        .collect()
}

/// Whether `phrase` occurs in `text` with no letter or digit right
/// before or after it ("later" but not "collateral" or "translated").
fn contains_word(text: &str, phrase: &str) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    text.match_indices(phrase).any(|(at, _)| {
        !is_word(text[..at].chars().next_back())
            && !is_word(text[at + phrase.len()..].chars().next())
    })
}

fn is_allowed(hit: &Hit) -> bool {
    ALLOWED
        .iter()
        .any(|(file, piece)| hit.file == *file && hit.text.contains(piece))
}

/// Allow-list entries that no longer match anything: stale, so they go.
fn unused_allowances(allowed: &[Hit]) -> Vec<String> {
    ALLOWED
        .iter()
        .filter(|(file, piece)| {
            !allowed
                .iter()
                .any(|h| h.file == *file && h.text.contains(piece))
        })
        .map(|(file, piece)| {
            format!("ALLOWED entry ({file}, {piece:?}) matches nothing any more; remove it")
        })
        .collect()
}

#[test]
fn phrases_are_found_as_whole_words_with_their_line() {
    let text = "Collateral is translated.\nSellers come *(later)*.\nTODO: x\nNot yet.\nfine\n";
    let found: Vec<(usize, &str)> = find("d.md", text)
        .iter()
        .map(|h| (h.line, h.phrase))
        .collect();
    assert_eq!(found, [(2, "later"), (3, "todo"), (4, "not yet")]);
}

#[test]
fn the_allow_list_covers_only_its_file_and_sentence() {
    let hit = |file: &str, text: &str| Hit {
        file: file.to_string(),
        line: 1,
        phrase: "later",
        text: text.to_string(),
    };
    assert!(is_allowed(&hit(
        "docs/reliability.md",
        "the second, found later, was"
    )));
    assert!(!is_allowed(&hit(
        "docs/ARCHITECTURE.md",
        "second, found later"
    )));
    assert!(!is_allowed(&hit("docs/reliability.md", "built later")));
    let unused = unused_allowances(&[hit("docs/decisions.md", "not built later")]);
    assert_eq!(
        unused,
        [
            "ALLOWED entry (docs/reliability.md, \"second, found later\") matches nothing any \
          more; remove it"
        ]
    );
}
