//! Pure validation: raw serde structs (plus `spawnd.yaml` defaults) become a
//! `Service`, or every error found, each with its place in the file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::keys::KeyIndex;
use super::model::*;
use super::raw::{Argv, RawAccess, RawDefaults, RawGlobal, RawLimits, RawService};
use super::units::{ListenAddr, OrUnlimited};

/// Collects errors for one file, locating each key in its text (the key
/// index is built at the first error: a file that checks costs nothing).
struct Errors<'a> {
    file: &'a Path,
    text: &'a str,
    keys: std::cell::OnceCell<KeyIndex>,
    list: Vec<ConfigError>,
}

impl<'a> Errors<'a> {
    fn new(file: &'a Path, text: &'a str) -> Self {
        Errors {
            file,
            text,
            keys: std::cell::OnceCell::new(),
            list: Vec::new(),
        }
    }

    fn push(&mut self, key: &str, message: impl Into<String>) {
        let keys = self.keys.get_or_init(|| KeyIndex::new(self.text));
        // A key that is not in the file (a missing one, or one from the
        // defaults) is placed at the mapping it belongs in.
        let position = keys.locate(key).or_else(|| keys.root());
        let error = ConfigError::new(self.file, message).at(position).key(key);
        self.list.push(error);
    }
}

pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn merge_limits(service: Option<RawLimits>, defaults: Option<&RawLimits>) -> RawLimits {
    let mut merged = service.unwrap_or_default();
    let Some(d) = defaults else { return merged };
    macro_rules! inherit {
        ($($field:ident),*) => { $( if merged.$field.is_none() { merged.$field = d.$field.clone(); } )* };
    }
    inherit!(
        instances,
        on_limit,
        per_source,
        rate,
        rate_pause,
        per_source_rate,
        per_source_pause,
        timeout,
        kill_after,
        idle_timeout,
        connect_timeout,
        cpu,
        memory,
        files,
        processes,
        core,
        max_load
    );
    merged
}

fn merge_access(service: Option<RawAccess>, defaults: Option<&RawAccess>) -> RawAccess {
    let mut merged = service.unwrap_or_default();
    if let Some(d) = defaults {
        if merged.allow.is_none() {
            merged.allow = d.allow.clone();
        }
        if merged.deny.is_none() {
            merged.deny = d.deny.clone();
        }
        if merged.times.is_none() {
            merged.times = d.times.clone();
        }
    }
    merged
}

/// `"08:00-18:00"` as minutes since midnight.
pub fn parse_time_window(text: &str) -> Result<TimeWindow, String> {
    let invalid = || format!("invalid time window {text:?} (expected HH:MM-HH:MM, local time)");
    let minute = |part: &str| -> Option<u16> {
        let (h, m) = part.trim().split_once(':')?;
        let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some(h * 60 + m)
    };
    let (start, end) = text.split_once('-').ok_or_else(invalid)?;
    Ok(TimeWindow {
        start: minute(start).ok_or_else(invalid)?,
        end: minute(end).ok_or_else(invalid)?,
    })
}

fn check_env_name(errors: &mut Errors, key: &str, name: &str) {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        errors.push(key, format!("invalid environment variable name {name:?}"));
    }
}

fn absolute_path(errors: &mut Errors, key: &str, value: Option<String>) -> Option<PathBuf> {
    let value = value?;
    if !value.starts_with('/') || value.contains('\0') {
        errors.push(key, format!("{value:?} must be an absolute path"));
        return None;
    }
    Some(PathBuf::from(value))
}

