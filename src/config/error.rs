//! Configuration errors that name the file, line, column and key.

use std::fmt;
use std::path::{Path, PathBuf};

use super::keys::KeyIndex;

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
        match self.position {
            // Column 0: a place known to the line only (a line of an
            // included inetd.conf or xinetd file).
            Some((line, 0)) => write!(f, ":{line}")?,
            Some((line, column)) => write!(f, ":{line}:{column}")?,
            None => {}
        }
        match &self.key {
            Some(key) => write!(f, ": {key}: {}", self.message),
            None => write!(f, ": {}", self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// A serde_yaml error with the path of the key it is in.
pub type YamlError = serde_path_to_error::Error<serde_yaml::Error>;

/// Deserializes one YAML document, keeping the key path of an error.
pub fn deserialize<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text))
}

/// Turns a serde_yaml error into a `ConfigError`: the position is the
/// error's own, the key its path; an unknown or repeated key, which serde
/// reports against its mapping, is named and placed from the file's key
/// index (`keys`).
pub fn from_yaml(file: &Path, text: &str, error: &YamlError) -> ConfigError {
    let inner = error.inner();
    let mut position = inner.location().map(|l| (l.line(), l.column()));
    let mut message = inner.to_string();
    if let Some((line, column)) = position {
        message = message.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    // serde_yaml starts its message with the path of the enclosing mapping
    // ("limits: ..."): the key path says that already.
    if let Some((prefix, rest)) = message.split_once(": ") {
        let is_path = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c));
        if is_path && !rest.is_empty() {
            message = rest.to_string();
        }
    }
    let path: Vec<String> = error
        .path()
        .iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Some(key.clone()),
            serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
            _ => None,
        })
        .collect();
    let mut key = (!path.is_empty()).then(|| path.join("."));
    let keys = KeyIndex::new(text);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(name) = named("duplicate field `") {
        // Placed at its mapping's start by serde_yaml: name the second one.
        let full = match &key {
            Some(parent) => format!("{parent}.{name}"),
            None => name,
        };
        if let Some(second) = keys.nth(&full, 2) {
            position = Some(second);
        }
        key = Some(full);
    } else if let Some(here) = position.and_then(|at| keys.key_at(at)) {
        // An unknown key is reported where it is written: that key, not
        // its mapping, is the one to name.
        key = Some(here.to_string());
    }
    ConfigError {
        file: file.to_path_buf(),
        position,
        key,
        message,
        unreadable: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let error = deserialize::<Outer>(text).unwrap_err();
        let error = from_yaml(Path::new("d.yaml"), text, &error);
        assert_eq!(
            error.to_string(),
            "d.yaml:4:1: exec: duplicate field `exec`"
        );
        let text = "listen: x\nlimits:\n  instances: 3\n  instances: 4\n";
        let error = deserialize::<Outer>(text).unwrap_err();
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
        let error = deserialize::<Outer>(text).unwrap_err();
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

    #[test]
    fn flow_style_errors_are_placed_exactly() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            timeout: Option<crate::config::units::Span>,
            instances: Option<u32>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            listen: Option<String>,
            limits: Option<Inner>,
        }
        let text = "listen: x\nlimits: {instances: 3, timeout: 5x}\n";
        let error = from_yaml(
            Path::new("f.yaml"),
            text,
            &deserialize::<Outer>(text).unwrap_err(),
        );
        assert!(
            error
                .to_string()
                .starts_with("f.yaml:2:33: limits.timeout: invalid duration"),
            "{error}"
        );
        let text = "listen: x\nlimits: {instances: 3, instnaces: 4}\n";
        let error = from_yaml(
            Path::new("f.yaml"),
            text,
            &deserialize::<Outer>(text).unwrap_err(),
        );
        assert!(
            error
                .to_string()
                .starts_with("f.yaml:2:24: limits.instnaces: unknown field `instnaces`"),
            "{error}"
        );
    }
}
