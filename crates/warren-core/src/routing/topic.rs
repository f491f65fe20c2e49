//! Binding index for topic exchanges.
//!
//! A topic exchange binds destinations with patterns such as `stock.*.nyse`
//! or `audit.#`, and every publish has to find all destinations whose pattern
//! matches the routing key. [`TopicIndex`] stores the patterns in a trie keyed
//! by word so that a lookup walks only the branches that can match, instead of
//! testing every binding.
//!
//! # Word semantics (identical to RabbitMQ)
//!
//! Routing keys and patterns are split into words on `.`. The empty string is
//! *zero* words, but otherwise empty words are real words: `"a."` is
//! `["a", ""]`, `".a"` is `["", "a"]` and `"a..b"` is `["a", "", "b"]`.
//! In a pattern, a word that is exactly `*` matches exactly one word (which
//! may be empty) and a word that is exactly `#` matches zero or more words.
//! Any other pattern word, including `a*` or `#a`, matches only itself.
//!
//! # Matching cost
//!
//! Lookup simulates the trie as a non-deterministic automaton: for each word
//! of the key it keeps the *set* of trie nodes that the key prefix can have
//! reached. Because a node is kept at most once per step, a lookup costs at
//! most `O(words × nodes)` even for hostile patterns such as `#.#.#.#.#`,
//! where a naive backtracking matcher would be exponential.

use std::collections::HashSet;
use std::hash::Hash;

use crate::FastMap;

/// Index of the root node in [`TopicIndex::nodes`]; the root is never freed.
const ROOT: usize = 0;

/// Splits a routing key or pattern into words the way RabbitMQ does.
///
/// `str::split` already yields the empty words we need (`"a."` gives
/// `["a", ""]`); the one difference is that RabbitMQ treats the empty string
/// as no words at all rather than as a single empty word.
fn split_words(s: &str) -> impl Iterator<Item = &str> {
    let skip_all = s.is_empty();
    s.split('.').filter(move |_| !skip_all)
}

/// One trie node. Wildcard edges are kept apart from literal words so that a
/// routing key containing a literal `*` or `#` word is never mistaken for the
/// wildcard itself.
#[derive(Debug)]
struct Node<D> {
    words: FastMap<Box<str>, usize>,
    star: Option<usize>,
    hash: Option<usize>,
    /// True when this node is the target of a `#` edge. Such a node can
    /// absorb any number of further key words while staying where it is,
    /// which is how `#` matches "one or more" words; "zero words" is handled
    /// by the epsilon step that follows `hash` edges without consuming input.
    is_hash: bool,
    /// Destinations bound with the pattern that ends at this node.
    dests: HashSet<D>,
}

impl<D> Node<D> {
    fn new(is_hash: bool) -> Self {
        Node {
            words: FastMap::default(),
            star: None,
            hash: None,
            is_hash,
            dests: HashSet::new(),
        }
    }

    /// A node with no bindings and no children serves no pattern and can be
    /// unlinked from its parent.
    fn is_prunable(&self) -> bool {
        self.dests.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }
}

/// The label of the edge leading to a trie node, as seen from its parent.
#[derive(Clone, Copy)]
enum Edge<'a> {
    Word(&'a str),
    Star,
    Hash,
}

impl<'a> Edge<'a> {
    fn of(word: &'a str) -> Self {
        match word {
            "*" => Edge::Star,
            "#" => Edge::Hash,
            w => Edge::Word(w),
        }
    }
}

/// A trie of topic binding patterns mapping routing keys to destinations.
///
/// `D` is whatever identifies a binding's destination (a queue name, an
/// exchange id, ...). Each `(pattern, dest)` pair is stored at most once.
///
/// Nodes live in an arena (`Vec`) addressed by index; freed slots are
/// recycled. Indices make per-step de-duplication of automaton states cheap
/// and keep every operation iterative, so very long patterns cannot overflow
/// the stack.
#[derive(Debug)]
pub struct TopicIndex<D: Clone + Eq + Hash> {
    nodes: Vec<Node<D>>,
    free: Vec<usize>,
    bindings: usize,
}

impl<D: Clone + Eq + Hash> Default for TopicIndex<D> {
    fn default() -> Self {
        Self::new()
    }
}

impl<D: Clone + Eq + Hash> TopicIndex<D> {
    /// Creates an empty index.
    pub fn new() -> Self {
        TopicIndex {
            nodes: vec![Node::new(false)],
            free: Vec::new(),
            bindings: 0,
        }
    }

