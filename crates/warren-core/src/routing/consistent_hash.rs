//! Hash ring for the `x-consistent-hash` exchange type.
//!
//! RabbitMQ's `rabbitmq_consistent_hash_exchange` plugin routes each message
//! to exactly one of the exchange's bound destinations, chosen by hashing a
//! value taken from the message: the routing key by default, the header named
//! by the exchange argument `hash-header`, or the basic property
//! (`message_id`, `correlation_id` or `timestamp`) named by `hash-property`.
//! Each binding's key is not a pattern but a weight, a positive integer
//! written as a string, and a destination receives a share of the hashed
//! values proportional to its weight. Messages with equal hashed values always
//! go to the same destination while the bindings stay the same, which is what
//! clients use the exchange for (per-key ordering across parallel queues).
//!
//! [`HashRing`] is the lookup behind that: a sorted ring of 64-bit points,
//! each owned by one destination; a value is routed to the owner of the first
//! point at or after the value's hash, wrapping around. Choosing *which* value
//! to hash (and what to do when a header or property is missing) is up to the
//! caller; [`parse_weight`] validates binding keys.
//!
//! # Differences from RabbitMQ that clients cannot rely on anyway
//!
//! * RabbitMQ (since 3.7.8) uses jump consistent hashing over `weight`
//!   buckets per binding rather than a ring. Which destination a given value
//!   lands on differs, but neither is observable except statistically, and
//!   RabbitMQ itself documents that a value may route to a different queue
//!   after a node restart. Warren is *more* stable: point positions depend
//!   only on the destination and its weight, so routing survives restarts and
//!   does not depend on the order in which bindings were (re)created.
//! * Weights above [`MAX_WEIGHT`] are refused (406) instead of being
//!   accepted; see [`MAX_WEIGHT`] for why.
//!
//! # Memory bound
//!
//! A destination gets [`POINTS_PER_WEIGHT`] points per unit of weight, so the
//! ring has `total weight × POINTS_PER_WEIGHT` points, until that would exceed
//! [`MAX_RING_POINTS`]. Past that, every destination's point count is scaled
//! down by the same factor (keeping at least one point each), so a ring never
//! holds more than `MAX_RING_POINTS` plus one point per destination, whatever
//! weights clients bind with. Scaling keeps the weight ratios, and because a
//! destination's points are a prefix of one fixed sequence, a rescale only
//! moves the values that hashed to dropped or added points; so while a ring
//! is scaled, a binding change moves about twice the minimum number of
//! values rather than all of them.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// Largest binding weight [`parse_weight`] accepts.
///
/// RabbitMQ accepts any positive integer and allocates one bucket per unit,
/// so a binding key of `"4294967295"` exhausts its memory. Warren's ring is
/// bounded by [`MAX_RING_POINTS`] regardless of weights, so this limit is
/// only about keeping weight sums small and predictable; it is far above the
/// single-digit weights RabbitMQ recommends and the tens or hundreds seen in
/// practice, so no reasonable client should meet it.
pub const MAX_WEIGHT: u32 = 1_000_000;

/// Ring points per unit of weight while the ring is under [`MAX_RING_POINTS`].
///
/// A destination's share of the hash space is the sum of the arcs before its
/// points, so its relative deviation from the ideal share is about
/// `1/sqrt(points)`. Measured over 50 sets of ten weight-1 destinations,
/// 256 points per unit left the worst destination 17% off its share, 1024
/// points 8% (3% on average), for 12 KiB of ring per unit of weight.
pub const POINTS_PER_WEIGHT: u32 = 1024;

/// Number of points above which the ring is scaled down (see the module
/// docs). At 12 bytes a point, this caps a ring at about 3 MiB, and the ring
/// is unscaled up to a total weight of 256. Beyond that a destination has
/// about `2^18 × its share` points: one with 1% of the total weight still
/// has about 2600, which keeps it within about 2% of its share.
pub const MAX_RING_POINTS: u64 = 1 << 18;

