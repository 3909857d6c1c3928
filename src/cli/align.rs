//! `amdistill align DATA_DIR FEAT_DIR OUT_DIR`: forced alignment of a data directory's
//! transcripts (`text`) to its features, giving phone times (`phones.ctm`) for `build-tree` and
//! `make-alignments`.
//!
//! Without a model it is the flat start: silence + phones + silence, frames split uniformly.
//! With `--model` and `--tree` (a hybrid DNN), `--gmm` (a GMM-HMM) or `--train-gmm` (a GMM-HMM
//! trained here from the flat start, Kaldi's train_mono.sh), Viterbi through 3-state HMMs per
//! phone with optional silence, over the model's scaled log-likelihoods (DOMAIN.md §3; Senior
//! et al. 2014).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use amdistill::align::corpus::{gmm_features, gmm_normaliser};
use amdistill::align::gmm::{train_gmm, Cepstra, GmmConfig, GmmModel, GmmShape, GmmUtt};
use amdistill::align::lexicon::DEBIAN_CMUDICT;
use amdistill::align::{
    align_corpus, phone_runs, transcript_prons, uniform_alignment, AcousticScorer, Agreement,
    AlignConfig, GmmScorer, GmmStates, HmmConfig, Lexicon, Lts, Scorer, UttGraph,
};
use amdistill::atomic::write_atomic;
use amdistill::corpus::table::read_map;
use amdistill::features::store::FeatureStore;
use amdistill::labels::ctm::write_ctm;
use amdistill::labels::frame_labels::{read_phone_times, FrameLabeler};
use amdistill::labels::phones::PhoneSet;
use amdistill::labels::senone_pipeline::{load_phone_set, store_geometry};
use amdistill::progress::{bar, BatchSummary};

/// Letter-to-sound for words the dictionary lacks.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LtsChoice {
    /// flite's `t2p` when it is on PATH, else the built-in rules.
    Auto,
    /// flite's `t2p` (fails when it is not installed).
    Flite,
    /// The built-in English spelling rules.
    Rules,
    /// None: utterances with unknown words are left out.
    None,
}

