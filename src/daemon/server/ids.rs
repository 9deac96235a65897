//! Typed keys into the event loop's tables, so a service's key cannot be
//! used where a source's is meant, and the tables they index. A source is
//! anything registered with the poller (listener, pipe, connection); its
//! key is also its poll token (`token_of`).

use std::marker::PhantomData;

use slab::Slab;

/// A key of one kind of table.
pub trait Key: Copy {
    fn from_index(index: usize) -> Self;
    fn index(self) -> usize;
}

macro_rules! key {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub usize);

        impl Key for $name {
            fn from_index(index: usize) -> Self {
                $name(index)
            }
            fn index(self) -> usize {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

key!(
    /// A service in `Server::services`.
    ServiceId
);
key!(
    /// An event source in `Server::sources`.
    SourceId
);
key!(
    /// A redirected connection in `Server::relays`.
    RelayId
);

/// A slab whose entries are reached by one kind of key only.
pub struct Table<K, V> {
    slab: Slab<V>,
    /// Counts the entries, for a table whose every entry holds a descriptor.
    gauge: Option<crate::daemon::slots::Gauge>,
    key: PhantomData<K>,
}

impl<K, V> Default for Table<K, V> {
    fn default() -> Self {
        Table {
            slab: Slab::new(),
            gauge: None,
            key: PhantomData,
        }
    }
}

impl<K, V> Table<K, V> {
    /// A table that keeps `gauge` at its number of entries.
    pub fn counted(gauge: crate::daemon::slots::Gauge) -> Self {
        Table {
            gauge: Some(gauge),
            ..Table::default()
        }
    }
}

impl<K: Key, V> Table<K, V> {
    pub fn insert(&mut self, value: V) -> K {
        if let Some(gauge) = &self.gauge {
            gauge.add();
        }
        K::from_index(self.slab.insert(value))
    }

    /// The key the next `insert` returns.
    pub fn vacant_key(&self) -> K {
        K::from_index(self.slab.vacant_key())
    }

    pub fn get(&self, key: K) -> Option<&V> {
        self.slab.get(key.index())
    }

    pub fn get_mut(&mut self, key: K) -> Option<&mut V> {
        self.slab.get_mut(key.index())
    }

    /// Removes an entry that exists (like `Slab::remove`).
    pub fn remove(&mut self, key: K) -> V {
        if let Some(gauge) = &self.gauge {
            gauge.sub();
        }
        self.slab.remove(key.index())
    }

    pub fn try_remove(&mut self, key: K) -> Option<V> {
        let removed = self.slab.try_remove(key.index());
        if let (Some(gauge), Some(_)) = (&self.gauge, &removed) {
            gauge.sub();
        }
        removed
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (K, &V)> {
        self.slab
            .iter()
            .map(|(index, value)| (K::from_index(index), value))
    }
}

impl<K: Key, V> std::ops::Index<K> for Table<K, V> {
    type Output = V;

    fn index(&self, key: K) -> &V {
        &self.slab[key.index()]
    }
}

impl<K: Key, V> std::ops::IndexMut<K> for Table<K, V> {
    fn index_mut(&mut self, key: K) -> &mut V {
        &mut self.slab[key.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_table_keeps_its_gauge_at_its_length() {
        let gauge = crate::daemon::slots::Gauge::default();
        let mut table: Table<SourceId, &str> = Table::counted(gauge.clone());
        let a = table.insert("a");
        let b = table.insert("b");
        assert_eq!((gauge.get(), table.len()), (2, 2));
        assert_eq!(table.remove(a), "a");
        assert_eq!(table.try_remove(a), None, "a second removal is not counted");
        assert_eq!((gauge.get(), table.len()), (1, 1));
        assert_eq!(table.vacant_key(), a, "the freed key is reused");
        assert_eq!(table[b], "b");
        assert_eq!(table.try_remove(b), Some("b"));
        assert_eq!(gauge.get(), 0);
    }
}
