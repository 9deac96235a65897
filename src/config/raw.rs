//! Service files and `spawnd.yaml` exactly as written: serde structs with
//! unknown keys rejected. Nothing here is checked beyond the types; see
//! `validate` for the rules that join fields together.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::units::{Cidr, Count, CpuTime, ListenAddr, OrUnlimited, Rate, Size, Span};

/// A single value or a list of them (`listen: 127.0.0.1:13` or a list).
/// Hand-written rather than `untagged` so an element's own error (with its
/// position) reaches the user instead of "did not match any variant".
#[derive(Debug, Clone)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{IntoDeserializer, SeqAccess, Visitor};
        struct OneOrManyVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(v.into_deserializer()).map(OneOrMany::One)
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor(std::marker::PhantomData))
    }
}

/// A list of words, or one string split on white space (use a list when an
/// argument contains spaces). A string with quotes or backslashes is
/// refused: it would be split as it stands, not as a shell would.
#[derive(Debug, Clone)]
pub struct Argv(pub Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A direct visitor, not an untagged enum: buffering the value would
        // lose its position for the error message.
        struct ArgvVisitor;
        impl<'de> serde::de::Visitor<'de> for ArgvVisitor {
            type Value = Argv;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of words such as [/bin/echo, hello], or one string")
            }
            fn visit_str<E: serde::de::Error>(self, line: &str) -> Result<Argv, E> {
                if line.contains(['\'', '"', '\\']) {
                    return Err(E::custom(format!(
                        "a string is split on white space only, quotes and backslashes are not interpreted: write a list, e.g. [{}]",
                        suggest_list(line)
                    )));
                }
                Ok(Argv(line.split_whitespace().map(str::to_string).collect()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Argv, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<String>()? {
                    words.push(word);
                }
                Ok(Argv(words))
            }
        }
        deserializer.deserialize_any(ArgvVisitor)
    }
}

