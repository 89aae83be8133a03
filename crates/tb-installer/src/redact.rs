//! Secret redaction for dry-run diffs and debug output.

/// `…` plus the last four characters, or only `…` for short secrets (which
/// would otherwise be shown almost whole).
pub fn mask(secret: &str) -> String {
    let n = secret.chars().count();
    if n < 12 {
        return "…".to_owned();
    }
    let last4: String = secret.chars().skip(n - 4).collect();
    format!("…{last4}")
}

/// Key names whose values are secrets (compared lower-case, without `_`,
/// `-` and `.`).
fn is_secret_key(key: &str) -> bool {
    let k: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.'))
        .flat_map(char::to_lowercase)
        .collect();
    [
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "authorization",
        "privatekey",
    ]
    .iter()
    .any(|w| k.contains(w))
}

/// Redacts `text`: every occurrence of each of `secrets`, and every value
/// (of at least 8 characters) of a key that looks secret (`apiKey`,
/// `ANTHROPIC_AUTH_TOKEN`, `api_key`, `experimental_bearer_token`, …) in
/// JSON, TOML and YAML lines.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.len() >= 4).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in secrets {
        out = out.replace(s, &mask(s));
    }
    out.split_inclusive('\n').map(redact_line).collect()
}

/// Masks values of secret-looking keys on one line.
fn redact_line(line: &str) -> String {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        // A key: a quoted string or a bare word.
        let (key, key_end) = match b[i] {
            q @ (b'"' | b'\'') => match find_quote_end(b, i, q) {
                Some(end) => (&line[i + 1..end], end + 1),
                None => break,
            },
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let mut j = i;
                while j < b.len()
                    && (b[j].is_ascii_alphanumeric() || matches!(b[j], b'_' | b'-' | b'.'))
                {
                    j += 1;
                }
                (&line[i..j], j)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        let mut j = key_end;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        if j >= b.len() || !(b[j] == b':' || b[j] == b'=') || !is_secret_key(key) {
            i = key_end;
            continue;
        }
        j += 1;
        while j < b.len() && (b[j] == b' ' || b[j] == b'\t') {
            j += 1;
        }
        // The value: quoted, or bare up to a separator.
        let (vs, ve, next) = match b.get(j) {
            Some(&q @ (b'"' | b'\'')) => match find_quote_end(b, j, q) {
                Some(end) => (j + 1, end, end + 1),
                None => (j + 1, line.trim_end().len().max(j + 1), b.len()),
            },
            Some(_) => {
                let mut k = j;
                while k < b.len()
                    && !matches!(b[k], b',' | b'}' | b']' | b'\r' | b'\n' | b' ' | b'#')
                {
                    k += 1;
                }
                (j, k, k)
            }
            None => {
                i = j;
                continue;
            }
        };
        let value = &line[vs..ve];
        if value.chars().count() >= 8 && !value.starts_with('…') {
            out.push_str(&line[copied..vs]);
            out.push_str(&mask(value));
            copied = ve;
        }
        i = next.max(i + 1);
    }
    out.push_str(&line[copied..]);
    out
}

fn find_quote_end(b: &[u8], start: usize, q: u8) -> Option<usize> {
    let mut k = start + 1;
    while k < b.len() {
        if b[k] == b'\\' {
            k += 2;
            continue;
        }
        if b[k] == q {
            return Some(k);
        }
        k += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask("short"), "…");
        assert_eq!(mask("tb_0123456789abcdef"), "…cdef");
    }

    #[test]
    fn redacts_known_and_key_shaped_secrets() {
        let text = concat!(
            "    \"ANTHROPIC_AUTH_TOKEN\": \"tok-AAAAAAAAAAAAAAAAAAAA1234\",\n",
            "experimental_bearer_token = \"zzzzzzzzzzzzzzzzzzzz9876\"\n",
            "  api_key: plainsecretvalue42\n",
            "{\"apiKey\": \"sk-abcdefghijklmnopqrstuvwxyz\", \"name\": \"x\"}\n",
            "max_tokens = 4096\n",
            "mentions tok-AAAAAAAAAAAAAAAAAAAA1234 inline\n",
        );
        let r = redact(text, &["tok-AAAAAAAAAAAAAAAAAAAA1234"]);
        assert!(!r.contains("AAAAAAAAAAAA"), "{r}");
        assert!(!r.contains("zzzzzzzzzz"), "{r}");
        assert!(!r.contains("plainsecret"), "{r}");
        assert!(!r.contains("abcdefghij"), "{r}");
        assert!(r.contains("…1234"));
        assert!(r.contains("…9876"));
        assert!(r.contains("…ue42"));
        assert!(r.contains("…wxyz"));
        assert!(r.contains("max_tokens = 4096"));
        assert!(r.contains("\"name\": \"x\""));
    }
}
