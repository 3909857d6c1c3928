//! Scoring, comparison tables and plots (src/scoring), and the `compare` command.

use std::path::Path;

use amdistill::labels::phones::PhoneSet;
use amdistill::labels::tree::read_senones;
use amdistill::scoring::compare::{CompareTable, ScoredModel};
use amdistill::scoring::plots::{
    read_learning_curve, register_font, write_accuracy_vs_size, write_learning_curves, Curve,
    EpochPoint, PLOT_SIZE,
};
use amdistill::scoring::{senone_phones, ModelInfo, Score, ScoreConfig, Scorer};

// The CLI module is part of the binary; compiled here to run it in-process.
#[allow(dead_code)]
#[path = "../src/cli/compare.rs"]
mod compare_cli;

const TOL: f64 = 1e-6;

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < TOL)
}

/// `ln p` per entry: rows that are already log-posteriors, so log-softmax returns them.
fn ln(p: &[f32]) -> Vec<f32> {
    p.iter().map(|x| x.ln()).collect()
}

/// The hand-made example: 4 senones over 3 phones, senone -> phone = [sil, a, a, b];
/// top-2; 3 utterances, 5 frames; a teacher for u1 and u2.
///
/// | frame | label (phone) | student p            | pred (phone) | teacher q              |
/// |-------|---------------|----------------------|--------------|------------------------|
/// | u1 0  | 0 (sil)       | .7  .1  .1  .1       | 0 (sil) ok   | = p                    |
/// | u1 1  | 1 (a)         | .1  .2  .6  .1       | 2 (a)  phone | .1 .6 .2 .1 (argmax 1) |
/// | u2 0  | 3 (b)         | .1  .5  .1  .3       | 1 (a)  wrong | = p                    |
/// | u2 1  | 2 (a)         | .05 .15 .5  .3       | 2 (a)  ok    | = p                    |
/// | u3 0  | 0 (sil)       | .2  .4  .1  .3       | 1 (a)  wrong | none                   |
fn hand_example() -> (Scorer, Score) {
    let cfg = ScoreConfig {
        top_n: 2,
        ..ScoreConfig::default()
    };
    let map = ["sil", "a", "a", "b"].map(String::from).to_vec();
    let mut scorer = Scorer::new(map, cfg).unwrap();
    let u1 = [0.7, 0.1, 0.1, 0.1, 0.1, 0.2, 0.6, 0.1];
    let t1 = [0.7, 0.1, 0.1, 0.1, 0.1, 0.6, 0.2, 0.1];
    let u2 = [0.1, 0.5, 0.1, 0.3, 0.05, 0.15, 0.5, 0.3];
    let u3 = [0.2, 0.4, 0.1, 0.3];
    // u1 as raw logits (log-posteriors + 100): the softmax, hence every figure, is the same.
    let u1_logits: Vec<f32> = ln(&u1).iter().map(|x| x + 100.0).collect();
    scorer
        .add("u1", &u1_logits, 2, &[0, 1], Some(&ln(&t1)))
        .unwrap();
    scorer
        .add("u2", &ln(&u2), 2, &[3, 2], Some(&ln(&u2)))
        .unwrap();
    scorer.add("u3", &ln(&u3), 1, &[0], None).unwrap();
    let score = scorer.finish();
    (scorer, score)
}