/// Align transcripts to features: phone times for every utterance that aligns.
///
/// Reads DATA_DIR/text and FEAT_DIR (feats.scp, utt2num_frames, fbank.json). Pronunciations
/// come from --lexicon (CMU format; default: Debian's pocketsphinx-en-us dictionary when
/// installed), words it lacks from letter-to-sound (--lts). Without a model: uniform
/// segmentation (the flat start). With --model and --tree (a DNN), --gmm (a GMM-HMM) or
/// --train-gmm (a GMM-HMM trained here on these transcripts): Viterbi forced alignment with a
/// beam (retried once with --retry-beam). Utterances that cannot be aligned (unknown words,
/// too few frames for their phones, no path within the beam) are listed by name and left
/// out, never forced. Writes OUT_DIR/phones.ctm, OUT_DIR/phone_ali.txt (`utt phone phone ...`,
/// one phone name per frame), OUT_DIR/lexicon.txt (the lexicon used) and
/// OUT_DIR/align_report.txt (with --train-gmm also OUT_DIR/gmm.json); with --reference, the
/// agreement with reference phone times.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Data directory with `text` (utt-id word word ...).
    #[arg(value_name = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// Feature directory from compute-fbank (its frame counts and framing; its features
    /// when --model is given).
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Output directory.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
    /// A trained model directory (from `amdistill train`) whose senones are --tree's.
    #[arg(long, value_name = "MODEL_DIR", requires = "tree")]
    pub model: Option<PathBuf>,
    /// The senone tree directory the model was trained on (tree, phones.txt, senones.txt);
    /// with --train-gmm, the senones of a context-dependent GMM-HMM.
    #[arg(long, value_name = "TREE_DIR")]
    pub tree: Option<PathBuf>,
    /// Pronouncing dictionary in CMU format [default: the Debian CMU dictionary if installed];
    /// `none`: every word from letter-to-sound (with flite's t2p: the pronunciations flite
    /// itself speaks, as for the synthetic corpus).
    #[arg(long, value_name = "FILE")]
    pub lexicon: Option<PathBuf>,
    /// Letter-to-sound for words the dictionary lacks.
    #[arg(long, value_enum, default_value = "auto")]
    pub lts: LtsChoice,
    /// Phone set without --tree: arpabet, timit61, timit48, timit39, or a phones.txt.
    #[arg(long, default_value = "arpabet", value_name = "SET|PATH")]
    pub phones: String,
    /// Viterbi beam (scaled log-likelihood units).
    #[arg(long, default_value_t = 20.0)]
    pub beam: f32,
    /// Wider beam tried once when --beam finds no path.
    #[arg(long, default_value_t = 80.0)]
    pub retry_beam: f32,
    /// Scale of the acoustic log-likelihoods against the transition log-probabilities.
    #[arg(long, default_value_t = 0.1)]
    pub acoustic_scale: f32,
    /// Self-loop probability of every HMM state.
    #[arg(long, default_value_t = 0.5)]
    pub self_loop: f32,
    /// Probability of a silence at the start, between words and at the end.
    #[arg(long, default_value_t = 0.5)]
    pub optional_silence: f32,
    /// Probability of a silence between words, when it differs from the start and end's
    /// (--optional-silence): 0 for speech read without pauses.
    #[arg(long, value_name = "P")]
    pub interword_silence: Option<f32>,
    /// A GMM-HMM (`gmm.json` from --train-gmm) to align with instead of --model; with --tree
    /// when it was trained with one.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["model", "train_gmm"])]
    pub gmm: Option<PathBuf>,
    /// Flat start with GMMs (Kaldi's train_mono.sh; with --tree, train_deltas.sh): train a
    /// GMM-HMM on these transcripts from an equal alignment (or --gmm-init's phone times) by
    /// EM, realigning on Kaldi's schedule and growing to --gmm-gaussians; write it to
    /// OUT_DIR/gmm.json, then align with it. Its states: (phone, HMM state), or with --tree
    /// the tree's senones. Its features: 13 cepstra of the log-mel frames with deltas,
    /// mean-normalised per speaker (FEAT_DIR/utt2spk).
    #[arg(long, conflicts_with = "model")]
    pub train_gmm: bool,
    /// --train-gmm from these phone times (CTM) instead of an equal alignment: the monophone
    /// model's for a context-dependent one, or a model's of another corpus; utterances
    /// without any are left out of the training.
    #[arg(long, value_name = "CTM", requires = "train_gmm")]
    pub gmm_init: Option<PathBuf>,
    /// --train-gmm without realigning: a model of the initial alignment alone.
    #[arg(long, requires = "train_gmm")]
    pub gmm_keep_alignment: bool,
    /// EM iterations of --train-gmm.
    #[arg(long, default_value_t = 40, value_name = "N")]
    pub gmm_iters: usize,
    /// Gaussians in the whole GMM-HMM after its growth (--train-gmm); Kaldi uses 1000 for a
    /// monophone model, about 5 per senone for a context-dependent one.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub gmm_gaussians: usize,
    /// Reference phone times (CTM) to score the alignment against: frame agreement (phone
    /// level) and boundary errors, written to the report.
    #[arg(long, value_name = "CTM")]
    pub reference: Option<PathBuf>,
}

/// The dictionary to read: --lexicon, else Debian's CMU dictionary when installed, else none.
fn dictionary(args: &Args, set: &PhoneSet) -> anyhow::Result<(Lexicon, String)> {
    let path = match &args.lexicon {
        Some(p) if p.as_os_str() == "none" => None,
        Some(p) => Some(p.clone()),
        None => Some(PathBuf::from(DEBIAN_CMUDICT)).filter(|p| p.is_file()),
    };
    match path {
        Some(p) => {
            let lex = Lexicon::read(&p, set)
                .with_context(|| format!("reading the lexicon {}", p.display()))?;
            Ok((lex, p.display().to_string()))
        }
        None => Ok((Lexicon::new(), "none".into())),
    }
}

