//! Maps keyed by the host's own ids (of connections and listeners). The ids
//! come from counters, not from peers or guests, so they need no defence
//! against chosen keys, and one multiply is all the hashing they need:
//! SipHash, the default, costs about a hundred instructions per lookup, and
//! an instance looks up its connection on every callback.
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A `HashMap` keyed by a host-assigned id.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// 2^64 divided by the golden ratio, made odd: multiplying by it maps the
/// low bits of consecutive ids to distinct low bits (which pick the bucket)
/// and spreads them over the high bits (which the map's control bytes keep).
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

/// Hashes a `u64` id by one multiply (Fibonacci hashing).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Ids are `u64`s and come through `write_u64`; anything else still
        // hashes, a byte at a time.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(FIBONACCI);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    fn hash(id: u64) -> u64 {
        BuildHasherDefault::<IdHasher>::default().hash_one(id)
    }

    /// Consecutive ids fill a power-of-two table's buckets one each, and
    /// their top seven bits (hashbrown's control byte) take every value.
    #[test]
    fn consecutive_ids_spread_over_buckets_and_control_bytes() {
        let buckets: HashSet<u64> = (1..=4096).map(|id| hash(id) & 4095).collect();
        assert_eq!(buckets.len(), 4096);
        let control: HashSet<u64> = (1..=1024).map(|id| hash(id) >> 57).collect();
        assert_eq!(control.len(), 128);
    }

    #[test]
    fn a_map_of_ids_finds_what_it_holds() {
        let mut map = IdMap::default();
        for id in 1..=10_000u64 {
            map.insert(id, id * 2);
        }
        map.remove(&5_000);
        assert_eq!(map.len(), 9_999);
        assert_eq!(map.get(&4_999), Some(&9_998));
        assert_eq!(map.get(&5_000), None);
    }
}