#[test]
fn hand_example_accuracies_cross_entropy_and_kl() {
    let (_, s) = hand_example();
    assert_eq!(s.utterances, 3);
    assert_eq!(s.senones, 4);
    // All 5 frames: correct u1/0 and u2/1 -> 2/5.
    assert_eq!(s.all.frames, 5);
    assert!(close(s.all.frame_acc, 0.4));
    // Top-2: the label is beaten by at most one senone except u3/0 (.4 and .3 > .2) -> 4/5.
    assert!(close(s.all.top_n_acc, 0.8));
    // Phone accuracy: u1/0, u1/1 (senone 2 is also 'a'), u2/1 -> 3/5.
    assert!(close(s.all.phone_acc, 0.6));
    // CE = -(ln .7 + ln .2 + ln .3 + ln .5 + ln .2) / 5
    //    = (0.356675 + 1.609438 + 1.203973 + 0.693147 + 1.609438) / 5 = 5.472671 / 5.
    let ce = -(0.7f64.ln() + 0.2f64.ln() + 0.3f64.ln() + 0.5f64.ln() + 0.2f64.ln()) / 5.0;
    assert!((ce - 1.094534).abs() < 1e-6);
    assert!(close(s.all.cross_entropy, ce));
    // Teacher on 4 frames; argmax agrees except u1/1 (teacher 1, student 2) -> 3/4.
    // KL: only u1/1 differs: .6 ln(.6/.2) + .2 ln(.2/.6) = .4 ln 3 = 0.439445; / 4 frames.
    assert_eq!(s.all.teacher_frames, 4);
    assert!(close(s.all.teacher_agreement, 0.75));
    let kl = 0.4 * 3f64.ln();
    assert!(close(s.all.kl, kl / 4.0));

    // Without silence: u1/1, u2/0, u2/1.
    assert_eq!(s.nonsil.frames, 3);
    assert!(close(s.nonsil.frame_acc, 1.0 / 3.0));
    assert!(close(s.nonsil.top_n_acc, 1.0));
    assert!(close(s.nonsil.phone_acc, 2.0 / 3.0));
    let ce_ns = -(0.2f64.ln() + 0.3f64.ln() + 0.5f64.ln()) / 3.0; // 3.506558 / 3 = 1.168853
    assert!(close(s.nonsil.cross_entropy, ce_ns));
    assert_eq!(s.nonsil.teacher_frames, 3);
    assert!(close(s.nonsil.teacher_agreement, 2.0 / 3.0));
    assert!(close(s.nonsil.kl, kl / 3.0));

    // Per phone, in senone-map order: sil 1/2 and 1/2; a 1/2 and 2/2; b 0 and 0.
    let per: Vec<(&str, bool, u64, f64, f64)> = s
        .phones
        .iter()
        .map(|p| {
            (
                p.phone.as_str(),
                p.silence,
                p.frames,
                p.frame_acc.unwrap(),
                p.phone_acc.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        per,
        vec![
            ("sil", true, 2, 0.5, 0.5),
            ("a", false, 2, 0.5, 1.0),
            ("b", false, 1, 0.0, 0.0)
        ]
    );
    // Confusions at the phone level: sil -> a (u3/0) and b -> a (u2/0), ties in phone order.
    let conf: Vec<(&str, &str, u64, f64)> = s
        .confusions
        .iter()
        .map(|c| (c.truth.as_str(), c.predicted.as_str(), c.count, c.fraction))
        .collect();
    assert_eq!(conf, vec![("sil", "a", 1, 0.5), ("b", "a", 1, 1.0)]);
    assert!(s.folded39.is_none());
}

#[test]
fn score_json_round_trips_and_report_shows_percentages() {
    let (_, mut s) = hand_example();
    s.model = ModelInfo {
        name: Some("student".into()),
        params: Some(1_234_567),
        ..ModelInfo::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("score.json");
    s.write_json(&path).unwrap();
    let back = Score::read_json(&path).unwrap();
    // serde_json's float parsing may be off from the written value in the last bit; counts,
    // names and the exact fractions come back as they were.
    assert_eq!(
        (
            &back.model,
            &back.phones,
            &back.confusions,
            back.nonsil.frames
        ),
        (&s.model, &s.phones, &s.confusions, s.nonsil.frames)
    );
    assert!(close(back.all.kl, s.all.kl.unwrap()));
    assert!(close(
        back.nonsil.cross_entropy,
        s.nonsil.cross_entropy.unwrap()
    ));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["all"]["frame_acc"].as_f64(), Some(0.4));
    assert_eq!(json["model"]["rtf"], serde_json::Value::Null);
    let report = s.report();
    assert!(
        report.contains("| frame accuracy % | 40.00 | 33.33 |"),
        "{report}"
    );
    assert!(
        report.contains("| top-2 accuracy % | 80.00 | 100.00 |"),
        "{report}"
    );
    assert!(
        report.contains("| sil (sil) | 2 | 50.00 | 50.00 |"),
        "{report}"
    );
}

#[test]
fn timit_phone_accuracy_after_folding_61_to_39() {
    // Senones, one per phone: h# pau bcl ao aa zh sh q.
    let map = ["h#", "pau", "bcl", "ao", "aa", "zh", "sh", "q"]
        .map(String::from)
        .to_vec();
    let s_count = map.len();
    let cfg = ScoreConfig {
        fold39: true,
        ..ScoreConfig::default()
    };
    let mut scorer = Scorer::new(map, cfg).unwrap();
    // (label, predicted): every 61-phone prediction is wrong; folded:
    // h#->pau: sil=sil ok; bcl->h#: sil=sil ok; ao->aa: aa=aa ok; zh->sh: sh=sh ok;
    // aa->zh: aa!=sh wrong; q->aa: q has no fold, left out.
    let pairs = [(0u32, 1usize), (2, 0), (3, 4), (5, 6), (4, 5), (7, 4)];
    let mut logits = vec![0f32; pairs.len() * s_count];
    for (f, &(_, pred)) in pairs.iter().enumerate() {
        logits[f * s_count + pred] = 5.0;
    }
    let labels: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    scorer
        .add("si1", &logits, pairs.len(), &labels, None)
        .unwrap();
    let s = scorer.finish();
    assert_eq!(s.all.frames, 6);
    assert!(close(s.all.phone_acc, 0.0));
    let f = s.folded39.expect("fold39 asked for");
    assert_eq!(f.frames, 5, "q left out");
    assert!(close(f.phone_acc, 4.0 / 5.0));
    // Folded non-silence labels: ao, zh, aa (bcl folds to sil) -> 2 of 3.
    assert_eq!(f.frames_nonsil, 3);
    assert!(close(f.phone_acc_nonsil, 2.0 / 3.0));
    // Only the h# label is silence for the unfolded figures (bcl and q are not).
    assert_eq!(s.nonsil.frames, 5);

    let err = Scorer::new(
        vec!["h#".into(), "xyz".into()],
        ScoreConfig {
            fold39: true,
            ..ScoreConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("xyz"), "{err}");
    // The TIMIT sets switch folding on.
    assert!(ScoreConfig::for_phone_set(&PhoneSet::timit61()).fold39);
    assert!(!ScoreConfig::for_phone_set(&PhoneSet::arpabet()).fold39);
}

#[test]
fn senone_map_from_senones_txt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("senones.txt");
    std::fs::write(&path, "0 0 0 10 *\n1 1 0 5 left=vowel\n2 1 1 5 *\n").unwrap();
    let senones = read_senones(&path).unwrap();
    let map = senone_phones(&senones, &PhoneSet::arpabet()).unwrap();
    let first = PhoneSet::arpabet().phone(1).unwrap().to_string();
    assert_eq!(map, vec!["sil".to_string(), first.clone(), first]);
    std::fs::write(&path, "0 999 0 10 *\n").unwrap();
    let err = senone_phones(&read_senones(&path).unwrap(), &PhoneSet::arpabet()).unwrap_err();
    assert!(
        err.to_string().contains("senone 0 has phone id 999"),
        "{err}"
    );
}

/// Two score files: the hand example with full model facts, and a teacher-less score
/// without any.
fn two_score_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (_, mut a) = hand_example();
    a.model = ModelInfo {
        name: Some("tdnn-small".into()),
        params: Some(1_234_567),
        mflops_per_frame: Some(2.5),
        bytes_fp32: Some(4_938_268),
        bytes_int8: Some(1_234_567),
        rtf: Some(0.0123),
    };
    let map = ["sil", "a", "a", "b"].map(String::from).to_vec();
    let mut scorer = Scorer::new(map, ScoreConfig::default()).unwrap();
    // 4 frames, 3 correct (the last is wrong); labels 0 1 3 2.
    let logits = ln(&[
        0.7, 0.1, 0.1, 0.1, //
        0.1, 0.7, 0.1, 0.1, //
        0.1, 0.1, 0.1, 0.7, //
        0.1, 0.7, 0.1, 0.1,
    ]);
    scorer.add("u1", &logits, 4, &[0, 1, 3, 2], None).unwrap();
    let b = scorer.finish();
    let pa = dir.join("a.json");
    std::fs::create_dir_all(dir.join("big")).unwrap();
    let pb = dir.join("big").join("score.json");
    a.write_json(&pa).unwrap();
    b.write_json(&pb).unwrap();
    (pa, pb)
}

const GOLDEN_MD: &str = "\
| model      | parameters | MB fp32 | MB int8 | MFLOPs/frame | RTF (1 core) | frame acc % | frame acc w/o sil % | agreement % | KL (nats/frame) | top-N % |
|:-----------|-----------:|--------:|--------:|-------------:|-------------:|------------:|--------------------:|------------:|----------------:|--------:|
| tdnn-small |      1.23M |    4.94 |    1.23 |         2.50 |       0.0123 |       40.00 |               33.33 |       75.00 |          0.1099 |   80.00 |
| big        |          - |       - |       - |            - |            - |       75.00 |               66.67 |           - |               - |  100.00 |

```
%FACC 40.00 [ 2 / 5 frames ], 33.33 w/o silence, 75.00 agreement, tdnn-small
%FACC 75.00 [ 3 / 4 frames ], 66.67 w/o silence, big
```
";

const GOLDEN_CSV: &str = "\
model,parameters,MB fp32,MB int8,MFLOPs/frame,RTF (1 core),frame acc %,frame acc w/o sil %,agreement %,KL (nats/frame),top-N %
tdnn-small,1234567,4.94,1.23,2.50,0.0123,40.00,33.33,75.00,0.1099,80.00
big,-,-,-,-,-,75.00,66.67,-,-,100.00
";

#[test]
fn compare_table_from_two_score_files() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = two_score_files(dir.path());
    // Names: the score's model name, then the directory of a score.json.
    let models = vec![
        ScoredModel::load(&pa, None).unwrap(),
        ScoredModel::load(&pb, None).unwrap(),
    ];
    let table = CompareTable::new(&models);
    // top-2 and top-5 differ, so the column is "top-N".
    assert_eq!(table.markdown(), GOLDEN_MD, "\n{}", table.markdown());
    assert_eq!(table.csv(), GOLDEN_CSV, "\n{}", table.csv());
    let out = dir.path().join("cmp");
    table.write(&out).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("compare.md")).unwrap(),
        GOLDEN_MD
    );
    assert_eq!(
        std::fs::read_to_string(out.join("compare.csv")).unwrap(),
        GOLDEN_CSV
    );
    let renamed = ScoredModel::load(&pa, Some("x,y")).unwrap();
    assert!(CompareTable::new(&[renamed])
        .csv()
        .contains("\n\"x,y\",1234567,"));
}

