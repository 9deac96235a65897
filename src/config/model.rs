//! The validated configuration: what the rest of spawnd works from. Every
//! value here has been checked; defaults from `spawnd.yaml` are merged in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use super::raw::{
    InternalKind, LogTarget, OnLimit, PassMode, Principal, SocketKind, StderrMode,
};
pub use super::resolve::Credentials;
use super::units::{Cidr, ListenAddr, Rate};

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    /// Its file in `services.d/`, or the inetd.conf or xinetd file it is
    /// served from (then `line` says where in it).
    pub file: PathBuf,
    pub line: Option<SourceLine>,
    pub disabled: bool,
    pub socket: SocketKind,
    pub listen: Vec<ListenAddr>,
    pub wait: bool,
    pub action: Action,
    pub user: Option<Principal>,
    pub group: Option<Principal>,
    pub groups: Option<Vec<Principal>>,
    pub env: BTreeMap<String, String>,
    pub pass_env: Vec<String>,
    pub stderr: StderrMode,
    pub pass: PassMode,
    /// Start the child in a session of its own even when spawnd has no
    /// controlling terminal (otherwise it gets a process group of its own).
    pub new_session: bool,
    /// The listen backlog; `None`, the kernel's most (`net.core.somaxconn`,
    /// 4096 on current kernels), as systemd does: a burst of connections
    /// then waits in the queue instead of having its SYNs dropped (each
    /// one a 1 s retransmit for its client).
    pub backlog: Option<u32>,
    pub unix_socket: Rare<UnixSocketPerms>,
    pub nice: Option<i32>,
    pub umask: Option<u32>,
    pub chroot: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    pub banners: Rare<Banners>,
    /// The banner files' contents, read by `resolve` (empty without it).
    pub banner_texts: Rare<BannerTexts>,
    pub limits: Rare<Limits>,
    pub access: Rare<Access>,
    /// Filled in by `resolve`; `None` runs the child as spawnd's own user.
    pub credentials: Option<Credentials>,
}

/// The line of an included inetd.conf or xinetd file a service is defined
/// at. Not part of what the service is: an entry added above it moves it
/// without changing it, so a reload must not see a new definition (the
/// fingerprint is taken from `Debug`, which leaves the number out).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SourceLine(pub usize);

impl std::fmt::Debug for SourceLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SourceLine")
    }
}

impl Service {
    /// Where it is defined: `FILE` or `FILE:LINE`.
    pub fn source(&self) -> String {
        match self.line {
            Some(SourceLine(line)) => format!("{}:{line}", self.file.display()),
            None => self.file.display().to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a program: `program` is exec'd with `argv` (argv[0] included).
    Exec {
        program: PathBuf,
        argv: Vec<String>,
    },
    Internal(InternalKind),
    Redirect(SocketAddr),
}

/// A part of a service that most services leave empty. Empty, it takes one
/// pointer's room and no allocation: with thousands of services that adds up.
/// Reads go through `Deref`, to a shared empty value when there is none.
#[derive(Debug, Clone, PartialEq)]
pub struct Rare<T>(Option<Box<T>>);

impl<T> Default for Rare<T> {
    fn default() -> Self {
        Rare(None)
    }
}

/// A type with an empty value that `Rare` can stand for without storing it.
pub trait Empty: Sized + PartialEq + 'static {
    const EMPTY: &'static Self;
    fn is_empty(&self) -> bool {
        self == Self::EMPTY
    }
}

impl<T: Empty> Rare<T> {
    pub fn new(value: T) -> Rare<T> {
        Rare((!value.is_empty()).then(|| Box::new(value)))
    }
}

impl<T: Empty + Clone> From<&T> for Rare<T> {
    fn from(value: &T) -> Rare<T> {
        Rare::new(value.clone())
    }
}

impl<T: Empty> std::ops::Deref for Rare<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnixSocketPerms {
    pub mode: Option<u32>,
    pub owner: Option<Principal>,
    pub group: Option<Principal>,
    /// `owner` and `group` as ids, filled in by `resolve`.
    pub owner_id: Option<u32>,
    pub group_id: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Banners {
    pub banner: Option<PathBuf>,
    pub success: Option<PathBuf>,
    pub fail: Option<PathBuf>,
}

/// What `Banners` name, read once at load so the accept path does no file
/// I/O.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BannerTexts {
    pub banner: Vec<u8>,
    pub success: Vec<u8>,
    pub fail: Vec<u8>,
}

impl Empty for BannerTexts {
    const EMPTY: &'static Self = &BannerTexts {
        banner: Vec::new(),
        success: Vec::new(),
        fail: Vec::new(),
    };
}

/// Resource limits set (soft and hard) in the child; `u64::MAX` is unlimited.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rlimits {
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
    pub files: Option<u64>,
    pub processes: Option<u64>,
    pub core: Option<u64>,
}

impl Empty for UnixSocketPerms {
    const EMPTY: &'static Self = &UnixSocketPerms {
        mode: None,
        owner: None,
        group: None,
        owner_id: None,
        group_id: None,
    };
}

