//! A map of millions of small keys in little more than their own bytes: a vector sorted by
//! key, searched by bisection, and a hash map of the keys added since it was last merged. A
//! hash map of every key takes two to three times their bytes (its table is at most 7/8 full
//! and doubles as it grows): a million 36-byte block keys took 78 MB as a `HashSet`, and the
//! embedded store's index of them 120 MB as a `HashMap`.

use std::collections::HashMap;
use std::hash::Hash;

/// How many keys are added before they are merged into the sorted vector: the map stays
/// small (a few MB), and a merge (linear in the whole map) is rare.
const MERGE_AFTER: usize = 64 * 1024;

/// A set of `Copy` keys.
pub(crate) type CompactSet<K> = CompactMap<K, ()>;

/// A map of `Copy` keys and values, one value per key.
pub(crate) struct CompactMap<K, V> {
    /// Sorted by key, no key twice, none of `recent`'s.
    sorted: Vec<(K, V)>,
    recent: HashMap<K, V>,
}

impl<K, V> Default for CompactMap<K, V> {
    fn default() -> Self {
        Self {
            sorted: Vec::new(),
            recent: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Copy, V: Copy> CompactMap<K, V> {
    pub(crate) fn get(&self, key: &K) -> Option<V> {
        match self.sorted.binary_search_by(|(held, _)| held.cmp(key)) {
            Ok(found) => Some(self.sorted[found].1),
            Err(_) => self.recent.get(key).copied(),
        }
    }

    pub(crate) fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    /// Maps `key` to `value`; returns whether `key` is new (when it is not, its value is
    /// replaced).
    pub(crate) fn insert(&mut self, key: K, value: V) -> bool {
        if let Ok(found) = self.sorted.binary_search_by(|(held, _)| held.cmp(&key)) {
            self.sorted[found].1 = value;
            return false;
        }
        let new = self.recent.insert(key, value).is_none();
        if self.recent.len() >= MERGE_AFTER {
            self.merge_recent();
        }
        new
    }

    /// Keeps the keys and values `keep` accepts.
    pub(crate) fn retain(&mut self, keep: impl Fn(&K, &V) -> bool) {
        self.sorted.retain(|(key, value)| keep(key, value));
        self.recent.retain(|key, value| keep(key, value));
    }

    /// Every key and its value, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.sorted
            .iter()
            .map(|(key, value)| (key, value))
            .chain(self.recent.iter())
    }

    /// Moves `recent` into `sorted`, merging from the back in place (no second copy of the
    /// map is ever held).
    fn merge_recent(&mut self) {
        let mut recent: Vec<(K, V)> = self.recent.drain().collect();
        self.recent.shrink_to_fit();
        let Some(&filler) = recent.first() else {
            return;
        };
        recent.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut old = self.sorted.len();
        self.sorted.resize(old + recent.len(), filler);
        let mut out = self.sorted.len();
        while let Some(&newest) = recent.last() {
            out -= 1;
            if old > 0 && self.sorted[old - 1].0 > newest.0 {
                self.sorted[out] = self.sorted[old - 1];
                old -= 1;
            } else {
                self.sorted[out] = newest;
                recent.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The map answers as a hash map given the same insertions and removals would,
        /// whenever its recent keys are merged (keys drawn from a small set, so that many are
        /// inserted again, before and after a merge).
        #[test]
        fn answers_as_a_hash_map(
            steps in prop::collection::vec((0u16..600, any::<u32>(), prop::bool::weighted(0.02)), 0..2000),
            removed in 0u32..8,
        ) {
            let mut map = CompactMap::default();
            let mut model = HashMap::new();
            for (key, value, merge) in &steps {
                prop_assert_eq!(map.insert(*key, *value), model.insert(*key, *value).is_none());
                if *merge {
                    map.merge_recent();
                }
            }
            map.retain(|_, value| value % 8 != removed);
            model.retain(|_, value| *value % 8 != removed);
            for key in 0..600 {
                prop_assert_eq!(map.get(&key), model.get(&key).copied());
            }
            let mut listed: Vec<(u16, u32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
            let mut expected: Vec<(u16, u32)> = model.into_iter().collect();
            listed.sort_unstable();
            expected.sort_unstable();
            prop_assert_eq!(listed, expected);
            prop_assert!(map.sorted.windows(2).all(|pair| pair[0].0 < pair[1].0));
        }
    }
}
