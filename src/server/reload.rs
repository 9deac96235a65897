//! SIGHUP: reload as a diff keyed by socket identity (type and address).
//! A socket whose identity is still wanted stays open and registered, so no
//! connection is refused during a reload; a service kept by name is updated
//! in place, so its running children stay counted against its limits.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::time::Instant;

use super::{Server, ServiceRt, Source, Work};
use crate::config::units::ListenAddr;
use crate::config::{Service, SocketKind};

type Identity = (SocketKind, ListenAddr);

/// What a reload does to one wanted service.
enum Change {
    /// Its definition is the running one.
    Same(usize),
    Updated(usize, Work),
    Added(Work),
}

/// What one wanted service gets: sockets taken over and sockets opened.
struct Placement {
    reuse: Vec<usize>,
    fresh: Vec<(ListenAddr, crate::listener::Bound)>,
}

impl Server {
    /// Closes one listener (and removes a Unix socket file spawnd made).
    pub(super) fn close_listener(&mut self, source: usize) {
        let Some(Source::Listener(listener)) = self.sources.get(source) else {
            return;
        };
        let fd = listener.bound.fd.as_raw_fd();
        let service = listener.service;
        if listener.state == super::ListenerState::Armed {
            self.deregister(fd);
        }
        if listener.kind == SocketKind::Dgram {
            self.own_datagram.remove(&listener.addr);
        }
        if let Some(rt) = self.services.get_mut(service) {
            rt.listeners.remove(source);
        }
        for child in self.children.values_mut() {
            if child.handed_off == Some(source) {
                child.handed_off = None;
            }
        }
        self.queued.retain(|s| *s != source);
        self.sources.remove(source);
    }

    fn identities(&self) -> HashMap<Identity, usize> {
        self.sources
            .iter()
            .filter_map(|(key, source)| match source {
                Source::Listener(l) if !self.services.get(l.service).is_some_and(|s| s.retired) => {
                    Some(((l.kind, l.addr.clone()), key))
                }
                _ => None,
            })
            .collect()
    }

    fn place(
        &self,
        spec: &Service,
        existing: &HashMap<Identity, usize>,
    ) -> Result<Placement, String> {
        let mut placement = Placement {
            reuse: Vec::new(),
            fresh: Vec::new(),
        };
        for addr in &spec.listen {
            match existing.get(&(spec.socket, addr.clone())) {
                Some(source) => placement.reuse.push(*source),
                None => {
                    let bound =
                        crate::listener::bind(addr, spec.socket, spec.backlog, &spec.unix_socket)
                            .map_err(|e| {
                            format!("cannot listen on {} {addr}: {e}", spec.socket_label())
                        })?;
                    placement.fresh.push((addr.clone(), bound));
                }
            }
        }
        Ok(placement)
    }

    pub(super) fn reload(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        crate::notify::send(&format!(
            "RELOADING=1\nMONOTONIC_USEC={}",
            crate::notify::monotonic_usec()
        ));
        log::info!("reload_start dir={}", self.config.dir.display());
        let loaded = match crate::report::load(&self.config) {
            Ok(loaded) => loaded,
            Err(errors) => {
                for error in &errors {
                    log::error!("config_error {error}");
                }
                log::error!("reload_rejected detail=\"the running configuration is kept\"");
                self.notify_ready();
                return;
            }
        };
        for error in &loaded.errors {
            log::error!("config_error {error}");
        }
        for warning in &loaded.warnings {
            log::warn!("config_warning {warning}");
        }
        // A directory or file that could not be read at all (EMFILE, EIO,
        // EACCES) says nothing about which services are wanted: taking the
        // rest as the whole configuration would retire the services it
        // hides. Keep everything as it runs; a later reload retries.
        if loaded.errors.iter().any(|e| e.unreadable) {
            log::error!("reload_rejected detail=\"the configuration could not be read; the running configuration is kept\"");
            self.notify_ready();
            return;
        }
        // Errors here are all in service files (a bad spawnd.yaml rejects
        // the whole reload above).
        let failed_names: HashSet<&str> = loaded
            .errors
            .iter()
            .map(|e| crate::config::load::service_name(&e.file))
            .collect();
        let wanted: Vec<Service> = loaded
            .services
            .into_iter()
            .filter(|s| !s.disabled)
            .collect();
        // A file that does not check keeps its service as it runs now.
        let kept: Vec<usize> = self
            .services
            .iter()
            .filter(|(_, rt)| {
                !rt.retired
                    && failed_names.contains(&*rt.name)
                    && !wanted.iter().any(|s| *s.name == *rt.name)
            })
            .map(|(id, rt)| {
                log::warn!("reload_kept service={} detail=\"its file has errors; the previous definition stays\"", rt.name);
                id
            })
            .collect();
        self.troubles.clear();
        self.note_config_errors(&loaded.errors);
        self.global = loaded.global;
        crate::logging::apply_config(
            self.global.log_target,
            self.global.log_level,
            self.daemonized,
        );
        self.apply(wanted, kept);
        crate::sys::release_free_memory();
        self.notify_ready();
    }

