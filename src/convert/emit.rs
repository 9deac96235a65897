//! Renders the model as commented YAML text.
//!
//! Written by hand rather than through serde_yaml so the output can carry
//! comments (the header, notes beside values, attributes kept from the
//! input) and keep a fixed, readable key order.

use std::fmt::Write as _;

use crate::convert::model::{
    Access, Action, Conversion, Defaults, Limits, NotConverted, Noted, Service, Unit,
};

/// One output file: its path inside the configuration directory and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub path: String,
    pub text: String,
}

/// `tool` is the command that ran, for the header ("spawnd convert xinetd").
pub fn documents(conversion: &Conversion, tool: &str) -> Vec<Document> {
    let mut docs = Vec::new();
    if let Some(defaults) = &conversion.defaults {
        docs.push(Document {
            path: "spawnd.yaml".to_string(),
            text: defaults_yaml(defaults, tool),
        });
    }
    for unit in &conversion.units {
        docs.push(match unit {
            Unit::Service(service) => Document {
                path: format!("services.d/{}.yaml", service.name),
                text: service_yaml(service, tool),
            },
            Unit::NotConverted(entry) => Document {
                // spawnd ignores `*.disabled`: the file is there for the admin.
                path: format!("services.d/{}.yaml.disabled", entry.name),
                text: not_converted_yaml(entry, tool),
            },
        });
    }
    docs
}

/// All documents as one YAML stream, each led by `---` and its path.
pub fn stream(docs: &[Document]) -> String {
    let mut out = String::new();
    for doc in docs {
        let _ = writeln!(out, "---\n# {}", doc.path);
        out.push_str(&doc.text);
    }
    out
}

pub fn service_yaml(s: &Service, tool: &str) -> String {
    let mut w = Writer::default();
    let mut from = format!("{}:{}", s.origin.file, s.origin.line);
    for more in &s.merged {
        if more.file == s.origin.file {
            let _ = write!(from, ",{}", more.line);
        } else {
            let _ = write!(from, ", {}:{}", more.file, more.line);
        }
    }
    w.comment(
        0,
        &format!("Converted by `{tool}` from {from} ({}).", s.label),
    );
    let preamble = trim_bare(&s.preamble);
    if !preamble.is_empty() {
        w.comment(0, "");
        for line in preamble {
            w.raw_comment(line);
        }
    }
    if let Some(disabled) = &s.disabled {
        w.key(
            0,
            "disabled",
            bool_str(disabled.value),
            disabled.note.as_deref(),
        );
    }
    w.key(0, "socket", s.socket.as_str(), None);
    w.open(0, "listen");
    for address in &s.listen {
        w.item(1, &scalar(&address.value), address.note.as_deref());
    }
    if let Some(wait) = &s.wait {
        w.key(0, "wait", bool_str(wait.value), wait.note.as_deref());
    }
    match &s.action {
        Action::Exec(argv) => w.key(0, "exec", &flow_list(argv), None),
        Action::Internal(name) => w.key(0, "internal", &scalar(name), None),
        Action::Redirect(target) => w.key(0, "redirect", &scalar(target), None),
    }
    w.noted(0, "user", &s.user);
    w.noted(0, "group", &s.group);
    if let Some(groups) = &s.groups {
        w.key(
            0,
            "groups",
            &flow_list(&groups.value),
            groups.note.as_deref(),
        );
    }
    if !s.env.is_empty() {
        w.open(0, "env");
        for (name, value) in &s.env {
            w.key(1, &scalar(name), &scalar(value), None);
        }
    }
    if !s.pass_env.is_empty() {
        w.key(
            0,
            "pass_env",
            &flow_list(&s.pass_env),
            s.pass_env_note.as_deref(),
        );
    }
    w.raw(0, "nice", &s.nice);
    w.noted(0, "umask", &s.umask);
    w.noted(0, "banner", &s.banner);
    w.noted(0, "banner_success", &s.banner_success);
    w.noted(0, "banner_fail", &s.banner_fail);
    limits(&mut w, 0, &s.limits);
    access(&mut w, 0, &s.access);
    if !s.kept.is_empty() {
        for line in &s.kept {
            w.comment(0, line);
        }
    }
    if !s.inner_comments.is_empty() {
        w.comment(0, "Comments that were inside the entry:");
        for line in &s.inner_comments {
            w.raw_comment(line);
        }
    }
    w.out
}

