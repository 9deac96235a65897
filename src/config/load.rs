//! Reading the configuration directory: the only file I/O of the config
//! layer, all of it through `fsafe`. Hostile entries (FIFOs, devices, huge
//! files, symlink loops, files or links other users control) are refused
//! without ever blocking on them.

use std::ffi::OsStr;
use std::path::Path;

use super::error::{from_yaml, ConfigError};
use super::model::{Global, Service};
use super::raw::{RawDefaults, RawGlobal, RawService};
use super::{resolve, validate};
use crate::sys::fsafe;

pub const MAX_FILE_SIZE: u64 = 1 << 20;

/// Everything read from a configuration directory.
#[derive(Debug)]
pub struct Loaded {
    pub global: Global,
    /// Services that checked, in file-name order (disabled ones included).
    pub services: Vec<Service>,
    /// One entry per problem; a file with errors contributes no service.
    pub errors: Vec<ConfigError>,
    /// Settings that check but will not do what they seem to.
    pub warnings: Vec<ConfigError>,
    /// Entries of included inetd.conf and xinetd files that are not served
    /// (fail closed), each with the reason.
    pub refused: Vec<super::include::Refused>,
    /// Included files with errors: the services running from them stay as
    /// they are.
    pub broken: Vec<std::path::PathBuf>,
    /// What to watch for changes to the included files.
    pub watch: super::include::Watch,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Refuse files writable by others (only enforced when running as root).
    pub strict: bool,
    /// Look up users and programs (off only in pure unit tests).
    pub resolve: bool,
}