pub fn service(
    file: &Path,
    text: &str,
    stem: &str,
    raw: RawService,
    defaults: &RawDefaults,
) -> Result<Service, Vec<ConfigError>> {
    let mut errors = Errors::new(file, text);
    let name = service_name(&mut errors, raw.name.as_deref(), stem);
    let socket = raw.socket.unwrap_or(SocketKind::Stream);
    let listen = listen_addresses(
        &mut errors,
        raw.listen.map(|l| l.into_vec()).unwrap_or_default(),
    );
    let action = action(&mut errors, raw.exec, raw.internal, raw.redirect);
    let wait = wait_mode(&mut errors, &action, raw.wait, socket);
    let (pass, stderr) = pass_and_stderr(
        &mut errors,
        raw.pass,
        raw.stderr.or(defaults.stderr),
        wait,
        &action,
    );
    let backlog = raw.backlog;
    if backlog.is_some_and(|backlog| !(1..=65_535).contains(&backlog)) {
        errors.push("backlog", "backlog must be 1 to 65535");
    }
    if let Some(nice) = raw.nice {
        if !(-20..=19).contains(&nice) {
            errors.push("nice", "nice must be -20 to 19");
        }
    }
    let (env, pass_env) = environment(&mut errors, raw.env, raw.pass_env, defaults);
    let limits = limits(&mut errors, raw.limits, defaults.limits.as_ref(), &action);
    if raw.access.is_some() && wait && socket == SocketKind::Stream {
        errors.push(
            "access",
            "access rules cannot apply to a wait: true stream service: its program accepts the connections itself",
        );
    }
    let access = access(&mut errors, raw.access, defaults.access.as_ref());
    if raw.unix_mode.is_some_and(|m| m.0 > 0o777) {
        errors.push(
            "unix_mode",
            "a socket's mode has only permission bits (at most \"0777\")",
        );
    }
    let has_unix = listen.iter().any(|a| matches!(a, ListenAddr::Unix(_)));
    if !has_unix
        && (raw.unix_mode.is_some() || raw.unix_owner.is_some() || raw.unix_group.is_some())
    {
        errors.push(
            "unix_mode",
            "unix_mode, unix_owner and unix_group apply only to a Unix socket path",
        );
    }
    let is_exec = matches!(action, Some(Action::Exec { .. }));
    if !is_exec {
        for (key, set) in [
            ("user", raw.user.is_some()),
            ("group", raw.group.is_some()),
            ("groups", raw.groups.is_some()),
            ("chroot", raw.chroot.is_some()),
            ("workdir", raw.workdir.is_some()),
            ("nice", raw.nice.is_some()),
            ("umask", raw.umask.is_some()),
            ("stderr", raw.stderr.is_some()),
            ("pass", raw.pass.is_some()),
            ("new_session", raw.new_session.is_some()),
        ] {
            if set {
                errors.push(
                    key,
                    "applies only to services with exec (nothing is started otherwise)",
                );
            }
        }
    }
    let chroot = absolute_path(&mut errors, "chroot", raw.chroot);
    let workdir = absolute_path(&mut errors, "workdir", raw.workdir);
    let banners = Banners {
        banner: absolute_path(&mut errors, "banner", raw.banner),
        success: absolute_path(&mut errors, "banner_success", raw.banner_success),
        fail: absolute_path(&mut errors, "banner_fail", raw.banner_fail),
    };

    let (user, group) = if is_exec {
        (
            raw.user.or_else(|| defaults.user.clone()),
            raw.group.or_else(|| defaults.group.clone()),
        )
    } else {
        (None, None)
    };

    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    let Some(action) = action else {
        return Err(vec![ConfigError::new(file, "no action")]);
    };
    Ok(Service {
        name,
        file: file.to_path_buf(),
        line: None,
        disabled: raw.disabled.unwrap_or(false),
        socket,
        listen,
        wait,
        action,
        user,
        group,
        groups: raw.groups,
        env,
        pass_env,
        stderr,
        pass,
        new_session: raw.new_session.unwrap_or(false),
        backlog,
        unix_socket: Rare::new(UnixSocketPerms {
            mode: raw.unix_mode.map(|m| m.0),
            owner: raw.unix_owner,
            group: raw.unix_group,
            owner_id: None,
            group_id: None,
        }),
        nice: raw.nice,
        umask: raw.umask.map(|m| m.0),
        chroot,
        workdir,
        banners: Rare::new(banners),
        banner_texts: Rare::default(),
        limits: Rare::new(limits),
        access: Rare::new(access),
        credentials: None,
    })
}

/// The service's name: `name:`, or the file's name without `.yaml`.
fn service_name(errors: &mut Errors, written: Option<&str>, stem: &str) -> String {
    let name = written.unwrap_or(stem).to_string();
    if !is_valid_name(&name) {
        let key = if written.is_some() { "name" } else { "" };
        let message = format!("invalid service name {name:?} (letters, digits, '_', '.', '-')");
        if key.is_empty() {
            errors.list.push(ConfigError::new(
                errors.file,
                message + "; rename the file or set name:",
            ));
        } else {
            errors.push(key, message);
        }
    }
    name
}

/// `listen:`, with `./` paths made relative to the configuration
/// directory; none twice.
fn listen_addresses(errors: &mut Errors, mut listen: Vec<ListenAddr>) -> Vec<ListenAddr> {
    // `./NAME`: next to services.d/, in the configuration directory.
    let config_dir = errors
        .file
        .parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    for addr in &mut listen {
        if let ListenAddr::Unix(path) = addr {
            if let Ok(relative) = path.strip_prefix(".") {
                *path = config_dir.join(relative);
                if path.as_os_str().len() > 107 {
                    errors.push(
                        "listen",
                        format!(
                            "{} is longer than a Unix socket path may be (107 bytes)",
                            path.display()
                        ),
                    );
                }
            }
        }
    }
    if listen.is_empty() {
        errors.push("listen", "a service needs at least one listen address");
    }
    for (index, addr) in listen.iter().enumerate() {
        if listen[..index].iter().any(|earlier| earlier.overlaps(addr)) {
            errors.push(
                "listen",
                format!("{addr} is listed twice or overlaps another entry"),
            );
        }
    }

    listen
}