    /// Makes the running services those of `wanted`, plus the services
    /// `kept` as they are (their files did not check). `wanted` is dropped
    /// at the end, for the reason `start` gives.
    fn apply(&mut self, wanted: Vec<Service>, kept: Vec<usize>) {
        let now = Instant::now();
        let mut existing = self.identities();
        let kept_sockets: HashSet<usize> = kept
            .iter()
            .flat_map(|id| self.services[*id].listeners.iter().copied())
            .collect();
        // Sockets no wanted service names are closed first, so that a
        // changed address (127.0.0.1:9 -> *:9) can be bound afterwards.
        let claimed: HashSet<usize> = wanted
            .iter()
            .flat_map(|spec| {
                spec.listen
                    .iter()
                    .filter_map(|a| existing.get(&(spec.socket, a.clone())).copied())
            })
            .chain(kept_sockets.iter().copied())
            .collect();
        let unclaimed: Vec<usize> = existing
            .values()
            .copied()
            .filter(|s| !claimed.contains(s))
            .collect();
        for source in unclaimed {
            self.close_listener(source);
        }
        // A kept service's sockets stay its own.
        existing.retain(|_, source| claimed.contains(source) && !kept_sockets.contains(source));
        let by_name: HashMap<Box<str>, usize> = self
            .services
            .iter()
            .filter(|(_, rt)| !rt.retired)
            .map(|(id, rt)| (rt.name.clone(), id))
            .collect();
        let mut kept_services: HashSet<usize> = kept.into_iter().collect();
        let (mut added, mut updated, mut failed) = (0, 0, 0);
        for spec in &wanted {
            let name = &spec.name;
            let fingerprint = super::fingerprint(spec);
            // An unchanged service keeps what it has: nothing is rebuilt.
            let change = match by_name.get(name.as_str()) {
                Some(&id) if self.services[id].fingerprint == fingerprint => Ok(Change::Same(id)),
                Some(&id) => Work::prepare(spec).map(|work| Change::Updated(id, work)),
                None => Work::prepare(spec).map(Change::Added),
            };
            let prepared = change.and_then(|change| Ok((self.place(spec, &existing)?, change)));
            let (placement, change) = match prepared {
                Ok(prepared) => prepared,
                Err(message) => {
                    failed += 1;
                    log::error!(
                        "service_error service={name} error={message}",
                        message = crate::logline::Quoted(&message)
                    );
                    let running = by_name.contains_key(name.as_str());
                    self.note_trouble(name, running, message);
                    if let Some(id) = by_name.get(name.as_str()) {
                        log::warn!(
                            "reload_kept service={name} detail=\"the previous definition stays\""
                        );
                        kept_services.insert(*id);
                    }
                    continue;
                }
            };
            for source in &placement.reuse {
                if let Some(Source::Listener(l)) = self.sources.get(*source) {
                    existing.remove(&(l.kind, l.addr.clone()));
                }
            }
            let kind = spec.socket;
            let id = match change {
                Change::Same(id) => id,
                Change::Updated(id, work) => {
                    updated += 1;
                    self.services[id].update(spec, work, fingerprint, now);
                    id
                }
                Change::Added(work) => {
                    added += 1;
                    self.services
                        .insert(ServiceRt::new(spec, work, fingerprint, now))
                }
            };
            kept_services.insert(id);
            for source in placement.reuse {
                let previous = match self.sources.get_mut(source) {
                    Some(Source::Listener(l)) => std::mem::replace(&mut l.service, id),
                    _ => continue,
                };
                if let Some(rt) = self.services.get_mut(previous) {
                    rt.listeners.remove(source);
                }
                self.services[id].listeners.push(source);
            }
            for (addr, bound) in placement.fresh {
                self.attach_listener(id, addr, kind, bound);
            }
        }
        let retired: Vec<usize> = self
            .services
            .iter()
            .filter(|(id, rt)| !rt.retired && !kept_services.contains(id))
            .map(|(id, _)| id)
            .collect();
        let removed = retired.len();
        for id in retired {
            log::info!("service_removed service={}", self.services[id].name);
            for source in self.services[id].listeners.as_slice().to_vec() {
                self.close_listener(source);
            }
            self.services[id].retired = true;
            self.drop_retired(id);
        }
        log::info!(
            "reload_done services={} added={added} updated={updated} removed={removed} failed={failed}",
            self.services.iter().filter(|(_, s)| !s.retired).count()
        );
    }
}