fn letter_to_sound(choice: LtsChoice) -> anyhow::Result<Lts> {
    Ok(match choice {
        LtsChoice::Auto => Lts::detect(),
        LtsChoice::Flite => match Lts::detect() {
            l @ Lts::Flite(_) => l,
            _ => bail!("--lts flite: flite's t2p is not on PATH (Debian: apt-get install flite)"),
        },
        LtsChoice::Rules => Lts::Rules,
        LtsChoice::None => Lts::None,
    })
}

/// Utterance -> frame phones as `utt name name ...` lines, atomically.
fn write_phone_ali(
    path: &Path,
    frame_phones: &BTreeMap<String, Vec<u32>>,
    set: &PhoneSet,
) -> anyhow::Result<()> {
    write_atomic(path, |w| {
        for (utt, phones) in frame_phones {
            write!(w, "{utt}")?;
            for &p in phones {
                write!(w, " {}", set.phone(p).unwrap_or("?"))?;
            }
            writeln!(w)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Speaker of each utterance (FEAT_DIR/utt2spk, else DATA_DIR/utt2spk) for the GMM-HMM's
/// mean normalisation; `None` (per utterance) when neither exists or no GMM is used.
fn read_utt2spk(args: &Args) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    if !(args.train_gmm || args.gmm.is_some()) {
        return Ok(None);
    }
    for dir in [&args.feat_dir, &args.data_dir] {
        let path = dir.join("utt2spk");
        if path.is_file() {
            return Ok(Some(
                read_map(&path).with_context(|| format!("reading {}", path.display()))?,
            ));
        }
    }
    Ok(None)
}

/// Trains the GMM-HMM of --train-gmm on every utterance that has a transcript,
/// pronunciations, enough frames (and --gmm-init phone times); the others are left to the
/// alignment's report.
fn train_gmm_model(
    args: &Args,
    texts: &BTreeMap<String, String>,
    lex: &Lexicon,
    states: &GmmStates,
    store: &FeatureStore,
    utt2spk: Option<BTreeMap<String, String>>,
    cfg: &AlignConfig,
) -> anyhow::Result<GmmModel> {
    let set = &states.set;
    let silence = set
        .silence_id()
        .with_context(|| format!("phone set {} has no silence", set.name()))?;
    let cepstra = Cepstra::new(store.dim())?;
    let normaliser = gmm_normaliser(store, utt2spk);
    let init = match &args.gmm_init {
        Some(p) => {
            Some(read_phone_times(p, set).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let (geometry, _) = store_geometry(store);
    let labeler = FrameLabeler::new(set, geometry);
    let mut utts = Vec::new();
    for (utt, text) in texts {
        let Some(num_frames) = store.num_frames(utt) else {
            continue;
        };
        let Ok(words) = transcript_prons(text, lex) else {
            continue;
        };
        let runs = match &init {
            Some(init) => {
                let Some(segs) = init.get(utt) else { continue };
                let phones = labeler
                    .phones(segs, num_frames)
                    .with_context(|| format!("utterance {utt} in --gmm-init"))?;
                phone_runs(&phones)
            }
            None => match uniform_alignment(&words, num_frames, silence) {
                Ok(runs) => runs,
                Err(_) => continue,
            },
        };
        let graph = UttGraph::build(&words, silence, &cfg.hmm)?;
        let (Ok(ids), Ok(initial)) = (states.graph_ids(&graph), states.equal_alignment(&runs))
        else {
            continue;
        };
        let feats = gmm_features(store, utt, &normaliser, &cepstra)
            .with_context(|| format!("utterance {utt}"))?;
        utts.push(GmmUtt {
            feats,
            graph,
            ids,
            initial,
        });
    }
    if utts.is_empty() {
        bail!(
            "--train-gmm: no utterance of {} has features, pronunciations, enough frames{}",
            args.data_dir.display(),
            if init.is_some() {
                " and --gmm-init phone times"
            } else {
                ""
            }
        );
    }
    let gmm_cfg = GmmConfig {
        realign_iters: if args.gmm_keep_alignment {
            Vec::new()
        } else {
            GmmConfig::default().realign_iters
        },
        iters: args.gmm_iters,
        total_gaussians: args.gmm_gaussians,
        ..GmmConfig::default()
    };
    let frames: usize = utts.iter().map(|u| u.feats.rows).sum();
    eprintln!(
        "align: training a GMM-HMM with {} states on {} utterances ({frames} frames), {} iterations",
        states.num_ids(),
        utts.len(),
        gmm_cfg.iters
    );
    let shape = GmmShape {
        phones: set.phones().to_vec(),
        bins: store.dim(),
        senones: states.senones_id(),
        num_ids: states.num_ids(),
    };
    let (model, _) = train_gmm(&utts, shape, &gmm_cfg, cfg, |r| {
        eprintln!(
            "align: GMM iteration {:2}{}: log-likelihood {:.3} per frame, {} Gaussians{}",
            r.iter,
            if r.realigned { " (realigned)" } else { "" },
            r.avg_loglik,
            r.gaussians,
            if r.failed > 0 {
                format!(", {} kept their previous alignment", r.failed)
            } else {
                String::new()
            }
        )
    })?;
    Ok(model)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let store = FeatureStore::open(&args.feat_dir)
        .with_context(|| format!("opening feature directory {}", args.feat_dir.display()))?;
    let (geometry, _) = store_geometry(&store);
    let dnn = match (&args.model, &args.tree) {
        (Some(m), Some(t)) => Some(AcousticScorer::load(m, t, &store).with_context(|| {
            format!(
                "loading the model {} with tree {}",
                m.display(),
                t.display()
            )
        })?),
        _ => None,
    };
    let gmm_states = if args.train_gmm || args.gmm.is_some() {
        Some(match &args.tree {
            Some(t) => {
                GmmStates::tree(t).with_context(|| format!("loading the tree {}", t.display()))?
            }
            None => GmmStates::monophone(load_phone_set(&args.phones)?),
        })
    } else {
        if args.tree.is_some() && dnn.is_none() {
            bail!("--tree goes with --model, --gmm or --train-gmm");
        }
        None
    };
    let set = match (&dnn, &gmm_states) {
        (Some(s), _) => s.set.clone(),
        (_, Some(g)) => g.set.clone(),
        _ => load_phone_set(&args.phones)?,
    };
    let utt2spk = read_utt2spk(&args)?;
    let text_path = args.data_dir.join("text");
    let texts = read_map(&text_path).with_context(|| format!("reading {}", text_path.display()))?;
    if texts.is_empty() {
        bail!("{}: no transcripts", text_path.display());
    }

    let (dict, dict_name) = dictionary(&args, &set)?;
    let lts = letter_to_sound(args.lts)?;
    let (lex, guessed, missing) = dict.restrict(
        texts.values().flat_map(|t| t.split_whitespace()),
        &lts,
        &set,
    );

    let cfg = AlignConfig {
        hmm: HmmConfig {
            self_loop: args.self_loop,
            optional_silence: args.optional_silence,
            interword_silence: args.interword_silence,
        },
        beam: args.beam,
        retry_beam: args.retry_beam,
        acoustic_scale: args.acoustic_scale,
    };
    let scorer = if let Some(d) = dnn {
        Some(Scorer::Dnn(d))
    } else if let Some(states) = gmm_states {
        let (model, path) = match &args.gmm {
            Some(path) => (GmmModel::load(path)?, path.clone()),
            None => {
                std::fs::create_dir_all(&args.out_dir)
                    .with_context(|| format!("creating {}", args.out_dir.display()))?;
                let model =
                    train_gmm_model(&args, &texts, &lex, &states, &store, utt2spk.clone(), &cfg)?;
                let path = args.out_dir.join("gmm.json");
                model.save(&path)?;
                eprintln!(
                    "align: GMM-HMM with {} Gaussians in {}",
                    model.num_gaussians(),
                    path.display()
                );
                (model, path)
            }
        };
        Some(Scorer::Gmm(
            GmmScorer::new(model, states, &store, utt2spk)
                .with_context(|| format!("aligning with {}", path.display()))?,
        ))
    } else {
        None
    };
    let progress = bar(texts.len() as u64, "align");
    let aligned = align_corpus(
        &texts,
        &lex,
        &set,
        &store,
        &geometry,
        scorer.as_ref(),
        &cfg,
        || progress.inc(1),
    )?;
    progress.finish_and_clear();
    let summary = BatchSummary {
        done: aligned.segments.len(),
        total: aligned.total,
    };
    for (utt, why) in &aligned.failures {
        eprintln!("amdistill: warning: {utt}: {why}; left out");
    }
    if aligned.segments.is_empty() {
        eprintln!("{summary}");
        bail!("no utterance of {} could be aligned", text_path.display());
    }

    let search = format!(
        "beam {} retry {}, acoustic scale {}, self-loop {}, optional silence {}{}",
        args.beam,
        args.retry_beam,
        args.acoustic_scale,
        args.self_loop,
        args.optional_silence,
        match args.interword_silence {
            Some(p) => format!(" (between words {p})"),
            None => String::new(),
        }
    );
    let states = match &args.tree {
        Some(t) => format!("senones of {}", t.display()),
        None => "monophone".into(),
    };
    let mode = match (&args.model, &args.tree, &args.gmm) {
        (Some(m), Some(t), _) => format!(
            "viterbi with {} (tree {}), {search}",
            m.display(),
            t.display()
        ),
        (_, _, Some(p)) => format!(
            "viterbi with the GMM-HMM {} ({states}), {search}",
            p.display()
        ),
        _ if args.train_gmm => format!(
            "viterbi with a GMM-HMM trained here ({states}, {} iterations, {} Gaussians, from {}), {search}",
            args.gmm_iters,
            args.gmm_gaussians,
            match &args.gmm_init {
                Some(p) => format!("the phone times {}", p.display()),
                None => "an equal alignment".into(),
            }
        ),
        _ => "flat start (uniform segmentation of sil + phones + sil)".into(),
    };
    let mut report = format!(
        "# amdistill align {} {} {}\nmode: {mode}\nphone set: {}\nlexicon: {} words from {dict_name}, {} by letter-to-sound ({}), {} without a pronunciation\nutterances: {summary}\n",
        args.data_dir.display(),
        args.feat_dir.display(),
        args.out_dir.display(),
        set.name(),
        lex.len() - guessed.len(),
        guessed.len(),
        lts.name(),
        missing.len(),
    );
    if !guessed.is_empty() {
        let shown = guessed.len().min(40);
        report.push_str(&format!(
            "letter-to-sound words: {}{}\n",
            guessed[..shown].join(" "),
            if shown < guessed.len() {
                format!(" ... ({} more in lexicon.txt)", guessed.len() - shown)
            } else {
                String::new()
            }
        ));
    }
    for (utt, why) in &aligned.failures {
        report.push_str(&format!("  left out {utt}: {why}\n"));
    }
    if let Some(reference) = &args.reference {
        let refs = read_phone_times(reference, &set)
            .with_context(|| format!("reading the reference {}", reference.display()))?;
        let labeler = FrameLabeler::new(&set, geometry);
        let mut agreement = Agreement::default();
        for (utt, segs) in &aligned.segments {
            if let Some(r) = refs.get(utt) {
                let n = aligned.frame_phones[utt].len();
                agreement
                    .add(r, segs, &labeler, &set, n)
                    .with_context(|| format!("scoring {utt} against {}", reference.display()))?;
            }
        }
        report.push_str(&format!(
            "reference {}:\n{agreement}\n",
            reference.display()
        ));
    }

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    lex.write(args.out_dir.join("lexicon.txt"), &set)?;
    write_phone_ali(
        &args.out_dir.join("phone_ali.txt"),
        &aligned.frame_phones,
        &set,
    )?;
    write_atomic(args.out_dir.join("align_report.txt"), |w| {
        w.write_all(report.as_bytes())
    })?;
    // Last: a directory with phones.ctm is complete.
    write_ctm(args.out_dir.join("phones.ctm"), &aligned.segments)?;

    print!("{report}");
    eprintln!(
        "align: {:.2} s; wrote {}/{{phones.ctm,phone_ali.txt,lexicon.txt,align_report.txt}}",
        t_start.elapsed().as_secs_f64(),
        args.out_dir.display()
    );
    // Like Kaldi's aligners: utterances left out are reported, not an error.
    eprintln!("{summary}");
    Ok(())
}
