//! `amdistill align DATA_DIR FEAT_DIR OUT_DIR`: forced alignment of a data directory's
//! transcripts (`text`) to its features, giving phone times (`phones.ctm`) for `build-tree` and
//! `make-alignments`.
//!
//! Without `--model` it is the flat start: silence + phones + silence, frames split uniformly.
//! With `--model` and `--tree`, Viterbi through 3-state HMMs per phone with optional silence,
//! over the model's scaled log-likelihoods (DOMAIN.md §3; Senior et al. 2014).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use amdistill::align::lexicon::DEBIAN_CMUDICT;
use amdistill::align::{
    align_corpus, AcousticScorer, Agreement, AlignConfig, HmmConfig, Lexicon, Lts,
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
/// installed), words it lacks from letter-to-sound (--lts). Without --model: uniform
/// segmentation (the flat start). With --model and --tree: Viterbi forced alignment with a
/// beam (retried once with --retry-beam). Utterances that cannot be aligned (unknown words,
/// too few frames for their phones, no path within the beam) are listed by name and left
/// out, never forced. Writes OUT_DIR/phones.ctm, OUT_DIR/phone_ali.txt (`utt phone phone ...`,
/// one phone name per frame), OUT_DIR/lexicon.txt (the lexicon used) and
/// OUT_DIR/align_report.txt; with --reference, the agreement with reference phone times.
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
    /// The senone tree directory the model was trained on (tree, phones.txt, senones.txt).
    #[arg(long, value_name = "TREE_DIR", requires = "model")]
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

pub fn run(args: Args) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let store = FeatureStore::open(&args.feat_dir)
        .with_context(|| format!("opening feature directory {}", args.feat_dir.display()))?;
    let (geometry, _) = store_geometry(&store);
    let scorer = match (&args.model, &args.tree) {
        (Some(m), Some(t)) => Some(AcousticScorer::load(m, t, &store).with_context(|| {
            format!(
                "loading the model {} with tree {}",
                m.display(),
                t.display()
            )
        })?),
        _ => None,
    };
    let set = match &scorer {
        Some(s) => s.set.clone(),
        None => load_phone_set(&args.phones)?,
    };
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
        },
        beam: args.beam,
        retry_beam: args.retry_beam,
        acoustic_scale: args.acoustic_scale,
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

    let mode = match (&args.model, &args.tree) {
        (Some(m), Some(t)) => format!(
            "viterbi with {} (tree {}), beam {} retry {}, acoustic scale {}, self-loop {}, optional silence {}",
            m.display(),
            t.display(),
            args.beam,
            args.retry_beam,
            args.acoustic_scale,
            args.self_loop,
            args.optional_silence
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