    /// Number of `(pattern, dest)` bindings in the index.
    pub fn len(&self) -> usize {
        self.bindings
    }

    /// True when the index holds no bindings.
    pub fn is_empty(&self) -> bool {
        self.bindings == 0
    }

    /// Binds `dest` with `pattern`. Returns `false` (and changes nothing) if
    /// exactly this `(pattern, dest)` pair is already bound.
    pub fn insert(&mut self, pattern: &str, dest: D) -> bool {
        let mut at = ROOT;
        for word in split_words(pattern) {
            at = match self.child(at, Edge::of(word)) {
                Some(next) => next,
                None => self.add_child(at, Edge::of(word)),
            };
        }
        let added = self.nodes[at].dests.insert(dest);
        if added {
            self.bindings += 1;
        }
        added
    }

    /// Unbinds `dest` from `pattern`. Returns `false` if that pair was not
    /// bound. Nodes left without bindings or children are freed so that a
    /// churn of short-lived bindings does not grow the trie without bound.
    pub fn remove(&mut self, pattern: &str, dest: &D) -> bool {
        // Remember the path so we can prune bottom-up afterwards without
        // parent pointers.
        let mut path: Vec<(usize, Edge<'_>)> = Vec::new();
        let mut at = ROOT;
        for word in split_words(pattern) {
            let edge = Edge::of(word);
            match self.child(at, edge) {
                Some(next) => {
                    path.push((at, edge));
                    at = next;
                }
                None => return false,
            }
        }
        if !self.nodes[at].dests.remove(dest) {
            return false;
        }
        self.bindings -= 1;

        while let Some((parent, edge)) = path.pop() {
            if !self.nodes[at].is_prunable() {
                break;
            }
            self.unlink(parent, edge);
            self.release(at);
            at = parent;
        }
        true
    }

    /// Appends to `out` every destination bound with a pattern that matches
    /// `routing_key`. A destination reachable through several patterns is
    /// appended only once per call; entries already in `out` are left alone
    /// and are not taken into account.
    pub fn matches(&self, routing_key: &str, out: &mut Vec<D>) {
        let mut current: Vec<usize> = Vec::new();
        let mut seen: HashSet<usize> = HashSet::new();
        self.push_state(ROOT, &mut current, &mut seen);

        let mut next: Vec<usize> = Vec::new();
        for word in split_words(routing_key) {
            next.clear();
            seen.clear();
            for &at in &current {
                let node = &self.nodes[at];
                if let Some(&child) = node.words.get(word) {
                    self.push_state(child, &mut next, &mut seen);
                }
                if let Some(child) = node.star {
                    self.push_state(child, &mut next, &mut seen);
                }
                if node.is_hash {
                    // `#` swallows this word and stays put.
                    self.push_state(at, &mut next, &mut seen);
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.is_empty() {
                return;
            }
        }

        // A single final state already holds distinct destinations, so the
        // common case needs no de-duplication set.
        if let [only] = current.as_slice() {
            out.extend(self.nodes[*only].dests.iter().cloned());
            return;
        }
        let mut emitted: HashSet<&D> = HashSet::new();
        for &at in &current {
            for dest in &self.nodes[at].dests {
                if emitted.insert(dest) {
                    out.push(dest.clone());
                }
            }
        }
    }

    /// Adds `at` to a state set together with everything reachable from it
    /// through `#` edges, since `#` may match zero words.
    fn push_state(&self, at: usize, states: &mut Vec<usize>, seen: &mut HashSet<usize>) {
        let mut cursor = Some(at);
        while let Some(n) = cursor {
            // If `n` is already in the set, so is its `#` chain.
            if !seen.insert(n) {
                return;
            }
            states.push(n);
            cursor = self.nodes[n].hash;
        }
    }

    fn child(&self, at: usize, edge: Edge<'_>) -> Option<usize> {
        let node = &self.nodes[at];
        match edge {
            Edge::Word(w) => node.words.get(w).copied(),
            Edge::Star => node.star,
            Edge::Hash => node.hash,
        }
    }

    fn add_child(&mut self, at: usize, edge: Edge<'_>) -> usize {
        let fresh = Node::new(matches!(edge, Edge::Hash));
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id] = fresh;
                id
            }
            None => {
                self.nodes.push(fresh);
                self.nodes.len() - 1
            }
        };
        let parent = &mut self.nodes[at];
        match edge {
            Edge::Word(w) => {
                parent.words.insert(w.into(), id);
            }
            Edge::Star => parent.star = Some(id),
            Edge::Hash => parent.hash = Some(id),
        }
        id
    }