pub fn defaults_yaml(d: &Defaults, tool: &str) -> String {
    let mut w = Writer::default();
    w.comment(
        0,
        &format!(
            "Converted by `{tool}` from {}:{} (defaults).",
            d.origin.file, d.origin.line
        ),
    );
    w.comment(
        0,
        "Every converted service file also carries the values it got from these",
    );
    w.comment(
        0,
        "defaults, so they apply here only to services added from now on.",
    );
    let preamble = trim_bare(&d.preamble);
    if !preamble.is_empty() {
        w.comment(0, "");
        for line in preamble {
            w.raw_comment(line);
        }
    }
    if d.limits.entries().is_empty() && d.access.is_empty() && d.access.comments.is_empty() {
        w.comment(0, "(nothing that spawnd.yaml's defaults can hold)");
    } else {
        w.open(0, "defaults");
        limits(&mut w, 1, &d.limits);
        access(&mut w, 1, &d.access);
    }
    for line in &d.kept {
        w.comment(0, line);
    }
    w.out
}

pub fn not_converted_yaml(n: &NotConverted, tool: &str) -> String {
    let mut w = Writer::default();
    w.comment(
        0,
        &format!(
            "NOT CONVERTED by `{tool}` from {}:{} ({}):",
            n.origin.file, n.origin.line, n.label
        ),
    );
    w.comment(0, &n.reason);
    w.comment(
        0,
        "spawnd ignores files ending in .disabled; the original is kept below.",
    );
    w.comment(0, "");
    for line in &n.original {
        w.comment(0, line);
    }
    w.out
}

fn limits(w: &mut Writer, indent: usize, l: &Limits) {
    let entries = l.entries();
    if entries.is_empty() {
        return;
    }
    w.open(indent, "limits");
    for (key, value) in entries {
        // Built by the converters as plain numbers, durations, sizes, rates.
        w.key(indent + 1, key, &value.value, value.note.as_deref());
    }
}

fn access(w: &mut Writer, indent: usize, a: &Access) {
    if a.is_empty() && a.comments.is_empty() {
        return;
    }
    w.open(indent, "access");
    for line in &a.comments {
        w.comment(indent + 1, line);
    }
    for (key, list) in [("allow", &a.allow), ("deny", &a.deny), ("times", &a.times)] {
        if list.is_empty() {
            continue;
        }
        w.open(indent + 1, key);
        for entry in list {
            // Times are always quoted: `8:30` alone would be a YAML 1.1 number.
            let value = if key == "times" {
                double_quoted(&entry.value)
            } else {
                scalar(&entry.value)
            };
            w.item(indent + 2, &value, entry.note.as_deref());
        }
    }
}

/// A copied comment block without the lone `#` lines that frame it.
fn trim_bare(lines: &[String]) -> &[String] {
    let bare = |l: &String| l.trim_start_matches('#').trim().is_empty();
    let start = lines.iter().position(|l| !bare(l)).unwrap_or(lines.len());
    let end = lines
        .iter()
        .rposition(|l| !bare(l))
        .map_or(start, |i| i + 1);
    &lines[start..end]
}

fn bool_str(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

#[derive(Default)]
struct Writer {
    out: String,
}

impl Writer {
    fn pad(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push_str("  ");
        }
    }

    fn note(&mut self, note: Option<&str>) {
        if let Some(note) = note {
            let _ = write!(self.out, "  # {}", one_line(note));
        }
        self.out.push('\n');
    }

    /// `key: value` where value is already YAML text.
    fn key(&mut self, indent: usize, key: &str, value: &str, note: Option<&str>) {
        self.pad(indent);
        let _ = write!(self.out, "{key}: {value}");
        self.note(note);
    }

    /// A string from the input, quoted if YAML needs it.
    fn noted(&mut self, indent: usize, key: &str, value: &Option<Noted<String>>) {
        if let Some(value) = value {
            self.key(indent, key, &scalar(&value.value), value.note.as_deref());
        }
    }

    /// A value the converter built as valid plain YAML (a number).
    fn raw(&mut self, indent: usize, key: &str, value: &Option<Noted<String>>) {
        if let Some(value) = value {
            self.key(indent, key, &value.value, value.note.as_deref());
        }
    }

    fn open(&mut self, indent: usize, key: &str) {
        self.pad(indent);
        let _ = writeln!(self.out, "{key}:");
    }

    fn item(&mut self, indent: usize, value: &str, note: Option<&str>) {
        self.pad(indent);
        let _ = write!(self.out, "- {value}");
        self.note(note);
    }

    fn comment(&mut self, indent: usize, text: &str) {
        self.pad(indent);
        if text.is_empty() {
            self.out.push_str("#\n");
        } else {
            let _ = writeln!(self.out, "# {}", one_line(text));
        }
    }

    /// A comment line copied from the input: it already starts with `#`.
    fn raw_comment(&mut self, line: &str) {
        let line = one_line(line.trim_end());
        if line.starts_with('#') {
            let _ = writeln!(self.out, "{line}");
        } else {
            let _ = writeln!(self.out, "# {line}");
        }
    }
}

/// Comments must stay on one line whatever the input held.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
        .collect()
}

/// `[a, b, "c d"]`, quoting items as the flow context needs.
pub fn flow_list(items: &[String]) -> String {
    let rendered: Vec<String> = items.iter().map(|item| quote_if(item, true)).collect();
    format!("[{}]", rendered.join(", "))
}