/// What the service does: exactly one of `exec`, `internal`, `redirect`.
fn action(
    errors: &mut Errors,
    exec: Option<Argv>,
    internal: Option<InternalKind>,
    redirect: Option<String>,
) -> Option<Action> {
    let actions = [exec.is_some(), internal.is_some(), redirect.is_some()];
    match actions.iter().filter(|a| **a).count() {
        0 => {
            errors.push("exec", "a service needs one of exec, internal or redirect");
            None
        }
        1 => {
            if let Some(exec) = exec {
                let argv = exec.into_vec();
                match argv.first() {
                    None => {
                        errors.push("exec", "exec needs at least the program path");
                        None
                    }
                    Some(program) if !program.starts_with('/') => {
                        errors.push(
                            "exec",
                            format!("the program {program:?} must be an absolute path"),
                        );
                        None
                    }
                    Some(_) if argv.iter().any(|a| a.contains('\0')) => {
                        errors.push("exec", "arguments may not contain NUL bytes");
                        None
                    }
                    Some(program) => Some(Action::Exec {
                        program: PathBuf::from(program),
                        argv,
                    }),
                }
            } else if let Some(kind) = internal {
                Some(Action::Internal(kind))
            } else {
                let target = redirect.unwrap_or_default();
                match target.parse() {
                    Ok(addr) => Some(Action::Redirect(addr)),
                    Err(_) => {
                        errors.push(
                            "redirect",
                            format!("invalid redirect target {target:?} (expected IP:PORT; host names are not resolved)"),
                        );
                        None
                    }
                }
            }
        }
        _ => {
            errors.push(
                "exec",
                "exec, internal and redirect exclude each other; give exactly one",
            );
            None
        }
    }
}

/// `wait:` (by default: true for datagram services with a program), and
/// what it excludes.
fn wait_mode(
    errors: &mut Errors,
    action: &Option<Action>,
    written: Option<bool>,
    socket: SocketKind,
) -> bool {
    let wait = match (action, written) {
        (Some(Action::Internal(_)), Some(_)) => {
            errors.push(
                "wait",
                "internal services take no wait: they are served inside spawnd",
            );
            false
        }
        (Some(Action::Redirect(_)), Some(true)) => {
            errors.push("wait", "a redirect service cannot use wait: true");
            false
        }
        (Some(Action::Internal(_) | Action::Redirect(_)), None) => false,
        (_, Some(wait)) => wait,
        (_, None) => socket == SocketKind::Dgram,
    };
    if socket == SocketKind::Dgram && !wait && matches!(action, Some(Action::Exec { .. })) {
        errors.push(
            "wait",
            "a datagram service with a program needs wait: true (there is no connection to hand to one child per client)",
        );
    }
    if socket == SocketKind::Dgram && matches!(action, Some(Action::Redirect(_))) {
        errors.push(
            "redirect",
            "redirect forwards TCP connections; it needs socket: stream",
        );
    }

    wait
}

/// `pass:` and `stderr:` (`stderr` from the file or the defaults).
fn pass_and_stderr(
    errors: &mut Errors,
    pass: Option<PassMode>,
    stderr: Option<StderrMode>,
    wait: bool,
    action: &Option<Action>,
) -> (PassMode, StderrMode) {
    let pass = pass.unwrap_or(PassMode::Stdio);
    let default_stderr = if pass == PassMode::ListenFds {
        StderrMode::Null
    } else {
        StderrMode::Socket
    };
    let stderr = stderr.unwrap_or(default_stderr);
    if pass == PassMode::ListenFds {
        if !wait || !matches!(action, Some(Action::Exec { .. })) {
            errors.push("pass", "pass: listen_fds needs a program with wait: true");
        }
        if stderr == StderrMode::Socket {
            errors.push(
                "stderr",
                "stderr: socket is not allowed with pass: listen_fds (use null or log)",
            );
        }
    }

    (pass, stderr)
}

/// `env:` over the defaults' and `pass_env:` (or the defaults').
fn environment(
    errors: &mut Errors,
    own: Option<BTreeMap<String, String>>,
    pass_env: Option<Vec<String>>,
    defaults: &RawDefaults,
) -> (BTreeMap<String, String>, Vec<String>) {
    let mut env = defaults.env.clone().unwrap_or_default();
    env.extend(own.unwrap_or_default());
    for (name, value) in &env {
        check_env_name(errors, "env", name);
        if value.contains('\0') {
            errors.push("env", format!("the value of {name} contains a NUL byte"));
        }
    }
    let pass_env = pass_env
        .or_else(|| defaults.pass_env.clone())
        .unwrap_or_default();
    for name in &pass_env {
        check_env_name(errors, "pass_env", name);
    }

    (env, pass_env)
}