/// The odd constant (2^64 / golden ratio) that spaces successive inputs of
/// the SplitMix64 sequence used to place a destination's points.
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's finaliser: a bijective mix in which every input bit affects
/// every output bit. FNV-1a alone leaves the high bits (which decide the
/// position on the ring) poorly mixed for short, similar keys such as
/// `"order-1"`, `"order-2"`; this fixes that.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit FNV-1a hasher followed by [`mix64`].
///
/// Routing must not change when the broker restarts, so this cannot be std's
/// randomly seeded `DefaultHasher`; and Warren must not change it between
/// releases without accepting that every hashed value may move once.
#[derive(Clone, Copy)]
struct StableHasher(u64);

impl StableHasher {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01B3;

    fn new() -> Self {
        StableHasher(Self::OFFSET_BASIS)
    }
}

impl Hasher for StableHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(Self::PRIME);
        }
    }

    fn finish(&self) -> u64 {
        mix64(self.0)
    }
}

/// Hash of a message's routing value: its position on the ring.
fn hash_key(key: &[u8]) -> u64 {
    let mut h = StableHasher::new();
    h.write(key);
    h.finish()
}

/// Seed of a destination's point sequence.
///
/// This goes through `D`'s `Hash` impl, whose byte stream std does not
/// promise to keep across Rust releases (it has been unchanged for strings
/// and integers since 1.0). If it ever changed, routing would reshuffle once
/// on upgrade, which RabbitMQ already allows on every restart.
fn dest_seed<D: Hash>(dest: &D) -> u64 {
    let mut h = StableHasher::new();
    dest.hash(&mut h);
    h.finish()
}

