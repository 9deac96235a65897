//! Typed keys into the event loop's tables, so a service's key cannot be
//! used where a source's is meant. A source is anything registered with the
//! poller (listener, pipe, connection); its key is also its poll token
//! (`token_of`).

/// A service in `Server::services`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId(pub usize);

/// An event source in `Server::sources`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);
