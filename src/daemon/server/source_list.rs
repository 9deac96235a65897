//! The listener sources of one service. Nearly every service has exactly
//! one, so that one is kept inline: with thousands of services, a heap block
//! each would cost more than the entry itself.

use super::ids::SourceId;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum SourceList {
    #[default]
    Empty,
    One(SourceId),
    Many(Box<[SourceId]>),
}

impl SourceList {
    pub(super) fn as_slice(&self) -> &[SourceId] {
        match self {
            SourceList::Empty => &[],
            SourceList::One(source) => std::slice::from_ref(source),
            SourceList::Many(sources) => sources,
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, SourceId> {
        self.as_slice().iter()
    }

    pub(super) fn push(&mut self, source: SourceId) {
        let mut all = self.as_slice().to_vec();
        all.push(source);
        *self = Self::from_vec(all);
    }

    pub(super) fn remove(&mut self, source: SourceId) {
        let rest: Vec<SourceId> = self.iter().copied().filter(|s| *s != source).collect();
        *self = Self::from_vec(rest);
    }

    fn from_vec(sources: Vec<SourceId>) -> SourceList {
        match sources[..] {
            [] => SourceList::Empty,
            [one] => SourceList::One(one),
            _ => SourceList::Many(sources.into_boxed_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{SourceId, SourceList};

    #[test]
    fn one_source_stays_inline_and_order_is_kept() {
        let mut list = SourceList::default();
        assert_eq!(list.as_slice(), &[] as &[SourceId]);
        list.push(SourceId(7));
        assert_eq!(list, SourceList::One(SourceId(7)));
        list.push(SourceId(3));
        list.push(SourceId(9));
        assert_eq!(list.as_slice(), &[SourceId(7), SourceId(3), SourceId(9)]);
        list.remove(SourceId(3));
        assert_eq!(list.as_slice(), &[SourceId(7), SourceId(9)]);
        list.remove(SourceId(7));
        assert_eq!(list, SourceList::One(SourceId(9)));
        list.remove(SourceId(4));
        assert_eq!(list, SourceList::One(SourceId(9)));
        list.remove(SourceId(9));
        assert_eq!(list, SourceList::Empty);
        assert!(std::mem::size_of::<SourceList>() <= 24);
    }
}