/// The `i`-th point (0-based) of the destination whose seed is `seed`.
///
/// Points come from one endless sequence per destination, so a destination
/// with `n` points owns exactly the first `n` of them. That is what makes a
/// weight change move only the values on the added or removed points.
fn point(seed: u64, i: u64) -> u64 {
    mix64(seed.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// One bound destination with all of its bindings.
#[derive(Clone, Debug)]
struct DestEntry<D> {
    dest: D,
    seed: u64,
    /// The weights of this destination's bindings, each distinct. Points are
    /// placed for their sum, so a destination bound twice appears once on the
    /// ring with the combined weight.
    weights: Vec<u32>,
    /// Sum of `weights`; `u64` so that many large bindings cannot overflow.
    total: u64,
}

/// The ring: sorted positions and, at the same index, the position's owner
/// as an index into [`HashRing::dests`]. Two vectors rather than one of pairs
/// because a pair would be padded to 16 bytes, and the binary search only
/// needs the positions.
#[derive(Clone, Debug, Default)]
struct Ring {
    points: Vec<u64>,
    owners: Vec<u32>,
}

/// Consistent-hash ring mapping hashed values to weighted destinations.
///
/// Changing the bindings is cheap; the sorted ring is rebuilt lazily on the
/// first [`pick`](Self::pick) after a change. That keeps recovery of many
/// bindings at boot linear instead of rebuilding the ring once per binding,
/// at the price of one `O(points × log points)` build on the first publish
/// after a change: about 1 ms for ten weight-1 destinations, about 15 ms at
/// the [`MAX_RING_POINTS`] bound (release build).
#[derive(Clone, Debug)]
pub struct HashRing<D> {
    /// Bound destinations in no meaningful order: nothing observable depends
    /// on their order, only on each destination's own seed and weight.
    dests: Vec<DestEntry<D>>,
    /// Where each destination sits in `dests`.
    index: HashMap<D, usize>,
    /// Number of bindings (not destinations).
    bindings: usize,
    /// The ring for the current bindings; empty after any change.
    ring: OnceLock<Ring>,
}

impl<D: Clone + Eq + Hash> Default for HashRing<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Clone + Eq + Hash> HashRing<D> {
    /// An empty ring: [`pick`](Self::pick) returns `None`.
    pub fn new() -> Self {
        HashRing {
            dests: Vec::new(),
            index: HashMap::new(),
            bindings: 0,
            ring: OnceLock::new(),
        }
    }

    /// Adds the binding of `dest` with `weight` (as returned by
    /// [`parse_weight`]); returns `false`, changing nothing, if that exact
    /// binding already exists.
    ///
    /// Bindings of the same destination with different weights are separate
    /// bindings whose weights add up. A weight of 0 is recorded as a binding
    /// but gives no share, as there is nothing sensible to route to it.
    pub fn add(&mut self, dest: D, weight: u32) -> bool {
        match self.index.get(&dest) {
            Some(&i) => {
                let entry = &mut self.dests[i];
                if entry.weights.contains(&weight) {
                    return false;
                }
                entry.weights.push(weight);
                entry.total += u64::from(weight);
            }
            None => {
                let seed = dest_seed(&dest);
                self.index.insert(dest.clone(), self.dests.len());
                self.dests.push(DestEntry {
                    dest,
                    seed,
                    weights: vec![weight],
                    total: u64::from(weight),
                });
            }
        }
        self.bindings += 1;
        self.ring.take();
        true
    }

    /// Removes the binding of `dest` with `weight`; returns `false` if there
    /// was no such binding. Other bindings of `dest` keep their share.
    pub fn remove(&mut self, dest: &D, weight: u32) -> bool {
        let Some(&i) = self.index.get(dest) else {
            return false;
        };
        let entry = &mut self.dests[i];
        let Some(pos) = entry.weights.iter().position(|&w| w == weight) else {
            return false;
        };
        entry.weights.swap_remove(pos);
        entry.total -= u64::from(weight);
        if entry.weights.is_empty() {
            self.index.remove(dest);
            self.dests.swap_remove(i);
            // swap_remove moved the last destination into slot `i`.
            if let Some(moved) = self.dests.get(i) {
                self.index.insert(moved.dest.clone(), i);
            }
        }
        self.bindings -= 1;
        self.ring.take();
        true
    }

    /// The destination for a message whose hashed value (routing key, header
    /// or property, as the exchange is configured) is `key`; `None` if no
    /// binding has a positive weight.
    pub fn pick(&self, key: &[u8]) -> Option<&D> {
        let ring = self.ring.get_or_init(|| self.build());
        if ring.points.is_empty() {
            return None;
        }
        let h = hash_key(key);
        // First point at or after the hash; past the last point the ring
        // wraps around to the first.
        let at = ring.points.partition_point(|&p| p < h);
        let owner = ring.owners[if at == ring.points.len() { 0 } else { at }];
        Some(&self.dests[owner as usize].dest)
    }

    /// Number of bindings (a destination bound with two weights counts twice).
    pub fn len(&self) -> usize {
        self.bindings
    }

    /// Whether there are no bindings.
    pub fn is_empty(&self) -> bool {
        self.bindings == 0
    }

    /// Number of points on the ring, for diagnostics (RabbitMQ exposes its
    /// ring size through `rabbitmq-diagnostics consistent_hash_exchange_ring_state`).
    pub fn point_count(&self) -> usize {
        self.ring.get_or_init(|| self.build()).points.len()
    }

    /// How many points each destination gets: see the module docs.
    fn points_for(&self, total: u64, grand_total: u64) -> u64 {
        // Saturating: `add` takes any u32 weight, and millions of huge
        // bindings must land in the scaled branch, not wrap into the other.
        let per_weight = u64::from(POINTS_PER_WEIGHT);
        if grand_total.saturating_mul(per_weight) <= MAX_RING_POINTS || total == 0 {
            total * per_weight
        } else {
            // u128 so the product cannot overflow; the quotient is at most
            // MAX_RING_POINTS because `total <= grand_total`.
            let scaled = u128::from(total) * u128::from(MAX_RING_POINTS) / u128::from(grand_total);
            (scaled as u64).max(1)
        }
    }

    fn build(&self) -> Ring {
        let grand_total: u64 = self.dests.iter().map(|d| d.total).sum();
        let counts: Vec<u64> = self
            .dests
            .iter()
            .map(|d| self.points_for(d.total, grand_total))
            .collect();
        let mut points = Vec::with_capacity(counts.iter().sum::<u64>() as usize);
        for (owner, (entry, &n)) in self.dests.iter().zip(&counts).enumerate() {
            let owner = u32::try_from(owner).expect("more than u32::MAX destinations");
            points.extend((0..n).map(|i| (point(entry.seed, i), owner)));
        }
        // Equal positions are broken by seed rather than by owner index,
        // because owner indices depend on the order bindings were made and
        // routing must not. (Equal seeds for distinct destinations would need
        // a 64-bit hash collision.)
        points.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                self.dests[a.1 as usize]
                    .seed
                    .cmp(&self.dests[b.1 as usize].seed)
            })
        });
        let (points, owners) = points.into_iter().unzip();
        Ring { points, owners }
    }
}

