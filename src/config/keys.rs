//! Where each key of a YAML file is written. The index is built once per
//! file, when the first error in it needs a place, from the YAML parser's
//! events (`saphyr-parser`, which gives every event its position; serde_yaml
//! gives positions only in its errors): block and flow style alike, so
//! `limits: {instances: 0}` places an error at `instances` as exactly as a
//! block mapping would. serde_yaml still reads the values; this only says
//! where keys are.

use saphyr_parser::{Event, Parser};

/// A 1-based (line, column), as error messages show them.
pub type Position = (usize, usize);

#[derive(Debug, Default)]
pub struct KeyIndex {
    /// Every key, as a dotted path (list items add no segment), in the
    /// order written, with where it is written.
    keys: Vec<(String, Position)>,
    /// Where the top-level mapping starts.
    root: Option<Position>,
}

/// What the walk is inside of.
enum Frame {
    Mapping {
        path: String,
        /// The key whose value comes next; `None` while a key is awaited.
        key: Option<String>,
    },
    Sequence {
        path: String,
    },
}

impl KeyIndex {
    /// Indexes `text`. Text the parser cannot read keeps what was indexed
    /// before the error (a syntax error has a position of its own).
    pub fn new(text: &str) -> KeyIndex {
        let mut index = KeyIndex::default();
        let mut stack: Vec<Frame> = Vec::new();
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else {
                break;
            };
            let at = (span.start.line(), span.start.col() + 1);
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Mapping { path, key }) = stack.last_mut() {
                        if key.is_none() {
                            let full = join(path, &value);
                            index.keys.push((full, at));
                            *key = Some(value.into_owned());
                            continue;
                        }
                    }
                    value_done(&mut stack);
                }
                Event::Alias(_) => value_done(&mut stack),
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = match stack.last() {
                        Some(Frame::Mapping {
                            path,
                            key: Some(key),
                        }) => join(path, key),
                        // A mapping used as a key: its keys get no path.
                        Some(Frame::Mapping { key: None, .. }) => "?".to_string(),
                        Some(Frame::Sequence { path }) => path.clone(),
                        None => String::new(),
                    };
                    if stack.is_empty() && matches!(event, Event::MappingStart(..)) {
                        index.root = Some(at);
                    }
                    stack.push(match event {
                        Event::MappingStart(..) => Frame::Mapping { path, key: None },
                        _ => Frame::Sequence { path },
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                    value_done(&mut stack);
                }
                _ => {}
            }
        }
        index
    }

    /// Where `path` (e.g. `limits.timeout`) is written; failing that, its
    /// deepest ancestor that is; `None` when not even the first key is (the
    /// value may come from `spawnd.yaml`'s defaults).
    pub fn locate(&self, path: &str) -> Option<Position> {
        let mut wanted = path;
        loop {
            if let Some(at) = self.nth(wanted, 1) {
                return Some(at);
            }
            wanted = &wanted[..wanted.rfind('.')?];
        }
    }

    /// Where the `nth` (1-based) occurrence of `path` is written.
    pub fn nth(&self, path: &str, nth: usize) -> Option<Position> {
        self.keys
            .iter()
            .filter(|(key, _)| key == path)
            .nth(nth.checked_sub(1)?)
            .map(|(_, at)| *at)
    }

    /// The first key written at `at`, if a key is written there.
    pub fn key_at(&self, at: Position) -> Option<&str> {
        self.keys
            .iter()
            .find(|(_, here)| *here == at)
            .map(|(key, _)| key.as_str())
    }

    /// Where the file's top-level mapping starts.
    pub fn root(&self) -> Option<Position> {
        self.root
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A value is complete: its mapping awaits the next key.
fn value_done(stack: &mut [Frame]) {
    if let Some(Frame::Mapping { key, .. }) = stack.last_mut() {
        *key = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: &str =
        "name: x\n# limits below\nlimits:\n  instances: 3\n  timeout: 5x\naccess:\n  allow: []\n";

    #[test]
    fn block_keys_are_placed() {
        let index = KeyIndex::new(BLOCK);
        assert_eq!(index.locate("name"), Some((1, 1)));
        assert_eq!(index.locate("limits.timeout"), Some((5, 3)));
        assert_eq!(index.locate("access.allow"), Some((7, 3)));
        // A key missing under its parent falls back to the parent.
        assert_eq!(index.locate("access.deny"), Some((6, 1)));
        assert_eq!(index.locate("access.timeout"), Some((6, 1)));
        assert_eq!(index.locate("exec"), None);
        assert_eq!(index.root(), Some((1, 1)));
    }

    #[test]
    fn flow_keys_are_placed_exactly() {
        let index = KeyIndex::new("listen: 127.0.0.1:7\nlimits: {instances: 0, rate: 5/s}\n");
        assert_eq!(index.locate("limits"), Some((2, 1)));
        assert_eq!(index.locate("limits.instances"), Some((2, 10)));
        assert_eq!(index.locate("limits.rate"), Some((2, 24)));
        let index = KeyIndex::new("{listen: x, exec: [/bin/a, b], limits: {timeout: 1s}}");
        assert_eq!(index.locate("exec"), Some((1, 13)));
        assert_eq!(index.locate("limits.timeout"), Some((1, 41)));
    }

    #[test]
    fn list_items_and_duplicates() {
        let text =
            "env:\n  - A=1\naccess:\n  allow:\n    - 10.0.0.0/8\nexec: a\n# again\nexec: b\n";
        let index = KeyIndex::new(text);
        assert_eq!(index.locate("access.allow"), Some((4, 3)));
        assert_eq!(index.nth("exec", 1), Some((6, 1)));
        assert_eq!(index.nth("exec", 2), Some((8, 1)));
        assert_eq!(index.nth("exec", 3), None);
        assert_eq!(index.key_at((8, 1)), Some("exec"));
        // A key after a list value is still at the top level.
        let index = KeyIndex::new("listen: [a, b]\nwait: true\n");
        assert_eq!(index.locate("wait"), Some((2, 1)));
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before() {
        let index = KeyIndex::new("listen: x\nexec: [unclosed\nwait: true\n");
        assert_eq!(index.locate("listen"), Some((1, 1)));
    }
}
