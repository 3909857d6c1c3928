//! The phonetic decision tree: statistics, questions, growing, lookup and the text formats.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use amdistill::features::Matrix;
use amdistill::labels::tree::{
    build_tree, build_tree_for_phones, cluster_phone_questions, read_senones, ContextKey,
    GaussStats, Question, SenoneTree, TreeConfig, TreeStats, VARIANCE_FLOOR,
};
use amdistill::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn key(left: u32, phone: u32, right: u32, state: u8) -> ContextKey {
    ContextKey {
        left,
        phone,
        right,
        state,
    }
}

fn cfg(num_leaves: usize, min_occupancy: f64) -> TreeConfig {
    TreeConfig {
        num_leaves,
        min_occupancy,
        min_gain: 0.0,
    }
}

/// Phone 1 state 0 with left phones 2..=5 and right phones 6, 7. Dimension 0 is 1 or 3 after a
/// left phone in {2, 3} and -1 or -3 otherwise; dimension 1 is 0 or 2 everywhere. Every
/// (left, right) pair has 10 frames, so 80 in all.
fn hand_made() -> (Matrix, Vec<ContextKey>) {
    let mut data = Vec::new();
    let mut keys = Vec::new();
    for left in 2..=5u32 {
        for right in 6..=7u32 {
            let sign = if left <= 3 { 1.0 } else { -1.0 };
            for rep in 0..5 {
                for (v, w) in [(1.0, 0.0), (3.0, 2.0)] {
                    // Alternate the dim-1 pairing so that dim 1 is balanced in every subset.
                    let w = if rep % 2 == 0 { w } else { 2.0 - w };
                    data.extend([sign * v, w]);
                    keys.push(key(left, 1, right, 0));
                }
            }
        }
    }
    (Matrix::from_vec(keys.len(), 2, data), keys)
}

fn hand_questions() -> Vec<Question> {
    vec![
        Question::new("mixed", [2, 4]),
        Question::new("front", [2, 3]),
        Question::new("right6", [6]),
        Question::new("just2", [2]),
    ]
}

#[test]
fn gauss_stats_log_likelihood_matches_the_formula() {
    let mut g = GaussStats::new(2);
    for f in [[1.0f32, 10.0], [3.0, 10.0], [1.0, 10.0], [3.0, 10.0]] {
        g.accumulate(&f);
    }
    assert_eq!(g.count, 4.0);
    assert_eq!(g.mean(), vec![2.0, 10.0]);
    // Dim 0 has variance 1, dim 1 is constant and takes the floor.
    assert_eq!(g.variance(), vec![1.0, VARIANCE_FLOOR]);
    let c = 1.0 + (2.0 * std::f64::consts::PI).ln();
    let want = -0.5 * 4.0 * (2.0 * c + 1.0f64.ln() + VARIANCE_FLOOR.ln());
    assert!(
        (g.log_likelihood() - want).abs() < 1e-9,
        "{} vs {want}",
        g.log_likelihood()
    );
    assert_eq!(GaussStats::new(3).log_likelihood(), 0.0);
}

#[test]
fn accumulate_checks_shapes_and_merges() {
    let (feats, keys) = hand_made();
    let mut stats = TreeStats::new(2);
    assert!(matches!(
        stats.accumulate(&feats, &keys[1..]),
        Err(Error::Mismatch(_))
    ));
    assert!(matches!(
        TreeStats::new(3).accumulate(&feats, &keys),
        Err(Error::Mismatch(_))
    ));
    let mut bad = feats.clone();
    bad.data[7] = f32::NAN;
    let err = stats.accumulate(&bad, &keys).unwrap_err();
    assert!(err.to_string().contains("frame 3"), "{err}");
    assert!(
        stats.is_empty(),
        "a failed accumulate leaves the statistics unchanged"
    );

    stats.accumulate(&feats, &keys).unwrap();
    assert_eq!(stats.len(), 8);
    assert_eq!(stats.total_count(), 80.0);
    assert_eq!(stats.get(&key(2, 1, 6, 0)).unwrap().count, 10.0);

    // Two halves merged equal the whole.
    let half = 40;
    let (a, b) = (
        Matrix::from_vec(half, 2, feats.data[..half * 2].to_vec()),
        Matrix::from_vec(80 - half, 2, feats.data[half * 2..].to_vec()),
    );
    let mut sa = TreeStats::new(2);
    sa.accumulate(&a, &keys[..half]).unwrap();
    let mut sb = TreeStats::new(2);
    sb.accumulate(&b, &keys[half..]).unwrap();
    sa.merge(&sb).unwrap();
    assert_eq!(sa, stats);
    assert!(sa.merge(&TreeStats::new(5)).is_err());
}

