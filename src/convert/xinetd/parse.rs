//! xinetd's configuration grammar, as xinetd 2.3 reads it.
//!
//! A file is a sequence of entries:
//!
//! ```text
//! # a comment: only whole lines, whose first non-blank character is '#'
//! defaults
//! {
//!         attribute = value value ...
//! }
//! service NAME
//! {
//!         attribute  = value ...     (also += and -= for list attributes)
//! }
//! include    FILE
//! includedir DIR
//! ```
//!
//! Values are split on blanks; xinetd does no quote or escape processing.
//! `{` and `}` stand on lines of their own. We also accept `service NAME {`
//! on one line and `attr=value` without blanks, which xinetd tolerates or
//! which admins write anyway; what the attributes mean is `map`'s job.

use crate::convert::diag::Diags;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Set,
    Add,
    Remove,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Set => "=",
            Op::Add => "+=",
            Op::Remove => "-=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub name: String,
    pub op: Op,
    pub values: Vec<String>,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockKind {
    Defaults,
    Service(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// Line of the `service`/`defaults` keyword.
    pub line: usize,
    pub attrs: Vec<Attr>,
    /// Comment lines between the previous entry and this one.
    pub preamble: Vec<String>,
    /// Comment lines inside the braces.
    pub inner_comments: Vec<String>,
    /// The entry's text from its keyword line to its `}`.
    pub raw: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Block(Block),
    Include { path: String, line: usize },
    IncludeDir { path: String, line: usize },
}

enum State {
    Top,
    /// After `service NAME` or `defaults`, waiting for `{`.
    Brace(Block),
    Inside(Block),
}

/// Parses one file. Errors are reported and parsing goes on, so one run shows
/// every mistake; the caller must not use the result if `diags` has errors.
pub fn parse(text: &str, file: &str, diags: &mut Diags) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut preamble: Vec<String> = Vec::new();
    let mut state = State::Top;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            match &mut state {
                State::Top => {
                    if !trimmed.is_empty() {
                        preamble.push(trimmed.to_string());
                    }
                }
                State::Brace(block) | State::Inside(block) => {
                    block.raw.push(line.to_string());
                    if !trimmed.is_empty() {
                        block.inner_comments.push(trimmed.to_string());
                    }
                }
            }
            continue;
        }
        state = match state {
            State::Top => top_level(
                trimmed,
                line,
                number,
                file,
                &mut preamble,
                &mut entries,
                diags,
            ),
            State::Brace(mut block) => {
                block.raw.push(line.to_string());
                if trimmed == "{" {
                    State::Inside(block)
                } else {
                    diags.error(
                        file,
                        number,
                        format!(
                            "expected '{{' on the line after '{}' (line {}), found '{trimmed}'",
                            block_title(&block.kind),
                            block.line
                        ),
                    );
                    // Read on as if the brace were there: the attributes that
                    // follow are more likely than another entry.
                    inside(block, trimmed, line, number, file, &mut entries, diags)
                }
            }
            State::Inside(mut block) => {
                block.raw.push(line.to_string());
                inside(block, trimmed, line, number, file, &mut entries, diags)
            }
        };
    }
    match state {
        State::Top => {}
        State::Brace(block) | State::Inside(block) => diags.error(
            file,
            block.line,
            format!(
                "'{}' is not closed: missing '}}' before the end of the file",
                block_title(&block.kind)
            ),
        ),
    }
    entries
}

fn block_title(kind: &BlockKind) -> String {
    match kind {
        BlockKind::Defaults => "defaults".to_string(),
        BlockKind::Service(name) => format!("service {name}"),
    }
}