/// `limits:` over the defaults' (`unlimited` lifts a default).
fn limits(
    errors: &mut Errors,
    own: Option<RawLimits>,
    defaults: Option<&RawLimits>,
    action: &Option<Action>,
) -> Limits {
    // Keys of the file itself (not inherited from defaults) that only
    // connections served inside spawnd use.
    let own_in_process_keys: Vec<&str> = own
        .iter()
        .flat_map(|l| {
            [
                ("limits.idle_timeout", l.idle_timeout.is_some()),
                ("limits.connect_timeout", l.connect_timeout.is_some()),
            ]
        })
        .filter_map(|(key, set)| set.then_some(key))
        .collect();
    let raw_limits = merge_limits(own, defaults);
    if raw_limits.connect_timeout.is_some_and(|s| s.0.is_zero()) {
        errors.push("limits.connect_timeout", "must be more than 0");
    }
    // `unlimited` lifts a limit the defaults set: from here on, no limit.
    let instances = raw_limits.instances.and_then(OrUnlimited::value);
    let per_source = raw_limits.per_source.and_then(OrUnlimited::value);
    let max_load = raw_limits.max_load.and_then(OrUnlimited::value);
    for (key, value) in [
        ("limits.instances", instances),
        ("limits.per_source", per_source),
    ] {
        if value == Some(0) {
            errors.push(
                key,
                "must be at least 1 (to stop a service, use disabled: true)",
            );
        }
    }
    if let Some(load) = max_load {
        if !(load.is_finite() && load > 0.0) {
            errors.push("limits.max_load", "max_load must be a positive number");
        }
    }
    let limits = Limits {
        instances,
        on_limit: raw_limits.on_limit.unwrap_or(OnLimit::Refuse),
        per_source,
        rate: raw_limits.rate.and_then(OrUnlimited::value),
        rate_pause: raw_limits.rate_pause.map_or(DEFAULT_RATE_PAUSE, |s| s.0),
        per_source_rate: raw_limits.per_source_rate.and_then(OrUnlimited::value),
        per_source_pause: raw_limits
            .per_source_pause
            .map_or(DEFAULT_PER_SOURCE_PAUSE, |s| s.0),
        timeout: raw_limits.timeout.map(|s| s.0).filter(|d| !d.is_zero()),
        kill_after: raw_limits.kill_after.map_or(DEFAULT_KILL_AFTER, |s| s.0),
        idle_timeout: raw_limits
            .idle_timeout
            .map_or(Some(DEFAULT_IDLE_TIMEOUT), |s| {
                Some(s.0).filter(|d| !d.is_zero())
            }),
        connect_timeout: raw_limits
            .connect_timeout
            .map_or(DEFAULT_CONNECT_TIMEOUT, |s| s.0),
        max_load,
        rlimits: Rare::new(Rlimits {
            cpu: raw_limits.cpu.map(|v| v.0.as_rlim()),
            memory: raw_limits.memory.map(|v| v.0.as_rlim()),
            files: raw_limits.files.map(|v| v.0.as_rlim()),
            processes: raw_limits.processes.map(|v| v.0.as_rlim()),
            core: raw_limits.core.map(|v| v.0.as_rlim()),
        }),
    };
    for key in own_in_process_keys {
        let applies = match action {
            Some(Action::Redirect(_)) => true,
            Some(Action::Internal(_)) => key != "limits.connect_timeout",
            _ => false,
        };
        if !applies && action.is_some() {
            errors.push(
                key,
                if key == "limits.connect_timeout" {
                    "applies only to redirect services"
                } else {
                    "applies only to connections served inside spawnd (internal, redirect); a program's connection is the program's"
                },
            );
        }
    }
    limits
}

/// `access:` over the defaults'.
fn access(errors: &mut Errors, own: Option<RawAccess>, defaults: Option<&RawAccess>) -> Access {
    let raw_access = merge_access(own, defaults);
    let mut times = Vec::new();
    for window in raw_access.times.unwrap_or_default() {
        match parse_time_window(&window) {
            Ok(window) => times.push(window),
            Err(message) => errors.push("access.times", message),
        }
    }
    Access {
        allow: raw_access.allow.unwrap_or_default(),
        deny: raw_access.deny.unwrap_or_default(),
        times,
    }
}

/// What checks but will not do what it seems to, placed in `text`.
pub fn warnings(service: &Service, text: &str) -> Vec<ConfigError> {
    let mut found = Vec::new();
    let runs_as_root = match &service.credentials {
        Some(credentials) => credentials.uid == 0,
        None => nix::unistd::geteuid().is_root(),
    };
    let is_exec = matches!(service.action, Action::Exec { .. });
    if is_exec && runs_as_root && service.limits.rlimits.processes.is_some() {
        let key = "limits.processes";
        found.push(
            ConfigError::new(
                &service.file,
                "has no effect: the program runs as root, for whom the kernel does not enforce RLIMIT_NPROC (set user:)",
            )
            .at(KeyIndex::new(text).locate(key))
            .key(key),
        );
    }
    found
}