#[test]
fn first_split_is_the_known_best_with_the_hand_computed_gain() {
    let (feats, keys) = hand_made();
    let mut stats = TreeStats::new(2);
    stats.accumulate(&feats, &keys).unwrap();
    let tree = build_tree(&stats, &hand_questions(), &cfg(2, 1.0)).unwrap();
    assert_eq!(tree.num_senones(), 2);
    // Parent: dim 0 has mean 0, variance 5; each child: variance 1; dim 1 has variance 1
    // everywhere. Gain = 0.5 * 80 * ln 5.
    let want = 40.0 * 5.0f64.ln();
    let report = tree.report();
    assert!(
        (report.total_gain - want).abs() < 1e-9,
        "gain {} vs {want}",
        report.total_gain
    );
    assert_eq!(report.splits, 1);
    let s = tree.senones();
    assert_eq!((s[0].contexts.as_str(), s[0].count), ("left=front", 40.0));
    assert_eq!((s[1].contexts.as_str(), s[1].count), ("left!=front", 40.0));
    assert!(tree
        .to_text()
        .contains("question front: if left in { 2 3 } then"));
    assert_eq!(tree.senone(&key(3, 1, 7, 0)).unwrap(), 0);
    assert_eq!(tree.senone(&key(5, 1, 6, 0)).unwrap(), 1);
    // Unseen neighbours: left 99 is in no set, so it goes where left 4 and 5 go; the right
    // phone is not asked about.
    assert_eq!(tree.senone(&key(99, 1, 6, 0)).unwrap(), 1);
    assert_eq!(tree.senone(&key(2, 1, 99, 0)).unwrap(), 0);

    // Inside each child every question splits nothing useful: no further (zero-gain) split.
    let bigger = build_tree(&stats, &hand_questions(), &cfg(10, 1.0)).unwrap();
    assert_eq!(bigger.num_senones(), 2);
    // min_gain above the best gain stops before any split.
    let strict = TreeConfig {
        num_leaves: 10,
        min_occupancy: 1.0,
        min_gain: want + 1.0,
    };
    assert_eq!(
        build_tree(&stats, &hand_questions(), &strict)
            .unwrap()
            .num_senones(),
        1
    );
    // A min_occupancy above half the frames forbids the split.
    assert_eq!(
        build_tree(&stats, &hand_questions(), &cfg(10, 41.0))
            .unwrap()
            .num_senones(),
        1
    );
}