/// Editor leftovers and package-manager files that are never services.
pub fn is_ignored(name: &str) -> bool {
    const SUFFIXES: [&str; 4] = ["~", ".swp", ".bak", ".disabled"];
    name.starts_with('.')
        || SUFFIXES.iter().any(|s| name.ends_with(s))
        || name.contains(".dpkg-")
        || name.contains(".rpm")
        || !(name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// The name of the service a file in `services.d/` defines.
pub fn service_name(path: &Path) -> &str {
    service_stem(path.file_name().and_then(OsStr::to_str).unwrap_or_default())
}

fn service_stem(name: &str) -> &str {
    name.strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name)
}

/// A configuration file's text: a regular file of at most 1 MiB, read
/// through `fsafe` (non-blocking, and with `strict` only from trusted
/// places and owners).
fn text_of(path: &Path, data: Result<Vec<u8>, fsafe::Error>) -> Result<String, ConfigError> {
    let data = data.map_err(|e| file_error(path, e))?;
    String::from_utf8(data).map_err(|_| ConfigError::new(path, "not valid UTF-8 text"))
}

/// A file that could not be read: a refusal is a finding about the file
/// (its service is left out or kept as it runs); a failure of the system
/// (EMFILE, EIO, EACCES) says nothing about it, so a reload that meets one
/// is rejected as a whole (`ConfigError::unreadable`).
fn file_error(path: &Path, error: fsafe::Error) -> ConfigError {
    match error {
        fsafe::Error::Refused(_) => ConfigError::new(path, error.to_string()),
        fsafe::Error::Io(ref e) if e.raw_os_error() == Some(libc::ELOOP) => {
            ConfigError::new(path, error.to_string())
        }
        fsafe::Error::Io(e) => ConfigError::new(path, format!("cannot read: {e}")).unreadable(),
    }
}

fn parse_global_text(path: &Path, text: &str) -> Result<(Global, RawDefaults), Vec<ConfigError>> {
    if text.trim().is_empty() {
        return Ok((Global::default(), RawDefaults::default()));
    }
    check_nesting(path, text).map_err(|e| vec![e])?;
    let raw: RawGlobal = parse_all(path, text)?;
    validate::global(path, text, raw)
}

/// Opens the configuration directory; every failure is fatal.
fn open_config_dir(dir: &Path, strict: bool) -> Result<fsafe::Dir, Vec<ConfigError>> {
    fsafe::Dir::open(dir, strict).map_err(|e| {
        let message = match e {
            fsafe::Error::Io(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                "not a directory".to_string()
            }
            fsafe::Error::Io(e) => format!("cannot read configuration directory: {e}"),
            refused => refused.to_string(),
        };
        vec![ConfigError::new(dir, message).unreadable()]
    })
}

/// `spawnd.yaml` of an opened configuration directory, if there is one.
fn global_of(config: &fsafe::Dir, dir: &Path) -> Result<(Global, RawDefaults), Vec<ConfigError>> {
    let path = dir.join("spawnd.yaml");
    let present = config
        .contains(std::ffi::OsStr::new("spawnd.yaml"))
        .map_err(|e| vec![file_error(&path, e)])?;
    if !present {
        return Ok((Global::default(), RawDefaults::default()));
    }
    let text = text_of(
        &path,
        config.read(std::ffi::OsStr::new("spawnd.yaml"), MAX_FILE_SIZE),
    )
    .map_err(|e| vec![e])?;
    parse_global_text(&path, &text)
}

/// Reads only `DIR/spawnd.yaml`.
pub fn load_global(dir: &Path, strict: bool) -> Result<Global, Vec<ConfigError>> {
    let strict = strict && fsafe::is_root();
    let config = open_config_dir(dir, strict)?;
    global_of(&config, dir).map(|(global, _)| global)
}

/// Deepest nesting of flow collections (`[`, `{`) a file may have. No
/// configuration needs more than a few; the YAML parser's time grows with
/// the square of the depth (100,000 `[` took 15 s, in the event loop
/// during a reload), so deeper files are refused before parsing.
pub const MAX_FLOW_DEPTH: usize = 64;

/// Refuses `text` if flow collections nest deeper than `MAX_FLOW_DEPTH`,
/// naming the place. Quoted strings and comments are skipped; a bracket
/// inside a plain scalar counts too, which can only make the check refuse
/// a file that has more than 64 of them unclosed.
pub fn check_nesting(path: &Path, text: &str) -> Result<(), ConfigError> {
    #[derive(PartialEq)]
    enum In {
        Plain,
        Single,
        Double,
        Comment,
    }
    let mut state = In::Plain;
    let mut depth = 0usize;
    let (mut line, mut column) = (1, 0);
    let mut previous = '\n';
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        column += 1;
        match state {
            In::Comment if c == '\n' => state = In::Plain,
            In::Comment => {}
            In::Double if c == '\\' => {
                chars.next();
                column += 1;
            }
            In::Double if c == '"' => state = In::Plain,
            In::Single if c == '\'' && chars.peek() == Some(&'\'') => {
                chars.next();
                column += 1;
            }
            In::Single if c == '\'' => state = In::Plain,
            In::Double | In::Single => {}
            In::Plain => match c {
                '#' if previous.is_whitespace() => state = In::Comment,
                '"' => state = In::Double,
                '\'' => state = In::Single,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Err(ConfigError::new(
                            path,
                            format!(
                                "collections nested more than {MAX_FLOW_DEPTH} deep ([ and {{); not parsed"
                            ),
                        )
                        .at(Some((line, column))));
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        if c == '\n' {
            line += 1;
            column = 0;
        }
        previous = c;
    }
    Ok(())
}

/// Parses `text`, reporting every error the parser can get past: after an
/// error with a place, the entry it is in (that line, and the lines of its
/// block below) is blanked out, lines kept, and the text parsed again.
fn parse_all<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, Vec<ConfigError>> {
    let first = match super::error::deserialize::<T>(text) {
        Ok(value) => return Ok(value),
        Err(e) => from_yaml(path, text, &e),
    };
    // A syntax error stops there: nothing after it can be trusted.
    if serde_yaml::from_str::<serde_yaml::Value>(text).is_err() {
        return Err(vec![first]);
    }
    let mut current = text.to_string();
    let mut next = first.position.map(|(line, _)| line);
    let mut errors = vec![first];
    // A file has a bounded number of entries; so is this loop.
    while let Some(line) = next.take() {
        if errors.len() >= 64 || !blank_entry(&mut current, line) {
            break;
        }
        if let Err(e) = super::error::deserialize::<T>(&current) {
            let error = from_yaml(path, text, &e);
            if !errors.iter().any(|seen| seen.position == error.position) {
                next = error.position.map(|(line, _)| line);
                errors.push(error);
            }
        }
    }
    Err(errors)
}

/// Blanks line `line` (1-based) of `text` and the lines below it that are
/// more indented (its block); false if there was nothing to blank.
fn blank_entry(text: &mut String, line: usize) -> bool {
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(first) = lines.get(line.wrapping_sub(1)) else {
        return false;
    };
    if first.trim().is_empty() {
        return false;
    }
    let indent = |l: &str| l.len() - l.trim_start().len();
    let (entry_indent, list_item) = (indent(first), first.trim_start().starts_with("- "));
    let mut end = line;
    while let Some(next) = lines.get(end) {
        let blank = next.trim().is_empty() || next.trim_start().starts_with('#');
        let deeper = indent(next) > entry_indent
            || (!list_item && indent(next) == entry_indent && next.trim_start().starts_with("- "));
        if !blank && !deeper {
            break;
        }
        end += 1;
    }
    let kept: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(index, l)| {
            if index + 1 >= line && index < end {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect();
    *text = kept.join("\n");
    true
}

/// Parses and validates one service file.
pub fn parse_service(
    path: &Path,
    text: &str,
    defaults: &RawDefaults,
) -> Result<Service, Vec<ConfigError>> {
    let raw: RawService = if text.trim().is_empty() {
        RawService::default()
    } else {
        check_nesting(path, text).map_err(|e| vec![e])?;
        parse_all(path, text)?
    };
    validate::service(path, text, service_name(path), raw, defaults)
}

/// The service files of `services.d/`, sorted, with the names skipped.
/// A directory that cannot be opened or listed is an `unreadable` error
/// (a reload meeting it is rejected); a missing one means no services.
fn service_files(
    dir: &Path,
    strict: bool,
    errors: &mut Vec<ConfigError>,
) -> Option<(fsafe::Dir, Vec<String>)> {
    let services = match fsafe::Dir::open(dir, strict) {
        Ok(services) => services,
        Err(fsafe::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::event!(log::Level::Warn, "config_missing"; "path={} detail=\"no services.d directory; no services\"", dir.display());
            return None;
        }
        Err(fsafe::Error::Io(e)) => {
            errors.push(ConfigError::new(dir, format!("cannot read directory: {e}")).unreadable());
            return None;
        }
        Err(refused) => {
            errors.push(ConfigError::new(dir, refused.to_string()).unreadable());
            return None;
        }
    };
    let names = match services.names() {
        Ok(names) => names,
        Err(e) => {
            errors.push(ConfigError::new(dir, format!("cannot read directory: {e}")).unreadable());
            return None;
        }
    };
    let mut files = Vec::new();
    for name in names {
        match name.to_str() {
            Some(name) if is_ignored(name) => continue,
            Some(name) => files.push(name.to_string()),
            None => errors.push(ConfigError::new(
                &dir.join(&name),
                "file name is not valid UTF-8; skipped",
            )),
        }
    }
    files.sort();
    Some((services, files))
}

/// `-c /etc/spawnd/services.d` (an easy slip): a configuration directory
/// without `services.d/` but with service files in it is an error that
/// says what was probably meant.
fn misplaced_services(config: &fsafe::Dir, dir: &Path) -> Option<ConfigError> {
    if config.contains(OsStr::new("services.d")).unwrap_or(true) {
        return None;
    }
    let names = config.names().ok()?;
    let services: Vec<String> = names
        .iter()
        .filter_map(|name| name.to_str())
        .filter(|name| !is_ignored(name) && *name != "spawnd.yaml")
        .map(str::to_string)
        .collect();
    if services.is_empty() {
        return None;
    }
    let more = services.len().saturating_sub(3);
    let mut services: Vec<String> = services.into_iter().take(3).collect();
    if more > 0 {
        services.push(format!("and {more} more"));
    }
    let meant = dir
        .parent()
        .filter(|_| dir.file_name().is_some_and(|n| n == "services.d"))
        .map(|parent| format!("; did you mean -c {}?", parent.display()))
        .unwrap_or_else(|| "; service files belong in DIR/services.d/".to_string());
    Some(ConfigError::new(
        dir,
        format!(
            "no services.d/ here, but service files ({}){meant}",
            services.join(", ")
        ),
    ))
}

/// Loads `dir`. `Err` only when the directory itself or `spawnd.yaml` is
/// unusable: those stop `run` from starting and reject a reload.
pub fn load(dir: &Path, options: Options) -> Result<Loaded, Vec<ConfigError>> {
    let strict = options.strict && fsafe::is_root();
    let config = open_config_dir(dir, strict)?;
    let (global, defaults) = global_of(&config, dir)?;
    let mut errors = Vec::new();
    let services_dir = dir.join("services.d");
    if let Some(error) = misplaced_services(&config, dir) {
        errors.push(error);
    }
    let mut services = Vec::new();
    let mut texts = Vec::new();
    // Every name services.d claims, its files that do not check included
    // (their running services are kept, and keep their names).
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    if let Some((listing, files)) = service_files(&services_dir, strict, &mut errors) {
        for name in files {
            taken.insert(service_stem(&name).to_string());
            let path = services_dir.join(&name);
            let text = text_of(
                &path,
                listing.read(std::ffi::OsStr::new(&name), MAX_FILE_SIZE),
            );
            let parsed = text.map_err(|e| vec![e]).and_then(|text| {
                let service = parse_service(&path, &text, &defaults)?;
                Ok((service, text))
            });
            match parsed {
                Ok((service, text)) => {
                    services.push(service);
                    texts.push(text);
                }
                Err(mut file_errors) => errors.append(&mut file_errors),
            }
        }
    }
    // The services of included inetd.conf and xinetd files come after
    // those of services.d, which win a name clash.
    taken.extend(services.iter().map(|s| s.name.clone()));
    let included = super::include::load(
        global.include_inetd_conf.as_deref(),
        global.include_xinetd.as_deref(),
        &defaults,
        &taken,
        strict,
    );
    let first_included = services.len();
    let mut refused = included.refused;
    let mut warnings = included.warnings;
    errors.extend(included.errors);
    for (service, text) in included.services {
        services.push(service);
        texts.push(text);
    }
    let is_included = |index: usize| index >= first_included;
    // An included service that fails a check is refused with the reason,
    // placed at its entry (its YAML positions are not the file's).
    let mut reject = |index: usize,
                      service: &Service,
                      mut problems: Vec<ConfigError>,
                      errors: &mut Vec<ConfigError>| {
        if is_included(index) {
            refused.push(super::include::Refused {
                name: service.name.clone(),
                error: super::include::relocate(service, &problems),
            });
        } else {
            errors.append(&mut problems);
        }
    };
    let mut rejected: std::collections::HashSet<usize> = std::collections::HashSet::new();
    for (index, mut error) in validate::across(&services) {
        rejected.insert(index);
        if let Some(key) = &error.key {
            error.position = super::keys::KeyIndex::new(&texts[index]).locate(key);
        }
        reject(index, &services[index], vec![error], &mut errors);
    }
    if options.resolve {
        for (index, service) in services.iter_mut().enumerate() {
            if rejected.contains(&index) {
                continue;
            }
            if let Err(problems) = resolve::resolve(service, &texts[index], strict) {
                rejected.insert(index);
                reject(index, service, problems, &mut errors);
            }
        }
    }
    for (index, service) in services.iter().enumerate() {
        if rejected.contains(&index) {
            continue;
        }
        let found = validate::warnings(service, &texts[index]);
        if is_included(index) {
            warnings.extend(
                found
                    .iter()
                    .map(|w| super::include::relocate(service, std::slice::from_ref(w))),
            );
        } else {
            warnings.extend(found);
        }
    }
    drop(texts);
    let services = services
        .into_iter()
        .enumerate()
        .filter(|(index, _)| !rejected.contains(index))
        .map(|(_, service)| service)
        .collect();
    Ok(Loaded {
        global,
        services,
        errors,
        warnings,
        refused,
        broken: included.broken,
        watch: included.watch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let path = Path::new("s.yaml");
        assert!(check_nesting(path, "limits: {instances: 5}\nlisten: [a, b]\n").is_ok());
        let deep = format!("listen: {}", "[".repeat(100_000));
        let started = std::time::Instant::now();
        let error = parse_service(path, &deep, &Default::default()).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        assert_eq!(
            error[0].position,
            Some((1, 9 + MAX_FLOW_DEPTH)),
            "{}",
            error[0]
        );
        assert!(
            error[0].message.contains("nested more than 64"),
            "{}",
            error[0]
        );
        // Brackets in quotes and comments do not count.
        let quoted = format!(
            "exec: [/bin/echo, \"{0}\", '{0}']\n# {0}\nlisten: 127.0.0.1:9\n",
            "[".repeat(200)
        );
        assert!(check_nesting(path, &quoted).is_ok());
        let escaped = "a: \"\\\" [[[\"\nb: 'it''s [[['\n";
        assert!(check_nesting(path, escaped).is_ok());
    }

    #[test]
    fn every_error_the_parser_can_get_past_is_reported() {
        let text = "listen: 127.0.0.1:9\nexec: [/bin/true]\nwait: maybe\nbacklog: lots\nlimits:\n  instances: many\n  timeout: 5x\n";
        let errors = parse_service(Path::new("s.yaml"), text, &Default::default()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("s.yaml:3:7: wait: invalid type"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with("s.yaml:4:10: backlog: invalid type"),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("s.yaml:6:14: limits.instances:"),
            "{shown:#?}"
        );
        assert!(
            shown[3].starts_with("s.yaml:7:12: limits.timeout: invalid duration"),
            "{shown:#?}"
        );
        // A syntax error stops there: nothing after it can be trusted.
        let errors = parse_service(
            Path::new("s.yaml"),
            "listen: [a\nwait: maybe\n",
            &Default::default(),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1);
    }

    /// The packaged spawnd.yaml promises that its commented settings, up to
    /// the examples, are the defaults: uncommented, they change nothing.
    #[test]
    fn the_packaged_defaults_are_the_defaults() {
        let packaged = include_str!("../../packaging/spawnd.yaml");
        let defaults_part = packaged.split("# --- Examples").next().unwrap_or_default();
        let uncommented: String = defaults_part
            .lines()
            .filter_map(|line| line.strip_prefix('#'))
            .filter(|line| !line.starts_with(' ') && !line.is_empty() || line.starts_with("  "))
            .map(|line| format!("{line}\n"))
            .collect();
        assert!(uncommented.contains("max_in_process"), "{uncommented}");
        let (global, defaults) = parse_global_text(Path::new("spawnd.yaml"), &uncommented).unwrap();
        let expected = Global {
            control_socket: Some("/run/spawnd/control.sock".into()),
            log_target: Some(crate::config::LogTarget::Stderr),
            log_level: Some(log::LevelFilter::Info),
            ..Default::default()
        };
        assert_eq!(global, expected);
        assert!(defaults.limits.is_none() && defaults.user.is_none());
        // As shipped, it serves /etc/inetd.conf (the inet-superserver slot).
        let (shipped, _) = parse_global_text(Path::new("spawnd.yaml"), packaged).unwrap();
        assert_eq!(
            shipped.include_inetd_conf.as_deref(),
            Some(Path::new("/etc/inetd.conf"))
        );
        assert_eq!(shipped.include_xinetd, None);
        // The examples part is a valid configuration too.
        let all: String = packaged
            .lines()
            .map(|line| line.strip_prefix('#').unwrap_or(line))
            .filter(|line| {
                !line.starts_with(' ') && !line.starts_with('-') || line.starts_with("  ")
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let examples = all.split(" --- Examples").nth(1).unwrap_or_default();
        assert!(
            parse_global_text(Path::new("spawnd.yaml"), examples).is_ok(),
            "{examples}"
        );
    }

    #[test]
    fn ignored_names() {
        for name in [
            ".hidden.yaml",
            "x.yaml~",
            "x.yaml.swp",
            "x.yaml.dpkg-old",
            "x.yaml.rpmnew",
            "x.yaml.bak",
            "x.yaml.disabled",
            "README",
            "x.conf",
        ] {
            assert!(is_ignored(name), "{name}");
        }
        for name in ["daytime.yaml", "echo.yml", "a.b.yaml"] {
            assert!(!is_ignored(name), "{name}");
        }
        assert_eq!(service_stem("a.b.yaml"), "a.b");
    }
}
