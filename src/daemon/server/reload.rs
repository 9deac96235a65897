//! SIGHUP: reload as a diff keyed by socket identity (type and address).
//! A socket whose identity is still wanted stays open and registered, so no
//! connection is refused during a reload; a service kept by name is updated
//! in place, so its running children stay counted against its limits.

use std::collections::HashSet;
use std::time::Instant;

use super::ids::{ServiceId, SourceId};
use super::reload_plan::{self, Running, Wanted};
use super::{Server, ServiceRt, Source, Work};
use crate::config::units::ListenAddr;
use crate::config::{Service, SocketKind};

/// A wanted service ready to run: its work prepared, its sockets bound or
/// taken over.
struct Placed {
    work: Work,
    reuse: Vec<SourceId>,
    fresh: Vec<(ListenAddr, crate::daemon::listener::Bound)>,
}

impl Server {
    pub(super) fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        crate::daemon::notify::send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::daemon::notify::monotonic_usec()
        ));
        crate::event!(log::Level::Info, "reload_start"; "dir={}", self.config.dir.display());
        let loaded = match self.config.load() {
            Ok(loaded) => loaded,
            Err(errors) => {
                for error in &errors {
                    crate::event!(log::Level::Error, "config_error"; "{error}");
                }
                crate::event!(log::Level::Error, "reload_rejected"; "detail=\"the running configuration is kept\"");
                self.notify_ready();
                return;
            }
        };
        for error in &loaded.errors {
            crate::event!(log::Level::Error, "config_error"; "{error}");
        }
        for warning in &loaded.warnings {
            crate::event!(log::Level::Warn, "config_warning"; "{warning}");
        }
        // A directory or file that could not be read at all (EMFILE, EIO,
        // EACCES) says nothing about which services are wanted: taking the
        // rest as the whole configuration would retire the services it
        // hides. Keep everything as it runs; a later reload retries.
        if loaded.errors.iter().any(|e| e.unreadable) {
            crate::event!(log::Level::Error, "reload_rejected"; "detail=\"the configuration could not be read; the running configuration is kept\"");
            self.notify_ready();
            return;
        }
        // Errors here are all in service files (a bad spawnd.yaml rejects
        // the whole reload above), or in included files: the services
        // running from those stay as they are.
        let mut failed_names: HashSet<String> = loaded
            .errors
            .iter()
            .map(|e| crate::config::load::service_name(&e.file).to_string())
            .collect();
        let kept_included: Vec<(String, String)> = self
            .includes
            .defined_in(&loaded.broken)
            .map(|name| {
                (
                    name.to_string(),
                    self.includes.source_of(name).unwrap_or_default(),
                )
            })
            .collect();
        failed_names.extend(kept_included.iter().map(|(name, _)| name.clone()));
        let failed_names: HashSet<&str> = failed_names.iter().map(String::as_str).collect();
        self.troubles.clear();
        self.note_config_errors(&loaded.errors);
        self.note_included(&loaded.services, &loaded.refused, &loaded.broken);
        for (name, source) in &kept_included {
            let reason = format!("{source}: its file has errors; the previous definition stays");
            self.note_trouble(name, true, reason);
        }
        self.follow_includes(&loaded.watch);
        let wanted: Vec<Service> = loaded
            .services
            .into_iter()
            .filter(|s| !s.disabled)
            .collect();
        self.global = loaded.global;
        self.in_proc.movers.splice = self.global.splice;
        crate::logging::apply_config(
            self.global.log_target,
            self.global.log_level,
            self.daemonized,
        );
        self.apply(wanted, &failed_names);
        crate::sys::release_free_memory();
        self.notify_ready();
    }

    /// Makes the running services those of `wanted`, plus the services
    /// whose files do not check (`failed_names`) as they are: plans the
    /// change (`reload_plan`), then binds and closes. `wanted` is dropped at
    /// the end, for the reason `start` gives.
    fn apply(&mut self, wanted: Vec<Service>, failed_names: &HashSet<&str>) {
        let now = Instant::now();
        let fingerprints: Vec<u64> = wanted.iter().map(super::fingerprint).collect();
        let plan = {
            let running: Vec<Running> = self
                .services
                .iter()
                .filter(|(_, rt)| !rt.retired)
                .map(|(id, rt)| Running {
                    id,
                    name: &rt.name,
                    fingerprint: rt.fingerprint,
                    sockets: rt
                        .listeners
                        .iter()
                        .filter_map(|source| match self.sources.get(*source) {
                            Some(Source::Listener(l)) => Some(((l.kind, l.addr.clone()), *source)),
                            _ => None,
                        })
                        .collect(),
                    file_failed: failed_names.contains(&*rt.name),
                })
                .collect();
            let wanted: Vec<Wanted> = wanted
                .iter()
                .zip(&fingerprints)
                .map(|(spec, fingerprint)| Wanted {
                    name: &spec.name,
                    fingerprint: *fingerprint,
                    sockets: spec
                        .listen
                        .iter()
                        .map(|addr| (spec.socket, addr.clone()))
                        .collect(),
                })
                .collect();
            reload_plan::plan(&running, &wanted)
        };
        for id in &plan.keep_as_is {
            crate::event!(log::Level::Warn, "reload_kept", service = self.services[*id].name; "detail=\"its file has errors; the previous definition stays\"");
        }
        for source in &plan.close {
            self.close_listener(*source);
        }
        let (mut updated, mut failed) = (0, 0);
        for update in plan.update {
            let spec = &wanted[update.wanted];
            match self.bind_planned(spec, update.sockets) {
                Ok(placed) => {
                    updated += 1;
                    let id = update.id;
                    self.services[id].update(spec, placed.work, fingerprints[update.wanted], now);
                    self.give_sockets(id, spec.socket, placed.reuse, placed.fresh);
                }
                Err(message) => {
                    failed += 1;
                    self.service_failed(&spec.name, message, true);
                }
            }
        }
        let mut added = 0;
        for open in plan.open {
            let spec = &wanted[open.wanted];
            match self.bind_planned(spec, open.sockets) {
                Ok(placed) => {
                    added += 1;
                    let id = self.services.insert(ServiceRt::new(
                        spec,
                        placed.work,
                        fingerprints[open.wanted],
                        now,
                    ));
                    self.give_sockets(id, spec.socket, placed.reuse, placed.fresh);
                }
                Err(message) => {
                    failed += 1;
                    self.service_failed(&spec.name, message, false);
                }
            }
        }
        let removed = plan.retire.len();
        for id in plan.retire {
            crate::event!(
                log::Level::Info,
                "service_removed",
                service = self.services[id].name
            );
            for source in self.services[id].listeners.as_slice().to_vec() {
                self.close_listener(source);
            }
            self.services[id].retired = true;
            self.drop_retired(id);
        }
        crate::event!(log::Level::Info, "reload_done"; "services={} added={added} updated={updated} removed={removed} failed={failed}", self.services.iter().filter(|(_, s)| !s.retired).count());
    }

    /// Prepares a service's work and binds the addresses the plan gives it;
    /// nothing is kept if any of that fails.
    fn bind_planned(
        &mut self,
        spec: &Service,
        sockets: reload_plan::Sockets,
    ) -> Result<Placed, String> {
        let work = Work::prepare(spec)?;
        let mut fresh = Vec::with_capacity(sockets.bind.len());
        for addr in sockets.bind {
            let bound =
                crate::daemon::listener::bind(&addr, spec.socket, spec.backlog, &spec.unix_socket)
                    .map_err(|e| format!("cannot listen on {} {addr}: {e}", spec.socket_label()))?;
            fresh.push((addr, bound));
        }
        Ok(Placed {
            work,
            reuse: sockets.reuse,
            fresh,
        })
    }

    /// Moves the sockets a plan gave service `id` to it, and attaches the
    /// ones just bound.
    fn give_sockets(
        &mut self,
        id: ServiceId,
        kind: SocketKind,
        reuse: Vec<SourceId>,
        fresh: Vec<(ListenAddr, crate::daemon::listener::Bound)>,
    ) {
        for source in reuse {
            let Some(previous) = self.move_listener(source, id) else {
                continue;
            };
            if previous != id {
                if let Some(rt) = self.services.get_mut(previous) {
                    rt.listeners.remove(source);
                }
                self.services[id].listeners.push(source);
            }
        }
        for (addr, bound) in fresh {
            self.attach_listener(id, addr, kind, bound);
        }
    }

    /// A wanted service could not be updated or opened: a running one of
    /// its name stays on its previous definition.
    fn service_failed(&mut self, name: &str, message: String, running: bool) {
        crate::event!(log::Level::Error, "service_error", service = name; "error={message}", message = crate::logging::line::Quoted(&message));
        if running {
            crate::event!(log::Level::Warn, "reload_kept", service = name; "detail=\"the previous definition stays\"");
        }
        self.note_trouble(name, running, message);
    }
}