/// Random utterances over phones `0..num_phones`, 3 states each; the features depend on the
/// (phone, state), on whether the left phone is even and on whether the right phone is < 3.
fn synthetic(seed: u64, utts: usize, num_phones: u32, dim: usize) -> TreeStats {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let means: Vec<f32> = (0..num_phones as usize * 3 * dim)
        .map(|_| rng.gen_range(-3.0..3.0))
        .collect();
    let mut stats = TreeStats::new(dim);
    for _ in 0..utts {
        let phones: Vec<u32> = (0..rng.gen_range(3..12))
            .map(|_| rng.gen_range(0..num_phones))
            .collect();
        let mut data = Vec::new();
        let mut keys = Vec::new();
        for (i, &p) in phones.iter().enumerate() {
            // Phone 0 doubles as the boundary context.
            let left = if i == 0 { 0 } else { phones[i - 1] };
            let right = phones.get(i + 1).copied().unwrap_or(0);
            for state in 0..3u8 {
                for _ in 0..rng.gen_range(2..6) {
                    let base = (p as usize * 3 + state as usize) * dim;
                    for d in 0..dim {
                        let mut v = means[base + d] + rng.gen_range(-1.0..1.0);
                        if left % 2 == 0 && d < dim / 2 {
                            v += 1.5;
                        }
                        if right < 3 && d >= dim / 2 {
                            v -= 1.0;
                        }
                        data.push(v);
                    }
                    keys.push(key(left, p, right, state));
                }
            }
        }
        stats
            .accumulate(&Matrix::from_vec(keys.len(), dim, data), &keys)
            .unwrap();
    }
    stats
}

fn classes(num_phones: u32) -> Vec<Question> {
    vec![
        Question::new("even", (0..num_phones).filter(|p| p % 2 == 0)),
        Question::new("low", 0..3),
        Question::new("high", num_phones / 2..num_phones),
    ]
}

/// Log-likelihood of the training contexts pooled per senone minus pooled per root.
fn measured_gain(tree: &SenoneTree, stats: &TreeStats) -> f64 {
    let mut per_senone: BTreeMap<u32, GaussStats> = BTreeMap::new();
    let mut per_root: BTreeMap<(u32, u8), GaussStats> = BTreeMap::new();
    for (k, s) in stats.iter() {
        per_senone
            .entry(tree.senone(k).unwrap())
            .or_insert_with(|| GaussStats::new(stats.dim()))
            .add(s);
        per_root
            .entry((k.phone, k.state))
            .or_insert_with(|| GaussStats::new(stats.dim()))
            .add(s);
    }
    for (id, g) in &per_senone {
        assert_eq!(
            tree.senones()[*id as usize].count,
            g.count,
            "senone {id} count"
        );
    }
    per_senone.values().map(|g| g.log_likelihood()).sum::<f64>()
        - per_root.values().map(|g| g.log_likelihood()).sum::<f64>()
}

#[test]
fn gain_grows_with_the_number_of_leaves_and_matches_the_leaves() {
    let stats = synthetic(7, 400, 8, 6);
    let mut questions = classes(8);
    questions.extend(cluster_phone_questions(&stats, 8));
    let mut last_gain = -1.0;
    let mut last_leaves = 0;
    for n in [24, 30, 40, 60, 90, 140] {
        let tree = build_tree(&stats, &questions, &cfg(n, 20.0)).unwrap();
        let r = tree.report();
        assert_eq!(r.roots, 24);
        assert!(r.leaves <= n);
        assert!(r.leaves >= last_leaves);
        assert!(
            r.total_gain >= last_gain,
            "{n} leaves: gain {} after {last_gain}",
            r.total_gain
        );
        if r.leaves > last_leaves && last_leaves > 0 {
            assert!(r.total_gain > last_gain);
        }
        if n <= 60 {
            assert_eq!(r.leaves, n, "the data supports {n} leaves");
        }
        let measured = measured_gain(&tree, &stats);
        assert!(
            (measured - r.total_gain).abs() < 1e-6 * r.total_gain.abs().max(1.0),
            "reported {} vs measured {measured}",
            r.total_gain
        );
        assert_eq!(r.frames, stats.total_count());
        assert_eq!(
            r.occupancy_histogram
                .iter()
                .map(|b| b.leaves)
                .sum::<usize>(),
            r.leaves
        );
        last_gain = r.total_gain;
        last_leaves = r.leaves;
    }
    assert!(last_gain > 0.0);
}

