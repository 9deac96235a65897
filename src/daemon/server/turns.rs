//! Which sources the event loop serves in one turn.
//!
//! A source that stops early with work left (an accept batch that filled up,
//! a relay that moved its share) asks to be served again next turn, since
//! epoll (edge-triggered, as mio registers) would not report it for what is
//! already waiting. A busy listener is often reported anyway, for the
//! connections that arrived meanwhile. Each source must be served once per
//! turn: serving it twice would let it ask twice, so its share of every
//! later turn would keep growing and everything else would wait longer and
//! longer.

use super::ids::SourceId;

#[derive(Default)]
pub struct Turns {
    again: Vec<SourceId>,
    /// The list handed out for one turn, kept for its capacity.
    scratch: Vec<SourceId>,
}

impl Turns {
    /// `source` has more to do: serve it next turn even if epoll is quiet.
    pub fn again(&mut self, source: SourceId) {
        self.again.push(source);
    }

    /// Whether the next poll must not sleep.
    pub fn has_more(&self) -> bool {
        !self.again.is_empty()
    }

    /// The sources of this turn, each once: those that asked to go again
    /// (older work) first, then those `reported` by epoll, in the order
    /// epoll found them ready (first ready, first served: sorting them would
    /// make the same sources wait every turn, which shows as tail latency).
    /// epoll reports a source at most once; only the few that asked to go
    /// again can repeat. Hand the list back with `done`.
    pub fn take(&mut self, reported: impl Iterator<Item = SourceId>) -> Vec<SourceId> {
        let mut turn = std::mem::take(&mut self.scratch);
        self.again.sort_unstable();
        self.again.dedup();
        turn.extend_from_slice(&self.again);
        turn.extend(reported.filter(|source| self.again.binary_search(source).is_err()));
        self.again.clear();
        turn
    }

    pub fn done(&mut self, mut turn: Vec<SourceId>) {
        turn.clear();
        self.scratch = turn;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_source_is_served_once_per_turn() {
        let mut turns = Turns::default();
        let busy = SourceId(3);
        for _ in 0..100 {
            // epoll reports it every turn, and every turn it fills its batch.
            let turn = turns.take([busy, SourceId(7)].into_iter());
            assert_eq!(turn, [busy, SourceId(7)]);
            for source in &turn {
                if *source == busy {
                    turns.again(busy);
                }
            }
            turns.done(turn);
        }
    }

    #[test]
    fn leftovers_are_served_without_an_event() {
        let mut turns = Turns::default();
        assert!(!turns.has_more());
        turns.again(SourceId(5));
        turns.again(SourceId(2));
        assert!(turns.has_more());
        let turn = turns.take(std::iter::empty());
        assert_eq!(turn, [SourceId(2), SourceId(5)]);
        assert!(!turns.has_more());
        turns.done(turn);
        assert!(turns.take(std::iter::empty()).is_empty());
    }

    #[test]
    fn reported_sources_keep_the_order_epoll_gave() {
        let mut turns = Turns::default();
        turns.again(SourceId(9));
        turns.again(SourceId(9));
        let turn = turns.take([SourceId(7), SourceId(9), SourceId(2)].into_iter());
        assert_eq!(turn, [SourceId(9), SourceId(7), SourceId(2)]);
        turns.done(turn);
    }
}
