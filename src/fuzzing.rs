//! Test support: structured mutation of real configuration files, so the
//! parsers are fed input that is almost right (the hard case) as well as
//! garbage. Used by the fuzz tests of the config loader and converters.

use arbtest::arbitrary::{Result, Unstructured};

/// Every regular file below `dir` (relative to the crate), as text.
pub fn corpus(dirs: &[&str]) -> Vec<String> {
    let mut texts = Vec::new();
    let mut pending: Vec<std::path::PathBuf> = dirs
        .iter()
        .map(|d| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(d))
        .collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            texts.push(text);
        }
    }
    assert!(!texts.is_empty(), "empty corpus in {dirs:?}");
    texts
}

const FRAGMENTS: &[&str] = &[
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\n",
    "  ",
    "\t",
    "#",
    "\"",
    "'",
    "&a ",
    "*a",
    "!!str ",
    "---\n",
    "=",
    "+=",
    "-=",
    "\\\n",
    "0",
    "-1",
    "99999999999999999999",
    "1e308",
    "/",
    "@",
    "*:",
    "[::1]:",
    "::ffff:",
    "/0",
    "/33",
    "ms",
    "G",
    "unlimited",
    "\u{0}",
    "\u{feff}",
    "é",
    "{a,b}",
    "10.0.0.",
    "service x\n{\n",
];

/// One to eight edits of a corpus text: byte flips, deleted or duplicated
/// lines, inserted syntax fragments, truncation.
pub fn mutate(u: &mut Unstructured<'_>, corpus: &[String]) -> Result<String> {
    let mut text: Vec<u8> = u.choose(corpus)?.as_bytes().to_vec();
    for _ in 0..u.int_in_range(1..=8)? {
        if text.is_empty() {
            text.extend_from_slice(u.choose(FRAGMENTS)?.as_bytes());
            continue;
        }
        let at = u.choose_index(text.len())?;
        match u.int_in_range(0..=5)? {
            0 => text[at] = u.arbitrary()?,
            1 => {
                let fragment = u.choose(FRAGMENTS)?.as_bytes();
                text.splice(at..at, fragment.iter().copied());
            }
            2 => text.truncate(at),
            3 => {
                let end = (at + u.int_in_range(1..=40)?).min(text.len());
                text.drain(at..end);
            }
            4 => {
                let end = (at + u.int_in_range(1..=80)?).min(text.len());
                let copy = text[at..end].to_vec();
                text.splice(at..at, copy);
            }
            _ => {
                let bytes: Vec<u8> = u.arbitrary()?;
                text.splice(at..at, bytes.into_iter().take(16));
            }
        }
    }
    Ok(String::from_utf8_lossy(&text).into_owned())
}