/// Parses a consistent-hash binding key as a weight.
///
/// Follows the plugin's `validate_binding`: the key must parse as an Erlang
/// integer (optional `+` or `-`, then ASCII digits, nothing else) and be at
/// least 1. On failure returns the text RabbitMQ puts after
/// `PRECONDITION_FAILED - ` in its 406 reply, with the key rendered the way
/// Erlang prints a binary. Keys above [`MAX_WEIGHT`] are Warren's own
/// refusal, worded the same way.
pub fn parse_weight(binding_key: &str) -> Result<u32, String> {
    let (negative, digits) = match binding_key.as_bytes().first() {
        Some(b'+') => (false, &binding_key[1..]),
        Some(b'-') => (true, &binding_key[1..]),
        _ => (false, binding_key),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "The binding key must be an integer: {}",
            erlang_binary(binding_key)
        ));
    }
    let significant = digits.trim_start_matches('0');
    if negative || significant.is_empty() {
        return Err("The binding key must be greater than 0".to_owned());
    }
    // Any digit string too long for u32 is also above the limit, so a parse
    // failure here can only mean "too big".
    match significant.parse::<u32>() {
        Ok(w) if w <= MAX_WEIGHT => Ok(w),
        _ => Err(format!(
            "The binding key must not be greater than {MAX_WEIGHT}"
        )),
    }
}

