//! A deadline heap: the event loop's poll timeout is the earliest deadline,
//! and with no deadline it sleeps until an event arrives (no periodic
//! wake-ups). Entries are never removed early; a handler that finds its
//! target gone or changed simply ignores the stale entry.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

struct Entry<K> {
    at: Instant,
    seq: u64,
    key: K,
}

impl<K> PartialEq for Entry<K> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<K> Eq for Entry<K> {}
impl<K> PartialOrd for Entry<K> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<K> Ord for Entry<K> {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct Timers<K> {
    heap: BinaryHeap<Reverse<Entry<K>>>,
    seq: u64,
}

impl<K> Default for Timers<K> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }
}

impl<K> Timers<K> {
    pub fn schedule(&mut self, at: Instant, key: K) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            key,
        }));
    }

    /// How long poll may sleep: `None` (forever) when nothing is scheduled.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse(e)| e.at.saturating_duration_since(now))
    }

    /// The earliest entry, due or not.
    pub fn peek(&self) -> Option<&K> {
        self.heap.peek().map(|Reverse(e)| &e.key)
    }

    /// Removes the earliest entry.
    pub fn pop(&mut self) -> Option<K> {
        self.heap.pop().map(|Reverse(e)| e.key)
    }

    /// Drops every entry for which `keep` is false (cancelled timers, such
    /// as the timeouts of children already reaped).
    pub fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.heap.retain(|Reverse(entry)| keep(&entry.key));
    }

    /// The next entry due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        if self.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            self.heap.pop().map(|Reverse(e)| e.key)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_means_no_timeout() {
        let timers: Timers<u8> = Timers::default();
        assert_eq!(timers.timeout(Instant::now()), None);
    }

    #[test]
    fn fires_in_deadline_order_then_insertion_order() {
        let start = Instant::now();
        let mut timers = Timers::default();
        timers.schedule(start + Duration::from_secs(5), "late");
        timers.schedule(start + Duration::from_secs(1), "early");
        timers.schedule(start + Duration::from_secs(1), "early-second");
        assert_eq!(timers.timeout(start), Some(Duration::from_secs(1)));
        assert_eq!(timers.pop_due(start), None);
        let later = start + Duration::from_secs(2);
        assert_eq!(timers.pop_due(later), Some("early"));
        assert_eq!(timers.pop_due(later), Some("early-second"));
        assert_eq!(timers.pop_due(later), None);
        assert_eq!(timers.timeout(later), Some(Duration::from_secs(3)));
        assert_eq!(timers.pop_due(start + Duration::from_secs(9)), Some("late"));
        assert_eq!(timers.len(), 0);
    }

    #[test]
    fn retain_drops_cancelled_entries_and_keeps_order() {
        let start = Instant::now();
        let mut timers = Timers::default();
        for n in 0..10u32 {
            timers.schedule(start + Duration::from_secs(u64::from(10 - n)), n);
        }
        timers.retain(|n| n % 2 == 0);
        assert_eq!(timers.len(), 5);
        let fired: Vec<u32> =
            std::iter::from_fn(|| timers.pop_due(start + Duration::from_secs(60))).collect();
        assert_eq!(fired, [8, 6, 4, 2, 0]);
    }
}
