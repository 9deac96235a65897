//! xinetd attributes to spawnd keys.
//!
//! Two steps per service. `resolve` applies xinetd's assignment rules:
//! `=` sets, `+=`/`-=` add to or remove from a list (starting from the
//! `defaults` value when the service has not set the attribute yet), and
//! attributes the service leaves out are taken from `defaults`. Then
//! `ServiceMapper` turns the resolved table into a `Service`, and every
//! attribute spawnd has no key for becomes a `# xinetd: ...` comment (plus a
//! warning when behaviour is lost).
//!
//! Values from `defaults` are written into each service, marked
//! `# from defaults`, so a converted service behaves as it did whatever
//! spawnd.yaml holds; spawnd.yaml gets them too, for services added later.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use super::addr::{self, Cidr, HostSpec};
use super::parse::{Attr, Block, BlockKind, Entry, Op};
use super::ParsedFile;
use crate::convert::common::{exec_argv, size_text};
use crate::convert::diag::Diags;
use crate::convert::model::{
    Access, Action, Conversion, Defaults, Limits, NotConverted, Noted, Origin, Service, Socket,
    Unit,
};
use crate::convert::services_db::ServicesDb;

/// What `map` returns when a section ends it early: a service kept as a
/// comment (not converted), or `None` after an error.
type Stop = Box<Option<Unit>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arity {
    /// Exactly this many values; xinetd ignores any more.
    Fixed(usize),
    /// A set of values.
    List,
    /// server_args: words passed on verbatim.
    Args,
}

struct Known {
    name: &'static str,
    arity: Arity,
    /// Takes `+=` and `-=` (man xinetd.conf: "support all assignment operators").
    set_ops: bool,
    /// Allowed in `defaults`, and then inherited by services.
    in_defaults: bool,
}

const fn known(name: &'static str, arity: Arity, set_ops: bool, in_defaults: bool) -> Known {
    Known {
        name,
        arity,
        set_ops,
        in_defaults,
    }
}

const ONE: Arity = Arity::Fixed(1);

/// Every attribute of xinetd 2.3 (and the rlimit_* additions of its forks).
const KNOWN: &[Known] = &[
    known("id", ONE, false, false),
    known("type", Arity::List, false, false),
    known("flags", Arity::List, false, false),
    known("disable", ONE, false, false),
    known("socket_type", ONE, false, false),
    known("protocol", ONE, false, false),
    known("wait", ONE, false, false),
    known("user", ONE, false, false),
    known("group", ONE, false, false),
    known("server", ONE, false, false),
    known("server_args", Arity::Args, false, false),
    known("port", ONE, false, false),
    known("redirect", Arity::Fixed(2), false, false),
    known("bind", ONE, false, true),
    known("interface", ONE, false, true),
    known("v6only", ONE, false, true),
    known("env", Arity::List, true, false),
    known("passenv", Arity::List, true, true),
    known("instances", ONE, false, true),
    known("per_source", ONE, false, true),
    known("cps", Arity::Fixed(2), false, true),
    known("max_load", ONE, false, true),
    known("nice", ONE, false, false),
    known("umask", ONE, false, true),
    known("groups", ONE, false, true),
    known("only_from", Arity::List, true, true),
    known("no_access", Arity::List, true, true),
    known("access_times", Arity::List, false, false),
    known("banner", ONE, false, true),
    known("banner_success", ONE, false, true),
    known("banner_fail", ONE, false, true),
    known("log_type", Arity::List, false, true),
    known("log_on_success", Arity::List, true, true),
    known("log_on_failure", Arity::List, true, true),
    known("rlimit_as", ONE, false, false),
    known("rlimit_cpu", ONE, false, false),
    known("rlimit_data", ONE, false, false),
    known("rlimit_rss", ONE, false, false),
    known("rlimit_stack", ONE, false, false),
    known("rlimit_files", ONE, false, false),
    known("rlimit_core", ONE, false, false),
    known("rlimit_nproc", ONE, false, false),
    known("deny_time", ONE, false, false),
    known("libwrap", ONE, false, false),
    known("mdns", ONE, false, false),
    known("rpc_version", ONE, false, false),
    known("rpc_number", ONE, false, false),
    known("disabled", Arity::List, true, true),
    known("enabled", Arity::List, true, true),
];

fn lookup(name: &str) -> Option<&'static Known> {
    KNOWN.iter().find(|k| k.name == name)
}

/// Defaults that services inherit. log_type and log_on_* are left out: they
/// only ever become comments, once, in spawnd.yaml; disabled/enabled are
/// lists of services, not settings.
const INHERITED: &[&str] = &[
    "bind",
    "interface",
    "v6only",
    "passenv",
    "instances",
    "per_source",
    "cps",
    "max_load",
    "umask",
    "groups",
    "only_from",
    "no_access",
    "banner",
    "banner_success",
    "banner_fail",
];

/// One attribute's value after xinetd's assignment rules.
#[derive(Debug, Clone)]
struct Value {
    values: Vec<String>,
    file: String,
    line: usize,
    /// Taken from `defaults` (this is the defaults' file and line).
    inherited: bool,
    /// Text after a `#` on the line (see `split_comment`).
    comment: Option<String>,
}

impl Value {
    fn first(&self) -> &str {
        self.values.first().map_or("", String::as_str)
    }

    /// The note written beside a value: where an inherited one came from,
    /// and the admin's own trailing comment.
    fn note(&self) -> Option<String> {
        let from = self
            .inherited
            .then(|| format!("from defaults ({}:{})", self.file, self.line));
        match (from, &self.comment) {
            (Some(from), Some(comment)) => Some(format!("{from}; {comment}")),
            (Some(from), None) => Some(from),
            (None, Some(comment)) => Some(comment.clone()),
            (None, None) => None,
        }
    }

    fn noted(&self, text: String) -> Noted<String> {
        Noted {
            value: text,
            note: self.note(),
        }
    }
}

type Table = HashMap<&'static str, Value>;

/// Splits off a trailing `# ...`. xinetd has no such comments: it passes
/// them on as values, which for single-valued attributes it then ignores
/// (ctf_xinetd's `per_source = 10 # ...` works that way). For server_args
/// the words really reach the program, so they are kept there, with a
/// warning.
fn split_comment(
    attr: &Attr,
    arity: Arity,
    file: &str,
    diags: &mut Diags,
) -> (Vec<String>, Option<String>) {
    let Some(at) = attr.values.iter().position(|v| v.starts_with('#')) else {
        return (attr.values.clone(), None);
    };
    let comment = attr.values[at..].join(" ");
    if arity == Arity::Args {
        diags.warn(
            file,
            attr.line,
            format!(
                "server_args: '{comment}' is passed to the program as arguments \
                 (xinetd has no comments after values); kept"
            ),
        );
        return (attr.values.clone(), None);
    }
    let text = comment.trim_start_matches('#').trim().to_string();
    (
        attr.values[..at].to_vec(),
        (!text.is_empty()).then_some(text),
    )
}