/// Renders `s` as Erlang's `~tp` prints a binary (an approximation that is
/// exact for the keys clients plausibly send): `<<"abc">>` for printable
/// ASCII, `<<"é"/utf8>>` when there are printable non-ASCII characters, and
/// the bytes, `<<1,2>>`, when there is an unprintable control character.
fn erlang_binary(s: &str) -> String {
    fn escape(c: char) -> Option<&'static str> {
        Some(match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            '\u{b}' => "\\v",
            '\u{8}' => "\\b",
            '\u{c}' => "\\f",
            '\u{1b}' => "\\e",
            _ => return None,
        })
    }
    if s.is_empty() {
        return "<<>>".to_owned();
    }
    let printable = |c: char| escape(c).is_some() || !c.is_control();
    if !s.chars().all(printable) {
        let bytes: Vec<String> = s.bytes().map(|b| b.to_string()).collect();
        return format!("<<{}>>", bytes.join(","));
    }
    let mut out = String::with_capacity(s.len() + 12);
    out.push_str("<<\"");
    for c in s.chars() {
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out.push('"');
    if !s.is_ascii() {
        out.push_str("/utf8");
    }
    out.push_str(">>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("key-{i}"))
    }

    fn ring_of(bindings: &[(&'static str, u32)]) -> HashRing<&'static str> {
        let mut ring = HashRing::new();
        for &(d, w) in bindings {
            assert!(ring.add(d, w));
        }
        ring
    }

    fn counts(ring: &HashRing<&'static str>, n: usize) -> HashMap<&'static str, usize> {
        let mut counts = HashMap::new();
        for k in keys(n) {
            *counts.entry(*ring.pick(k.as_bytes()).unwrap()).or_insert(0) += 1;
        }
        counts
    }

    /// Asserts each destination got its weight's share of `n` keys within
    /// `tolerance` (relative).
    fn assert_proportional(bindings: &[(&'static str, u32)], n: usize, tolerance: f64) {
        let ring = ring_of(bindings);
        let counts = counts(&ring, n);
        let total: u32 = bindings.iter().map(|b| b.1).sum();
        for &(d, w) in bindings {
            let expected = n as f64 * f64::from(w) / f64::from(total);
            let got = counts.get(d).copied().unwrap_or(0) as f64;
            assert!(
                (got - expected).abs() <= expected * tolerance,
                "{d} (weight {w}) got {got}, expected {expected:.0} ± {:.0}%",
                tolerance * 100.0
            );
        }
    }

    #[test]
    fn empty_ring_routes_nowhere() {
        let ring: HashRing<String> = HashRing::new();
        assert!(ring.is_empty());
        assert_eq!(ring.len(), 0);
        assert_eq!(ring.pick(b"anything"), None);
        assert_eq!(ring.pick(b""), None);
    }

    #[test]
    fn ring_emptied_by_removal_routes_nowhere() {
        let mut ring = ring_of(&[("q1", 1)]);
        assert_eq!(ring.pick(b"k"), Some(&"q1"));
        assert!(ring.remove(&"q1", 1));
        assert!(ring.is_empty());
        assert_eq!(ring.pick(b"k"), None);
        assert_eq!(ring.point_count(), 0);
    }

    #[test]
    fn single_destination_gets_everything() {
        let ring = ring_of(&[("only", 3)]);
        for k in keys(1000) {
            assert_eq!(ring.pick(k.as_bytes()), Some(&"only"));
        }
    }

    #[test]
    fn zero_weight_binding_gets_nothing() {
        // parse_weight never yields 0, but the ring must not misbehave if a
        // caller passes it.
        let mut ring = ring_of(&[("zero", 0)]);
        assert_eq!(ring.len(), 1);
        assert_eq!(ring.pick(b"k"), None);
        ring.add("one", 1);
        for k in keys(1000) {
            assert_eq!(ring.pick(k.as_bytes()), Some(&"one"));
        }
    }

    #[test]
    fn add_and_remove_report_whether_the_binding_existed() {
        let mut ring = HashRing::new();
        assert!(ring.add("q", 1));
        assert!(!ring.add("q", 1), "same (dest, weight) twice");
        assert!(
            ring.add("q", 2),
            "same dest, other weight is another binding"
        );
        assert_eq!(ring.len(), 2);
        assert!(!ring.remove(&"q", 3));
        assert!(!ring.remove(&"other", 1));
        assert!(ring.remove(&"q", 1));
        assert!(!ring.remove(&"q", 1));
        assert_eq!(ring.len(), 1);
        assert!(ring.remove(&"q", 2));
        assert!(ring.is_empty());
    }

    #[test]
    fn same_dest_bindings_add_up() {
        // "a" bound with 1 and 2 must weigh as much as "b" bound with 3.
        let mut ring = ring_of(&[("a", 1), ("b", 3)]);
        ring.add("a", 2);
        assert_eq!(ring.point_count(), 6 * POINTS_PER_WEIGHT as usize);
        let counts = counts(&ring, 40_000);
        let (a, b) = (counts["a"] as f64, counts["b"] as f64);
        assert!((a / b - 1.0).abs() < 0.15, "a={a} b={b}");
    }

    #[test]
    fn picks_are_deterministic_and_independent_of_binding_order() {
        let forward = ring_of(&[("q1", 1), ("q2", 2), ("q3", 3), ("q4", 1)]);
        let mut backward = ring_of(&[("q4", 1), ("q3", 3), ("q2", 2), ("q1", 1)]);
        // Churn that ends in the same bindings must not matter either.
        backward.add("tmp", 5);
        backward.remove(&"q2", 2);
        backward.remove(&"tmp", 5);
        backward.add("q2", 2);
        for k in keys(5000) {
            let k = k.as_bytes();
            assert_eq!(forward.pick(k), forward.pick(k));
            assert_eq!(forward.pick(k), backward.pick(k));
        }
        let cloned = forward.clone();
        for k in keys(500) {
            assert_eq!(forward.pick(k.as_bytes()), cloned.pick(k.as_bytes()));
        }
    }

    #[test]
    fn hash_function_is_pinned() {
        // These values decide routing across restarts and upgrades; if this
        // test fails, every hashed value would move to a new destination.
        // Expected values computed independently (in Python) from the
        // FNV-1a and SplitMix64 definitions; `point(0, 0)` is SplitMix64's
        // well-known first output for seed 0.
        assert_eq!(hash_key(b""), 0xf52a_15e9_a9b5_e89b);
        assert_eq!(hash_key(b"order-42"), 0x586d_07f2_8908_894f);
        // std hashes a str as its bytes followed by 0xff.
        assert_eq!(dest_seed(&"q1".to_owned()), 0x29a9_4ea1_0bd3_024d);
        assert_eq!(point(0, 0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn distribution_follows_weights_1_2_3() {
        assert_proportional(&[("q1", 1), ("q2", 2), ("q3", 3)], 60_000, 0.10);
    }

    #[test]
    fn distribution_is_even_for_equal_weights() {
        let names = ["q0", "q1", "q2", "q3", "q4", "q5", "q6", "q7", "q8", "q9"];
        let bindings: Vec<_> = names.iter().map(|&n| (n, 1)).collect();
        assert_proportional(&bindings, 100_000, 0.10);
    }

    #[test]
    fn distribution_follows_readme_example_weights() {
        // The plugin README's example: q0, q1 with weight 1, q2, q3 with 2.
        assert_proportional(&[("q0", 1), ("q1", 1), ("q2", 2), ("q3", 2)], 60_000, 0.10);
    }

    #[test]
    fn distribution_is_even_for_sequential_numeric_keys() {
        // The README publishes str(0)..str(n): short keys differing in their
        // last characters, the case where a weak hash clusters.
        let ring = ring_of(&[("a", 1), ("b", 1), ("c", 1), ("d", 1)]);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in 0..40_000 {
            *counts
                .entry(ring.pick(i.to_string().as_bytes()).unwrap())
                .or_insert(0) += 1;
        }
        for (d, c) in counts {
            assert!((8_500..=11_500).contains(&c), "{d} got {c} of 40000");
        }
    }

    #[test]
    fn removing_a_destination_moves_only_its_keys() {
        let all = [("q1", 1), ("q2", 2), ("q3", 1), ("q4", 3), ("q5", 1)];
        let before = ring_of(&all);
        let mut after = before.clone();
        assert!(after.remove(&"q4", 3));
        let mut moved = 0;
        for k in keys(20_000) {
            let (b, a) = (before.pick(k.as_bytes()), after.pick(k.as_bytes()));
            if b == Some(&"q4") {
                assert_ne!(a, Some(&"q4"));
                moved += 1;
            } else {
                assert_eq!(a, b, "key {k} moved although its destination stayed");
            }
        }
        assert!(moved > 0);
    }

    #[test]
    fn adding_a_destination_moves_keys_only_to_it() {
        let before = ring_of(&[("q1", 1), ("q2", 1), ("q3", 1)]);
        let mut after = before.clone();
        after.add("new", 1);
        let mut moved = 0;
        for k in keys(20_000) {
            let (b, a) = (before.pick(k.as_bytes()), after.pick(k.as_bytes()));
            if a != b {
                assert_eq!(a, Some(&"new"));
                moved += 1;
            }
        }
        // About a quarter of the keys should now go to the new destination.
        assert!((4_000..=6_000).contains(&moved), "moved {moved}");
    }

    #[test]
    fn rebinding_a_destination_with_more_weight_only_moves_keys_to_it() {
        let before = ring_of(&[("q1", 1), ("q2", 1)]);
        let mut after = before.clone();
        after.add("q1", 2);
        for k in keys(10_000) {
            let (b, a) = (before.pick(k.as_bytes()), after.pick(k.as_bytes()));
            if a != b {
                assert_eq!(a, Some(&"q1"));
            }
        }
        // Removing the extra binding restores the original routing exactly.
        after.remove(&"q1", 2);
        for k in keys(10_000) {
            assert_eq!(before.pick(k.as_bytes()), after.pick(k.as_bytes()));
        }
    }

    #[test]
    fn swap_removed_destination_keeps_its_routing() {
        // Removing the first destination moves the last one into its slot;
        // the index must follow so that the moved one still routes and can
        // still be removed.
        let mut ring = ring_of(&[("q1", 1), ("q2", 1), ("q3", 1)]);
        assert!(ring.remove(&"q1", 1));
        let seen: std::collections::HashSet<_> = keys(2000)
            .map(|k| *ring.pick(k.as_bytes()).unwrap())
            .collect();
        assert_eq!(seen, ["q2", "q3"].into_iter().collect());
        assert!(ring.remove(&"q3", 1));
        assert!(ring.add("q3", 4));
        assert!(ring.remove(&"q3", 4));
        assert!(!ring.remove(&"q3", 4));
        for k in keys(200) {
            assert_eq!(ring.pick(k.as_bytes()), Some(&"q2"));
        }
    }

    #[test]
    fn ring_size_is_bounded_for_hostile_weights() {
        let mut ring = HashRing::new();
        for i in 0..200u32 {
            ring.add(i, MAX_WEIGHT);
        }
        // Weights this large even together: u32 overflow must not happen.
        for w in 1..=50u32 {
            ring.add(0, MAX_WEIGHT - w);
        }
        let points = ring.point_count() as u64;
        assert!(points <= MAX_RING_POINTS + 200, "{points} points");
        assert!(points >= MAX_RING_POINTS - 200, "{points} points");
        // Everyone is still reachable, and 0's weight of ~51 MAX_WEIGHTs
        // still dominates.
        let mut counts = vec![0usize; 200];
        for i in 0..200_000u32 {
            counts[*ring.pick(&i.to_le_bytes()).unwrap() as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0));
        let share0 = counts[0] as f64 / 200_000.0;
        let expected0 = 51.0 / 250.0;
        assert!((share0 - expected0).abs() < 0.02, "share of 0: {share0}");
    }

    #[test]
    fn scaled_ring_stays_mostly_consistent() {
        // 300 weight-1 destinations exceed MAX_RING_POINTS, so removing one
        // rescales the others; values on surviving destinations must still
        // almost all stay put.
        let mut before = HashRing::new();
        for i in 0..300u32 {
            before.add(i, 1);
        }
        assert!(before.point_count() as u64 <= MAX_RING_POINTS + 300);
        let mut after = before.clone();
        assert!(after.remove(&7, 1));
        let (mut stayed, mut moved) = (0u32, 0u32);
        for i in 0..30_000u32 {
            let k = i.to_le_bytes();
            match before.pick(&k) {
                Some(7) => assert_ne!(after.pick(&k), Some(&7)),
                b if b == after.pick(&k) => stayed += 1,
                _ => moved += 1,
            }
        }
        assert!(moved * 100 < stayed, "moved {moved}, stayed {stayed}");
    }

    #[test]
    fn scaled_ring_keeps_small_weights_reachable() {
        // One huge binding forces scaling; a weight-1 binding must keep at
        // least one point rather than vanish.
        let ring = ring_of(&[("huge", MAX_WEIGHT), ("tiny", 1)]);
        assert!(ring.point_count() as u64 <= MAX_RING_POINTS + 2);
        let built = ring.ring.get().unwrap();
        let tiny = ring.index[&"tiny"] as u32;
        assert_eq!(built.owners.iter().filter(|&&o| o == tiny).count(), 1);
        // Its one point is routable: the point's own position hashes to it.
        let at = built.owners.iter().position(|&o| o == tiny).unwrap();
        let h = built.points[at];
        let pos = built.points.partition_point(|&p| p < h);
        assert_eq!(built.owners[pos], tiny);
    }

    #[test]
    fn unscaled_ring_size_is_weight_times_points_per_weight() {
        let ring = ring_of(&[("a", 1), ("b", 7)]);
        assert_eq!(ring.point_count(), 8 * POINTS_PER_WEIGHT as usize);
    }

    #[test]
    fn parse_weight_accepts_positive_integers() {
        assert_eq!(parse_weight("1"), Ok(1));
        assert_eq!(parse_weight("10"), Ok(10));
        // Erlang's list_to_integer accepts a sign and leading zeros.
        assert_eq!(parse_weight("+5"), Ok(5));
        assert_eq!(parse_weight("007"), Ok(7));
        assert_eq!(parse_weight(&MAX_WEIGHT.to_string()), Ok(MAX_WEIGHT));
    }

    #[test]
    fn parse_weight_rejects_non_positive_integers() {
        let msg = Err("The binding key must be greater than 0".to_owned());
        assert_eq!(parse_weight("0"), msg);
        assert_eq!(parse_weight("000"), msg);
        assert_eq!(parse_weight("-0"), msg);
        assert_eq!(parse_weight("-3"), msg);
        assert_eq!(parse_weight("-99999999999999999999"), msg);
    }

    #[test]
    fn parse_weight_rejects_non_integers_like_rabbitmq() {
        let err = |k: &str| parse_weight(k).unwrap_err();
        assert_eq!(
            err("abc"),
            "The binding key must be an integer: <<\"abc\">>"
        );
        assert_eq!(err(""), "The binding key must be an integer: <<>>");
        assert_eq!(err(" 1"), "The binding key must be an integer: <<\" 1\">>");
        assert_eq!(
            err("1.5"),
            "The binding key must be an integer: <<\"1.5\">>"
        );
        assert_eq!(
            err("1e3"),
            "The binding key must be an integer: <<\"1e3\">>"
        );
        assert_eq!(err("+"), "The binding key must be an integer: <<\"+\">>");
        assert_eq!(
            err("--1"),
            "The binding key must be an integer: <<\"--1\">>"
        );
        assert_eq!(err("#"), "The binding key must be an integer: <<\"#\">>");
        assert_eq!(
            err("a\"b\\"),
            "The binding key must be an integer: <<\"a\\\"b\\\\\">>"
        );
        assert_eq!(
            err("x\ny"),
            "The binding key must be an integer: <<\"x\\ny\">>"
        );
        assert_eq!(
            err("é"),
            "The binding key must be an integer: <<\"é\"/utf8>>"
        );
        assert_eq!(
            err("a\u{1}"),
            "The binding key must be an integer: <<97,1>>"
        );
        // Non-ASCII digits are not Erlang digits.
        assert_eq!(
            err("١"),
            "The binding key must be an integer: <<\"١\"/utf8>>"
        );
    }

    #[test]
    fn parse_weight_rejects_weights_above_the_limit() {
        let msg = Err(format!(
            "The binding key must not be greater than {MAX_WEIGHT}"
        ));
        assert_eq!(parse_weight(&(MAX_WEIGHT + 1).to_string()), msg);
        assert_eq!(parse_weight(&u32::MAX.to_string()), msg);
        assert_eq!(parse_weight("99999999999999999999999999"), msg);
        assert_eq!(parse_weight("+00004294967296"), msg);
    }
}