/// Checks the PNG signature and the IHDR chunk (size), and that the file ends with IEND.
fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
    let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
    assert_eq!((w, h), PLOT_SIZE);
    assert_eq!(&bytes[bytes.len() - 8..bytes.len() - 4], b"IEND");
    assert!(
        bytes.len() > 5_000,
        "a plot, not a blank image: {} bytes",
        bytes.len()
    );
}

fn check_plot(files: &amdistill::scoring::plots::PlotFiles, title: &str) {
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains(title),
        "{}",
        files.svg.display()
    );
    match &files.png {
        Some(png) => check_png(png),
        None => {
            assert!(register_font().is_none());
            assert!(files
                .warning
                .as_ref()
                .unwrap()
                .contains("fonts-dejavu-core"));
        }
    }
}

#[test]
fn learning_curves_and_size_plots_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = dir.path().join("metrics.jsonl");
    std::fs::write(
        &metrics,
        concat!(
            "{\"kind\":\"step\",\"step\":10,\"loss\":2.0}\n",
            "{\"kind\":\"epoch\",\"epoch\":1,\"train_acc\":0.3,\"valid_acc\":0.28,\"train_loss\":3.0}\n",
            "{\"kind\":\"epoch\",\"epoch\":2,\"train_acc\":0.5,\"valid_acc\":0.45}\n",
            "{\"kind\":\"epoch\",\"epoch\":2,\"train_acc\":0.52,\"valid_acc\":0.47}\n",
            "{\"kind\":\"epoch\",\"epoch\":3,\"train_acc\":0.6}\n",
            "{\"kind\":\"done\"}\n"
        ),
    )
    .unwrap();
    let c = read_learning_curve("student", &metrics).unwrap();
    let epochs: Vec<(u32, Option<f64>, Option<f64>)> = c
        .points
        .iter()
        .map(|p| (p.epoch, p.train_acc, p.valid_acc))
        .collect();
    assert_eq!(
        epochs,
        vec![
            (1, Some(0.3), Some(0.28)),
            (2, Some(0.52), Some(0.47)),
            (3, Some(0.6), None)
        ]
    );
    let teacher = Curve {
        name: "teacher".into(),
        points: (1..=5)
            .map(|e| EpochPoint {
                epoch: e,
                train_acc: Some(0.5 + 0.07 * e as f64),
                valid_acc: Some(0.45 + 0.06 * e as f64),
            })
            .collect(),
    };
    let out = dir.path().join("plots");
    let files = write_learning_curves(&[teacher, c], &out).unwrap();
    assert_eq!(files.svg, out.join("learning_curves.svg"));
    check_plot(&files, "Learning curves: frame accuracy per epoch");

    let (pa, pb) = two_score_files(dir.path());
    let mut big = ScoredModel::load(&pb, None).unwrap();
    big.score.model.params = Some(20_000_000);
    let models = vec![ScoredModel::load(&pa, None).unwrap(), big];
    let files = write_accuracy_vs_size(&models, &out).unwrap();
    check_plot(&files, "Frame accuracy against model size");
    let svg = std::fs::read_to_string(&files.svg).unwrap();
    assert!(
        svg.contains("tdnn-small") && svg.contains("big"),
        "point labels"
    );
    // No temporaries left behind.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp.")), "{names:?}");

    std::fs::write(&metrics, "{\"kind\":\"epoch\",\"epoch\":1}\nnot json\n").unwrap();
    let err = read_learning_curve("x", &metrics).unwrap_err().to_string();
    assert!(err.contains("metrics.jsonl:2"), "{err}");
}

