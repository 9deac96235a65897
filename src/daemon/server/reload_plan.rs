//! What a reload does, decided without touching a socket: `plan` compares
//! the running services with the wanted ones and says which are kept as
//! they are, updated, opened and retired, and which sockets each takes
//! over, binds or closes. `Server::apply` (reload.rs) carries it out.
//!
//! The rules, each tested below:
//! - A socket is known by its identity (type and address). One a wanted
//!   service names stays open and registered, whichever service held it,
//!   so no connection is refused during a reload.
//! - A service whose definition (fingerprint) did not change is kept with
//!   everything it has; one whose definition changed is updated in place,
//!   so its running children stay counted against its limits.
//! - A service whose file no longer checks, and that no wanted service
//!   names, is kept as it runs, sockets included.
//! - Sockets nobody names any more are closed before anything is bound,
//!   so a changed address (`127.0.0.1:9` -> `*:9`) can be bound.
//! - A running service nobody names (and not kept) is retired.

use std::collections::{HashMap, HashSet};

use super::ids::{ServiceId, SourceId};
use crate::config::units::ListenAddr;
use crate::config::SocketKind;

/// A socket's identity: what a reload matches sockets by.
pub type Identity = (SocketKind, ListenAddr);

/// A service as it runs now (retired ones are not given).
pub struct Running<'a> {
    pub id: ServiceId,
    pub name: &'a str,
    pub fingerprint: u64,
    pub sockets: Vec<(Identity, SourceId)>,
    /// Its file does not check now.
    pub file_failed: bool,
}

/// A service the configuration asks for.
pub struct Wanted<'a> {
    pub name: &'a str,
    pub fingerprint: u64,
    pub sockets: Vec<Identity>,
}

/// Sockets one wanted service gets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Sockets {
    /// Running sockets it takes over (from whichever service had them).
    pub reuse: Vec<SourceId>,
    /// Addresses to bind.
    pub bind: Vec<ListenAddr>,
}

/// A running service with a new definition (`wanted`: index into the
/// wanted list).
#[derive(Debug, PartialEq, Eq)]
pub struct Update {
    pub id: ServiceId,
    pub wanted: usize,
    pub sockets: Sockets,
}

/// A service not running yet.
#[derive(Debug, PartialEq, Eq)]
pub struct Open {
    pub wanted: usize,
    pub sockets: Sockets,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Unchanged services: nothing about them is touched.
    pub keep: Vec<ServiceId>,
    /// Services kept on their running definition because their file does
    /// not check (a subset of nothing else: they are not in `keep`).
    pub keep_as_is: Vec<ServiceId>,
    pub update: Vec<Update>,
    pub open: Vec<Open>,
    /// Sockets nobody names any more, closed first.
    pub close: Vec<SourceId>,
    /// Running services nobody names any more.
    pub retire: Vec<ServiceId>,
}

