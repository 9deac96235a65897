//! Configuration errors that name the file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line and column, when the error has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path, e.g. `limits.timeout`.
    pub key: Option<String>,
    pub message: String,
    /// The configuration could not be read at all here (the system failed:
    /// EMFILE, EIO, EACCES; or a directory was refused), as opposed to a
    /// file that reads but does not check: a reload is rejected as a whole.
    pub unreadable: bool,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            position: None,
            key: None,
            message: message.into(),
            unreadable: false,
        }
    }

    pub fn unreadable(mut self) -> Self {
        self.unreadable = true;
        self
    }

    pub fn at(mut self, position: Option<(usize, usize)>) -> Self {
        self.position = position;
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        match &self.key {
            Some(key) => write!(f, ": {key}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where `path` (e.g. `["limits", "timeout"]`) is written in block-style YAML
/// `text`, as 1-based (line, column) of the key. Falls back to the deepest
/// ancestor found, and to `None` when not even the first key is found (the
/// value may come from `spawnd.yaml` defaults).
pub fn locate_key(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut lines = text.lines().enumerate();
    'outer: for key in path {
        for (index, line) in lines.by_ref() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(parent) = parent_indent {
                if indent <= parent {
                    break 'outer;
                }
            }
            let candidate = trimmed.trim_start_matches("- ");
            let rest = candidate
                .strip_prefix(key)
                .or_else(|| candidate.strip_prefix(&format!("\"{key}\"")));
            if rest.is_some_and(|rest| rest.trim_start().starts_with(':')) {
                let column = indent + (trimmed.len() - candidate.len()) + 1;
                found = Some((index + 1, column));
                parent_indent = Some(indent);
                continue 'outer;
            }
        }
        break;
    }
    found
}

/// The key written at `(line, column)` (`key:` there), or the key whose
/// value starts there (`key: value`, also inside a flow mapping).
pub fn key_at(text: &str, line: usize, column: usize) -> Option<&str> {
    let is_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    let line = text.lines().nth(line.checked_sub(1)?)?;
    let split = column.checked_sub(1)?;
    let rest = line.get(split..)?;
    // A mapping key is followed by ':' and white space (or the line's end);
    // `localhost:3` is a value.
    if let Some(end) = rest.find(':') {
        let after = rest[end + 1..].chars().next();
        let key = rest[..end].trim().trim_matches('"');
        if is_key(key) && after.is_none_or(char::is_whitespace) {
            return Some(key);
        }
    }
    let before = line.get(..split)?.trim_end().strip_suffix(':')?;
    let start = before
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"'))
        .map_or(0, |i| i + 1);
    let key = before[start..].trim_matches('"');
    is_key(key).then_some(key)
}

/// Where the `nth` (1-based) `name:` of the block mapping whose keys start
/// at (`line`, `column`) is written.
fn nth_key_in_mapping(
    text: &str,
    line: usize,
    column: usize,
    name: &str,
    nth: usize,
) -> Option<(usize, usize)> {
    let indent = column.checked_sub(1)?;
    let mut found = 0;
    for (index, text_line) in text.lines().enumerate().skip(line.checked_sub(1)?) {
        let trimmed = text_line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let here = text_line.len() - trimmed.len();
        if here < indent && index + 1 > line {
            break; // out of the mapping
        }
        let at = text_line.get(indent..).unwrap_or_default();
        let at = at.strip_prefix("- ").unwrap_or(at);
        let rest = at
            .strip_prefix(name)
            .or_else(|| at.strip_prefix(&format!("\"{name}\"")));
        if here == indent && rest.is_some_and(|r| r.trim_start().starts_with(':')) {
            found += 1;
            if found == nth {
                return Some((index + 1, column));
            }
        }
    }
    None
}

/// Turns a serde_yaml error into a `ConfigError` with position and key path.
pub fn from_yaml(file: &Path, text: &str, error: &serde_yaml::Error) -> ConfigError {
    let mut position = error.location().map(|l| (l.line(), l.column()));
    let mut message = error.to_string();
    if let Some(index) = message.rfind(" at line ") {
        message.truncate(index);
    }
    // serde_yaml prefixes the path of the enclosing map ("limits: ...");
    // the key itself is read back from the text at the error's position.
    let (mut key, mut rest) = match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && path
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c)) =>
        {
            (Some(path.to_string()), rest.to_string())
        }
        _ => (None, message.clone()),
    };
    if let Some(here) = position.and_then(|(line, column)| key_at(text, line, column)) {
        let already = key
            .as_deref()
            .is_some_and(|k| k == here || k.ends_with(&format!(".{here}")));
        if !already {
            key = Some(match key {
                Some(parent) => format!("{parent}.{here}"),
                None => here.to_string(),
            });
        }
    }
    if rest.is_empty() {
        rest = message;
    }
    // serde_yaml places a duplicate key at the start of its mapping, and
    // the key there is the mapping's first: name the second occurrence.
    if let Some(name) = rest
        .strip_prefix("duplicate field `")
        .and_then(|r| r.split('`').next())
    {
        if let Some((line, column)) = position {
            let parent = key
                .as_deref()
                .and_then(|k| k.rsplit_once('.'))
                .map(|(parent, _)| parent.to_string());
            key = Some(match parent {
                Some(parent) => format!("{parent}.{name}"),
                None => name.to_string(),
            });
            if let Some(second) = nth_key_in_mapping(text, line, column, name, 2) {
                position = Some(second);
            }
        }
    }
    ConfigError {
        file: file.to_path_buf(),
        position,
        key,
        message: rest,
        unreadable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "name: x\n# limits below\nlimits:\n  instances: 3\n  timeout: 5x\naccess:\n  allow: []\n";

    #[test]
    fn locates_nested_keys() {
        assert_eq!(locate_key(TEXT, &["name"]), Some((1, 1)));
        assert_eq!(locate_key(TEXT, &["limits", "timeout"]), Some((5, 3)));
        assert_eq!(locate_key(TEXT, &["access", "allow"]), Some((7, 3)));
        // A key missing under its parent falls back to the parent.
        assert_eq!(locate_key(TEXT, &["access", "deny"]), Some((6, 1)));
        assert_eq!(locate_key(TEXT, &["exec"]), None);
        // `timeout` under `access` must not match the one under `limits`.
        assert_eq!(locate_key(TEXT, &["access", "timeout"]), Some((6, 1)));
    }

    #[test]
    fn reads_key_at_position() {
        assert_eq!(key_at(TEXT, 5, 3), Some("timeout"));
        assert_eq!(key_at(TEXT, 5, 12), Some("timeout"));
        assert_eq!(key_at("limits: {timeout: zz}", 1, 18), Some("timeout"));
        assert_eq!(key_at("listen: [a, b]", 1, 13), None);
    }

    #[test]
    fn a_duplicate_key_is_placed_at_its_second_occurrence() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            instances: Option<u32>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            listen: Option<String>,
            exec: Option<String>,
            limits: Option<Inner>,
        }
        let text = "listen: x\nexec: a\n# again:\nexec: b\n";
        let error = serde_yaml::from_str::<Outer>(text).unwrap_err();
        let error = from_yaml(Path::new("d.yaml"), text, &error);
        assert_eq!(
            error.to_string(),
            "d.yaml:4:1: exec: duplicate field `exec`"
        );
        let text = "listen: x\nlimits:\n  instances: 3\n  instances: 4\n";
        let error = serde_yaml::from_str::<Outer>(text).unwrap_err();
        let error = from_yaml(Path::new("d.yaml"), text, &error);
        assert_eq!(
            error.to_string(),
            "d.yaml:4:3: limits.instances: duplicate field `instances`"
        );
    }

    #[test]
    fn yaml_errors_carry_key_and_position() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            timeout: Option<crate::config::units::Span>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            limits: Option<Inner>,
        }
        let text = "limits:\n  timeout: 5x\n";
        let error = serde_yaml::from_str::<Outer>(text).unwrap_err();
        let error = from_yaml(Path::new("s.yaml"), text, &error);
        assert_eq!(error.position, Some((2, 12)));
        assert_eq!(error.key.as_deref(), Some("limits.timeout"));
        assert!(
            error.message.starts_with("invalid duration \"5x\""),
            "{}",
            error.message
        );
        assert!(error
            .to_string()
            .starts_with("s.yaml:2:12: limits.timeout: invalid duration"));
    }
}