fn top_level(
    trimmed: &str,
    line: &str,
    number: usize,
    file: &str,
    preamble: &mut Vec<String>,
    entries: &mut Vec<Entry>,
    diags: &mut Diags,
) -> State {
    let mut words: Vec<&str> = trimmed.split_whitespace().collect();
    // `service NAME {` on one line.
    let brace_here = words.len() > 1 && words.last() == Some(&"{");
    if brace_here {
        words.pop();
    }
    let keyword = words.first().copied().unwrap_or("");
    let args = &words[1..];
    let new_block = |kind: BlockKind, preamble: &mut Vec<String>| Block {
        kind,
        line: number,
        attrs: Vec::new(),
        preamble: std::mem::take(preamble),
        inner_comments: Vec::new(),
        raw: vec![line.to_string()],
    };
    match keyword {
        "service" => {
            let name = match args {
                [name] => name.to_string(),
                [] => {
                    diags.error(file, number, "'service' without a name");
                    String::new()
                }
                [name, ..] => {
                    diags.error(
                        file,
                        number,
                        format!(
                            "unexpected '{}' after 'service {name}' (a service name is one word)",
                            args[1..].join(" ")
                        ),
                    );
                    name.to_string()
                }
            };
            let block = new_block(BlockKind::Service(name), preamble);
            if brace_here {
                State::Inside(block)
            } else {
                State::Brace(block)
            }
        }
        "defaults" => {
            if !args.is_empty() {
                diags.error(
                    file,
                    number,
                    format!("unexpected '{}' after 'defaults'", args.join(" ")),
                );
            }
            let block = new_block(BlockKind::Defaults, preamble);
            if brace_here {
                State::Inside(block)
            } else {
                State::Brace(block)
            }
        }
        // xinetd spells it `include`; `includefile` is accepted as well
        // because some documentation and admins use that name.
        "include" | "includefile" | "includedir" => {
            preamble.clear();
            match args {
                [path] => entries.push(if keyword == "includedir" {
                    Entry::IncludeDir {
                        path: path.to_string(),
                        line: number,
                    }
                } else {
                    Entry::Include {
                        path: path.to_string(),
                        line: number,
                    }
                }),
                _ => diags.error(file, number, format!("'{keyword}' takes exactly one path")),
            }
            State::Top
        }
        "{" | "}" => {
            diags.error(
                file,
                number,
                format!("'{keyword}' outside of a service or defaults entry"),
            );
            State::Top
        }
        _ => {
            diags.error(
                file,
                number,
                format!(
                    "expected 'service NAME', 'defaults', 'include' or 'includedir', found '{trimmed}'"
                ),
            );
            State::Top
        }
    }
}

/// A line between `{` and `}`.
fn inside(
    mut block: Block,
    trimmed: &str,
    line: &str,
    number: usize,
    file: &str,
    entries: &mut Vec<Entry>,
    diags: &mut Diags,
) -> State {
    if trimmed == "}" {
        entries.push(Entry::Block(block));
        return State::Top;
    }
    let first = trimmed.split_whitespace().next().unwrap_or("");
    if matches!(
        first,
        "service" | "defaults" | "include" | "includefile" | "includedir"
    ) && !trimmed.contains('=')
    {
        diags.error(
            file,
            number,
            format!(
                "'{first}' inside '{}' (line {}): missing '}}'?",
                block_title(&block.kind),
                block.line
            ),
        );
        // Close the open entry here and read this line as a new one, so one
        // missing brace gives one error.
        block.raw.pop();
        entries.push(Entry::Block(block));
        return top_level(trimmed, line, number, file, &mut Vec::new(), entries, diags);
    }
    match parse_attr(trimmed, number) {
        Ok(attr) => block.attrs.push(attr),
        Err(message) => diags.error(file, number, message),
    }
    State::Inside(block)
}