/// A string scalar in block context.
pub fn scalar(text: &str) -> String {
    quote_if(text, false)
}

fn quote_if(text: &str, flow: bool) -> String {
    if needs_quotes(text, flow) {
        double_quoted(text)
    } else {
        text.to_string()
    }
}

fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether `text` would not read back as the same string if written plain.
/// Errs on the side of quoting: a needless pair of quotes is harmless.
fn needs_quotes(text: &str, flow: bool) -> bool {
    let Some(first) = text.chars().next() else {
        return true;
    };
    if text.trim() != text || text.chars().any(|c| c.is_control()) {
        return true;
    }
    // Indicators that may not start a plain scalar; `-` may when it is
    // followed by something other than a space (`--daemon`, `-s`).
    if "?:,[]{}#&*!|>'\"%@`".contains(first) || (first == '-' && text.len() == 1) {
        return true;
    }
    if text.contains(": ") || text.contains(" #") || text.ends_with(':') {
        return true;
    }
    if flow && text.contains([',', '[', ']', '{', '}', ':']) {
        return true;
    }
    looks_like_non_string(text)
}

/// Words and numbers a YAML 1.1 or 1.2 reader would not take as a string.
fn looks_like_non_string(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "true", "false", "yes", "no", "y", "n", "on", "off", "null", "~",
    ];
    let lower = text.to_ascii_lowercase();
    if WORDS.contains(&lower.as_str()) {
        return true;
    }
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned.starts_with(".inf") || unsigned.starts_with(".nan") {
        return true;
    }
    let digits = unsigned.replace('_', "");
    if digits.is_empty() {
        return false;
    }
    if digits.parse::<f64>().is_ok() && digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        return true;
    }
    if let Some(rest) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0o"))
        .or_else(|| digits.strip_prefix("0b"))
    {
        if !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit()) {
            return true;
        }
    }
    is_sexagesimal(&digits) || is_date(&digits)
}

/// YAML 1.1 base-60 numbers such as `1:30` or `190:20:30.15`.
fn is_sexagesimal(text: &str) -> bool {
    let head = text.split('.').next().unwrap_or(text);
    let fraction_ok = text
        .split_once('.')
        .is_none_or(|(_, f)| f.chars().all(|c| c.is_ascii_digit()));
    let mut parts = head.split(':');
    let first_ok = parts
        .next()
        .is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    let rest: Vec<&str> = parts.collect();
    first_ok
        && fraction_ok
        && !rest.is_empty()
        && rest
            .iter()
            .all(|p| (1..=2).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
}

/// YAML 1.1 timestamps start with `YYYY-MM-DD`.
fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() >= 8
        && bytes[..4].iter().all(u8::is_ascii_digit)
        && bytes[4] == b'-'
        && bytes[5].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads_back(text: &str) {
        for rendered in [scalar(text), flow_list(&[text.to_string()])] {
            let yaml = format!("key: {rendered}\n");
            let value: serde_yaml::Value = serde_yaml::from_str(&yaml)
                .unwrap_or_else(|e| panic!("{yaml:?} does not parse: {e}"));
            let got = &value["key"];
            let got = got.as_str().or_else(|| got[0].as_str());
            assert_eq!(got, Some(text), "{yaml:?}");
        }
    }

    #[test]
    fn strings_read_back_as_the_same_strings() {
        for text in [
            "/usr/bin/rsync",
            "--daemon",
            "-s",
            "-",
            "",
            " lead",
            "127.0.0.1:873",
            "[::1]:873",
            "*:873",
            "@abstract",
            "a: b",
            "a #b",
            "#x",
            "yes",
            "No",
            "on",
            "null",
            "~",
            "022",
            "0x1F",
            "1e3",
            ".5",
            "1:30",
            "08:00-18:00",
            "2024-01-01",
            "{a,b}",
            "a,b",
            "--userspec=1000:1000",
            "say \"hi\"",
            "back\\slash",
            "tab\there",
            "key:",
            "%TEMP%",
            "!tag",
            "&anchor",
            "|",
            ">",
            "it's",
            "1_000",
            "-1",
            "+5",
            ".inf",
        ] {
            reads_back(text);
        }
    }

    #[test]
    fn plain_where_plain_is_safe() {
        assert_eq!(scalar("127.0.0.1:873"), "127.0.0.1:873");
        assert_eq!(scalar("*:873"), "\"*:873\"");
        assert_eq!(scalar("[::1]:13"), "\"[::1]:13\"");
        assert_eq!(scalar("022"), "\"022\"");
        assert_eq!(
            flow_list(&["/usr/bin/rsync".into(), "--daemon".into()]),
            "[/usr/bin/rsync, --daemon]"
        );
    }
}
