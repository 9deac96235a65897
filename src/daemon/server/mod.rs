//! The event loop: one `mio::Poll` for listeners, signals (a signalfd),
//! stderr pipes and timers. One fixed pipeline per turn: poll, dispatch
//! events, continue listeners that had more to accept, fire due timers.
//! Idle, it sleeps in `epoll_wait` with no timeout.

mod accept;
mod children;
mod control;
mod flow;
mod ids;
mod includes;
mod inproc;
mod listeners;
mod reload;
mod reload_plan;
mod source_list;
mod stderr_log;
mod turns;
mod watch;

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ids::{RelayId, ServiceId, SourceId, Table};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::config::{Access, Action, Global, InternalKind, Rare, Service, SocketKind};
use crate::daemon::limits::{Admission, LogBudget};
use crate::daemon::listener::Bound;
use crate::daemon::spawn::{ExecPlan, Spawner};
use crate::daemon::timers::Timers;
use listeners::{Listener, ListenerState};
use turns::Turns;

const SIGNALS: Token = Token(0);
const FIRST_SOURCE: usize = 16;

/// Most connections taken from one listener before others get a turn.
const ACCEPT_BATCH: usize = 64;
/// How long a listener rests after the descriptor table filled up.
const FD_EXHAUSTED_PAUSE: Duration = Duration::from_millis(250);
/// How long a wait-mode service rests after a failed fork.
const FORK_FAILED_PAUSE: Duration = Duration::from_secs(1);

fn token_of(source: SourceId) -> Token {
    Token(source.0 + FIRST_SOURCE)
}

struct StderrPipe {
    fd: std::os::fd::OwnedFd,
    service: Box<str>,
    pid: i32,
    buffer: Vec<u8>,
    relay: stderr_log::Relay,
}

enum Source {
    Listener(Listener),
    Stderr(StderrPipe),
    Control(Bound),
    ControlConn(control::ControlConn),
    Internal(Box<inproc::InternalConn>),
    /// Either side of a redirected connection (an index into `relays`).
    Relay(RelayId),
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Counters {
    pub accepted: u64,
    pub refused_access: u64,
    pub refused_limits: u64,
    pub spawn_failures: u64,
    pub abnormal_exits: u64,
    /// In-process connections ended by a timeout.
    pub timeouts: u64,
    /// Datagrams a wait-mode program exited without reading, dropped.
    pub unread_datagrams: u64,
}

/// What a service does with an admitted client. A plan is shared with
/// the launches of children that have not exec'd yet (`crate::daemon::spawn`),
/// which keep it alive and unchanged whatever a reload does here.
enum Work {
    Exec(std::rc::Rc<ExecPlan>),
    Internal(InternalKind),
    Redirect(SocketAddr),
}

impl Work {
    fn prepare(spec: &Service) -> Result<Work, String> {
        Ok(match &spec.action {
            Action::Exec { program, argv } => Work::Exec(std::rc::Rc::new(
                ExecPlan::for_service(spec, program, argv)
                    .map_err(|e| format!("cannot prepare program: {e}"))?,
            )),
            Action::Internal(kind) => Work::Internal(*kind),
            Action::Redirect(target) => Work::Redirect(*target),
        })
    }
}

/// One configured service at run time.
///
/// The validated `Service` it came from is not kept: a host may configure
/// thousands of services, and all that is needed later is here, once. A
/// reload compares definitions by `fingerprint`, and a service whose file
/// no longer checks keeps this entry as it is.
struct ServiceRt {
    /// Also names its file in `services.d/`, which a reload goes by.
    name: Box<str>,
    fingerprint: u64,
    socket: SocketKind,
    wait: bool,
    /// Removed by a reload; kept only until its last child is reaped.
    retired: bool,
    work: Work,
    access: Rare<Access>,
    /// Owns the service's limits too (the timers read them there).
    admission: Admission,
    /// Read at load (`config::resolve`), so the accept path does no file I/O.
    banners: Rare<crate::config::BannerTexts>,
    listeners: source_list::SourceList,
    counters: Counters,
    /// Made on the first refusal: most services never refuse anyone.
    refusal_log: Option<Box<LogBudget>>,
    /// Made on the first failure to start the program (spawn_failed,
    /// exec_failed): a program that cannot start fails for every client.
    failure_log: Option<Box<LogBudget>>,
}

impl ServiceRt {
    fn new(spec: &Service, work: Work, fingerprint: u64, now: Instant) -> ServiceRt {
        ServiceRt {
            name: Box::from(spec.name.as_str()),
            fingerprint,
            socket: spec.socket,
            wait: spec.wait,
            retired: false,
            access: spec.access.clone(),
            admission: Admission::new(spec.limits.clone(), now),
            banners: spec.banner_texts.clone(),
            work,
            listeners: Default::default(),
            counters: Counters::default(),
            refusal_log: None,
            failure_log: None,
        }
    }