    fn unlink(&mut self, at: usize, edge: Edge<'_>) {
        let parent = &mut self.nodes[at];
        match edge {
            Edge::Word(w) => {
                parent.words.remove(w);
            }
            Edge::Star => parent.star = None,
            Edge::Hash => parent.hash = None,
        }
    }

    fn release(&mut self, at: usize) {
        // Drop the node's (empty) maps now rather than when the slot is
        // reused, so freed slots hold no heap memory.
        self.nodes[at] = Node::new(false);
        self.free.push(at);
    }

    /// Number of reachable trie nodes, root included (for pruning tests).
    #[cfg(test)]
    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matched(idx: &TopicIndex<&'static str>, key: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        idx.matches(key, &mut out);
        out.sort_unstable();
        out
    }

    /// Index with each pattern bound to a destination named after itself.
    fn index_of(patterns: &[&'static str]) -> TopicIndex<&'static str> {
        let mut idx = TopicIndex::new();
        for p in patterns {
            assert!(idx.insert(p, *p));
        }
        idx
    }

    fn matches_one(pattern: &'static str, key: &str) -> bool {
        !matched(&index_of(&[pattern]), key).is_empty()
    }

    #[test]
    fn split_follows_rabbitmq() {
        let w = |s| split_words(s).collect::<Vec<_>>();
        assert!(w("").is_empty());
        assert_eq!(w("a"), ["a"]);
        assert_eq!(w("."), ["", ""]);
        assert_eq!(w("a."), ["a", ""]);
        assert_eq!(w(".a"), ["", "a"]);
        assert_eq!(w("a..b"), ["a", "", "b"]);
    }

    #[test]
    fn hash_alone_matches_everything() {
        for key in ["", ".", "a", "a.b", "a..b", "a.", ".a", "#", "*"] {
            assert!(matches_one("#", key), "{key:?}");
            assert!(matches_one("#.#", key), "{key:?}");
            assert!(matches_one("#.#.#", key), "{key:?}");
        }
    }

    #[test]
    fn star_is_exactly_one_word() {
        assert!(matches_one("*", "a"));
        assert!(matches_one("*", "*"));
        assert!(!matches_one("*", ""));
        assert!(!matches_one("*", "."));
        assert!(!matches_one("*", "a.b"));
        assert!(matches_one("*.*", "."));
        assert!(matches_one("*.*", "a."));
        assert!(matches_one("*.*", ".a"));
        assert!(!matches_one("*.*", "a"));
        assert!(matches_one("a.*.b", "a..b"));
    }

    #[test]
    fn empty_key_matches_only_zero_word_patterns() {
        for p in ["", "#", "#.#", "#.#.#"] {
            assert!(matches_one(p, ""), "{p:?}");
        }
        for p in ["*", ".", "*.#", "#.*", ".#", "#.", "a", "a.#"] {
            assert!(!matches_one(p, ""), "{p:?}");
        }
        // The empty pattern is zero words too, so it matches only "".
        assert!(!matches_one("", "."));
        assert!(!matches_one("", "a"));
    }

    #[test]
    fn hash_in_the_middle() {
        for key in ["a.b", "a.x.b", "a.x.y.b", "a..b", "a.b.b"] {
            assert!(matches_one("a.#.b", key), "{key:?}");
        }
        for key in ["a", "b", "a.b.c", "x.a.b", "a.", "ab"] {
            assert!(!matches_one("a.#.b", key), "{key:?}");
        }
        assert!(matches_one("#.a.#", "a"));
        assert!(matches_one("#.a.#", "x.a.y"));
        assert!(!matches_one("#.a.#", "x.b.y"));
        assert!(matches_one("#..#", "."));
        assert!(matches_one("#..#", "a..b"));
        assert!(!matches_one("#..#", "a.b"));
    }

    #[test]
    fn star_hash_combinations() {
        // "*.#" and "#.*" both mean "one or more words".
        for p in ["*.#", "#.*"] {
            assert!(!matches_one(p, ""), "{p}");
            for key in ["a", ".", "a.b", "a.b.c", "a."] {
                assert!(matches_one(p, key), "{p} {key:?}");
            }
        }
        assert!(matches_one("a.*.#", "a.b"));
        assert!(matches_one("a.*.#", "a.b.c.d"));
        assert!(matches_one("a.*.#", "a."));
        assert!(!matches_one("a.*.#", "a"));
        assert!(matches_one("a.#.*", "a.b"));
        assert!(!matches_one("a.#.*", "a"));
        // Trailing "#"s may match nothing.
        assert!(matches_one("a.#.#", "a"));
        assert!(matches_one("a.#", "a"));
    }

    #[test]
    fn literal_wildcard_words_in_keys_and_patterns() {
        // A routing key word "*" or "#" is literal; it only matches wildcards
        // or an identical literal, never acts as a wildcard itself.
        assert!(!matches_one("a", "#"));
        assert!(!matches_one("a.b", "a.*"));
        assert!(matches_one("a.*", "a.*"));
        // Only whole words are wildcards.
        assert!(matches_one("a*", "a*"));
        assert!(!matches_one("a*", "ab"));
        assert!(!matches_one("#a", "a"));
        assert!(matches_one("#a", "#a"));
    }

    /// Expected results captured from RabbitMQ 3.10: each key lists exactly
    /// the patterns that routed it (see the module report for the script).
    #[test]
    fn agrees_with_rabbitmq_oracle() {
        let patterns = [
            "", "#", "*", "#.#", "*.*", "*.#", "#.*", "a", "a.#", "#.a", "a.#.b", "a.*", "a.*.#",
            "*.a", ".", "a.", ".a", "a..b", "a.*.b", "#.#.#", "a.#.#", "#.a.#", "*.*.*", "a.#.*",
            "#.b", "#.", ".#", "#..#", "*.", ".*", "a.b", "b.#",
        ];
        let oracle: &[(&str, &[&str])] = &[
            ("", &["", "#", "#.#", "#.#.#"]),
            (
                ".",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", ".", "#.#.#", "#.", ".#", "#..#", "*.", ".*",
                ],
            ),
            (
                "..",
                &[
                    "#", "#.#", "*.#", "#.*", "#.#.#", "*.*.*", "#.", ".#", "#..#",
                ],
            ),
            (
                "a",
                &[
                    "#", "*", "#.#", "*.#", "#.*", "a", "a.#", "#.a", "#.#.#", "a.#.#", "#.a.#",
                ],
            ),
            ("b", &["#", "*", "#.#", "*.#", "#.*", "#.#.#", "#.b", "b.#"]),
            (
                "a.",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "a.#", "a.*", "a.*.#", "a.", "#.#.#", "a.#.#",
                    "#.a.#", "a.#.*", "#.", "#..#", "*.",
                ],
            ),
            (
                ".a",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "#.a", "*.a", ".a", "#.#.#", "#.a.#", ".#",
                    "#..#", ".*",
                ],
            ),
            (
                "a..b",
                &[
                    "#", "#.#", "*.#", "#.*", "a.#", "a.#.b", "a.*.#", "a..b", "a.*.b", "#.#.#",
                    "a.#.#", "#.a.#", "*.*.*", "a.#.*", "#.b", "#..#",
                ],
            ),
            (
                "a.b",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "a.#", "a.#.b", "a.*", "a.*.#", "#.#.#",
                    "a.#.#", "#.a.#", "a.#.*", "#.b", "a.b",
                ],
            ),
            (
                "a.x.b",
                &[
                    "#", "#.#", "*.#", "#.*", "a.#", "a.#.b", "a.*.#", "a.*.b", "#.#.#", "a.#.#",
                    "#.a.#", "*.*.*", "a.#.*", "#.b",
                ],
            ),
            (
                "a.x.y.b",
                &[
                    "#", "#.#", "*.#", "#.*", "a.#", "a.#.b", "a.*.#", "#.#.#", "a.#.#", "#.a.#",
                    "a.#.*", "#.b",
                ],
            ),
            (
                "b.a",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "#.a", "*.a", "#.#.#", "#.a.#", "b.#",
                ],
            ),
            (
                "a.a",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "a.#", "#.a", "a.*", "a.*.#", "*.a", "#.#.#",
                    "a.#.#", "#.a.#", "a.#.*",
                ],
            ),
            (
                "a.b.c",
                &[
                    "#", "#.#", "*.#", "#.*", "a.#", "a.*.#", "#.#.#", "a.#.#", "#.a.#", "*.*.*",
                    "a.#.*",
                ],
            ),
            (
                "x.a.y",
                &["#", "#.#", "*.#", "#.*", "#.#.#", "#.a.#", "*.*.*"],
            ),
            ("*", &["#", "*", "#.#", "*.#", "#.*", "#.#.#"]),
            ("#", &["#", "*", "#.#", "*.#", "#.*", "#.#.#"]),
            (
                "a.*",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "a.#", "a.*", "a.*.#", "#.#.#", "a.#.#",
                    "#.a.#", "a.#.*",
                ],
            ),
            (
                "a.#",
                &[
                    "#", "#.#", "*.*", "*.#", "#.*", "a.#", "a.*", "a.*.#", "#.#.#", "a.#.#",
                    "#.a.#", "a.#.*",
                ],
            ),
            ("x", &["#", "*", "#.#", "*.#", "#.*", "#.#.#"]),
            (
                "a.b.b",
                &[
                    "#", "#.#", "*.#", "#.*", "a.#", "a.#.b", "a.*.#", "a.*.b", "#.#.#", "a.#.#",
                    "#.a.#", "*.*.*", "a.#.*", "#.b",
                ],
            ),
        ];
        let idx = index_of(&patterns);
        for (key, expected) in oracle {
            let mut expected = expected.to_vec();
            expected.sort_unstable();
            assert_eq!(matched(&idx, key), expected, "key {key:?}");
        }
    }

    #[test]
    fn insert_reports_duplicates_and_len_counts_pairs() {
        let mut idx = TopicIndex::new();
        assert!(idx.is_empty());
        assert!(idx.insert("a.*", 1));
        assert!(!idx.insert("a.*", 1));
        assert!(idx.insert("a.*", 2));
        assert!(idx.insert("a.#", 1));
        assert!(idx.insert("", 1));
        assert_eq!(idx.len(), 4);
        assert!(!idx.is_empty());
    }

    #[test]
    fn destinations_are_deduplicated() {
        let mut idx = TopicIndex::new();
        for p in ["#", "a.#", "*.b", "a.b", "#.b", "a.*", "#.#"] {
            idx.insert(p, "q1");
        }
        idx.insert("a.b", "q2");
        idx.insert("#", "q3");
        idx.insert("x.y", "q4");
        let mut out = vec!["q1"]; // pre-existing entries are not considered
        idx.matches("a.b", &mut out);
        out.sort_unstable();
        assert_eq!(out, ["q1", "q1", "q2", "q3"]);
        assert_eq!(matched(&idx, "zzz"), ["q1", "q3"]);
    }

    #[test]
    fn many_bindings() {
        let mut idx = TopicIndex::new();
        for i in 0..1000u32 {
            assert!(idx.insert(&format!("stock.{i}.*"), i));
            // Only the first ten of these are new bindings.
            assert_eq!(idx.insert("stock.#", i % 10), i < 10);
        }
        assert_eq!(idx.len(), 1010);
        let mut out = Vec::new();
        idx.matches("stock.42.nyse", &mut out);
        out.sort_unstable();
        let mut expected: Vec<u32> = (0..10).collect();
        expected.push(42);
        assert_eq!(out, expected);
        out.clear();
        idx.matches("stock.7.nyse", &mut out);
        out.sort_unstable();
        assert_eq!(out, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn remove_prunes_nodes() {
        let mut idx = TopicIndex::new();
        assert_eq!(idx.live_nodes(), 1);
        idx.insert("a.b.c", 1);
        idx.insert("a.b.#", 1);
        idx.insert("a.*.c", 2);
        idx.insert("", 3);
        let full = idx.live_nodes();
        // Unknown pattern, unknown dest, and a prefix of a bound pattern.
        assert!(!idx.remove("a.b.d", &1));
        assert!(!idx.remove("a.b.c", &9));
        assert!(!idx.remove("a.b", &1));
        assert_eq!(idx.live_nodes(), full);

        assert!(idx.remove("a.b.c", &1));
        assert!(!idx.remove("a.b.c", &1));
        // "a.b" is still needed by "a.b.#".
        assert_eq!(idx.live_nodes(), full - 1);
        assert_eq!(matched_u(&idx, "a.b.c"), [1, 2]);

        assert!(idx.remove("a.b.#", &1));
        assert!(idx.remove("", &3));
        assert!(idx.remove("a.*.c", &2));
        assert!(idx.is_empty());
        assert_eq!(idx.live_nodes(), 1);
        assert!(matched_u(&idx, "a.b.c").is_empty());

        // Freed slots are reused.
        let slots = idx.nodes.len();
        idx.insert("x.y.z", 4);
        assert_eq!(idx.nodes.len(), slots);
        assert_eq!(matched_u(&idx, "x.y.z"), [4]);
    }

    #[test]
    fn remove_keeps_node_with_other_destinations() {
        let mut idx = TopicIndex::new();
        idx.insert("a.#", 1);
        idx.insert("a.#", 2);
        let n = idx.live_nodes();
        assert!(idx.remove("a.#", &1));
        assert_eq!(idx.live_nodes(), n);
        assert_eq!(matched_u(&idx, "a"), [2]);
    }

    fn matched_u(idx: &TopicIndex<u32>, key: &str) -> Vec<u32> {
        let mut out = Vec::new();
        idx.matches(key, &mut out);
        out.sort_unstable();
        out
    }

    #[test]
    fn pathological_patterns_are_fast() {
        let mut idx = TopicIndex::new();
        let hashes = vec!["#"; 40].join(".");
        idx.insert(&hashes, 0u32);
        idx.insert(&format!("{hashes}.z"), 1);
        idx.insert(&format!("{hashes}.a.{hashes}.b.{hashes}.c"), 2);
        for i in 1..30 {
            let p = (0..i)
                .map(|j| if j % 2 == 0 { "#" } else { "*" })
                .collect::<Vec<_>>();
            idx.insert(&p.join("."), 100 + i);
        }
        let key = vec!["a"; 250].join(".");
        let start = std::time::Instant::now();
        for _ in 0..20 {
            let got = matched_u(&idx, &key);
            assert!(got.contains(&0));
            assert!(!got.contains(&1));
            assert!(!got.contains(&2));
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
    }

    #[test]
    fn very_long_patterns_do_not_overflow_the_stack() {
        let mut idx = TopicIndex::new();
        let long = vec!["w"; 100_000].join(".");
        assert!(idx.insert(&long, 1u32));
        assert_eq!(matched_u(&idx, &long), [1]);
        assert!(idx.remove(&long, &1));
        assert_eq!(idx.live_nodes(), 1);
    }

    /// Straightforward backtracking matcher used as the specification.
    fn reference_match(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|i| reference_match(rest, &key[i..])),
            Some((&"*", rest)) => !key.is_empty() && reference_match(rest, &key[1..]),
            Some((word, rest)) => key.first() == Some(word) && reference_match(rest, &key[1..]),
        }
    }

    /// Tiny deterministic PRNG (xorshift64*) so the randomized test needs no
    /// extra dependencies and failures are reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn join_words(&mut self, alphabet: &[&str], max_words: usize) -> String {
            let n = self.below(max_words + 1);
            (0..n)
                .map(|_| alphabet[self.below(alphabet.len())])
                .collect::<Vec<_>>()
                .join(".")
        }
    }

    #[test]
    fn randomized_against_reference() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let pattern_words = ["a", "b", "", "*", "#", "#", "*"];
        let key_words = ["a", "b", "", "c", "*", "#"];
        let mut checked = 0;
        for _round in 0..40 {
            let mut idx = TopicIndex::new();
            let mut bound: Vec<(String, u32)> = Vec::new();
            for _ in 0..30 {
                let p = rng.join_words(&pattern_words, 6);
                // Few destinations, so one destination often sits behind
                // several matching patterns and de-duplication is exercised.
                let d = rng.below(8) as u32;
                let fresh = !bound.contains(&(p.clone(), d));
                assert_eq!(idx.insert(&p, d), fresh);
                if fresh {
                    bound.push((p, d));
                }
            }
            // Remove about a third of them to exercise pruning.
            for i in (0..bound.len()).rev() {
                if rng.below(3) == 0 {
                    let (p, d) = bound.swap_remove(i);
                    assert!(idx.remove(&p, &d));
                }
            }
            assert_eq!(idx.len(), bound.len());
            for _ in 0..100 {
                let key = rng.join_words(&key_words, 7);
                let key_split: Vec<&str> = split_words(&key).collect();
                let mut expected: Vec<u32> = bound
                    .iter()
                    .filter(|(p, _)| {
                        let ps: Vec<&str> = split_words(p).collect();
                        reference_match(&ps, &key_split)
                    })
                    .map(|(_, d)| *d)
                    .collect();
                expected.sort_unstable();
                expected.dedup();
                let got = matched_u(&idx, &key);
                assert_eq!(got, expected, "key {key:?} bindings {bound:?}");
                checked += 1;
            }
            for (p, d) in bound.drain(..) {
                assert!(idx.remove(&p, &d));
            }
            assert!(idx.is_empty());
            assert_eq!(idx.live_nodes(), 1);
        }
        assert_eq!(checked, 4000);
    }
}