impl Empty for Banners {
    const EMPTY: &'static Self = &Banners {
        banner: None,
        success: None,
        fail: None,
    };
}

impl Empty for Limits {
    const EMPTY: &'static Self = &Limits {
        instances: None,
        on_limit: OnLimit::Refuse,
        per_source: None,
        rate: None,
        rate_pause: DEFAULT_RATE_PAUSE,
        per_source_rate: None,
        per_source_pause: DEFAULT_PER_SOURCE_PAUSE,
        timeout: None,
        kill_after: DEFAULT_KILL_AFTER,
        idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
        connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        max_load: None,
        rlimits: Rare(None),
    };
}

impl Empty for Access {
    const EMPTY: &'static Self = &Access {
        allow: Vec::new(),
        deny: Vec::new(),
        times: Vec::new(),
    };
}

impl Empty for Rlimits {
    const EMPTY: &'static Self = &Rlimits {
        cpu: None,
        memory: None,
        files: None,
        processes: None,
        core: None,
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub instances: Option<u32>,
    pub on_limit: OnLimit,
    pub per_source: Option<u32>,
    pub rate: Option<Rate>,
    pub rate_pause: Duration,
    pub per_source_rate: Option<Rate>,
    pub per_source_pause: Duration,
    pub timeout: Option<Duration>,
    pub kill_after: Duration,
    /// In-process connections (internal services, redirect) with no byte
    /// moved for this long are closed; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// How long a redirect waits for its target to accept.
    pub connect_timeout: Duration,
    pub max_load: Option<f64>,
    pub rlimits: Rare<Rlimits>,
}

pub const DEFAULT_RATE_PAUSE: Duration = Duration::from_secs(10);
pub const DEFAULT_PER_SOURCE_PAUSE: Duration = Duration::from_secs(60);
pub const DEFAULT_KILL_AFTER: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_IN_PROCESS: u32 = 4096;

/// A daily window in local time, minutes since midnight; `end < start`
/// wraps past midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: u16,
    pub end: u16,
}

impl TimeWindow {
    pub fn contains(&self, minute_of_day: u16) -> bool {
        if self.start <= self.end {
            (self.start..=self.end).contains(&minute_of_day)
        } else {
            minute_of_day >= self.start || minute_of_day <= self.end
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Access {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    pub times: Vec<TimeWindow>,
}

/// What a service does, as `check`, `list`, `status` and the log show it:
/// its command line, `internal:NAME` or `redirect:ADDRESS`. The one place
/// that renders it, for a validated service and for a prepared program.
pub enum ProgramLabel<I> {
    Argv(I),
    Internal(InternalKind),
    Redirect(SocketAddr),
}

impl ProgramLabel<std::iter::Empty<&'static str>> {
    pub fn internal(kind: InternalKind) -> Self {
        ProgramLabel::Internal(kind)
    }

    pub fn redirect(addr: SocketAddr) -> Self {
        ProgramLabel::Redirect(addr)
    }
}

impl<I, S> std::fmt::Display for ProgramLabel<I>
where
    I: Iterator<Item = S> + Clone,
    S: std::fmt::Display,
{
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            ProgramLabel::Argv(argv) => {
                for (index, arg) in argv.clone().enumerate() {
                    if index > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{arg}")?;
                }
                Ok(())
            }
            ProgramLabel::Internal(kind) => write!(f, "internal:{}", kind.name()),
            ProgramLabel::Redirect(addr) => write!(f, "redirect:{addr}"),
        }
    }
}

impl Service {
    pub fn program_label(&self) -> String {
        match &self.action {
            Action::Exec { argv, .. } => ProgramLabel::Argv(argv.iter()).to_string(),
            Action::Internal(kind) => ProgramLabel::internal(*kind).to_string(),
            Action::Redirect(addr) => ProgramLabel::redirect(*addr).to_string(),
        }
    }

    pub fn socket_label(&self) -> &'static str {
        match self.socket {
            SocketKind::Stream => "stream",
            SocketKind::Dgram => "dgram",
        }
    }
}

/// Settings from `spawnd.yaml` that are not per-service defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    pub max_children: Option<u32>,
    /// Most in-process connections (internal services, redirect) at once.
    pub max_in_process: u32,
    /// Relayed and echoed bytes move by splice(2) where the sockets allow
    /// (false: always copied through spawnd's memory).
    pub splice: bool,
    pub shutdown_grace: Duration,
    pub control_socket: Option<PathBuf>,
    pub log_target: Option<LogTarget>,
    pub log_level: Option<log::LevelFilter>,
    /// An inetd.conf whose entries are served too (`config::include`).
    pub include_inetd_conf: Option<PathBuf>,
    /// An xinetd.conf whose services (and those of its includes) are
    /// served too.
    pub include_xinetd: Option<PathBuf>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            max_children: None,
            max_in_process: DEFAULT_MAX_IN_PROCESS,
            splice: true,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            control_socket: None,
            log_target: None,
            log_level: None,
            include_inetd_conf: None,
            include_xinetd: None,
        }
    }
}