pub fn plan(running: &[Running], wanted: &[Wanted]) -> Plan {
    let wanted_names: HashSet<&str> = wanted.iter().map(|w| w.name).collect();
    let mut plan = Plan::default();
    let mut kept_sockets = HashSet::new();
    for service in running {
        if service.file_failed && !wanted_names.contains(service.name) {
            plan.keep_as_is.push(service.id);
            kept_sockets.extend(service.sockets.iter().map(|(_, source)| *source));
        }
    }
    // Sockets a wanted service may take over: every running one but those
    // of services kept as they are.
    let mut available: HashMap<&Identity, SourceId> = running
        .iter()
        .flat_map(|service| service.sockets.iter())
        .filter(|(_, source)| !kept_sockets.contains(source))
        .map(|(identity, source)| (identity, *source))
        .collect();
    let claimed: HashSet<SourceId> = wanted
        .iter()
        .flat_map(|w| w.sockets.iter())
        .filter_map(|identity| available.get(identity).copied())
        .collect();
    plan.close = running
        .iter()
        .flat_map(|service| service.sockets.iter())
        .map(|(_, source)| *source)
        .filter(|source| !claimed.contains(source) && !kept_sockets.contains(source))
        .collect();
    let by_name: HashMap<&str, &Running> = running.iter().map(|s| (s.name, s)).collect();
    for (index, service) in wanted.iter().enumerate() {
        let mut sockets = Sockets::default();
        for identity in &service.sockets {
            match available.remove(identity) {
                Some(source) => sockets.reuse.push(source),
                None => sockets.bind.push(identity.1.clone()),
            }
        }
        match by_name.get(service.name) {
            Some(running) if running.fingerprint == service.fingerprint => {
                plan.keep.push(running.id);
            }
            Some(running) => plan.update.push(Update {
                id: running.id,
                wanted: index,
                sockets,
            }),
            None => plan.open.push(Open {
                wanted: index,
                sockets,
            }),
        }
    }
    plan.retire = running
        .iter()
        .filter(|s| !wanted_names.contains(s.name) && !plan.keep_as_is.contains(&s.id))
        .map(|s| s.id)
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(addr: &str) -> Identity {
        (SocketKind::Stream, addr.parse().unwrap())
    }

    fn running<'a>(
        id: usize,
        name: &'a str,
        fingerprint: u64,
        sockets: &[(&str, usize)],
    ) -> Running<'a> {
        Running {
            id: ServiceId(id),
            name,
            fingerprint,
            sockets: sockets
                .iter()
                .map(|(addr, source)| (tcp(addr), SourceId(*source)))
                .collect(),
            file_failed: false,
        }
    }

    fn wanted<'a>(name: &'a str, fingerprint: u64, addrs: &[&str]) -> Wanted<'a> {
        Wanted {
            name,
            fingerprint,
            sockets: addrs.iter().map(|a| tcp(a)).collect(),
        }
    }

    #[test]
    fn an_unchanged_configuration_touches_nothing() {
        let now = [
            running(0, "a", 1, &[("127.0.0.1:1", 10)]),
            running(1, "b", 2, &[("127.0.0.1:2", 11)]),
        ];
        let plan = plan(
            &now,
            &[
                wanted("a", 1, &["127.0.0.1:1"]),
                wanted("b", 2, &["127.0.0.1:2"]),
            ],
        );
        assert_eq!(
            plan,
            Plan {
                keep: vec![ServiceId(0), ServiceId(1)],
                ..Plan::default()
            }
        );
    }

    #[test]
    fn a_changed_service_is_updated_on_its_own_socket() {
        let now = [running(0, "a", 1, &[("127.0.0.1:1", 10)])];
        let plan = plan(&now, &[wanted("a", 9, &["127.0.0.1:1", "127.0.0.1:3"])]);
        assert_eq!(
            plan.update,
            vec![Update {
                id: ServiceId(0),
                wanted: 0,
                sockets: Sockets {
                    reuse: vec![SourceId(10)],
                    bind: vec!["127.0.0.1:3".parse().unwrap()],
                },
            }]
        );
        assert!(plan.close.is_empty() && plan.retire.is_empty() && plan.open.is_empty());
    }

    #[test]
    fn a_new_service_is_opened_and_a_removed_one_retired_with_its_sockets_closed() {
        let now = [running(0, "old", 1, &[("127.0.0.1:1", 10)])];
        let plan = plan(&now, &[wanted("new", 2, &["127.0.0.1:2"])]);
        assert_eq!(
            plan.open,
            vec![Open {
                wanted: 0,
                sockets: Sockets {
                    reuse: vec![],
                    bind: vec!["127.0.0.1:2".parse().unwrap()],
                },
            }]
        );
        assert_eq!(plan.close, vec![SourceId(10)]);
        assert_eq!(plan.retire, vec![ServiceId(0)]);
    }

    #[test]
    fn a_socket_moves_to_the_service_that_names_it_now() {
        // "b" takes over "a"'s address while "a" moves elsewhere: the socket
        // stays open (no refused connection), no second bind of it.
        let now = [running(0, "a", 1, &[("127.0.0.1:1", 10)])];
        let plan = plan(
            &now,
            &[
                wanted("a", 2, &["127.0.0.1:5"]),
                wanted("b", 3, &["127.0.0.1:1"]),
            ],
        );
        assert_eq!(
            plan.update[0].sockets.bind,
            vec!["127.0.0.1:5".parse().unwrap()]
        );
        assert_eq!(plan.open[0].sockets.reuse, vec![SourceId(10)]);
        assert!(plan.close.is_empty());
    }

    #[test]
    fn a_changed_address_is_closed_before_the_new_one_is_bound() {
        let now = [running(0, "a", 1, &[("127.0.0.1:9", 10)])];
        let plan = plan(&now, &[wanted("a", 2, &["0.0.0.0:9"])]);
        assert_eq!(plan.close, vec![SourceId(10)]);
        assert_eq!(
            plan.update[0].sockets.bind,
            vec!["0.0.0.0:9".parse().unwrap()]
        );
    }

    #[test]
    fn a_service_whose_file_fails_keeps_running_with_its_sockets() {
        let mut broken = running(0, "a", 1, &[("127.0.0.1:1", 10)]);
        broken.file_failed = true;
        // Another wanted service names the same address: it cannot take it.
        let plan = plan(&[broken], &[wanted("b", 2, &["127.0.0.1:1"])]);
        assert_eq!(plan.keep_as_is, vec![ServiceId(0)]);
        assert!(plan.close.is_empty() && plan.retire.is_empty());
        assert_eq!(
            plan.open[0].sockets.bind,
            vec!["127.0.0.1:1".parse().unwrap()]
        );
    }

    #[test]
    fn a_failed_file_with_a_wanted_service_of_its_name_is_not_kept_as_is() {
        // The name is also defined by a file that checks (e.g. a renamed
        // file): that definition is the one wanted.
        let mut broken = running(0, "a", 1, &[("127.0.0.1:1", 10)]);
        broken.file_failed = true;
        let plan = plan(&[broken], &[wanted("a", 2, &["127.0.0.1:1"])]);
        assert!(plan.keep_as_is.is_empty());
        assert_eq!(plan.update[0].sockets.reuse, vec![SourceId(10)]);
    }

    #[test]
    fn an_empty_configuration_retires_everything() {
        let now = [running(
            0,
            "a",
            1,
            &[("127.0.0.1:1", 10), ("127.0.0.1:2", 11)],
        )];
        let plan = plan(&now, &[]);
        assert_eq!(plan.retire, vec![ServiceId(0)]);
        let mut closed = plan.close.clone();
        closed.sort();
        assert_eq!(closed, vec![SourceId(10), SourceId(11)]);
    }
}