pub fn global(
    file: &Path,
    text: &str,
    raw: RawGlobal,
) -> Result<(Global, RawDefaults), Vec<ConfigError>> {
    let mut errors = Errors::new(file, text);
    let max_children = raw.max_children.and_then(OrUnlimited::value);
    if max_children == Some(0) {
        errors.push("max_children", "must be at least 1");
    }
    if raw.max_in_process == Some(0) {
        errors.push("max_in_process", "must be at least 1");
    }
    let log_level = match raw.log.as_ref().and_then(|l| l.level.as_deref()) {
        None => None,
        Some(level) => match level.parse::<log::LevelFilter>() {
            Ok(level) => Some(level),
            Err(_) => {
                errors.push(
                    "log.level",
                    format!("invalid level {level:?} (off, error, warn, info, debug, trace)"),
                );
                None
            }
        },
    };
    let control_socket = absolute_path(&mut errors, "control_socket", raw.control_socket);
    let include_inetd_conf =
        absolute_path(&mut errors, "include_inetd_conf", raw.include_inetd_conf);
    let include_xinetd = absolute_path(&mut errors, "include_xinetd", raw.include_xinetd);
    let defaults = raw.defaults.unwrap_or_default();
    for (name, _) in defaults.env.iter().flatten() {
        check_env_name(&mut errors, "defaults.env", name);
    }
    for window in defaults
        .access
        .iter()
        .flat_map(|a| a.times.iter().flatten())
    {
        if let Err(message) = parse_time_window(window) {
            errors.push("defaults.access.times", message);
        }
    }
    if !errors.list.is_empty() {
        return Err(errors.list);
    }
    let global = Global {
        max_children,
        max_in_process: raw.max_in_process.unwrap_or(DEFAULT_MAX_IN_PROCESS),
        splice: raw.splice.unwrap_or(true),
        shutdown_grace: raw.shutdown_grace.map_or(DEFAULT_SHUTDOWN_GRACE, |s| s.0),
        control_socket,
        log_target: raw.log.as_ref().and_then(|l| l.target),
        log_level,
        include_inetd_conf,
        include_xinetd,
    };
    Ok((global, defaults))
}

/// Bucket of listen addresses that can overlap: IP addresses by socket type
/// and port (a wildcard overlaps every address of its port), Unix paths and
/// abstract names by themselves (whatever the socket type).
#[derive(PartialEq, Eq, Hash)]
enum AddrBucket<'a> {
    Inet(SocketKind, u16),
    Path(&'a std::path::Path),
    Abstract(&'a str),
}

fn bucket(kind: SocketKind, addr: &ListenAddr) -> AddrBucket<'_> {
    match addr {
        ListenAddr::Inet(a) => AddrBucket::Inet(kind, a.port()),
        ListenAddr::AnyInet(port) => AddrBucket::Inet(kind, *port),
        ListenAddr::Unix(path) => AddrBucket::Path(path),
        ListenAddr::Abstract(name) => AddrBucket::Abstract(name),
    }
}