/// Applies one block's lines to `table`. In `defaults` the list attributes
/// accumulate (xinetd: "cumulative effect", `=` acts as `+=`); in a service
/// `+=`/`-=` start from the defaults' value.
fn resolve(
    block: &Block,
    file: &str,
    table: &mut Table,
    defaults: Option<&Table>,
    diags: &mut Diags,
) {
    let in_defaults = block.kind == BlockKind::Defaults;
    let mut set_here: HashSet<&'static str> = HashSet::new();
    for attr in &block.attrs {
        let Some(known) = lookup(&attr.name) else {
            continue; // reported by the mappers, which keep it as a comment
        };
        if attr.op != Op::Set && !known.set_ops {
            diags.error(
                file,
                attr.line,
                format!(
                    "'{}' takes only '=' (xinetd allows '+=' and '-=' only for only_from, \
                     no_access, log_on_success, log_on_failure, passenv and env)",
                    attr.name
                ),
            );
            continue;
        }
        if attr.op == Op::Remove && known.name == "env" {
            diags.error(file, attr.line, "'env' does not take '-=' (as in xinetd)");
            continue;
        }
        if in_defaults && !known.in_defaults {
            continue; // reported by the defaults mapper
        }
        let (values, comment) = split_comment(attr, known.arity, file, diags);
        if let Arity::Fixed(n) = known.arity {
            if values.len() < n {
                diags.error(
                    file,
                    attr.line,
                    format!(
                        "'{}' needs {n} value{}",
                        attr.name,
                        if n == 1 { "" } else { "s" }
                    ),
                );
                continue;
            }
            if values.len() > n {
                diags.warn(
                    file,
                    attr.line,
                    format!(
                        "'{}' takes {n} value{}; xinetd ignores the rest ('{}'), and so does spawnd convert",
                        attr.name,
                        if n == 1 { "" } else { "s" },
                        values[n..].join(" ")
                    ),
                );
            }
            if !in_defaults && set_here.contains(known.name) {
                if let Some(previous) = table.get(known.name) {
                    diags.warn(
                        file,
                        attr.line,
                        format!(
                            "'{}' is set again (first on line {}); the last value is used",
                            attr.name, previous.line
                        ),
                    );
                }
            }
            set_here.insert(known.name);
            table.insert(
                known.name,
                Value {
                    values: values[..n].to_vec(),
                    file: file.to_string(),
                    line: attr.line,
                    inherited: false,
                    comment,
                },
            );
            continue;
        }
        // Lists.
        let accumulate = in_defaults || set_here.contains(known.name);
        let mut current = match table.get(known.name) {
            Some(value) if accumulate => value.values.clone(),
            _ if attr.op != Op::Set && !in_defaults => defaults
                .and_then(|d| d.get(known.name))
                .map(|v| v.values.clone())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        match attr.op {
            Op::Set | Op::Add => {
                for value in values {
                    if !current.contains(&value) || known.arity == Arity::Args {
                        current.push(value);
                    }
                }
            }
            Op::Remove => {
                for value in &values {
                    let before = current.len();
                    current.retain(|v| v != value);
                    if current.len() == before {
                        diags.warn(
                            file,
                            attr.line,
                            format!("'{} -= {value}': '{value}' was not in the list", attr.name),
                        );
                    }
                }
            }
        }
        set_here.insert(known.name);
        table.insert(
            known.name,
            Value {
                values: current,
                file: file.to_string(),
                line: attr.line,
                inherited: false,
                comment,
            },
        );
    }
}

/// The xinetd defaults, resolved, with where they came from.
#[derive(Default)]
struct DefaultsSeen {
    table: Table,
    first: Option<(Origin, Vec<String>)>,
    /// Every defaults block, for its comments.
    blocks: Vec<(String, Block)>,
}

pub fn convert(files: &[ParsedFile], db: &ServicesDb, diags: &mut Diags) -> Conversion {
    let mut defaults = DefaultsSeen::default();
    for parsed in files {
        for entry in &parsed.entries {
            if let Entry::Block(block) = entry {
                if block.kind == BlockKind::Defaults {
                    if let Some((first, _)) = &defaults.first {
                        diags.warn(
                            &parsed.file,
                            block.line,
                            format!(
                                "a second 'defaults' entry (the first is at {}:{}); \
                                 both are applied",
                                first.file, first.line
                            ),
                        );
                    } else {
                        defaults.first = Some((
                            Origin {
                                file: parsed.file.clone(),
                                line: block.line,
                            },
                            block.preamble.clone(),
                        ));
                    }
                    resolve(block, &parsed.file, &mut defaults.table, None, diags);
                    defaults.blocks.push((parsed.file.clone(), block.clone()));
                }
            }
        }
    }

    let mut units = Vec::new();
    let mut unlimited_overrides: HashSet<&'static str> = HashSet::new();
    for parsed in files {
        for entry in &parsed.entries {
            let Entry::Block(block) = entry else { continue };
            let BlockKind::Service(name) = &block.kind else {
                continue;
            };
            let mut table = Table::new();
            resolve(
                block,
                &parsed.file,
                &mut table,
                Some(&defaults.table),
                diags,
            );
            for key in INHERITED {
                if table.contains_key(key) {
                    continue;
                }
                // bind and interface are one setting.
                if (*key == "bind" && table.contains_key("interface"))
                    || (*key == "interface" && table.contains_key("bind"))
                {
                    continue;
                }
                if let Some(value) = defaults.table.get(key) {
                    let mut value = value.clone();
                    value.inherited = true;
                    value.comment = None;
                    table.insert(key, value);
                }
            }
            for key in ["instances", "per_source"] {
                if defaults.table.contains_key(key)
                    && table.get(key).is_some_and(|v| {
                        !v.inherited && v.first().eq_ignore_ascii_case("UNLIMITED")
                    })
                {
                    unlimited_overrides.insert(key);
                }
            }
            let mapper = ServiceMapper {
                name,
                block,
                file: &parsed.file,
                table: &table,
                defaults: &defaults.table,
                db,
            };
            if let Some(unit) = mapper.map(diags) {
                units.push(unit);
            }
        }
    }

    let defaults_out = defaults.first.as_ref().map(|(origin, preamble)| {
        map_defaults(origin, preamble, &defaults, &unlimited_overrides, diags)
    });
    Conversion {
        defaults: defaults_out,
        units,
    }
}

fn kept_text(attr: &Attr, why: &str) -> String {
    let values = attr.values.join(" ");
    let sep = if values.is_empty() { "" } else { " " };
    format!(
        "xinetd: {} {}{sep}{values} ({why})",
        attr.name,
        attr.op.as_str()
    )
}

/// spawnd.yaml's `defaults:` from xinetd's defaults.
fn map_defaults(
    origin: &Origin,
    preamble: &[String],
    seen: &DefaultsSeen,
    unlimited_overrides: &HashSet<&'static str>,
    diags: &mut Diags,
) -> Defaults {
    let table = &seen.table;
    let mut out = Defaults {
        origin: origin.clone(),
        preamble: preamble.to_vec(),
        limits: Limits::default(),
        access: Access::default(),
        kept: Vec::new(),
    };
    out.limits = limits(table, diags);
    for key in unlimited_overrides {
        let Some(value) = table.get(key) else {
            continue;
        };
        match *key {
            "instances" => out.limits.instances = None,
            _ => out.limits.per_source = None,
        }
        out.kept.push(format!(
            "xinetd: {key} = {} (left out here: a service sets {key} = UNLIMITED, which spawnd.yaml \
             cannot override; every other service carries it)",
            value.first()
        ));
    }
    out.access = access(table, None, diags);
    // Comments for what spawnd.yaml's defaults cannot hold, in input order.
    for (file, block) in &seen.blocks {
        for attr in &block.attrs {
            let why = match lookup(&attr.name) {
                None => {
                    diags.warn(
                        file,
                        attr.line,
                        format!("unknown attribute '{}' in defaults; kept as a comment", attr.name),
                    );
                    "not supported: unknown attribute".to_string()
                }
                Some(k) if !k.in_defaults => {
                    diags.warn(
                        file,
                        attr.line,
                        format!(
                            "xinetd does not take '{}' in defaults; kept as a comment",
                            attr.name
                        ),
                    );
                    "ignored: xinetd does not take this in defaults".to_string()
                }
                Some(k) => match k.name {
                    "log_type" => {
                        diags.warn(
                            file,
                            attr.line,
                            "log_type is not supported: spawnd logs to its own log (spawnd.yaml `log:`); kept as a comment",
                        );
                        "not supported: spawnd logs to its own log, see `log:`".to_string()
                    }
                    "log_on_success" | "log_on_failure" => {
                        "spawnd logs starts and refusals with pid and address, and failed exits with status and duration; every exit with -v".to_string()
                    }
                    "bind" | "interface" | "v6only" => {
                        "applied to the listen: addresses of every converted service".to_string()
                    }
                    "umask" | "groups" | "passenv" | "banner" | "banner_success" | "banner_fail" => {
                        "written into every converted service; spawnd.yaml's defaults cannot hold it".to_string()
                    }
                    "disabled" | "enabled" => {
                        "applied: the services concerned are written with disabled: true".to_string()
                    }
                    _ => continue, // a limits: or access: key above
                },
            };
            out.kept.push(kept_text(attr, &why));
        }
    }
    out
}

/// The limits keys from a resolved table. Errors in inherited values are
/// left to the defaults mapper, so each is reported once.
fn limits(table: &Table, diags: &mut Diags) -> Limits {
    let mut l = Limits::default();
    let mut fail = |value: &Value, message: String| {
        if !value.inherited {
            diags.error(&value.file, value.line, message);
        }
    };
    for key in ["instances", "per_source"] {
        let Some(value) = table.get(key) else {
            continue;
        };
        let text = value.first();
        if text.eq_ignore_ascii_case("UNLIMITED") {
            continue;
        }
        match text.parse::<u32>() {
            Ok(n) => {
                let noted = Some(value.noted(n.to_string()));
                if key == "instances" {
                    l.instances = noted;
                } else {
                    l.per_source = noted;
                }
            }
            Err(_) => fail(
                value,
                format!("{key} = {text}: expected a number or UNLIMITED"),
            ),
        }
    }
    if let Some(value) = table.get("cps") {
        let rate = value.values[0].parse::<u32>();
        let pause = value.values.get(1).map(|p| p.parse::<u32>());
        match (rate, pause) {
            (Ok(rate), Some(Ok(pause))) if rate > 0 => {
                l.rate = Some(value.noted(format!("{rate}/s")));
                l.rate_pause = Some(value.noted(format!("{pause}s")));
            }
            _ => fail(
                value,
                format!(
                    "cps = {}: expected two numbers, connections per second and seconds to pause",
                    value.values.join(" ")
                ),
            ),
        }
    }
    if let Some(value) = table.get("max_load") {
        match value.first().parse::<f64>() {
            Ok(load) if load > 0.0 && load.is_finite() => {
                l.max_load = Some(value.noted(value.first().to_string()));
            }
            _ => fail(
                value,
                format!("max_load = {}: expected a positive number", value.first()),
            ),
        }
    }
    // rlimit_*: UNLIMITED is the same as not setting the limit.
    // rlimit_data, _rss and _stack have no key: see keep_unsupported.
    let rlimits = [
        ("rlimit_as", "memory"),
        ("rlimit_cpu", "cpu"),
        ("rlimit_files", "files"),
        ("rlimit_nproc", "processes"),
        ("rlimit_core", "core"),
    ];
    for (attr, key) in rlimits {
        let Some(value) = table.get(attr) else {
            continue;
        };
        let text = value.first();
        if text.eq_ignore_ascii_case("UNLIMITED") {
            continue;
        }
        let parsed = match key {
            "memory" | "core" => parse_size(text).map(size_text),
            "cpu" => text.parse::<u64>().ok().map(|s| format!("{s}s")),
            _ => text.parse::<u64>().ok().map(|n| n.to_string()),
        };
        let Some(parsed) = parsed else {
            fail(
                value,
                format!("{attr} = {text}: expected a number or UNLIMITED"),
            );
            continue;
        };
        let noted = Some(value.noted(parsed));
        match key {
            "memory" => l.memory = noted,
            "cpu" => l.cpu = noted,
            "files" => l.files = noted,
            "processes" => l.processes = noted,
            _ => l.core = noted,
        }
    }
    l
}

/// xinetd sizes: bytes, or with K or M (either case); G accepted too.
fn parse_size(text: &str) -> Option<u64> {
    let (digits, unit) = match text.char_indices().last()? {
        (i, 'k' | 'K') => (&text[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&text[..i], 1 << 20),
        (i, 'g' | 'G') => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

/// access: from only_from, no_access and access_times. `service` is the
/// service name for messages, None for defaults.
fn access(table: &Table, service: Option<&str>, diags: &mut Diags) -> Access {
    let mut a = Access::default();
    for (key, is_allow) in [("only_from", true), ("no_access", false)] {
        let Some(value) = table.get(key) else {
            continue;
        };
        let mut names = Vec::new();
        let mut nets = Vec::new();
        for token in &value.values {
            match addr::parse(token) {
                Ok(HostSpec::Nets(list)) => {
                    for mut net in list {
                        if value.inherited {
                            net.note = Some(match net.note {
                                Some(n) => format!("{n}, from defaults"),
                                None => "from defaults".to_string(),
                            });
                        }
                        nets.push(net);
                    }
                }
                Ok(HostSpec::Name(name)) => names.push(name),
                Err(message) => {
                    if !value.inherited {
                        diags.error(&value.file, value.line, format!("{key}: {message}"));
                    }
                }
            }
        }
        if !names.is_empty() {
            let list = names.join(" ");
            if !value.inherited || service.is_none() {
                diags.warn(
                    &value.file,
                    value.line,
                    format!(
                        "{key}: host names are not supported (spawnd matches addresses); \
                         kept as a comment: {list}"
                    ),
                );
            }
            a.comments.push(format!(
                "xinetd: {key} {list} (not supported: host names; spawnd matches client addresses, write their addresses)"
            ));
        }
        if is_allow {
            if nets.is_empty() {
                // An only_from with nothing usable must not open the service
                // to everyone: xinetd let nobody in with an empty list.
                let why = if value.values.is_empty() {
                    "xinetd: only_from with no value lets nobody in"
                } else {
                    "xinetd: only_from has no address spawnd can use: nobody is let in"
                };
                if !value.inherited || service.is_none() {
                    diags.warn(
                        &value.file,
                        value.line,
                        format!("{why}; written as deny: everyone"),
                    );
                }
                a.deny.push(Noted::with("0.0.0.0/0".to_string(), why));
                a.deny.push(Noted::with("::/0".to_string(), why));
            }
            a.allow.extend(nets);
        } else {
            a.deny.extend(nets);
        }
    }
    if let Some(value) = table.get("access_times") {
        for token in &value.values {
            match access_time(token) {
                Some((text, changed)) => a.times.push(if changed {
                    Noted::with(text, format!("xinetd: {token}"))
                } else {
                    Noted::plain(text)
                }),
                None => diags.error(
                    &value.file,
                    value.line,
                    format!("access_times: '{token}' is not HH:MM-HH:MM"),
                ),
            }
        }
    }
    // xinetd lets the more specific of only_from and no_access decide;
    // spawnd's deny always wins. Say where that changes the answer.
    if let (Some(allow_value), Some(deny_value)) = (table.get("only_from"), table.get("no_access"))
    {
        for allow in &a.allow {
            let Some(inner) = Cidr::parse(&allow.value) else {
                continue;
            };
            for deny in &a.deny {
                let Some(outer) = Cidr::parse(&deny.value) else {
                    continue;
                };
                if outer.contains(&inner) && inner.prefix > outer.prefix {
                    let (file, line) = if allow_value.inherited {
                        (&deny_value.file, deny_value.line)
                    } else {
                        (&allow_value.file, allow_value.line)
                    };
                    diags.warn(
                        file,
                        line,
                        format!(
                            "only_from {} is inside no_access {}: xinetd let it in (the more \
                             specific entry wins), spawnd refuses it (deny wins); remove it \
                             from deny: or split the deny: network if it must stay allowed",
                            allow.value, deny.value
                        ),
                    );
                }
            }
        }
    }
    a
}

/// `8:00-17:30` -> `08:00-17:30`; xinetd's `24:00` end becomes `23:59`
/// (bounds are inclusive). Returns the text and whether it changed.
fn access_time(token: &str) -> Option<(String, bool)> {
    let (from, to) = token.split_once('-')?;
    let hm = |t: &str, end: bool| -> Option<String> {
        let (h, m) = t.split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        if end && h == 24 && m == 0 {
            return Some("23:59".to_string());
        }
        (h < 24 && m < 60).then(|| format!("{h:02}:{m:02}"))
    };
    let text = format!("{}-{}", hm(from, false)?, hm(to, true)?);
    let changed = text != token;
    Some((text, changed))
}

fn yes_no(value: &Value, key: &str, diags: &mut Diags) -> Option<bool> {
    match value.first().to_ascii_lowercase().as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        other => {
            if !value.inherited {
                diags.error(
                    &value.file,
                    value.line,
                    format!("{key} = {other}: expected yes or no"),
                );
            }
            None
        }
    }
}

const TYPES: &[&str] = &["INTERNAL", "UNLISTED", "RPC", "TCPMUX", "TCPMUXPLUS"];
const FLAGS: &[&str] = &[
    "INTERCEPT",
    "NORETRY",
    "IDONLY",
    "NAMEINARGS",
    "NODELAY",
    "KEEPALIVE",
    "NOLIBWRAP",
    "SENSOR",
    "IPV4",
    "IPV6",
    "LABELED",
    "REUSE",
    "DISABLE",
];
const BUILTINS: &[&str] = &["echo", "discard", "daytime", "time", "chargen"];

struct ServiceMapper<'a> {
    name: &'a str,
    block: &'a Block,
    file: &'a str,
    table: &'a Table,
    defaults: &'a Table,
    db: &'a ServicesDb,
}

impl ServiceMapper<'_> {
    fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key)
    }

    fn one(&self, key: &str) -> Option<&str> {
        self.get(key).map(Value::first)
    }

    fn origin(&self) -> Origin {
        Origin {
            file: self.file.to_string(),
            line: self.block.line,
        }
    }

    fn not_converted(
        &self,
        id: &str,
        label: &str,
        reason: String,
        diags: &mut Diags,
    ) -> Option<Unit> {
        diags.warn(
            self.file,
            self.block.line,
            format!("{label} not converted: {reason}; kept as a commented copy"),
        );
        Some(Unit::NotConverted(NotConverted {
            name: id.to_string(),
            origin: self.origin(),
            label: label.to_string(),
            reason,
            original: self
                .block
                .preamble
                .iter()
                .chain(&self.block.raw)
                .cloned()
                .collect(),
        }))
    }

    /// The block as a spawnd service, section by section (each below);
    /// `None` when it has errors.
    fn map(&self, diags: &mut Diags) -> Option<Unit> {
        let file = self.file;
        let id = self.one("id").unwrap_or(self.name).to_string();
        let label = if id == self.name {
            format!("service {}", self.name)
        } else {
            format!("service {}, id {id}", self.name)
        };
        let upper = |key: &str| -> Vec<String> {
            self.get(key)
                .map(|v| v.values.iter().map(|s| s.to_ascii_uppercase()).collect())
                .unwrap_or_default()
        };
        let types = upper("type");
        let flags = upper("flags");
        for t in &types {
            if !TYPES.contains(&t.as_str()) {
                if let Some(v) = self.get("type") {
                    diags.error(
                        file,
                        v.line,
                        format!(
                            "type = {t}: expected INTERNAL, UNLISTED, RPC, TCPMUX or TCPMUXPLUS"
                        ),
                    );
                }
            }
        }
        let has_type = |t: &str| types.iter().any(|x| x == t);
        let has_flag = |f: &str| flags.iter().any(|x| x == f);

        let (socket, internal) = match self.socket_kind(&id, &label, &has_type, &has_flag, diags) {
            Ok(kind) => kind,
            Err(stop) => return *stop,
        };
        let protocol = self.protocol(socket, diags)?;
        let port = self.port(protocol, has_type("UNLISTED"), diags)?;

        let mut service = Service::new(
            label.clone(),
            self.origin(),
            socket,
            Action::Internal(String::new()),
        );
        service.name = id.clone();
        service.preamble = self.block.preamble.clone();
        service.inner_comments = self.block.inner_comments.clone();
        service.listen = match self.listen(port, has_flag("IPV4"), has_flag("IPV6"), diags) {
            Ok(listen) => listen,
            Err(reason) => return self.not_converted(&id, &label, reason, diags),
        };
        service.action =
            match self.what_to_run(&id, &label, socket, internal, has_flag("NAMEINARGS"), diags) {
                Ok(action) => action,
                Err(stop) => return *stop,
            };
        // wait: meaningless for internal services and redirects.
        if let Action::Exec(_) = service.action {
            self.wait(&mut service, socket, &label, diags)?;
        }
        let in_process = !matches!(service.action, Action::Exec(_));
        if !in_process {
            self.credentials(&mut service, &label, diags);
        }
        self.environment(&mut service, diags);
        if !in_process {
            self.process_controls(&mut service, diags);
        }
        service.banner = self.get("banner").map(|v| v.noted(v.first().to_string()));
        service.banner_success = self
            .get("banner_success")
            .map(|v| v.noted(v.first().to_string()));
        service.banner_fail = self
            .get("banner_fail")
            .map(|v| v.noted(v.first().to_string()));
        service.limits = limits(self.table, diags);
        service.access = access(self.table, Some(self.name), diags);
        service.disabled = self.disabled(&id, has_flag("DISABLE"), diags);
        self.keep_unsupported(&mut service, in_process, internal, diags);
        // tcpd, run by xinetd, checks the rules itself, NOLIBWRAP or not.
        let via_tcpd = matches!(&service.action, Action::Exec(_))
            && self
                .one("server")
                .is_some_and(|s| s.rsplit('/').next() == Some("tcpd"));
        if !has_flag("NOLIBWRAP") || via_tcpd {
            service.tcp_wrappers = Some(self.libwrap_name(&id, internal, has_flag("NAMEINARGS")));
        }
        Some(Unit::Service(Box::new(service)))
    }

    /// The socket type, and whether the service is one of xinetd's
    /// internal ones; `Err` with what `map` returns for a service spawnd
    /// cannot serve (RPC, TCPMUX, SENSOR, raw sockets...).
    fn socket_kind(
        &self,
        id: &str,
        label: &str,
        has_type: &dyn Fn(&str) -> bool,
        has_flag: &dyn Fn(&str) -> bool,
        diags: &mut Diags,
    ) -> Result<(Socket, bool), Stop> {
        let (file, line) = (self.file, self.block.line);
        let socket = match self.one("socket_type") {
            Some("stream") => Socket::Stream,
            Some("dgram") => Socket::Dgram,
            Some(other @ ("raw" | "seqpacket" | "rdm")) => {
                let reason =
                    format!("socket_type = {other}: spawnd serves stream and dgram sockets only");
                return Err(Box::new(self.not_converted(id, label, reason, diags)));
            }
            Some(other) => {
                let at = self.get("socket_type").map_or(line, |v| v.line);
                diags.error(
                    file,
                    at,
                    format!("socket_type = {other}: expected stream or dgram"),
                );
                return Err(Box::new(None));
            }
            None => {
                diags.error(
                    file,
                    line,
                    format!("{label}: no socket_type (xinetd requires one)"),
                );
                return Err(Box::new(None));
            }
        };
        if has_type("RPC") {
            let reason = "RPC services (type = RPC) are registered with the portmapper, which spawnd does not do".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        if has_type("TCPMUX") || has_type("TCPMUXPLUS") {
            let reason = "TCPMUX services (RFC 1078) are not supported".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        if has_flag("SENSOR") {
            let reason =
                "flags = SENSOR (deny clients who touch this port) is not supported".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        let internal = has_type("INTERNAL");
        if internal && !BUILTINS.contains(&self.name) {
            let reason = format!(
                "xinetd's internal '{}' service has no spawnd counterpart (spawnd has {})",
                self.name,
                BUILTINS.join(", ")
            );
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }

        if has_type("RPC") {
            let reason = "RPC services (type = RPC) are registered with the portmapper, which spawnd does not do".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        if has_type("TCPMUX") || has_type("TCPMUXPLUS") {
            let reason = "TCPMUX services (RFC 1078) are not supported".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        if has_flag("SENSOR") {
            let reason =
                "flags = SENSOR (deny clients who touch this port) is not supported".to_string();
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        let internal = has_type("INTERNAL");
        if internal && !BUILTINS.contains(&self.name) {
            let reason = format!(
                "xinetd's internal '{}' service has no spawnd counterpart (spawnd has {})",
                self.name,
                BUILTINS.join(", ")
            );
            return Err(Box::new(self.not_converted(id, label, reason, diags)));
        }
        Ok((socket, internal))
    }

    /// `protocol`, which must go with the socket type.
    fn protocol(&self, socket: Socket, diags: &mut Diags) -> Option<&'static str> {
        let (file, line) = (self.file, self.block.line);
        let protocol = match self.one("protocol") {
            None => match socket {
                Socket::Stream => "tcp",
                Socket::Dgram => "udp",
            },
            Some(p @ ("tcp" | "udp")) => {
                let expected = if socket == Socket::Stream {
                    "tcp"
                } else {
                    "udp"
                };
                if p != expected {
                    if let Some(v) = self.get("protocol") {
                        diags.warn(
                            file,
                            v.line,
                            format!(
                                "protocol = {p} does not go with socket_type = {}; using {expected}",
                                socket.as_str()
                            ),
                        );
                    }
                }
                expected
            }
            Some(other) => {
                let at = self.get("protocol").map_or(line, |v| v.line);
                diags.error(
                    file,
                    at,
                    format!("protocol = {other}: spawnd serves tcp and udp"),
                );
                return None;
            }
        };

        Some(protocol)
    }

    /// What to run: an internal service, a redirect or a program.
    fn what_to_run(
        &self,
        id: &str,
        label: &str,
        socket: Socket,
        internal: bool,
        name_in_args: bool,
        diags: &mut Diags,
    ) -> Result<Action, Stop> {
        let (file, line) = (self.file, self.block.line);
        let redirect = self.get("redirect");
        Ok(if internal {
            Action::Internal(self.name.to_string())
        } else if let Some(value) = redirect {
            if socket != Socket::Stream {
                diags.error(
                    file,
                    value.line,
                    "redirect works for stream (tcp) services only",
                );
                return Err(Box::new(None));
            }
            let (host, target_port) = (&value.values[0], &value.values[1]);
            if target_port.parse::<u16>().map_or(true, |p| p == 0) {
                diags.error(
                    file,
                    value.line,
                    format!("redirect: '{target_port}' is not a port number"),
                );
                return Err(Box::new(None));
            }
            let target = match host.parse::<IpAddr>() {
                Ok(IpAddr::V6(v6)) => format!("[{v6}]:{target_port}"),
                Ok(IpAddr::V4(v4)) => format!("{v4}:{target_port}"),
                Err(_) => {
                    let reason = format!(
                        "redirect = {host} {target_port}: spawnd redirects to IP addresses, not host names"
                    );
                    return Err(Box::new(self.not_converted(id, label, reason, diags)));
                }
            };
            Action::Redirect(target)
        } else if let Some(server) = self.one("server") {
            let args = self
                .get("server_args")
                .map(|v| v.values.clone())
                .unwrap_or_default();
            let argv = if name_in_args {
                let (argv, warning) = exec_argv(server, &args);
                if let Some(warning) = warning {
                    let at = self.get("server_args").map_or(line, |v| v.line);
                    diags.warn(file, at, format!("NAMEINARGS: {warning}"));
                }
                argv
            } else {
                std::iter::once(server.to_string()).chain(args).collect()
            };
            if !server.starts_with('/') {
                let at = self.get("server").map_or(line, |v| v.line);
                diags.warn(
                    file,
                    at,
                    format!("server = {server}: spawnd needs an absolute path"),
                );
            }
            Action::Exec(argv)
        } else {
            diags.error(
                file,
                line,
                format!("{label}: no server (and neither type = INTERNAL nor redirect)"),
            );
            return Err(Box::new(None));
        })
    }

    /// `wait`, for a service with a program.
    fn wait(
        &self,
        service: &mut Service,
        socket: Socket,
        label: &str,
        diags: &mut Diags,
    ) -> Option<()> {
        let (file, line) = (self.file, self.block.line);
        match self.get("wait") {
            Some(value) => {
                let wait = yes_no(value, "wait", diags)?;
                if socket == Socket::Dgram && !wait {
                    diags.warn(
                        file,
                        value.line,
                        "wait = no on a dgram service: spawnd starts datagram programs \
                         with wait: true (one at a time, reading the socket itself)",
                    );
                    service.wait = Some(Noted::with(true, "xinetd: wait = no"));
                } else {
                    service.wait = Some(Noted::plain(wait));
                }
            }
            None => {
                let wait = socket == Socket::Dgram;
                diags.warn(
                    file,
                    line,
                    format!("{label}: no wait (xinetd requires one); written as wait: {wait}"),
                );
                service.wait = Some(Noted::with(wait, "not set in the xinetd file"));
            }
        }
        Some(())
    }

    /// `user`, `group` and `groups`, for a service with a program.
    fn credentials(&self, service: &mut Service, label: &str, diags: &mut Diags) {
        let (file, line) = (self.file, self.block.line);
        {
            service.user = self.get("user").map(|v| v.noted(v.first().to_string()));
            service.group = self.get("group").map(|v| v.noted(v.first().to_string()));
            if service.user.is_none() {
                diags.warn(
                    file,
                    line,
                    format!("{label}: no user (xinetd requires one); spawnd runs it as the user spawnd runs as"),
                );
            }
        }
        {
            // xinetd gives the user's supplementary groups only with
            // groups = yes; spawnd gives them unless told otherwise.
            let groups = self.get("groups");
            match groups.map(|v| (yes_no(v, "groups", diags), v)) {
                Some((Some(true), _)) => {}
                Some((None, _)) => {}
                Some((Some(false), value)) => {
                    service.groups = Some(Noted {
                        value: Vec::new(),
                        note: Some(
                            value
                                .note()
                                .unwrap_or_else(|| "xinetd: groups = no".to_string()),
                        ),
                    });
                }
                None => {
                    service.groups = Some(Noted::with(
                        Vec::new(),
                        "no supplementary groups, as xinetd without groups = yes",
                    ));
                }
            }
        }
    }

    /// `env` and `passenv`.
    fn environment(&self, service: &mut Service, diags: &mut Diags) {
        let file = self.file;
        if let Some(value) = self.get("env") {
            for pair in &value.values {
                match pair.split_once('=') {
                    Some((name, text)) if !name.is_empty() => {
                        service.env.push((name.to_string(), text.to_string()));
                    }
                    _ => {
                        diags.warn(
                            file,
                            value.line,
                            format!("env: '{pair}' is not NAME=VALUE; kept as a comment"),
                        );
                        service
                            .kept
                            .push(format!("xinetd: env {pair} (not NAME=VALUE)"));
                    }
                }
            }
        }
        if let Some(value) = self.get("passenv") {
            service.pass_env = value.values.clone();
            service.pass_env_note = value.note();
        }
    }

    /// `nice` and `umask`, for a service with a program.
    fn process_controls(&self, service: &mut Service, diags: &mut Diags) {
        let file = self.file;
        if let Some(value) = self.get("nice") {
            match value.first().parse::<i32>() {
                Ok(n) if (-20..=19).contains(&n) => service.nice = Some(value.noted(n.to_string())),
                _ => diags.error(
                    file,
                    value.line,
                    format!("nice = {}: expected -20 to 19", value.first()),
                ),
            }
        }
        if let Some(value) = self.get("umask") {
            let text = value.first();
            if !text.is_empty() && text.len() <= 4 && text.chars().all(|c| ('0'..='7').contains(&c))
            {
                service.umask = Some(value.noted(format!("{text:0>3}")));
            } else if !value.inherited {
                diags.error(
                    file,
                    value.line,
                    format!("umask = {text}: expected an octal number such as 022"),
                );
            }
        }
    }

    /// The port: from `port`, else /etc/services by service name.
    fn port(&self, protocol: &str, unlisted: bool, diags: &mut Diags) -> Option<u16> {
        let known = self.db.lookup(self.name, protocol);
        match self.get("port") {
            Some(value) => {
                let port = match value.first().parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => {
                        diags.error(
                            self.file,
                            value.line,
                            format!("port = {}: expected 1 to 65535", value.first()),
                        );
                        return None;
                    }
                };
                if let Some(listed) = known.filter(|k| *k != port && !unlisted) {
                    diags.warn(
                        self.file,
                        value.line,
                        format!(
                            "port = {port}, but /etc/services has {}/{protocol} on {listed} \
                             (xinetd refuses that unless type = UNLISTED); using {port}",
                            self.name
                        ),
                    );
                }
                Some(port)
            }
            None => {
                if unlisted {
                    diags.error(self.file, self.block.line, "type = UNLISTED needs a port");
                    return None;
                }
                if known.is_none() {
                    diags.error(
                        self.file,
                        self.block.line,
                        format!(
                            "service {}: no port, and '{}/{protocol}' is not in /etc/services; add 'port ='",
                            self.name, self.name
                        ),
                    );
                }
                known
            }
        }
    }

    /// listen: from bind/interface, the IPv4/IPv6 flags and v6only. Without
    /// bind or flags, xinetd listens on IPv4 only.
    /// Err: a reason not to convert (a host name spawnd cannot listen on).
    fn listen(
        &self,
        port: u16,
        ipv4: bool,
        ipv6: bool,
        diags: &mut Diags,
    ) -> Result<Vec<Noted<String>>, String> {
        let v6only = self.get("v6only").and_then(|v| yes_no(v, "v6only", diags));
        let bind = self.get("bind").or_else(|| self.get("interface"));
        if let Some(value) = bind {
            let text = value.first();
            let addr: Option<IpAddr> = if text == "localhost" {
                Some(if ipv6 {
                    IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
                } else {
                    IpAddr::from([127, 0, 0, 1])
                })
            } else {
                text.parse().ok()
            };
            let Some(addr) = addr else {
                return Err(format!(
                    "bind = {text}: spawnd listens on IP addresses, not host names"
                ));
            };
            let note = value.note();
            let text = match addr {
                IpAddr::V4(v4) => format!("{v4}:{port}"),
                IpAddr::V6(v6) if v6.is_unspecified() && v6only != Some(true) => {
                    format!("*:{port}")
                }
                IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            };
            return Ok(vec![Noted { value: text, note }]);
        }
        Ok(if ipv6 {
            if v6only == Some(true) {
                vec![Noted::with(
                    format!("[::]:{port}"),
                    "flags = IPv6, v6only = yes",
                )]
            } else {
                vec![Noted::with(
                    format!("*:{port}"),
                    "flags = IPv6: IPv4 and IPv6",
                )]
            }
        } else if ipv4 {
            vec![Noted::plain(format!("0.0.0.0:{port}"))]
        } else {
            vec![Noted::with(
                format!("0.0.0.0:{port}"),
                "IPv4 only, as xinetd without flags = IPv6",
            )]
        })
    }

    fn disabled(&self, id: &str, flag: bool, diags: &mut Diags) -> Option<Noted<bool>> {
        if let Some(value) = self.get("disable") {
            if yes_no(value, "disable", diags) == Some(true) {
                return Some(Noted::plain(true));
            }
        }
        if flag {
            return Some(Noted::with(true, "xinetd: flags = DISABLE"));
        }
        if let Some(list) = self.defaults.get("disabled") {
            if list.values.iter().any(|v| v == id) {
                return Some(Noted::with(
                    true,
                    format!("listed in defaults' disabled ({}:{})", list.file, list.line),
                ));
            }
        }
        if let Some(list) = self.defaults.get("enabled") {
            if !list.values.iter().any(|v| v == id) {
                return Some(Noted::with(
                    true,
                    format!(
                        "not listed in defaults' enabled ({}:{})",
                        list.file, list.line
                    ),
                ));
            }
        }
        None
    }

    /// `# xinetd: ...` comments, in input order, for attributes (and flags)
    /// without a spawnd key; warnings where behaviour is lost.
    fn keep_unsupported(
        &self,
        service: &mut Service,
        in_process: bool,
        internal: bool,
        diags: &mut Diags,
    ) {
        let file = self.file;
        for attr in &self.block.attrs {
            // Every attribute kept as a comment is warned about: with the
            // reason it is not supported where behaviour is lost, else
            // (below) with the note written beside it.
            let warned = std::cell::Cell::new(false);
            let before = diags.list.len();
            let mut warn = |why: &str| {
                warned.set(true);
                diags.warn(
                    file,
                    attr.line,
                    format!("{} is not supported ({why}); kept as a comment", attr.name),
                );
            };
            let why: String = match attr.name.as_str() {
                "log_type" => {
                    warn("spawnd logs to its own log, see spawnd.yaml `log:`");
                    "not supported: spawnd logs to its own log".into()
                }
                "log_on_success" | "log_on_failure" => {
                    "spawnd logs starts and refusals with pid and address, and failed exits with status and duration; every exit with -v".into()
                }
                "libwrap" => {
                    warn("spawnd does not use TCP Wrappers; put the rules under access:");
                    "not supported: spawnd does not use TCP Wrappers".into()
                }
                "deny_time" => {
                    warn("it goes with flags = SENSOR");
                    "not supported: goes with flags = SENSOR".into()
                }
                "mdns" => "not supported: mDNS registration, which xinetd does on Mac OS X only".into(),
                "rlimit_data" | "rlimit_rss" | "rlimit_stack" => {
                    warn("spawnd sets RLIMIT_AS with limits.memory");
                    "not supported: spawnd limits the address space with limits.memory".into()
                }
                "rpc_version" | "rpc_number" => {
                    warn("spawnd has no RPC services");
                    "not supported: RPC".into()
                }
                "disabled" | "enabled" => {
                    warn("xinetd reads it only in defaults");
                    "ignored: xinetd reads this only in defaults".into()
                }
                "user" | "group" | "groups" | "nice" | "umask" if in_process => {
                    let what = if internal { "internal services" } else { "redirects" };
                    format!("not needed: {what} run inside spawnd")
                }
                "groups" if self.get("groups").is_some_and(|v| v.first().eq_ignore_ascii_case("yes")) => {
                    "spawnd's default: the user's supplementary groups".into()
                }
                "server" | "server_args" if internal || self.get("redirect").is_some() => {
                    let why = if internal {
                        "ignored for type = INTERNAL, as in xinetd"
                    } else {
                        "ignored: redirect takes priority, as in xinetd"
                    };
                    diags.warn(file, attr.line, format!("{} {why}; kept as a comment", attr.name));
                    why.into()
                }
                "flags" => {
                    self.keep_flags(attr, service, diags);
                    continue;
                }
                name if lookup(name).is_none() => {
                    diags.warn(file, attr.line, format!("unknown attribute '{name}'; kept as a comment"));
                    "not supported: unknown attribute".into()
                }
                _ => continue,
            };
            if !warned.get() && diags.list.len() == before {
                diags.warn(
                    file,
                    attr.line,
                    format!("{} kept as a comment: {why}", attr.name),
                );
            }
            service.kept.push(kept_text(attr, &why));
        }
    }

    /// The name xinetd (built with libwrap, as Debian's and Red Hat's are)
    /// checks /etc/hosts.allow and hosts.deny under: `libwrap`, else the
    /// server's name (with NAMEINARGS, the first server_args word), the
    /// id of an internal service, the name of a redirect (xinetd.conf(5)).
    fn libwrap_name(&self, id: &str, internal: bool, name_in_args: bool) -> String {
        let last = |path: &str| path.rsplit('/').next().unwrap_or(path).to_string();
        if let Some(name) = self.one("libwrap") {
            return name.to_string();
        }
        if internal {
            return id.to_string();
        }
        if self.get("redirect").is_some() {
            return self.name.to_string();
        }
        let first_arg = self
            .get("server_args")
            .and_then(|v| v.values.first())
            .map(String::as_str);
        match (name_in_args, first_arg, self.one("server")) {
            (true, Some(argv0), _) => last(argv0),
            (_, _, Some(server)) => last(server),
            _ => self.name.to_string(),
        }
    }

    fn keep_flags(&self, attr: &Attr, service: &mut Service, diags: &mut Diags) {
        for flag in &attr.values {
            let before = diags.list.len();
            let why = match flag.to_ascii_uppercase().as_str() {
                "IPV4" | "IPV6" | "NAMEINARGS" | "DISABLE" | "SENSOR" => continue,
                "REUSE" => "spawnd always sets SO_REUSEADDR",
                "NOLIBWRAP" => "spawnd never uses TCP Wrappers",
                "NORETRY" => "spawnd does not retry a failed fork",
                "KEEPALIVE" | "NODELAY" => {
                    diags.warn(
                        self.file,
                        attr.line,
                        format!("flags {flag} is not supported (spawnd does not set socket options on connections); kept as a comment"),
                    );
                    "not supported: spawnd sets no socket options on connections"
                }
                "INTERCEPT" | "IDONLY" | "LABELED" => {
                    diags.warn(
                        self.file,
                        attr.line,
                        format!("flags {flag} is not supported; kept as a comment"),
                    );
                    // Each of them refuses clients xinetd would otherwise
                    // serve (no identd answer, another security label,
                    // a source that fails the access check later).
                    service.restrictions_lost.push(format!(
                        "{}:{}: flags {flag} restricts who may connect, which spawnd cannot do",
                        self.file, attr.line
                    ));
                    "not supported"
                }
                _ if !FLAGS.contains(&flag.to_ascii_uppercase().as_str()) => {
                    diags.warn(
                        self.file,
                        attr.line,
                        format!("unknown flag '{flag}'; kept as a comment"),
                    );
                    "not supported: unknown flag"
                }
                _ => "not supported",
            };
            if diags.list.len() == before {
                diags.warn(
                    self.file,
                    attr.line,
                    format!("flags {flag} kept as a comment: {why}"),
                );
            }
            service.kept.push(format!("xinetd: flags {flag} ({why})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::xinetd::parse;

    const SERVICES: &str = "echo 7/tcp\necho 7/udp\nrsync 873/tcp\ntftp 69/udp\ndaytime 13/tcp\n";

    fn run(text: &str) -> (Conversion, Vec<String>) {
        let mut diags = Diags::default();
        let entries = parse::parse(text, "f", &mut diags);
        let files = vec![ParsedFile {
            file: "f".into(),
            entries,
        }];
        let conversion = convert(&files, &ServicesDb::parse(SERVICES), &mut diags);
        (
            conversion,
            diags.list.iter().map(ToString::to_string).collect(),
        )
    }

    fn only_service(text: &str) -> (Service, Vec<String>) {
        let (conversion, diags) = run(text);
        match conversion.units.as_slice() {
            [Unit::Service(s)] => ((**s).clone(), diags),
            other => panic!("{other:?} {diags:?}"),
        }
    }

    #[test]
    fn rsync() {
        let (s, diags) = only_service(
            "service rsync\n{\n disable = yes\n flags = IPv6\n socket_type = stream\n wait = no\n user = root\n server = /usr/bin/rsync\n server_args = --daemon\n log_on_failure += USERID\n}\n",
        );
        // Every attribute kept as a comment is warned about, at its line.
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].contains(":10: warning: log_on_failure kept as a comment"),
            "{diags:?}"
        );
        assert_eq!(s.name, "rsync");
        assert_eq!(s.disabled, Some(Noted::plain(true)));
        assert_eq!(s.listen[0].value, "*:873");
        assert_eq!(s.wait, Some(Noted::plain(false)));
        assert_eq!(
            s.action,
            Action::Exec(vec!["/usr/bin/rsync".into(), "--daemon".into()])
        );
        assert_eq!(s.user.map(|u| u.value), Some("root".into()));
        assert_eq!(s.kept.len(), 1);
        assert!(s.kept[0].starts_with("xinetd: log_on_failure += USERID ("));
    }

    #[test]
    fn defaults_inherit_and_plus_minus_start_from_them() {
        let (conversion, diags) = run(
            "defaults\n{\n only_from = 10.0.0.0/8\n only_from = 192.168.1.0/24\n instances = 60\n cps = 25 30\n}\n\
             service echo\n{\n type = INTERNAL\n socket_type = stream\n wait = no\n only_from += 127.0.0.1\n only_from -= 10.0.0.0/8\n instances = UNLIMITED\n}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let Unit::Service(s) = &conversion.units[0] else {
            panic!()
        };
        let allow: Vec<&str> = s.access.allow.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(allow, ["192.168.1.0/24", "127.0.0.1"]);
        assert_eq!(s.limits.instances, None);
        assert_eq!(
            s.limits.rate.as_ref().map(|r| r.value.as_str()),
            Some("25/s")
        );
        assert_eq!(
            s.limits.rate.as_ref().and_then(|r| r.note.as_deref()),
            Some("from defaults (f:6)")
        );
        let defaults = conversion.defaults.unwrap_or_else(|| panic!());
        assert_eq!(
            defaults.limits.instances, None,
            "a service overrides it with UNLIMITED"
        );
        assert_eq!(defaults.access.allow.len(), 2);
    }

    #[test]
    fn internal_dgram_and_disabled_list() {
        let (conversion, diags) = run(
            "defaults\n{\n disabled = echo-dgram\n}\n\
             service echo\n{\n id = echo-dgram\n type = INTERNAL\n socket_type = dgram\n user = root\n wait = yes\n}\n",
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(
            diags[0].contains(
                "user kept as a comment: not needed: internal services run inside spawnd"
            ),
            "{diags:?}"
        );
        let Unit::Service(s) = &conversion.units[0] else {
            panic!()
        };
        assert_eq!(s.name, "echo-dgram");
        assert_eq!(s.action, Action::Internal("echo".into()));
        assert_eq!(s.wait, None);
        assert_eq!(s.user, None);
        assert_eq!(s.listen[0].value, "0.0.0.0:7");
        assert!(s.disabled.as_ref().is_some_and(|d| d.value));
        assert!(s.kept.iter().any(|k| k.contains("user = root (not needed")));
    }

    #[test]
    fn dgram_nowait_becomes_wait_with_a_warning() {
        let (s, diags) = only_service(
            "service tftp\n{\n socket_type = dgram\n wait = no\n user = nobody\n server = /usr/sbin/in.tftpd\n}\n",
        );
        assert_eq!(s.wait, Some(Noted::with(true, "xinetd: wait = no")));
        assert_eq!(diags.len(), 1);
        assert!(diags[0].starts_with("f:4: warning: wait = no on a dgram service"));
    }

    #[test]
    fn limits_and_trailing_comments() {
        let (s, diags) = only_service(
            "service ctf\n{\n type = UNLISTED\n port = 9999\n socket_type = stream\n wait = no\n user = ctf\n server = /srv/ctf/chall\n\
             per_source = 10 # per address\n rlimit_cpu = 20\n rlimit_as = 1024M\n rlimit_files = UNLIMITED\n cps = 100 2\n max_load = 2.5\n nice = 5\n umask = 22\n}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let l = &s.limits;
        assert_eq!(l.per_source, Some(Noted::with("10".into(), "per address")));
        assert_eq!(l.cpu.as_ref().map(|v| v.value.as_str()), Some("20s"));
        assert_eq!(l.memory.as_ref().map(|v| v.value.as_str()), Some("1G"));
        assert_eq!(l.files, None);
        assert_eq!(l.rate_pause.as_ref().map(|v| v.value.as_str()), Some("2s"));
        assert_eq!(l.max_load.as_ref().map(|v| v.value.as_str()), Some("2.5"));
        assert_eq!(s.umask.map(|u| u.value), Some("022".into()));
        assert_eq!(s.listen[0].value, "0.0.0.0:9999");
    }

    #[test]
    fn redirect_nameinargs_and_bind() {
        let (s, diags) = only_service(
            "service ssh-in\n{\n type = UNLISTED\n port = 2222\n bind = ::1\n socket_type = stream\n wait = no\n redirect = 10.0.0.5 22\n}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(s.action, Action::Redirect("10.0.0.5:22".into()));
        assert_eq!(s.listen[0].value, "[::1]:2222");
        assert_eq!(s.wait, None);

        let (s, diags) = only_service(
            "service rsync\n{\n flags = NAMEINARGS NOLIBWRAP\n socket_type = stream\n wait = no\n user = root\n server = /usr/sbin/tcpd\n server_args = /usr/bin/rsync --daemon\n}\n",
        );
        assert_eq!(
            s.action,
            Action::Exec(vec!["/usr/bin/rsync".into(), "--daemon".into()])
        );
        assert_eq!(diags.len(), 2, "{diags:?}"); // tcpd removed, NOLIBWRAP kept
        assert!(
            diags[1].contains("flags NOLIBWRAP kept as a comment"),
            "{diags:?}"
        );
        assert!(s.kept.iter().any(|k| k.contains("NOLIBWRAP")));
        // NOLIBWRAP turns off xinetd's own check, not tcpd's.
        assert_eq!(s.tcp_wrappers.as_deref(), Some("rsync"));
    }

    #[test]
    fn errors_and_unknown_attributes() {
        let (_, diags) = run(
            "service x\n{\n socket_type = stream\n wait = no\n server = /bin/x\n user = a\n}\n",
        );
        assert_eq!(
            diags,
            ["f:1: error: service x: no port, and 'x/tcp' is not in /etc/services; add 'port ='"]
        );
        let (_, diags) = run("service rsync\n{\n socket_type = stream\n wait = no\n server = /bin/x\n user = a\n server += -v\n}\n");
        assert!(
            diags[0].starts_with("f:7: error: 'server' takes only '='"),
            "{diags:?}"
        );
        let (s, diags) = only_service(
            "service rsync\n{\n socket_type = stream\n wait = no\n server = /bin/x\n user = a\n frobnicate = yes\n}\n",
        );
        assert_eq!(
            diags,
            ["f:7: warning: unknown attribute 'frobnicate'; kept as a comment"]
        );
        assert_eq!(
            s.kept,
            ["xinetd: frobnicate = yes (not supported: unknown attribute)"]
        );
    }

    #[test]
    fn access_forms_and_names() {
        let (s, diags) = only_service(
            "service rsync\n{\n socket_type = stream\n wait = no\n server = /bin/x\n user = a\n\
             only_from = 10.0.0. 192.168.{1,2} nagios.example.com\n no_access = 10.0.0.0/16\n access_times = 8:00-17:30 12:00-24:00\n}\n",
        );
        let allow: Vec<&str> = s.access.allow.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(allow, ["10.0.0.0/24", "192.168.1.0/24", "192.168.2.0/24"]);
        let times: Vec<&str> = s.access.times.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(times, ["08:00-17:30", "12:00-23:59"]);
        assert_eq!(s.access.comments.len(), 1);
        assert_eq!(diags.len(), 2, "{diags:?}"); // the host name, and 10.0.0.0/24 inside the deny
    }

    #[test]
    fn only_from_with_names_only_denies_everyone() {
        let (s, diags) = only_service(
            "service rsync\n{\n socket_type = stream\n wait = no\n server = /bin/x\n user = a\n only_from = monitor.example.com\n}\n",
        );
        assert!(s.access.allow.is_empty());
        let deny: Vec<&str> = s.access.deny.iter().map(|a| a.value.as_str()).collect();
        assert_eq!(deny, ["0.0.0.0/0", "::/0"]);
        assert_eq!(diags.len(), 2);
    }

    #[test]
    fn not_converted_entries() {
        let (conversion, diags) = run(
            "service rstatd\n{\n type = RPC\n socket_type = dgram\n wait = yes\n user = root\n server = /usr/sbin/rpc.rstatd\n rpc_version = 2-4\n}\n",
        );
        assert!(matches!(conversion.units[0], Unit::NotConverted(ref n) if n.original.len() == 9));
        assert_eq!(diags.len(), 1);
    }
}
