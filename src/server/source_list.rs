//! The listener sources of one service. Nearly every service has exactly
//! one, so that one is kept inline: with thousands of services, a heap block
//! each would cost more than the entry itself.

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum SourceList {
    #[default]
    Empty,
    One(usize),
    Many(Box<[usize]>),
}

impl SourceList {
    pub(super) fn as_slice(&self) -> &[usize] {
        match self {
            SourceList::Empty => &[],
            SourceList::One(source) => std::slice::from_ref(source),
            SourceList::Many(sources) => sources,
        }
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, usize> {
        self.as_slice().iter()
    }

    pub(super) fn push(&mut self, source: usize) {
        let mut all = self.as_slice().to_vec();
        all.push(source);
        *self = Self::from_vec(all);
    }

    pub(super) fn remove(&mut self, source: usize) {
        let rest: Vec<usize> = self.iter().copied().filter(|s| *s != source).collect();
        *self = Self::from_vec(rest);
    }

    fn from_vec(sources: Vec<usize>) -> SourceList {
        match sources[..] {
            [] => SourceList::Empty,
            [one] => SourceList::One(one),
            _ => SourceList::Many(sources.into_boxed_slice()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SourceList;

    #[test]
    fn one_source_stays_inline_and_order_is_kept() {
        let mut list = SourceList::default();
        assert_eq!(list.as_slice(), &[] as &[usize]);
        list.push(7);
        assert_eq!(list, SourceList::One(7));
        list.push(3);
        list.push(9);
        assert_eq!(list.as_slice(), &[7, 3, 9]);
        list.remove(3);
        assert_eq!(list.as_slice(), &[7, 9]);
        list.remove(7);
        assert_eq!(list, SourceList::One(9));
        list.remove(4);
        assert_eq!(list, SourceList::One(9));
        list.remove(9);
        assert_eq!(list, SourceList::Empty);
        assert!(std::mem::size_of::<SourceList>() <= 24);
    }
}