/// Checks across services: unique names, no two enabled services on the
/// same address and protocol. Returns the errors with the index of the
/// service each one rejects (the later one, in file order). Linear in the
/// number of services: addresses are compared only within their bucket.
pub fn across(services: &[Service]) -> Vec<(usize, ConfigError)> {
    use std::collections::HashMap;
    let mut errors = Vec::new();
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut taken: HashMap<AddrBucket, Vec<(usize, &ListenAddr)>> = HashMap::new();
    for (index, service) in services.iter().enumerate() {
        if let Some(&earlier) = names.get(service.name.as_str()) {
            let error = ConfigError::new(
                &service.file,
                format!(
                    "duplicate service name {:?} (also in {})",
                    service.name,
                    services[earlier].file.display()
                ),
            )
            .key("name");
            errors.push((index, error));
            continue;
        }
        if !service.disabled {
            let clash = service.listen.iter().find_map(|addr| {
                let owners = taken.get(&bucket(service.socket, addr))?;
                owners
                    .iter()
                    .find(|(_, other)| other.overlaps(addr))
                    .map(|(owner, _)| (*owner, addr))
            });
            if let Some((owner, addr)) = clash {
                let earlier = &services[owner];
                let error = ConfigError::new(
                    &service.file,
                    format!(
                        "{} {addr} is already used by service {:?} ({})",
                        service.socket_label(),
                        earlier.name,
                        earlier.file.display()
                    ),
                )
                .key("listen");
                errors.push((index, error));
                continue;
            }
            for addr in &service.listen {
                taken
                    .entry(bucket(service.socket, addr))
                    .or_default()
                    .push((index, addr));
            }
        }
        names.insert(&service.name, index);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Service, Vec<ConfigError>> {
        check_with(text, &RawDefaults::default())
    }

    fn check_with(text: &str, defaults: &RawDefaults) -> Result<Service, Vec<ConfigError>> {
        let raw: RawService = serde_yaml::from_str(text).expect("test YAML parses");
        service(Path::new("t.yaml"), text, "t", raw, defaults)
    }

    fn first_error(text: &str) -> ConfigError {
        check(text).expect_err("should be rejected").remove(0)
    }

    #[test]
    fn minimal_stream_service() {
        let s = check("listen: 127.0.0.1:8013\nexec: [/bin/date, -u]\n").unwrap();
        assert_eq!(s.name, "t");
        assert!(!s.wait);
        assert_eq!(s.socket, SocketKind::Stream);
        assert_eq!(s.stderr, StderrMode::Socket);
        assert_eq!(
            s.action,
            Action::Exec {
                program: "/bin/date".into(),
                argv: vec!["/bin/date".into(), "-u".into()]
            }
        );
        assert_eq!(s.backlog, None);
    }

    #[test]
    fn dgram_defaults_to_wait() {
        let s = check("socket: dgram\nlisten: 127.0.0.1:8069\nexec: /usr/sbin/in.tftpd -s /srv\n")
            .unwrap();
        assert!(s.wait);
        let e =
            first_error("socket: dgram\nwait: false\nlisten: 127.0.0.1:8069\nexec: [/bin/cat]\n");
        assert_eq!(e.key.as_deref(), Some("wait"));
        assert_eq!(e.position, Some((2, 1)));
    }

    #[test]
    fn exec_rules() {
        assert_eq!(
            first_error("listen: 127.0.0.1:1\n").key.as_deref(),
            Some("exec")
        );
        let e = first_error("listen: 127.0.0.1:1\nexec: [bin/date]\n");
        assert!(e.message.contains("absolute"), "{e}");
        assert_eq!(e.position, Some((2, 1)));
        let e = first_error("listen: 127.0.0.1:1\nexec: [/bin/date]\ninternal: echo\n");
        assert!(e.message.contains("exactly one"), "{e}");
        assert_eq!(
            first_error("listen: 127.0.0.1:1\nexec: []\n")
                .key
                .as_deref(),
            Some("exec")
        );
    }

    #[test]
    fn internal_takes_no_wait_or_user() {
        assert!(check("listen: 127.0.0.1:7\ninternal: echo\n").is_ok());
        assert_eq!(
            first_error("listen: 127.0.0.1:7\ninternal: echo\nwait: true\n")
                .key
                .as_deref(),
            Some("wait")
        );
        assert_eq!(
            first_error("listen: 127.0.0.1:7\ninternal: echo\nuser: nobody\n")
                .key
                .as_deref(),
            Some("user")
        );
        assert_eq!(
            first_error("listen: 127.0.0.1:7\ninternal: echo\nnew_session: true\n")
                .key
                .as_deref(),
            Some("new_session")
        );
        let exec = "listen: 127.0.0.1:7\nexec: [/bin/cat]\n";
        assert!(!check(exec).unwrap().new_session);
        assert!(
            check(&format!("{exec}new_session: true\n"))
                .unwrap()
                .new_session
        );
    }

    #[test]
    fn rarely_set_parts_take_no_allocation_when_empty() {
        let plain = check("listen: 127.0.0.1:7\nexec: [/bin/cat]\n").unwrap();
        assert_eq!(plain.banners, Rare::default());
        assert_eq!(plain.unix_socket, Rare::default());
        assert_eq!(plain.limits.rlimits, Rare::default());
        assert_eq!(
            plain.limits.rlimits.files, None,
            "reads see the empty value"
        );
        assert_eq!(plain.limits, Rare::default());
        assert_eq!(plain.limits.kill_after, DEFAULT_KILL_AFTER);
        assert_eq!(plain.access, Rare::default());
        assert!(plain.access.allow.is_empty());
        let limited =
            check("listen: 127.0.0.1:7\nexec: [/bin/cat]\nlimits: {files: 64}\n").unwrap();
        assert_ne!(limited.limits.rlimits, Rare::default());
        assert_eq!(limited.limits.rlimits.files, Some(64));
    }

    #[test]
    fn listen_is_required_and_unique() {
        assert_eq!(
            first_error("exec: [/bin/date]\n").key.as_deref(),
            Some("listen")
        );
        assert_eq!(
            first_error("listen: []\nexec: [/bin/date]\n")
                .key
                .as_deref(),
            Some("listen")
        );
        let e = first_error("listen: ['*:9', 127.0.0.1:9]\nexec: [/bin/date]\n");
        assert!(e.message.contains("overlaps"), "{e}");
    }

    #[test]
    fn listen_fds_rules() {
        let ok =
            check("listen: 127.0.0.1:9\nwait: true\npass: listen_fds\nexec: [/bin/x]\n").unwrap();
        assert_eq!(ok.stderr, StderrMode::Null);
        assert_eq!(
            first_error("listen: 127.0.0.1:9\npass: listen_fds\nexec: [/bin/x]\n")
                .key
                .as_deref(),
            Some("pass")
        );
        let e = first_error(
            "listen: 127.0.0.1:9\nwait: true\npass: listen_fds\nstderr: socket\nexec: [/bin/x]\n",
        );
        assert_eq!(e.key.as_deref(), Some("stderr"));
    }

    #[test]
    fn all_errors_are_collected() {
        let errors = check("name: 'bad name'\nlisten: []\nbacklog: 0\nnice: 40\n").unwrap_err();
        let keys: Vec<_> = errors.iter().filter_map(|e| e.key.as_deref()).collect();
        for key in ["name", "listen", "exec", "backlog", "nice"] {
            assert!(keys.contains(&key), "missing {key} in {keys:?}");
        }
    }

    #[test]
    fn defaults_merge_field_by_field() {
        let defaults: RawDefaults = serde_yaml::from_str(
            "user: nobody\nenv: {A: '1', B: '2'}\nlimits: {instances: 5, timeout: 1m}\naccess: {allow: [127.0.0.0/8]}\n",
        )
        .unwrap();
        let s = check_with(
            "listen: 127.0.0.1:9\nexec: [/bin/x]\nenv: {B: '3'}\nlimits: {instances: 2}\n",
            &defaults,
        )
        .unwrap();
        assert_eq!(s.user, Some(Principal::Name("nobody".into())));
        assert_eq!(s.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(s.env.get("B").map(String::as_str), Some("3"));
        assert_eq!(s.limits.instances, Some(2));
        assert_eq!(s.limits.timeout, Some(std::time::Duration::from_secs(60)));
        assert_eq!(s.access.allow.len(), 1);
        // Internal services get no user from defaults.
        let internal = check_with("listen: 127.0.0.1:7\ninternal: echo\n", &defaults).unwrap();
        assert_eq!(internal.user, None);
    }

    #[test]
    fn access_rules_on_a_wait_stream_service_are_an_error() {
        let e = first_error(
            "listen: 127.0.0.1:9\nwait: true\nexec: [/bin/x]\naccess: {allow: [127.0.0.1]}\n",
        );
        assert_eq!(e.key.as_deref(), Some("access"));
        assert_eq!(e.position, Some((4, 1)));
        // Datagram wait services check the sender of each datagram.
        assert!(check(
            "socket: dgram\nlisten: 127.0.0.1:9\nexec: [/bin/x]\naccess: {allow: [127.0.0.1]}\n"
        )
        .is_ok());
    }

    #[test]
    fn stderr_null_without_quotes_is_the_null_mode() {
        let s = check("listen: 127.0.0.1:9\nexec: [/bin/x]\nstderr: null\n").unwrap();
        assert_eq!(s.stderr, StderrMode::Null);
        let s = check("listen: 127.0.0.1:9\nexec: [/bin/x]\nstderr: \"null\"\n").unwrap();
        assert_eq!(s.stderr, StderrMode::Null);
        let s = check("listen: 127.0.0.1:9\nexec: [/bin/x]\n").unwrap();
        assert_eq!(s.stderr, StderrMode::Socket);
        let defaults: RawDefaults = serde_yaml::from_str("stderr: null\n").unwrap();
        assert_eq!(defaults.stderr, Some(StderrMode::Null));
    }

    #[test]
    fn redirect_and_internal_values() {
        let s = check("listen: 127.0.0.1:9\nredirect: \"[::1]:80\"\n").unwrap();
        assert_eq!(s.action, Action::Redirect("[::1]:80".parse().unwrap()));
        let e = first_error("listen: 127.0.0.1:9\nredirect: backend.example:80\n");
        assert_eq!(
            (e.key.as_deref(), e.position),
            (Some("redirect"), Some((2, 1)))
        );
        assert!(e.message.contains("host names are not resolved"), "{e}");
        let e = first_error("socket: dgram\nlisten: 127.0.0.1:9\nredirect: 127.0.0.1:80\n");
        assert_eq!(e.key.as_deref(), Some("redirect"));
        let text = "listen: 127.0.0.1:9\ninternal: qotd\n";
        let error = crate::config::error::deserialize::<RawService>(text).unwrap_err();
        let error = crate::config::error::from_yaml(Path::new("t.yaml"), text, &error);
        assert_eq!(error.key.as_deref(), Some("internal"));
        assert!(error.message.contains("unknown variant `qotd`"), "{error}");
    }

    #[test]
    fn modes_and_paths() {
        let s = check("listen: /tmp/x.sock\nexec: [/bin/x]\nunix_mode: \"0660\"\numask: \"027\"\n")
            .unwrap();
        assert_eq!((s.unix_socket.mode, s.umask), (Some(0o660), Some(0o27)));
        // Every quoted form means its octal digits; so does a bare number
        // with a leading zero, which YAML leaves a string.
        for (written, meant) in [
            ("\"660\"", 0o660),
            ("\"0o660\"", 0o660),
            ("'0640'", 0o640),
            ("0660", 0o660),
            ("027", 0o27),
        ] {
            let s = check(&format!(
                "listen: /tmp/x.sock\nexec: [/bin/x]\nunix_mode: {written}\numask: {written}\n"
            ))
            .unwrap();
            assert_eq!(
                (s.unix_socket.mode, s.umask),
                (Some(meant), Some(meant)),
                "{written}"
            );
        }
        // A number YAML reads as one is refused, whatever it made of it
        // (0o660 is 432, 660 is 660, 0x1b6 is 438), with its place.
        for bare in ["0o660", "660", "0x1b6", "1.5"] {
            for key in ["unix_mode", "umask"] {
                let text = format!("listen: /tmp/x.sock\nexec: [/bin/x]\n{key}: {bare}\n");
                let error = crate::config::error::deserialize::<RawService>(&text).unwrap_err();
                let error = crate::config::error::from_yaml(Path::new("t.yaml"), &text, &error);
                assert_eq!(error.key.as_deref(), Some(key), "{error}");
                assert_eq!(error.position.map(|p| p.0), Some(3), "{error}");
                assert!(error.message.contains("write the mode"), "{bare}: {error}");
            }
        }
        let e = first_error("listen: /tmp/x.sock\nexec: [/bin/x]\nunix_mode: \"01777\"\n");
        assert_eq!(e.key.as_deref(), Some("unix_mode"));
        for (text, key) in [
            (
                "listen: /tmp/x.sock\nexec: [/bin/x]\nunix_mode: \"0999\"\n",
                "unix_mode",
            ),
            (
                "listen: 127.0.0.1:9\nexec: [/bin/x]\numask: 0o18\n",
                "umask",
            ),
        ] {
            let error = crate::config::error::deserialize::<RawService>(text).unwrap_err();
            let error = crate::config::error::from_yaml(Path::new("t.yaml"), text, &error);
            assert_eq!(error.key.as_deref(), Some(key), "{error}");
            assert!(error.message.contains("invalid octal mode"), "{error}");
        }
        for key in ["chroot", "workdir", "banner", "banner_fail"] {
            let e = first_error(&format!(
                "listen: 127.0.0.1:9\nexec: [/bin/x]\n{key}: relative/path\n"
            ));
            assert_eq!((e.key.as_deref(), e.position), (Some(key), Some((3, 1))));
            assert!(e.message.contains("must be an absolute path"), "{e}");
        }
        let text = "listen: 127.0.0.1:9\nexec: [/bin/x]\nuser: [root]\n";
        let error = crate::config::error::deserialize::<RawService>(text).unwrap_err();
        let error = crate::config::error::from_yaml(Path::new("t.yaml"), text, &error);
        assert_eq!(
            (error.key.as_deref(), error.position.map(|p| p.0)),
            (Some("user"), Some(3)),
            "{error}"
        );
        let s =
            check("listen: 127.0.0.1:9\nexec: [/bin/x]\nuser: 65534\ngroup: nogroup\n").unwrap();
        assert_eq!(
            (s.user, s.group),
            (
                Some(Principal::Id(65534)),
                Some(Principal::Name("nogroup".into()))
            )
        );
        let e = first_error("listen: 127.0.0.1:9\nexec: [/bin/x]\nunix_mode: \"0600\"\n");
        assert_eq!(
            e.key.as_deref(),
            Some("unix_mode"),
            "a Unix mode needs a Unix socket"
        );
    }

    #[test]
    fn time_windows() {
        let w = parse_time_window("08:00-18:30").unwrap();
        assert_eq!((w.start, w.end), (480, 1110));
        assert!(w.contains(600) && !w.contains(1200));
        let night = parse_time_window("22:00-06:00").unwrap();
        assert!(night.contains(23 * 60) && night.contains(60) && !night.contains(12 * 60));
        for bad in ["8-18", "25:00-01:00", "08:00", "08:60-09:00"] {
            assert!(parse_time_window(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cross_service_conflicts() {
        let a = check("listen: '*:9'\nexec: [/bin/x]\n").unwrap();
        let mut b = check("listen: 127.0.0.1:9\nexec: [/bin/x]\n").unwrap();
        b.name = "b".into();
        let mut c = check("socket: dgram\nlisten: 127.0.0.1:9\nexec: [/bin/x]\n").unwrap();
        c.name = "c".into();
        let errors = across(&[a.clone(), b, c]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, 1);
        assert!(errors[0].1.message.contains("already used"));
        let errors = across(&[a.clone(), a]);
        assert!(errors[0].1.message.contains("duplicate service name"));
    }
}