/// `name op value...` with op one of `=`, `+=`, `-=`, blanks optional.
fn parse_attr(text: &str, line: usize) -> Result<Attr, String> {
    let Some(eq) = text.find('=') else {
        return Err(format!(
            "expected 'attribute = value', found '{text}' (no '=', '+=' or '-=')"
        ));
    };
    let (left, right) = (text[..eq].trim_end(), &text[eq + 1..]);
    let (name, op) = if let Some(name) = left.strip_suffix('+') {
        (name.trim_end(), Op::Add)
    } else if let Some(name) = left.strip_suffix('-') {
        (name.trim_end(), Op::Remove)
    } else {
        (left, Op::Set)
    };
    if name.is_empty() {
        return Err(format!("missing attribute name before '{}'", op.as_str()));
    }
    if name.contains(char::is_whitespace)
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(format!(
            "'{name}' is not an attribute name (expected 'attribute = value')"
        ));
    }
    Ok(Attr {
        name: name.to_string(),
        op,
        values: right.split_whitespace().map(str::to_string).collect(),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<Entry> {
        let mut diags = Diags::default();
        let entries = parse(text, "t", &mut diags);
        assert!(diags.list.is_empty(), "{:?}", diags.list);
        entries
    }

    fn errors(text: &str) -> Vec<String> {
        let mut diags = Diags::default();
        parse(text, "t", &mut diags);
        diags.list.iter().map(ToString::to_string).collect()
    }

    fn block(entry: &Entry) -> &Block {
        match entry {
            Entry::Block(block) => block,
            other => panic!("not a block: {other:?}"),
        }
    }

    #[test]
    fn service_with_all_operators_and_comments() {
        let entries = parse_ok(
            "# default: off\n\
             # description: rsync\n\
             \n\
             service rsync\n\
             {\n\
             \tdisable\t= yes\n\
             # inner\n\
             \tonly_from += 10.0.0.0/8  192.168.{1,2}\n\
             \tno_access-=1.2.3.4\n\
             \tlog_on_success =\n\
             \tserver_args = --daemon --config=/etc/rsyncd.conf\n\
             }\n",
        );
        assert_eq!(entries.len(), 1);
        let b = block(&entries[0]);
        assert_eq!(b.kind, BlockKind::Service("rsync".into()));
        assert_eq!(b.line, 4);
        assert_eq!(b.preamble, vec!["# default: off", "# description: rsync"]);
        assert_eq!(b.inner_comments, vec!["# inner"]);
        assert_eq!(b.raw.len(), 9);
        let ops: Vec<(&str, Op, usize)> = b
            .attrs
            .iter()
            .map(|a| (a.name.as_str(), a.op, a.values.len()))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("disable", Op::Set, 1),
                ("only_from", Op::Add, 2),
                ("no_access", Op::Remove, 1),
                ("log_on_success", Op::Set, 0),
                ("server_args", Op::Set, 2),
            ]
        );
        assert_eq!(b.attrs[4].values[1], "--config=/etc/rsyncd.conf");
        assert_eq!(b.attrs[2].line, 9);
    }

    #[test]
    fn defaults_includes_and_brace_on_the_service_line() {
        let entries = parse_ok(
            "defaults\n{\n instances = 60\n}\nincludedir /etc/xinetd.d\ninclude /etc/x\nservice a {\n port = 1\n}\n",
        );
        assert_eq!(block(&entries[0]).kind, BlockKind::Defaults);
        assert_eq!(
            entries[1],
            Entry::IncludeDir {
                path: "/etc/xinetd.d".into(),
                line: 5
            }
        );
        assert_eq!(
            entries[2],
            Entry::Include {
                path: "/etc/x".into(),
                line: 6
            }
        );
        assert_eq!(block(&entries[3]).attrs[0].values, vec!["1"]);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        assert_eq!(
            errors("service a\n{\n port = 1\n"),
            vec!["t:1: error: 'service a' is not closed: missing '}' before the end of the file"]
        );
        assert_eq!(
            errors("service a\n port = 1\n}\n"),
            vec![
                "t:2: error: expected '{' on the line after 'service a' (line 1), found 'port = 1'"
            ]
        );
        assert_eq!(
            errors("service a\n{\n port 1\n}\n"),
            vec!["t:3: error: expected 'attribute = value', found 'port 1' (no '=', '+=' or '-=')"]
        );
        assert_eq!(
            errors("servce a\n"),
            vec!["t:1: error: expected 'service NAME', 'defaults', 'include' or 'includedir', found 'servce a'"]
        );
        assert_eq!(
            errors("service a\n{\n port = 1\nservice b\n{\n}\n"),
            vec!["t:4: error: 'service' inside 'service a' (line 1): missing '}'?"]
        );
        assert_eq!(
            errors("service\n{\n}\n"),
            vec!["t:1: error: 'service' without a name"]
        );
        assert_eq!(
            errors("service a\n{\n *= 1\n}\n"),
            vec!["t:3: error: '*' is not an attribute name (expected 'attribute = value')"]
        );
    }
}
