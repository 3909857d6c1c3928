//! `amdistill score MODEL FEAT_DIR ALI OUT.json`: frame accuracy and the other figures of one
//! model (or soft-target store) on a test set, as JSON for `amdistill compare`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};

use amdistill::export::bundle::MANIFEST;
use amdistill::export::{Bundle, Precision};
use amdistill::features::store::FeatureStore;
use amdistill::labels::kaldi_ali::read_alignments;
use amdistill::labels::phones::PhoneSet;
use amdistill::labels::soft_targets::{SoftTargetStore, UttTargets};
use amdistill::labels::tree::read_senones;
use amdistill::progress::{bar, BatchSummary};
use amdistill::runtime::{lower, quantize, varmap_tensors, Runtime};
use amdistill::scoring::metrics::{senone_phones, ModelInfo, ScoreConfig, Scorer};
use amdistill::train::teacher::Ensemble;
use amdistill::train::trainer::device;

/// Score a model or a soft-target store against alignments.
///
/// MODEL is a trained model directory (model.json), an export bundle (bundle.json, run by
/// amdistill's runtime, fp32 or with --int8 its int8 weights) or a soft-target store
/// (targets.json, from dump-posteriors). Figures: frame accuracy (argmax == alignment), top-5 accuracy,
/// cross-entropy, and with --teacher the agreement with the teacher's argmax and
/// KL(teacher || model); each with and without silence frames; per-phone accuracy; for TIMIT
/// phone sets the 39-phone folded accuracy; the most frequent confusions. The model's size,
/// MFLOPs per frame and its real-time factor (model forward time over audio time, on the
/// threads given by --threads; use --threads 1 for the single-core figure) go into the JSON's
/// "model" section. Utterances missing from the alignments or failing are named and skipped.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trained model directory or soft-target store.
    #[arg(value_name = "MODEL")]
    pub model: PathBuf,
    /// Test feature store.
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Alignments of the test set (ali.txt).
    #[arg(value_name = "ALI")]
    pub ali: PathBuf,
    /// Where to write the score (JSON).
    #[arg(value_name = "OUT.json")]
    pub out: PathBuf,
    /// A teacher model directory (or several, comma-separated) for agreement and KL.
    #[arg(long, value_name = "DIR[,DIR..]")]
    pub teacher: Option<String>,
    /// Name in tables (default: the model directory's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Score a bundle's int8 weights (MODEL must be a bundle).
    #[arg(long)]
    pub int8: bool,
    /// Directory with senones.txt and phones.txt [default: MODEL; for a soft-target store,
    /// its teacher's directory].
    #[arg(long, value_name = "DIR")]
    pub senones_dir: Option<PathBuf>,
}

enum Scored {
    Model(Ensemble),
    Targets(SoftTargetStore),
    /// An export bundle run by amdistill's runtime (raw features in: CMVN is inside).
    Bundle(Box<Bundle>, Runtime),
}