/// `/bin/sh -c 'echo hi there'` as the list a shell would make of it
/// (`/bin/sh, -c, 'echo hi there'`), for an error message.
fn suggest_list(line: &str) -> String {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut chars = line.chars();
    let mut started = false;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '\\') | (Some('"'), '\\') => {
                word.extend(chars.next());
                started = true;
            }
            (None, c) if c.is_whitespace() => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (_, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
        .iter()
        .map(|w| {
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/._-=+:@%".contains(c));
            if plain {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "''"))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Argv {
    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SocketKind {
    Stream,
    Dgram,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StderrMode {
    Socket,
    Null,
    Log,
}

/// `stderr: null` written without quotes is YAML's null, which would read
/// as "not set"; it means the `null` mode.
fn stderr_mode<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<StderrMode>, D::Error> {
    Ok(Some(
        Option::<StderrMode>::deserialize(deserializer)?.unwrap_or(StderrMode::Null),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PassMode {
    Stdio,
    ListenFds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnLimit {
    Refuse,
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InternalKind {
    Echo,
    Discard,
    Daytime,
    Time,
    Chargen,
}

impl InternalKind {
    pub fn name(self) -> &'static str {
        match self {
            InternalKind::Echo => "echo",
            InternalKind::Discard => "discard",
            InternalKind::Daytime => "daytime",
            InternalKind::Time => "time",
            InternalKind::Chargen => "chargen",
        }
    }
}

/// A user or group: a name or a numeric id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Id(u32),
    Name(String),
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PrincipalVisitor;
        impl serde::de::Visitor<'_> for PrincipalVisitor {
            type Value = Principal;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user or group name, or a numeric id")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Principal, E> {
                if v.is_empty() {
                    return Err(E::custom("an empty name"));
                }
                Ok(Principal::Name(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Principal, E> {
                u32::try_from(v)
                    .map(Principal::Id)
                    .map_err(|_| E::custom(format!("id {v} is out of range")))
            }
        }
        deserializer.deserialize_any(PrincipalVisitor)
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Principal::Id(id) => write!(f, "{id}"),
            Principal::Name(name) => f.write_str(name),
        }
    }
}

/// A umask or file mode, written as an octal string: `"022"`, `"0660"`,
/// `"0o660"` (serde_yaml also leaves a bare number with a leading zero,
/// `0660`, a string). A number YAML reads as a number is refused: `660`
/// and `0o660` (four hundred thirty-two) and `0x1b4` all arrive as plain
/// integers, and nothing tells which was written, so no reading of its
/// digits is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let digits = text.trim().trim_start_matches("0o");
        u32::from_str_radix(digits, 8)
            .ok()
            .filter(|mode| *mode <= 0o7777)
            .map(Mode)
            .ok_or_else(|| format!("invalid octal mode {text:?} (write it quoted, e.g. \"0022\")"))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A direct visitor, not an untagged enum: buffering the value would
        // lose its position for the error message.
        struct ModeVisitor;
        impl serde::de::Visitor<'_> for ModeVisitor {
            type Value = Mode;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an octal mode such as \"0022\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Mode, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Mode, E> {
                Err(E::custom(format!(
                    "write the mode as a quoted octal string, e.g. \"0640\" (YAML read this one as the number {v}; once read, 640, 0o640 and 0x1a0 cannot be told apart)"
                )))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Mode, E> {
                self.visit_u64(v.unsigned_abs())
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Mode, E> {
                Err(E::custom(
                    "write the mode as a quoted octal string, e.g. \"0640\"",
                ))
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub instances: Option<OrUnlimited<u32>>,
    pub on_limit: Option<OnLimit>,
    pub per_source: Option<OrUnlimited<u32>>,
    pub rate: Option<OrUnlimited<Rate>>,
    pub rate_pause: Option<Span>,
    pub per_source_rate: Option<OrUnlimited<Rate>>,
    pub per_source_pause: Option<Span>,
    pub timeout: Option<Span>,
    pub kill_after: Option<Span>,
    pub idle_timeout: Option<Span>,
    pub connect_timeout: Option<Span>,
    pub cpu: Option<CpuTime>,
    pub memory: Option<Size>,
    pub files: Option<Count>,
    pub processes: Option<Count>,
    pub core: Option<Size>,
    pub max_load: Option<OrUnlimited<f64>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccess {
    pub allow: Option<Vec<Cidr>>,
    pub deny: Option<Vec<Cidr>>,
    pub times: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    pub socket: Option<SocketKind>,
    pub listen: Option<OneOrMany<ListenAddr>>,
    pub wait: Option<bool>,
    pub exec: Option<Argv>,
    pub internal: Option<InternalKind>,
    pub redirect: Option<String>,
    pub user: Option<Principal>,
    pub group: Option<Principal>,
    pub groups: Option<Vec<Principal>>,
    pub env: Option<BTreeMap<String, String>>,
    pub pass_env: Option<Vec<String>>,
    #[serde(default, deserialize_with = "stderr_mode")]
    pub stderr: Option<StderrMode>,
    pub pass: Option<PassMode>,
    pub new_session: Option<bool>,
    pub backlog: Option<u32>,
    pub unix_mode: Option<Mode>,
    pub unix_owner: Option<Principal>,
    pub unix_group: Option<Principal>,
    pub nice: Option<i32>,
    pub umask: Option<Mode>,
    pub chroot: Option<String>,
    pub workdir: Option<String>,
    pub banner: Option<String>,
    pub banner_success: Option<String>,
    pub banner_fail: Option<String>,
    pub limits: Option<RawLimits>,
    pub access: Option<RawAccess>,
}

/// `defaults:` in `spawnd.yaml`: applied to services that do not set them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub user: Option<Principal>,
    pub group: Option<Principal>,
    pub env: Option<BTreeMap<String, String>>,
    pub pass_env: Option<Vec<String>>,
    #[serde(default, deserialize_with = "stderr_mode")]
    pub stderr: Option<StderrMode>,
    pub limits: Option<RawLimits>,
    pub access: Option<RawAccess>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    Stderr,
    Syslog,
    Journal,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub target: Option<LogTarget>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGlobal {
    pub defaults: Option<RawDefaults>,
    pub max_children: Option<OrUnlimited<u32>>,
    pub max_in_process: Option<u32>,
    pub splice: Option<bool>,
    pub shutdown_grace: Option<Span>,
    pub control_socket: Option<String>,
    pub log: Option<RawLog>,
    pub include_inetd_conf: Option<String>,
    pub include_xinetd: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quoted_exec_string_suggests_the_list() {
        assert_eq!(
            suggest_list("/bin/sh -c 'echo hi there'"),
            "/bin/sh, -c, 'echo hi there'"
        );
        assert_eq!(
            suggest_list(r#"/bin/x "a b" c\ d it's"#),
            "/bin/x, 'a b', 'c d', its"
        );
        let error = serde_yaml::from_str::<Argv>("/bin/sh -c 'echo hi there'").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("write a list, e.g. [/bin/sh, -c, 'echo hi there']"),
            "{error}"
        );
        let argv: Argv = serde_yaml::from_str("/bin/echo a  b").unwrap();
        assert_eq!(argv.0, ["/bin/echo", "a", "b"]);
    }
}
