//! Diagnostics tied to a place in an input file.
//!
//! Converters never print: they return `Diag`s, and `mod.rs` writes them to
//! stderr as `FILE:LINE: warning: ...`, the form editors and grep understand.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Warning,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diag {
    pub file: String,
    /// 1-based; 0 when the message is about the file as a whole.
    pub line: usize,
    pub severity: Severity,
    pub message: String,
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        if self.line == 0 {
            write!(f, "{}: {severity}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}: {severity}: {}",
                self.file, self.line, self.message
            )
        }
    }
}

/// A collector, so that parsing can go on after the first problem and the
/// user sees every error of a file at once.
#[derive(Debug, Default)]
pub struct Diags {
    pub list: Vec<Diag>,
}

impl Diags {
    pub fn warn(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.push(file, line, Severity::Warning, message.into());
    }

    pub fn error(&mut self, file: &str, line: usize, message: impl Into<String>) {
        self.push(file, line, Severity::Error, message.into());
    }

    fn push(&mut self, file: &str, line: usize, severity: Severity, message: String) {
        self.list.push(Diag {
            file: file.to_string(),
            line,
            severity,
            message,
        });
    }

    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }

    pub fn extend(&mut self, other: Diags) {
        self.list.extend(other.list);
    }
}