/// Dense `[frames, S]` logits from top-k targets: the rest spread evenly (what the store
/// knows of it), so argmax, top-5 and cross-entropy read the store as a model.
fn dense_logits(t: &UttTargets) -> Vec<f32> {
    let s = t.num_senones;
    let mut out = vec![0f32; t.frames * s];
    let rest_each = |r: f32| {
        if s > t.k {
            r - ((s - t.k) as f32).ln()
        } else {
            f32::NEG_INFINITY
        }
    };
    for f in 0..t.frames {
        let row = &mut out[f * s..(f + 1) * s];
        row.fill(rest_each(t.rest_lse[f]));
        for j in 0..t.k {
            row[t.ids[f * t.k + j] as usize] = t.logits[f * t.k + j];
        }
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dev = device()?;
    let store = FeatureStore::open(&args.feat_dir)?;
    let ali = read_alignments(&args.ali)?;
    let (scored, model_dir) = if args.model.join(MANIFEST).exists() {
        let bundle = Bundle::load(&args.model)?;
        bundle.card().check_features(&store, &args.model)?;
        let precision = if args.int8 {
            Precision::Int8
        } else {
            Precision::Fp32
        };
        let rt = bundle.runtime(precision)?;
        (Scored::Bundle(Box::new(bundle), rt), args.model.clone())
    } else if args.model.join("targets.json").exists() {
        let store = SoftTargetStore::open(&args.model)?;
        let teacher_dir = store.meta().teacher["models"][0]
            .as_str()
            .map(PathBuf::from);
        let dir = args
            .senones_dir
            .clone()
            .or(teacher_dir)
            .context("a soft-target store without a teacher directory needs --senones-dir")?;
        (Scored::Targets(store), dir)
    } else {
        let model = Scored::Model(Ensemble::load(std::slice::from_ref(&args.model), &dev)?);
        (
            model,
            args.senones_dir
                .clone()
                .unwrap_or_else(|| args.model.clone()),
        )
    };
    let phones = PhoneSet::load_dir(&model_dir)
        .or_else(|_| PhoneSet::load_dir(model_dir.parent().unwrap_or(&model_dir)))
        .with_context(|| {
            format!(
                "{}: phones.txt (the phone set of the senones)",
                model_dir.display()
            )
        })?;
    let senones_path = if model_dir.join("senones.txt").exists() {
        model_dir.join("senones.txt")
    } else {
        model_dir.parent().unwrap_or(&model_dir).join("senones.txt")
    };
    let senones = read_senones(&senones_path)?;
    let mut scorer = Scorer::new(
        senone_phones(&senones, &phones)?,
        ScoreConfig::for_phone_set(&phones),
    )?;
    let teacher = match &args.teacher {
        Some(t) => {
            let dirs: Vec<PathBuf> = t.split(',').map(PathBuf::from).collect();
            Some(Ensemble::load(&dirs, &dev)?)
        }
        None => None,
    };
    if args.int8 && !matches!(scored, Scored::Bundle(..)) {
        bail!(
            "--int8 scores a bundle's int8 weights; {} is not a bundle (amdistill export)",
            args.model.display()
        );
    }
    let normaliser = match &scored {
        Scored::Model(m) => Some(m.normaliser(&store)?),
        Scored::Bundle(..) => None,
        Scored::Targets(t) => {
            t.check_compatible(senones.len(), &t.meta().senones_id, store.frame_shift())?;
            None
        }
    };
    let t_norm = match &teacher {
        Some(t) => Some(t.normaliser(&store)?),
        None => None,
    };

    let utts = store.utts();
    let pb = bar(utts.len() as u64, "score");
    let mut forward_secs = 0f64;
    let mut frames_total = 0usize;
    let mut done = 0;
    for utt in utts {
        let r = (|| -> anyhow::Result<()> {
            let labels = ali.get(utt).context("not in the alignments")?;
            let (logits, n) = match (&scored, &normaliser) {
                (Scored::Model(m), Some(norm)) => {
                    let mut f = store.get(utt)?;
                    norm.apply(utt, &mut f)?;
                    let t0 = Instant::now();
                    let l: Vec<f32> = m.utterance_logits(&f, &dev)?.flatten_all()?.to_vec1()?;
                    forward_secs += t0.elapsed().as_secs_f64();
                    (l, f.rows)
                }
                (Scored::Bundle(_, rt), _) => {
                    let f = store.get(utt)?;
                    let t0 = Instant::now();
                    let l = rt.forward_utterance(&f)?;
                    forward_secs += t0.elapsed().as_secs_f64();
                    (l.data, f.rows)
                }
                (Scored::Targets(t), _) => {
                    let u = t.get(utt)?;
                    (dense_logits(&u), u.frames)
                }
                _ => unreachable!("a model always has its normaliser"),
            };
            if labels.len().abs_diff(n) > 2 {
                bail!("{} frames of scores, {} of alignment", n, labels.len());
            }
            let mut labels = labels.clone();
            labels.resize(n, *labels.last().unwrap_or(&0));
            let t_logits: Option<Vec<f32>> = match (&teacher, &t_norm) {
                (Some(t), Some(norm)) => {
                    let mut f = store.get(utt)?;
                    norm.apply(utt, &mut f)?;
                    Some(t.utterance_logits(&f, &dev)?.flatten_all()?.to_vec1()?)
                }
                _ => None,
            };
            scorer.add(utt, &logits, n, &labels, t_logits.as_deref())?;
            frames_total += n;
            Ok(())
        })();
        match r {
            Ok(()) => done += 1,
            Err(e) => pb.suspend(|| eprintln!("utterance {utt}: {e:#}")),
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let mut score = scorer.finish();
    let name = args.name.clone().or_else(|| {
        args.model
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
    });
    score.model = match &scored {
        Scored::Model(m) => {
            let card = &m.members[0].card;
            let audio_secs = frames_total as f64 * card.frame_shift;
            ModelInfo {
                name,
                params: Some(card.params as u64),
                mflops_per_frame: Some(card.mflops_per_frame),
                bytes_fp32: Some(4 * card.params as u64),
                // What `amdistill export` would store (LSTMP and friends included).
                bytes_int8: lower(
                    &card.model,
                    card.input_dim,
                    card.num_senones,
                    &varmap_tensors(&m.members[0].varmap),
                )
                .ok()
                .map(|g| quantize(&g).weight_bytes() as u64),
                rtf: (audio_secs > 0.0).then(|| forward_secs / audio_secs),
            }
        }
        Scored::Bundle(b, _) => {
            let m = &b.manifest;
            let audio_secs = frames_total as f64 * m.card.frame_shift;
            ModelInfo {
                name,
                params: Some(m.fp32.params as u64),
                mflops_per_frame: Some(m.card.mflops_per_frame),
                bytes_fp32: Some(m.fp32.bytes as u64),
                bytes_int8: Some(m.int8.bytes as u64),
                rtf: (audio_secs > 0.0).then(|| forward_secs / audio_secs),
            }
        }
        Scored::Targets(_) => ModelInfo {
            name,
            ..ModelInfo::default()
        },
    };
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| parent.display().to_string())?;
    }
    score.write_json(&args.out)?;
    println!("{}", score.report());
    let s = BatchSummary {
        done,
        total: utts.len(),
    };
    eprintln!("{s}");
    if s.failed() > 0 {
        bail!(
            "{} of {} utterances could not be scored",
            s.failed(),
            s.total
        );
    }
    Ok(())
}