#[test]
fn min_occupancy_is_respected() {
    let stats = synthetic(11, 300, 6, 4);
    let questions = cluster_phone_questions(&stats, 6);
    for min_occ in [10.0, 80.0, 250.0] {
        let tree = build_tree(&stats, &questions, &cfg(500, min_occ)).unwrap();
        let mut split_leaves = 0;
        for s in tree.senones() {
            if s.contexts != "*" {
                split_leaves += 1;
                assert!(
                    s.count >= min_occ,
                    "senone {} has {} frames < {min_occ}",
                    s.senone,
                    s.count
                );
            }
        }
        assert!(
            split_leaves > 0,
            "min_occupancy {min_occ} still allows splits"
        );
        println!("{}", tree.report());
    }
}

#[test]
fn save_load_round_trip_maps_every_key_identically() {
    let dir = tempfile::tempdir().unwrap();
    let stats = synthetic(3, 200, 6, 4);
    let mut questions = classes(6);
    questions.extend(cluster_phone_questions(&stats, 6));
    let tree = build_tree_for_phones(
        &stats,
        &questions,
        &[0, 1, 2, 3, 4, 5, 9],
        3,
        &cfg(80, 15.0),
    )
    .unwrap();
    let path = dir.path().join("tree.txt");
    tree.save(&path).unwrap();
    let loaded = SenoneTree::load(&path).unwrap();
    assert_eq!(loaded, tree);
    assert_eq!(loaded.report(), tree.report());
    for phone in [0, 1, 2, 3, 4, 5, 9] {
        for state in 0..3 {
            for left in 0..12 {
                for right in 0..12 {
                    let k = key(left, phone, right, state);
                    assert_eq!(
                        loaded.senone(&k).unwrap(),
                        tree.senone(&k).unwrap(),
                        "{k:?}"
                    );
                }
            }
        }
    }
    let senones = dir.path().join("senones.txt");
    tree.write_senones(&senones).unwrap();
    assert_eq!(read_senones(&senones).unwrap(), tree.senones());
    // The file is what the module documentation says.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.lines().any(|l| l.starts_with("senone-tree 1 nodes ")));
    assert!(text.lines().any(|l| l.starts_with("root 9 2 ")));
}

#[test]
fn unseen_contexts_map_into_their_own_roots_subtree() {
    let stats = synthetic(5, 200, 6, 4);
    let tree = build_tree(&stats, &classes(6), &cfg(60, 10.0)).unwrap();
    for phone in 0..6 {
        for state in 0..3 {
            for (left, right) in [(40, 41), (0, 77), (99, 1), (1000, 1000)] {
                let s = tree.senone(&key(left, phone, right, state)).unwrap();
                let info = &tree.senones()[s as usize];
                assert_eq!(
                    (info.phone, info.state),
                    (phone, state),
                    "left {left} right {right}"
                );
            }
        }
    }
    // A (phone, state) without a root is an error naming it.
    let err = tree.senone(&key(1, 17, 2, 0)).unwrap_err();
    assert!(err.to_string().contains("phone 17 state 0"), "{err}");

    // Built for the whole phone set, a phone without frames gets empty roots.
    let full = build_tree_for_phones(
        &stats,
        &classes(6),
        &[0, 1, 2, 3, 4, 5, 6],
        3,
        &cfg(60, 10.0),
    )
    .unwrap();
    let s = full.senone(&key(1, 6, 2, 1)).unwrap();
    assert_eq!(full.senones()[s as usize].count, 0.0);
    assert_eq!(full.report().zero_occupancy_leaves, 3);
    // The phone set must cover the data.
    let err =
        build_tree_for_phones(&stats, &classes(6), &[0, 1, 2, 3], 3, &cfg(60, 10.0)).unwrap_err();
    assert!(err.to_string().contains("phone 4"), "{err}");
    assert!(
        build_tree_for_phones(&stats, &classes(6), &[0, 1, 2, 3, 4, 5], 2, &cfg(60, 10.0)).is_err()
    );
}

