//! The questions of interactive `setup`: plain lines on standard input,
//! so they work in any terminal and with answers piped in. Each question
//! says its default, which an empty answer takes; when the input ends
//! before an answer, setup stops and says to pass `--yes`.

use std::io::{BufRead, Write};

use anyhow::{Context, anyhow, bail};

/// Asks on `input`, writes the questions to `out`.
pub(crate) struct Prompt<R, W> {
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Prompt<R, W> {
    pub(crate) fn new(input: R, out: W) -> Self {
        Prompt { input, out }
    }

    /// One answer line, trimmed (`""` = take the default).
    fn answer(&mut self, question: &str) -> anyhow::Result<String> {
        write!(self.out, "{question} ").context("writing the question")?;
        self.out.flush().context("writing the question")?;
        let mut line = String::new();
        let n = self
            .input
            .read_line(&mut line)
            .context("reading the answer from standard input")?;
        if n == 0 {
            bail!(
                "standard input ended before the answer to {question:?}; run `tokenbuddyd setup` in a terminal, or pass --yes (and the flags for each step) in scripts"
            );
        }
        Ok(line.trim().to_string())
    }

    /// Yes or no; asks again on anything else.
    pub(crate) fn yes_no(&mut self, question: &str, default: bool) -> anyhow::Result<bool> {
        let hint = if default { "[Y/n]" } else { "[y/N]" };
        loop {
            match self
                .answer(&format!("{question} {hint}"))?
                .to_ascii_lowercase()
                .as_str()
            {
                "" => return Ok(default),
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => writeln!(self.out, "  answer y or n").context("writing the question")?,
            }
        }
    }

    /// A line of text; empty takes `default`.
    pub(crate) fn text(&mut self, question: &str, default: &str) -> anyhow::Result<String> {
        let shown = if default.is_empty() {
            String::new()
        } else {
            format!(" [{default}]")
        };
        let a = self.answer(&format!("{question}{shown}:"))?;
        Ok(if a.is_empty() { default.to_string() } else { a })
    }

    /// A numbered choice of several `items`: numbers separated by commas
    /// or spaces, in the order given; asks again on a bad one. An empty
    /// answer takes the default (`None`), shown as the numbers of those of
    /// `default` that are listed.
    pub(crate) fn pick(
        &mut self,
        question: &str,
        items: &[String],
        default: &[String],
    ) -> anyhow::Result<Option<Vec<String>>> {
        for (i, item) in items.iter().enumerate() {
            writeln!(self.out, "  {:>2}. {item}", i + 1).context("writing the question")?;
        }
        let numbers: Vec<String> = default
            .iter()
            .filter_map(|d| items.iter().position(|i| i == d))
            .map(|i| (i + 1).to_string())
            .collect();
        let shown = if numbers.is_empty() {
            String::new()
        } else {
            format!(" [{}]", numbers.join(","))
        };
        loop {
            let a = self.answer(&format!("{question}{shown}:"))?;
            if a.is_empty() && !default.is_empty() {
                return Ok(None);
            }
            match parse_picks(&a, items) {
                Ok(chosen) => return Ok(Some(chosen)),
                Err(e) => writeln!(self.out, "  {e}").context("writing the question")?,
            }
        }
    }
}

/// `1,3 4` → those items, in the order given, without repeats.
fn parse_picks(answer: &str, items: &[String]) -> anyhow::Result<Vec<String>> {
    let mut chosen: Vec<String> = Vec::new();
    for word in answer.split([',', ' ']).filter(|w| !w.is_empty()) {
        let n: usize = word
            .parse()
            .map_err(|_| anyhow!("{word:?} is not a number; give numbers from the list"))?;
        let item = n
            .checked_sub(1)
            .and_then(|i| items.get(i))
            .ok_or_else(|| anyhow!("{n} is not in the list (1 to {})", items.len()))?;
        if !chosen.contains(item) {
            chosen.push(item.clone());
        }
    }
    if chosen.is_empty() {
        bail!("pick at least one");
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(input: &str) -> Prompt<&[u8], Vec<u8>> {
        Prompt::new(input.as_bytes(), Vec::new())
    }

    #[test]
    fn yes_no_takes_the_default_and_asks_again() {
        let mut p = prompt("\nmaybe\nN\n");
        assert!(p.yes_no("add?", true).unwrap());
        assert!(!p.yes_no("add?", true).unwrap());
        let out = String::from_utf8(p.out).unwrap();
        assert!(
            out.contains("add? [Y/n]") && out.contains("answer y or n"),
            "{out}"
        );
    }

    #[test]
    fn the_end_of_input_says_to_pass_yes() {
        let err = prompt("").yes_no("add?", true).unwrap_err().to_string();
        assert!(err.contains("--yes"), "{err}");
    }

    #[test]
    fn picks_are_numbers_from_the_list() {
        let items: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_string()).collect();
        let mut p = prompt("\n\n4\n3, 1 3\n");
        assert_eq!(p.pick("focus", &items, &items[1..2]).unwrap(), None);
        assert_eq!(
            p.pick("focus", &items, &[]).unwrap(),
            Some(vec!["c".to_string(), "a".to_string()])
        );
        let out = String::from_utf8(p.out).unwrap();
        assert!(
            out.contains("focus [2]:") && out.contains("4 is not in the list (1 to 3)"),
            "{out}"
        );
        assert!(parse_picks("x", &items).is_err());
        assert!(parse_picks("", &items).is_err());
        let mut t = prompt("\nhttps://r\n");
        assert_eq!(t.text("url", "d").unwrap(), "d");
        assert_eq!(t.text("url", "d").unwrap(), "https://r");
    }
}
