//! What a conversion produces: spawnd services (and the `defaults:` of
//! spawnd.yaml) in a typed form, each value with an optional note that
//! `emit` writes as a YAML comment beside it.
//!
//! Values that spawnd parses as numbers, durations, sizes or rates are held
//! as the exact text to write (the converters build them, so they are known
//! to be plain YAML); everything that came from the input is quoted by `emit`.

/// A value and the comment to write beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Noted<T> {
    pub value: T,
    pub note: Option<String>,
}

impl<T> Noted<T> {
    pub fn plain(value: T) -> Self {
        Noted { value, note: None }
    }

    pub fn with(value: T, note: impl Into<String>) -> Self {
        Noted {
            value,
            note: Some(note.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    Stream,
    Dgram,
}

impl Socket {
    pub fn as_str(self) -> &'static str {
        match self {
            Socket::Stream => "stream",
            Socket::Dgram => "dgram",
        }
    }
}

/// What spawnd does with a client: exactly one of these per service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// argv; [0] is the program path.
    Exec(Vec<String>),
    /// echo | discard | daytime | time | chargen
    Internal(String),
    /// HOST:PORT
    Redirect(String),
}

/// Where a service came from, for the header comment of its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub instances: Option<Noted<String>>,
    pub per_source: Option<Noted<String>>,
    pub rate: Option<Noted<String>>,
    pub rate_pause: Option<Noted<String>>,
    pub per_source_rate: Option<Noted<String>>,
    pub per_source_pause: Option<Noted<String>>,
    pub max_load: Option<Noted<String>>,
    pub cpu: Option<Noted<String>>,
    pub memory: Option<Noted<String>>,
    pub files: Option<Noted<String>>,
    pub processes: Option<Noted<String>>,
    pub core: Option<Noted<String>>,
}

impl Limits {
    /// (key, value) in the order they are written.
    pub fn entries(&self) -> Vec<(&'static str, &Noted<String>)> {
        let all = [
            ("instances", &self.instances),
            ("per_source", &self.per_source),
            ("rate", &self.rate),
            ("rate_pause", &self.rate_pause),
            ("per_source_rate", &self.per_source_rate),
            ("per_source_pause", &self.per_source_pause),
            ("max_load", &self.max_load),
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("files", &self.files),
            ("processes", &self.processes),
            ("core", &self.core),
        ];
        all.into_iter()
            .filter_map(|(key, value)| value.as_ref().map(|v| (key, v)))
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub allow: Vec<Noted<String>>,
    pub deny: Vec<Noted<String>>,
    pub times: Vec<Noted<String>>,
    /// Comment lines written under `access:` (host names spawnd cannot use).
    pub comments: Vec<String>,
}

impl Access {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && self.times.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The file stem in services.d; set by `names::assign`.
    pub name: String,
    /// Where it came from.
    pub origin: Origin,
    /// Further inetd.conf lines merged into this service (tcp + tcp6).
    pub merged: Vec<Origin>,
    /// What it was called in the input ("service echo (id echo-stream)").
    pub label: String,
    /// Comment lines copied from above the entry in the input.
    pub preamble: Vec<String>,
    pub disabled: Option<Noted<bool>>,
    pub socket: Socket,
    pub listen: Vec<Noted<String>>,
    pub wait: Option<Noted<bool>>,
    pub action: Action,
    pub user: Option<Noted<String>>,
    pub group: Option<Noted<String>>,
    /// Supplementary groups; None: the user's own (initgroups).
    pub groups: Option<Noted<Vec<String>>>,
    pub env: Vec<(String, String)>,
    pub pass_env: Vec<String>,
    pub pass_env_note: Option<String>,
    pub nice: Option<Noted<String>>,
    pub umask: Option<Noted<String>>,
    pub banner: Option<Noted<String>>,
    pub banner_success: Option<Noted<String>>,
    pub banner_fail: Option<Noted<String>>,
    pub limits: Limits,
    pub access: Access,
    /// `# xinetd: attr = value (...)` lines for what has no spawnd key.
    pub kept: Vec<String>,
    /// Comment lines that were inside the input's block.
    pub inner_comments: Vec<String>,
    /// What the old super-server enforced that spawnd cannot, and whose
    /// loss would let in clients it refused (a flag that restricts). A
    /// converted file keeps them as comments for the admin to settle; a
    /// service served straight from the old files (`include_*`) does not
    /// start while there are any.
    pub restrictions_lost: Vec<String>,
    /// The daemon name TCP Wrappers checked this service under (tcpd's
    /// argv[0], xinetd's libwrap name), if it was checked.
    pub tcp_wrappers: Option<String>,
}

impl Service {
    pub fn new(label: String, origin: Origin, socket: Socket, action: Action) -> Self {
        Service {
            name: String::new(),
            origin,
            merged: Vec::new(),
            label,
            preamble: Vec::new(),
            disabled: None,
            socket,
            listen: Vec::new(),
            wait: None,
            action,
            user: None,
            group: None,
            groups: None,
            env: Vec::new(),
            pass_env: Vec::new(),
            pass_env_note: None,
            nice: None,
            umask: None,
            banner: None,
            banner_success: None,
            banner_fail: None,
            limits: Limits::default(),
            access: Access::default(),
            kept: Vec::new(),
            inner_comments: Vec::new(),
            restrictions_lost: Vec::new(),
            tcp_wrappers: None,
        }
    }
}

/// An entry spawnd cannot serve (RPC, TCPMUX, raw sockets...): written out
/// as a commented copy of the original so nothing is lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotConverted {
    pub name: String,
    pub origin: Origin,
    pub label: String,
    pub reason: String,
    pub original: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unit {
    Service(Box<Service>),
    NotConverted(NotConverted),
}

impl Unit {
    pub fn name(&self) -> &str {
        match self {
            Unit::Service(s) => &s.name,
            Unit::NotConverted(n) => &n.name,
        }
    }

    pub fn set_name(&mut self, name: String) {
        match self {
            Unit::Service(s) => s.name = name,
            Unit::NotConverted(n) => n.name = name,
        }
    }

    pub fn socket(&self) -> Option<Socket> {
        match self {
            Unit::Service(s) => Some(s.socket),
            Unit::NotConverted(_) => None,
        }
    }

    pub fn origin(&self) -> &Origin {
        match self {
            Unit::Service(s) => &s.origin,
            Unit::NotConverted(n) => &n.origin,
        }
    }
}

/// The `defaults:` section of spawnd.yaml, from xinetd's `defaults { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    pub origin: Origin,
    pub preamble: Vec<String>,
    pub limits: Limits,
    pub access: Access,
    /// Comment lines for what spawnd.yaml cannot hold.
    pub kept: Vec<String>,
}

/// Everything one `spawnd convert` run produces.
#[derive(Debug, Default)]
pub struct Conversion {
    pub defaults: Option<Defaults>,
    pub units: Vec<Unit>,
}