    /// Takes a changed definition of the same service from a reload,
    /// keeping its listeners, counters and running children. A child still
    /// starting holds its own reference to the plan it was started with.
    fn update(&mut self, spec: &Service, work: Work, fingerprint: u64, now: Instant) {
        self.fingerprint = fingerprint;
        self.socket = spec.socket;
        self.wait = spec.wait;
        self.work = work;
        self.access = spec.access.clone();
        self.admission.update(spec.limits.clone(), now);
        self.banners = spec.banner_texts.clone();
    }

    /// Whether one more failure line may be logged now; `Some(n)`: yes,
    /// mentioning the `n` left out before it.
    fn failure_line_allowed(&mut self) -> Option<u64> {
        let now = Instant::now();
        self.failure_log
            .get_or_insert_with(|| Box::new(LogBudget::new(now)))
            .allow(now)
    }

    fn limits(&self) -> &crate::config::Limits {
        self.admission.limits()
    }

    /// The command line, or what the service does instead, for the log.
    fn program_label(&self) -> String {
        use crate::config::ProgramLabel;
        match &self.work {
            Work::Exec(plan) => plan.argv_label(),
            Work::Internal(kind) => ProgramLabel::internal(*kind).to_string(),
            Work::Redirect(addr) => ProgramLabel::redirect(*addr).to_string(),
        }
    }
}

/// A hash of a whole definition. `Debug` prints every field, so two
/// definitions that print alike are alike. A reload leaves a service whose
/// fingerprint did not change as it is; at 64 bits the odds that a change
/// goes unseen are 1 in 2^64 per changed service.
fn fingerprint(spec: &Service) -> u64 {
    use std::fmt::Write;
    use std::hash::Hasher;
    struct Sink(std::collections::hash_map::DefaultHasher);
    impl Write for Sink {
        fn write_str(&mut self, text: &str) -> std::fmt::Result {
            self.0.write(text.as_bytes());
            Ok(())
        }
    }
    let mut sink = Sink(Default::default());
    let _ = write!(sink, "{spec:?}");
    sink.0.finish()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerKey {
    ResumeListener {
        source: SourceId,
    },
    ResumeService {
        service: ServiceId,
    },
    ChildTimeout {
        pid: i32,
        started: Instant,
    },
    ChildKill {
        pid: i32,
        started: Instant,
    },
    /// A deadline of an internal service's connection (`inproc`).
    Internal {
        source: SourceId,
        started: Instant,
    },
    /// A deadline of a redirected connection (`inproc`).
    Relay {
        relay: RelayId,
        started: Instant,
    },
    /// A status client's time to read its answer is over.
    Control {
        source: SourceId,
        started: Instant,
    },
    ShutdownDeadline,
    /// An included inetd.conf or xinetd file changed a moment ago.
    IncludesChanged,
}

pub struct Server {
    poll: Poll,
    signals: SignalFd,
    spawner: Spawner,
    services: Table<ServiceId, ServiceRt>,
    sources: Table<SourceId, Source>,
    /// What the connections served inside spawnd share (`inproc`).
    in_proc: inproc::InProcess,
    children: children::Children,
    timers: Timers<TimerKey>,
    turns: Turns,
    /// Listeners to ask for more connections at the end of the turn.
    probe: accept::Probe,
    /// What the listeners share (the `on_limit: queue` list).
    listeners: listeners::Listeners,
    global: Global,
    config: crate::config::Location,
    /// Sockets passed to spawnd by socket activation, until claimed.
    inherited: crate::daemon::activation::Inherited,
    stopping: Option<children::Stopping>,
    /// Services that do not run as their files say, and why (`status`):
    /// not started at all (`kept: false`) or kept on a previous definition.
    troubles: std::collections::BTreeMap<Box<str>, Trouble>,
    /// Services served from included inetd.conf and xinetd files.
    includes: includes::Includes,
    /// Detached by `--daemon` (the default log target is then syslog).
    daemonized: bool,
    /// The control socket's directory, if spawnd made it: removed at exit
    /// when empty. Last, so it is dropped after the socket in `sources`.
    made_dir: Option<crate::sys::fsafe::EmptyDir>,
}

/// Signals blocked in spawnd: the ones it takes through its signalfd, and
/// SIGPIPE, so a write to a closed socket or pipe fails with EPIPE. SIGPIPE
/// is blocked rather than ignored because an ignored disposition would
/// survive exec into every child, while the mask is simply emptied there.
fn blocked_signals() -> SigSet {
    let mut set = handled_signals();
    set.add(Signal::SIGPIPE);
    set
}

/// Signals spawnd takes through its signalfd.
fn handled_signals() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
    ] {
        set.add(signal);
    }
    set
}