#[test]
fn bad_configurations_are_errors() {
    let stats = synthetic(5, 50, 4, 2);
    assert!(
        build_tree(&stats, &[], &cfg(5, 1.0)).is_err(),
        "fewer leaves than roots"
    );
    assert!(build_tree(&stats, &[], &cfg(0, 1.0)).is_err());
    assert!(build_tree(&stats, &[], &cfg(100, -1.0)).is_err());
    assert!(build_tree(&stats, &[Question::new("two words", [1])], &cfg(100, 1.0)).is_err());
    assert!(build_tree(&TreeStats::new(2), &[], &cfg(100, 1.0)).is_err());
    // No questions: every root stays one leaf.
    assert_eq!(
        build_tree(&stats, &[], &cfg(100, 1.0))
            .unwrap()
            .num_senones(),
        12
    );
}

const GOOD: &str = "\
# a comment
senone-tree 1 nodes 5 senones 3
root 1 0 0
node 0 count 80 gain 64.5 question front: if left in { 2 3 } then 1 else 2
leaf 1 senone 0 count 40
leaf 2 senone 1 count 40

root 2 1 3
node 3 count 10 gain 1 question x: if right in { 4 } then 4 else 4
leaf 4 senone 2 count 10
";

fn parse_err(text: &str) -> (usize, String) {
    match SenoneTree::parse(text, Path::new("exp/tree.txt")) {
        Err(e @ Error::Parse { .. }) => {
            let Error::Parse { ref path, line, .. } = e else {
                unreachable!()
            };
            assert_eq!(path, Path::new("exp/tree.txt"));
            (line, e.to_string())
        }
        Err(e) => panic!("not a parse error: {e}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn malformed_tree_files_name_the_line() {
    let valid = "\
senone-tree 1 nodes 3 senones 2
root 1 0 0
node 0 count 80 gain 64.5 question front: if left in { 2 3 } then 1 else 2
leaf 1 senone 0 count 40
leaf 2 senone 1 count 40
";
    let tree = SenoneTree::parse(valid, Path::new("t")).unwrap();
    assert_eq!(tree.senone(&key(2, 1, 0, 0)).unwrap(), 0);
    assert_eq!(tree.senone(&key(4, 1, 0, 0)).unwrap(), 1);

    let cases: Vec<(String, usize, &str)> = vec![
        (GOOD.to_string(), 9, "more than one parent"),
        (
            valid.replace("senone-tree 1", "senone-forest 1"),
            1,
            "header",
        ),
        (
            valid.replace("senone-tree 1", "senone-tree 2"),
            1,
            "version 2",
        ),
        (valid.replace("nodes 3", "nodes 4"), 1, "4 nodes"),
        (valid.replace("senones 2", "senones 3"), 1, "3 senones"),
        (
            valid.replace("leaf 1 senone", "leaf 7 senone"),
            4,
            "expected 1, found 7",
        ),
        (
            valid.replace("count 40\nleaf 2", "count 40\nbranch 2"),
            5,
            "unknown item",
        ),
        (
            valid.replace("then 1 else 2", "then 1 else 9"),
            3,
            "child 9",
        ),
        (
            valid.replace("then 1 else 2", "then 1 else 1"),
            3,
            "more than one parent",
        ),
        (valid.replace("count 80", "count eighty"), 3, "bad count"),
        (
            valid.replace("count 40\nleaf 2", "count -4\nleaf 2"),
            4,
            "bad count",
        ),
        (valid.replace("{ 2 3 }", "{ 2 3"), 3, "closing"),
        (valid.replace("{ 2 3 }", "{ }"), 3, "empty phone set"),
        (valid.replace("{ 2 3 }", "{ 2 x }"), 3, "phone id 'x'"),
        (
            valid.replace("left in", "middle in"),
            3,
            "'left' or 'right'",
        ),
        (valid.replace("front:", "front"), 3, "must end with ':'"),
        (
            valid.replace("senone 1 count", "senone 0 count"),
            5,
            "two leaves",
        ),
        (
            valid.replace("senone 1 count", "senone 5 count"),
            5,
            "out of range",
        ),
        (
            valid.replace("root 1 0 0", "root 1 0 0\nroot 1 0 1"),
            3,
            "second root",
        ),
        (
            valid.replace("root 1 0 0", "root 1 0 0\nroot 1 1 2"),
            3,
            "already a root or a child",
        ),
        (valid.replace("root 1 0 0", "root 1 x 0"), 2, "bad state"),
        (
            valid.replace("root 1 0 0", "root 1 0 0\nroot 3 0 17"),
            3,
            "root node 17",
        ),
        (valid.replace("root 1 0 0", "# no root"), 3, "not reached"),
        (
            // Two nodes that are each other's child: a loop no root reaches.
            valid.replace("nodes 3 senones 2", "nodes 7 senones 4")
                + "node 3 count 1 gain 1 question q: if left in { 1 } then 4 else 5\n"
                + "node 4 count 1 gain 1 question q: if left in { 1 } then 3 else 6\n"
                + "leaf 5 senone 2 count 1\nleaf 6 senone 3 count 1\n",
            6,
            "not reached",
        ),
    ];
    for (text, line, msg) in cases {
        let (got_line, err) = parse_err(&text);
        assert_eq!(got_line, line, "{err}\n--\n{text}");
        assert!(err.contains(msg), "'{err}' should say '{msg}'");
        assert!(err.starts_with(&format!("exp/tree.txt:{line}: ")), "{err}");
    }
    assert_eq!(parse_err("# only a comment\n").0, 0);

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.txt");
    assert!(matches!(SenoneTree::load(&missing), Err(Error::Io { .. })));
    let bad_senones = dir.path().join("senones.txt");
    std::fs::write(&bad_senones, "0 1 0 40 *\n2 1 0 40 left=x\n").unwrap();
    let err = read_senones(&bad_senones).unwrap_err().to_string();
    assert!(
        err.contains("senones.txt:2") && err.contains("expected senone 1"),
        "{err}"
    );
}

#[test]
fn clustering_puts_similar_phones_together() {
    // Phones 1, 2, 3 sit near +5, phones 4, 5, 6 near -5 (each with its own small offset);
    // phone 0 and phone 7 have no frames, phone 9 is outside num_phones.
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let dim = 3;
    let mut stats = TreeStats::new(dim);
    for phone in [1u32, 2, 3, 4, 5, 6, 9] {
        let centre = if phone <= 3 { 5.0 } else { -5.0 } + phone as f32 * 0.3;
        let frames = 200;
        let data: Vec<f32> = (0..frames * dim)
            .map(|_| centre + rng.gen_range(-1.0..1.0))
            .collect();
        let keys: Vec<ContextKey> = (0..frames)
            .map(|i| key(i as u32 % 4, phone, 2, (i % 3) as u8))
            .collect();
        stats
            .accumulate(&Matrix::from_vec(frames, dim, data), &keys)
            .unwrap();
    }
    let questions = cluster_phone_questions(&stats, 8);
    let sets: Vec<&BTreeSet<u32>> = questions.iter().map(|q| &q.phones).collect();
    let a = BTreeSet::from([1, 2, 3]);
    let b = BTreeSet::from([4, 5, 6]);
    assert!(sets.contains(&&a), "{questions:?}");
    assert!(sets.contains(&&b), "{questions:?}");
    for q in &questions {
        assert!(
            q.phones.is_subset(&a) || q.phones.is_subset(&b),
            "{} mixes the groups: {:?}",
            q.name,
            q.phones
        );
    }
    for p in 1..=6 {
        assert!(sets.contains(&&BTreeSet::from([p])), "singleton {p}");
    }
    // 6 singletons + 4 merges below the root.
    assert_eq!(questions.len(), 10);
    let names: BTreeSet<&str> = questions.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names.len(), questions.len(), "names are unique");
    assert!(cluster_phone_questions(&TreeStats::new(3), 8).is_empty());
}
