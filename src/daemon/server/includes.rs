//! The services of included inetd.conf and xinetd files, as the server
//! keeps them: where each one is defined (for `status`, and to keep the
//! services of a file that no longer reads), the ones refused (fail
//! closed), and the watcher that reloads when the files change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};

use super::watch::Watcher;
use super::{Server, TimerKey};
use crate::config::include::{Refused, Watch};
use crate::config::{Service, SourceLine};

/// The loop's token for the watcher.
pub(super) const INCLUDES: Token = Token(1);

/// How long after a change to an included file the reload waits: a tool
/// that writes several files, or writes one and then sets its mode, is
/// done by then, and one reload serves all of it.
const SETTLE: Duration = Duration::from_millis(100);

#[derive(Default)]
pub(super) struct Includes {
    /// Where each running included service is defined.
    origins: BTreeMap<Box<str>, (PathBuf, usize)>,
    watcher: Option<Watcher>,
    /// A reload is scheduled for this changed path.
    pending: Option<PathBuf>,
}

impl Includes {
    /// `FILE:LINE` of an included service.
    pub(super) fn source_of(&self, name: &str) -> Option<String> {
        self.origins
            .get(name)
            .map(|(file, line)| format!("{}:{line}", file.display()))
    }

    /// The running services defined in `files`.
    pub(super) fn defined_in<'a>(&'a self, files: &'a [PathBuf]) -> impl Iterator<Item = &'a str> {
        self.origins
            .iter()
            .filter(move |(_, (file, _))| files.contains(file))
            .map(|(name, _)| &**name)
    }
}

impl Server {
    /// Takes note of a load's included services: where the served ones
    /// come from (the services of `broken` files keep theirs), and the
    /// refused ones, logged and shown as failed with their reason.
    pub fn note_included(&mut self, services: &[Service], refused: &[Refused], broken: &[PathBuf]) {
        let before = std::mem::take(&mut self.includes.origins);
        self.includes.origins = before
            .iter()
            .filter(|(_, (file, _))| broken.contains(file))
            .map(|(name, origin)| (name.clone(), origin.clone()))
            .collect();
        for service in services {
            if let Some(SourceLine(line)) = service.line {
                let origin = (service.file.clone(), line);
                // Logged when new or moved, not on every reload.
                if before.get(service.name.as_str()) != Some(&origin) {
                    crate::event!(log::Level::Info, "included", service = service.name; "source={}:{line}", service.file.display());
                }
                self.includes
                    .origins
                    .insert(service.name.as_str().into(), origin);
            }
        }
        for refusal in refused {
            let reason = refusal.error.to_string();
            crate::event!(log::Level::Error, "include_refused", service = refusal.name; "reason={}", crate::logging::line::Quoted(&reason));
            self.note_trouble(&refusal.name, false, reason);
        }
    }

    /// Watches what `watch` names (nothing: no watcher at all).
    pub fn follow_includes(&mut self, watch: &Watch) {
        if watch.files.is_empty() && watch.dirs.is_empty() {
            if let Some(watcher) = self.includes.watcher.take() {
                self.deregister(watcher.fd());
            }
            return;
        }
        if self.includes.watcher.is_none() {
            let made = Watcher::new().and_then(|watcher| {
                self.poll
                    .registry()
                    .register(&mut SourceFd(&watcher.fd()), INCLUDES, Interest::READABLE)
                    .map_err(|e| format!("cannot watch the inotify descriptor: {e}"))?;
                Ok(watcher)
            });
            match made {
                Ok(watcher) => self.includes.watcher = Some(watcher),
                Err(e) => {
                    crate::event!(log::Level::Warn, "include_watch_failed"; "error={} detail=\"changes to included files take effect on SIGHUP only\"", crate::logging::line::Quoted(&e));
                    return;
                }
            }
        }
        let Some(watcher) = self.includes.watcher.as_mut() else {
            return;
        };
        for problem in watcher.set(watch) {
            crate::event!(log::Level::Warn, "include_watch_failed"; "error={} detail=\"changes there take effect on SIGHUP only\"", crate::logging::line::Quoted(&problem));
        }
        // A change made after the files were read and before the watches
        // were set would otherwise wait for the next one.
        if watch.stamp() != watch.read_stamp {
            self.includes_changed(PathBuf::from("(changed while being read)"));
        }
    }

    fn includes_changed(&mut self, path: PathBuf) {
        if self.includes.pending.is_none() {
            crate::event!(log::Level::Debug, "include_changed"; "path={}", path.display());
            self.includes.pending = Some(path);
            self.timers
                .schedule(Instant::now() + SETTLE, TimerKey::IncludesChanged);
        }
    }

    /// The watcher reported: schedule one reload shortly.
    pub(super) fn on_includes(&mut self) {
        let Some(watcher) = self.includes.watcher.as_mut() else {
            return;
        };
        if let Some(path) = watcher.changed() {
            self.includes_changed(path);
        }
    }

    pub(super) fn includes_settled(&mut self) {
        if let Some(path) = self.includes.pending.take() {
            crate::event!(log::Level::Info, "include_reload"; "path={}", path.display());
            self.reload();
        }
    }
}