/// Why a service does not run as its file says.
struct Trouble {
    /// It runs on its previous definition (a reload could not apply the new).
    kept: bool,
    reason: String,
}

/// Failure to start serving: exit code 3 with this message.
#[derive(Debug)]
pub struct StartError(pub String);

impl Server {
    /// Sets up the process (descriptor slots, signals) and the poller.
    pub fn new(
        config: crate::config::Location,
        global: Global,
        inherited: crate::daemon::activation::Inherited,
    ) -> Result<Server, StartError> {
        crate::sys::ensure_stdio_open();
        crate::sys::reset_ignored_signals();
        let descriptors = crate::daemon::slots::Gauge::default();
        let spawner = Spawner::new(descriptors.clone())
            .map_err(|e| StartError(format!("cannot reserve descriptors: {e}")))?;
        crate::sys::cloexec_from(crate::daemon::slots::first_free());
        blocked_signals()
            .thread_block()
            .map_err(|e| StartError(format!("cannot block signals: {e}")))?;
        // SAFETY: restoring the default action of SIGPIPE (Rust's runtime set
        // it to ignored); it stays blocked, so it is never delivered.
        unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigDfl) }
            .map_err(|e| StartError(format!("cannot reset SIGPIPE: {e}")))?;
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| StartError(format!("cannot create signalfd: {e}")))?;
        let poll = Poll::new().map_err(|e| StartError(format!("cannot create poller: {e}")))?;
        poll.registry()
            .register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| StartError(format!("cannot watch signals: {e}")))?;
        Ok(Server {
            poll,
            signals,
            spawner,
            services: Table::default(),
            sources: Table::counted(descriptors),
            in_proc: inproc::InProcess {
                movers: flow::Movers::new(global.splice),
                ..Default::default()
            },
            children: children::Children::default(),
            timers: Timers::default(),
            turns: Turns::default(),
            probe: Default::default(),
            listeners: Default::default(),
            global,
            config,
            inherited,
            stopping: None,
            troubles: Default::default(),
            includes: Default::default(),
            daemonized: false,
            made_dir: None,
        })
    }

    /// Frees descriptor 3 for connections (see `spawn`). Call once every
    /// long-lived descriptor of start-up exists, before readiness is
    /// announced, so what a client or a test sees from then on is stable.
    pub fn open_accept_slot(&self) {
        crate::daemon::slots::open_launch_slots();
    }

    pub fn set_daemonized(&mut self) {
        self.daemonized = true;
        self.spawner.detached();
    }

    /// After `--daemon` forks: a signalfd polled through epoll only wakes up
    /// for the process that registered it, so make a new one here.
    pub fn reopen_signals(&mut self) -> Result<(), StartError> {
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| StartError(format!("cannot create signalfd: {e}")))?;
        self.deregister(self.signals.as_raw_fd());
        self.poll
            .registry()
            .register(
                &mut SourceFd(&signals.as_raw_fd()),
                SIGNALS,
                Interest::READABLE,
            )
            .map_err(|e| StartError(format!("cannot watch signals: {e}")))?;
        self.signals = signals;
        Ok(())
    }

    fn register(&self, fd: RawFd, source: SourceId, interest: Interest) -> io::Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), token_of(source), interest)
    }

    fn deregister(&self, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
    }

    /// Opens every socket of `spec` and adds the service; on any bind error
    /// nothing of it is kept.
    fn add_service(&mut self, spec: &Service, now: Instant) -> Result<ServiceId, String> {
        let work = Work::prepare(spec)?;
        let mut bound = Vec::new();
        for addr in &spec.listen {
            let socket = match self.inherited.claim(addr, spec.socket) {
                Some(fd) => Bound::plain(fd),
                None => crate::daemon::listener::bind(
                    addr,
                    spec.socket,
                    spec.backlog,
                    &spec.unix_socket,
                )
                .map_err(|e| format!("cannot listen on {} {addr}: {e}", spec.socket_label()))?,
            };
            bound.push((addr.clone(), socket));
        }
        let kind = spec.socket;
        let id = self
            .services
            .insert(ServiceRt::new(spec, work, fingerprint(spec), now));
        for (addr, socket) in bound {
            self.attach_listener(id, addr, kind, socket);
        }
        Ok(id)
    }

    /// Starts every service of a fresh configuration. Returns how many
    /// enabled services could not be started.
    ///
    /// The definitions are dropped only once every service is built. They
    /// were allocated among the parser's temporaries; had each been freed
    /// as soon as its service was built, the next service's blocks would
    /// have filled its holes, spreading a few live bytes over every page
    /// the parser touched (measured: 0.74 -> 0.58 KB per plain service).
    pub fn start(
        &mut self,
        services: Vec<Service>,
        errors: &[crate::config::ConfigError],
    ) -> (usize, usize) {
        self.note_config_errors(errors);
        let now = Instant::now();
        let (mut started, mut failed) = (0, 0);
        for spec in &services {
            if spec.disabled {
                crate::event!(log::Level::Info, "disabled", service = spec.name; "file={}", spec.file.display());
                continue;
            }
            match self.add_service(spec, now) {
                Ok(_) => started += 1,
                Err(message) => {
                    failed += 1;
                    crate::event!(log::Level::Error, "service_error", service = spec.name; "error={message}", message = crate::logging::line::Quoted(&message));
                    self.note_trouble(&spec.name, false, message);
                }
            }
        }
        self.inherited.close_rest();
        (started, failed)
    }

    /// Notes the services whose files do not check: failed, or kept when
    /// one of that name runs.
    fn note_config_errors(&mut self, errors: &[crate::config::ConfigError]) {
        for error in errors {
            let in_services_d = error
                .file
                .parent()
                .and_then(|dir| dir.file_name())
                .is_some_and(|dir| dir == "services.d");
            if !in_services_d || error.unreadable {
                continue;
            }
            let name = crate::config::load::service_name(&error.file);
            let running = self
                .services
                .iter()
                .any(|(_, s)| !s.retired && *s.name == *name);
            self.note_trouble(name, running, error.to_string());
        }
    }

    /// Notes why `name` does not run as its file says (the first reason
    /// given stays first).
    fn note_trouble(&mut self, name: &str, kept: bool, reason: String) {
        match self.troubles.get_mut(name) {
            Some(trouble) => {
                trouble.kept |= kept;
                trouble.reason.push_str("; ");
                trouble.reason.push_str(&reason);
            }
            None => {
                self.troubles.insert(name.into(), Trouble { kept, reason });
            }
        }
    }

    /// Runs until stopped; returns how the process exits.
    pub fn run(&mut self) -> crate::exit::Exit {
        let mut events = Events::with_capacity(256);
        crate::logging::set_batching(true);
        let code = self.serve(&mut events);
        crate::logging::set_batching(false);
        code
    }

    fn serve(&mut self, events: &mut Events) -> crate::exit::Exit {
        loop {
            crate::logging::flush();
            self.skip_stale_timers();
            let timeout = if self.turns.has_more() {
                Some(Duration::ZERO)
            } else {
                self.timers.timeout(Instant::now())
            };
            if let Err(e) = self.poll.poll(events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                crate::event!(log::Level::Error, "poll_error"; "error={e}", e = crate::logging::line::Quoted(&e));
                return crate::exit::Exit::Runtime;
            }
            // Reap first: an exit frees the instance a waiting client needs.
            let (mut signals, mut included_files) = (false, false);
            for event in events.iter() {
                match event.token() {
                    SIGNALS => signals = true,
                    includes::INCLUDES => included_files = true,
                    _ => {}
                }
            }
            if signals {
                self.on_signals();
            }
            if included_files {
                self.on_includes();
            }
            for event in events.iter() {
                if let Some(source) = event.token().0.checked_sub(FIRST_SOURCE) {
                    self.note_ready(SourceId(source), event);
                }
            }
            let turn = self.turns.take(
                events
                    .iter()
                    .filter_map(|event| event.token().0.checked_sub(FIRST_SOURCE).map(SourceId)),
            );
            for source in &turn {
                self.on_source(*source);
            }
            self.probe_listeners();
            self.turns.done(turn);
            crate::daemon::slots::check(
                [self.poll.as_raw_fd(), self.signals.as_raw_fd()].into_iter(),
            );
            self.fire_timers();
            if self
                .stopping
                .as_ref()
                .is_some_and(|_| self.children.is_empty())
            {
                crate::event!(log::Level::Info, "stopped");
                return crate::exit::Exit::Success;
            }
        }
    }

    fn on_source(&mut self, source: SourceId) {
        match self.sources.get(source) {
            Some(Source::Listener(listener)) if listener.is_armed() => {
                self.on_listener(source);
            }
            Some(Source::Stderr(_)) => self.on_stderr(source),
            Some(Source::Control(_)) => self.on_control(source),
            Some(Source::ControlConn(_)) => self.on_control_conn(source),
            Some(Source::Internal(_)) => self.on_internal(source),
            Some(Source::Relay(_)) => self.on_relay(source),
            _ => {}
        }
    }

    fn on_signals(&mut self) {
        // Several records per read: a short read means the queue is empty,
        // which saves the read that would only say EAGAIN.
        const RECORD: usize = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut buffer = [0u8; RECORD * 8];
        let mut reap = false;
        loop {
            match nix::unistd::read(&self.signals, &mut buffer) {
                Ok(length) => {
                    for record in buffer[..length].chunks_exact(RECORD) {
                        let mut signo = [0u8; 4];
                        signo.copy_from_slice(&record[..4]); // ssi_signo comes first
                        match Signal::try_from(u32::from_ne_bytes(signo) as i32) {
                            // Reaped once below: one waitpid loop serves any
                            // number of (possibly merged) SIGCHLDs.
                            Ok(Signal::SIGCHLD) => reap = true,
                            Ok(Signal::SIGHUP) => self.reload(),
                            Ok(Signal::SIGTERM) | Ok(Signal::SIGINT) => self.begin_stop(),
                            Ok(Signal::SIGUSR1) => self.log_status(),
                            _ => {}
                        }
                    }
                    if length < buffer.len() {
                        break;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    crate::event!(log::Level::Error, "signal_error"; "error={e}", e = crate::logging::line::Quoted(&e));
                    reap = true;
                    break;
                }
            }
        }
        if reap {
            self.reap();
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::ResumeListener { source } => self.resume_listener(source),
                TimerKey::ResumeService { service } => self.resume_service(service, now),
                TimerKey::ChildTimeout { pid, started } => self.child_timeout(pid, started, false),
                TimerKey::ChildKill { pid, started } => self.child_timeout(pid, started, true),
                TimerKey::Internal { source, started } => self.internal_deadline(source, started),
                TimerKey::Relay { relay, started } => self.relay_deadline(relay, started),
                TimerKey::Control { source, started } => self.control_deadline(source, started),
                TimerKey::ShutdownDeadline => self.shutdown_deadline(),
                TimerKey::IncludesChanged => self.includes_settled(),
            }
        }
    }

    fn log_status(&self) {
        for s in self.report().services {
            crate::event!(log::Level::Info, "status", service = s.name; "state={} children={} accepted={} refused_access={} refused_limits={} spawn_failures={} abnormal_exits={} timeouts={} unread_datagrams={}{}", s.state, s.children, s.accepted, s.refused_access, s.refused_limits, s.spawn_failures, s.abnormal_exits, s.timeouts, s.unread_datagrams, s.reason.as_deref().map(|r| format!(" reason={}", crate::logging::line::Quoted(r))).unwrap_or_default());
        }
    }

    fn service_state(&self, service: &ServiceRt) -> &'static str {
        if service.retired {
            return "retired";
        }
        if service
            .admission
            .rate_paused_until(Instant::now())
            .is_some()
        {
            return "paused_rate";
        }
        let states = self.listener_states(service);
        if states
            .iter()
            .any(|s| matches!(s, ListenerState::HandedOff(_)))
        {
            "handed_off"
        } else if states.contains(&ListenerState::Paused) {
            "paused"
        } else {
            "listening"
        }
    }

    /// Whether anything running (child, internal connection, relay) still
    /// belongs to `service`.
    fn service_in_use(&self, service: ServiceId) -> bool {
        self.children.serve(service)
            || self
                .in_proc
                .relays
                .iter()
                .any(|(_, r)| r.service_id() == service)
            || self
                .sources
                .iter()
                .any(|(_, s)| matches!(s, Source::Internal(conn) if conn.service_id() == service))
    }

    /// Forgets a service removed by a reload once nothing of it runs.
    fn drop_retired(&mut self, service: ServiceId) {
        if self.services.get(service).is_some_and(|s| s.retired) && !self.service_in_use(service) {
            self.services.remove(service);
        }
    }

    /// `READY=1` with a `STATUS=` line for systemd.
    pub fn notify_ready(&self) {
        let services = self.services.iter().filter(|(_, s)| !s.retired).count();
        crate::daemon::notify::send(&format!(
            "READY=1\nSTATUS={services} services, {} children",
            self.children.len()
        ));
    }

    pub fn config_dir(&self) -> &PathBuf {
        &self.config.dir
    }
}

#[cfg(test)]
mod tests {
    /// Per-service memory is a benchmark target (bench/): guard the part a
    /// unit test can see, the inline size of a service's runtime entry.
    #[test]
    fn a_service_entry_stays_small() {
        let size = std::mem::size_of::<super::ServiceRt>();
        assert!(size <= 240, "ServiceRt grew to {size} bytes");
        let size = std::mem::size_of::<super::Source>();
        assert!(size <= 96, "a listener's entry grew to {size} bytes");
        assert!(std::mem::size_of::<crate::daemon::limits::Admission>() <= 32);
    }
}