#[test]
fn compare_command_writes_table_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = two_score_files(dir.path());
    let metrics = dir.path().join("m.jsonl");
    std::fs::write(
        &metrics,
        "{\"kind\":\"epoch\",\"epoch\":1,\"train_acc\":0.3,\"valid_acc\":0.2}\n\
         {\"kind\":\"epoch\",\"epoch\":2,\"train_acc\":0.4,\"valid_acc\":0.3}\n",
    )
    .unwrap();
    let out = dir.path().join("cmp");
    let args = compare_cli::Args {
        scores: vec![pa.clone(), pb.clone()],
        names: vec!["small".into(), "large".into()],
        out: Some(out.clone()),
        curves: vec![format!("small={}", metrics.display())],
    };
    compare_cli::run(args).unwrap();
    let md = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(md.contains("| small ") && md.contains("| large "), "{md}");
    assert!(out.join("compare.csv").exists());
    assert!(out.join("accuracy_vs_size.svg").exists());
    assert!(out.join("learning_curves.svg").exists());

    let bad = compare_cli::Args {
        scores: vec![pa, pb],
        names: vec!["one".into()],
        out: None,
        curves: vec![],
    };
    assert!(compare_cli::run(bad)
        .unwrap_err()
        .to_string()
        .contains("--names"));
}
