//! The synthetic corpus: the sentence generator, the augmentations, and `amdistill
//! synth-corpus` end to end on a tiny corpus (skipped with a note where flite is not installed;
//! CI installs it).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use amdistill::corpus::synth::augment::{
    add_at_snr, babble, convolve_keep_length, limit_peak, mean_square, pink_noise,
    room_impulse_response, to_i16, white_noise, NoiseKind,
};
use amdistill::corpus::synth::text::{
    is_plain_word, spell_number, spell_ordinal, SentenceGenerator, SentenceKind, WordList,
};
use amdistill::corpus::table::read_map;
use amdistill::corpus::validate::{validate_data_dir, ValidateOptions};
use amdistill::labels::read_ctm;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const SPLITS: [&str; 4] = ["train", "dev", "test", "test_unseen"];

// ---------------------------------------------------------------- text generator

/// Pronounceable pseudo-words (consonant-vowel syllables), so the tests need no system list.
fn pseudo_words(n: usize) -> Vec<String> {
    const C: &[&str] = &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "sh",
    ];
    const V: &[&str] = &["a", "e", "i", "o", "u"];
    let syll: Vec<String> = C
        .iter()
        .flat_map(|c| V.iter().map(move |v| format!("{c}{v}")))
        .collect();
    let mut out = Vec::with_capacity(n);
    'outer: for a in &syll {
        for b in &syll {
            for c in &syll {
                out.push(format!("{a}{b}{c}"));
                if out.len() == n {
                    break 'outer;
                }
            }
        }
    }
    out
}

fn word_list() -> WordList {
    WordList::from_words(pseudo_words(3000), "test")
}

#[test]
fn numbers_are_spelled_out() {
    assert_eq!(spell_number(0), "zero");
    assert_eq!(spell_number(15), "fifteen");
    assert_eq!(spell_number(40), "forty");
    assert_eq!(spell_number(105), "one hundred and five");
    assert_eq!(spell_number(21_300), "twenty one thousand three hundred");
    assert_eq!(spell_number(2_000_001), "two million one");
    assert_eq!(spell_ordinal(3), "third");
    assert_eq!(spell_ordinal(20), "twentieth");
    assert_eq!(spell_ordinal(21), "twenty first");
}

#[test]
fn word_filter_drops_what_flite_would_spell_out() {
    for w in [
        "timer", "strength", "yacht", "apple", "quiet", "rhythm", "squash",
    ] {
        assert!(is_plain_word(w), "{w} should be kept");
    }
    for w in [
        "nth",
        "hmm",
        "mcknight",
        "brzezinski",
        "ab",
        "don't",
        "Paris",
        "abcdefghijklmnop",
        "tlingit",
        "angstschrift",
    ] {
        assert!(!is_plain_word(w), "{w} should be dropped");
    }
}

#[test]
fn generator_is_seeded() {
    let g = SentenceGenerator::new(&word_list()).unwrap();
    let run = |seed| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..100).map(|_| g.sentence(&mut rng)).collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn generator_covers_every_command_kind_and_the_word_list() {
    let wl = word_list();
    let g = SentenceGenerator::new(&wl).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut kinds = BTreeMap::new();
    let mut words = HashSet::new();
    let mut seen = HashSet::new();
    for _ in 0..3000 {
        let s = g.unique_sentence(&mut rng, &mut seen).unwrap();
        assert!(
            s.text
                .split(' ')
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase())),
            "not plain lowercase words: {:?}",
            s.text
        );
        assert!(s.flite_text().ends_with(['.', '?']));
        *kinds.entry(s.kind).or_insert(0) += 1;
        words.extend(s.text.split(' ').map(str::to_string));
    }
    assert_eq!(seen.len(), 3000, "sentences are unique");
    for kind in SentenceKind::ALL {
        assert!(
            kinds.get(&kind).copied().unwrap_or(0) >= 50,
            "{kind:?} appears {:?} times",
            kinds.get(&kind)
        );
    }
    // ~1500 word-list sentences of ~8 list words each over 3000 words: most words get used.
    let used = wl.words.iter().filter(|w| words.contains(*w)).count();
    assert!(
        used > 2500,
        "only {used} of {} list words used",
        wl.words.len()
    );
    // Commands bring numbers, dates, times and names.
    for w in [
        "minutes", "timer", "alarm", "lights", "weather", "play", "call", "percent", "january",
        "thirty",
    ] {
        assert!(words.contains(w), "no '{w}' in 3000 sentences");
    }
}

#[test]
fn word_list_reads_cmudict_format_and_rejects_tiny_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dict");
    let mut text = String::from("'bout B AW T\nnth EH N TH\n");
    for w in pseudo_words(1500) {
        text.push_str(&format!("{w} B AA\n{w}(2) B AH\n"));
    }
    std::fs::write(&path, text).unwrap();
    let wl = WordList::read(&path).unwrap();
    assert_eq!(wl.words.len(), 1500);
    assert!(!wl.words.iter().any(|w| w == "nth" || w.contains('(')));
    std::fs::write(&path, "one\ntwo\n").unwrap();
    let err = WordList::read(&path).unwrap_err().to_string();
    assert!(
        err.contains("dict") && err.contains("need at least"),
        "{err}"
    );
}

#[test]
fn system_word_list_is_large_when_installed() {
    match WordList::system() {
        Ok(wl) => assert!(
            wl.words.len() > 50_000,
            "{} has only {} words",
            wl.source,
            wl.words.len()
        ),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("apt-get install -y pocketsphinx-en-us"),
                "{msg}"
            );
            eprintln!("note: no system word list ({msg})");
        }
    }
}

// ---------------------------------------------------------------- augmentation

fn tone(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.3 * (i as f32 * 0.07).sin() + 0.1 * (i as f32 * 0.31).sin())
        .collect()
}

#[test]
fn snr_is_achieved_within_half_a_db() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let clean = tone(16000);
    let pool = vec![
        tone(5000),
        white_noise(7000, &mut rng),
        pink_noise(3000, &mut rng),
    ];
    for snr in [0.0, 5.0, 12.5, 30.0] {
        for kind in [NoiseKind::White, NoiseKind::Pink, NoiseKind::Babble] {
            let noise = match kind {
                NoiseKind::White => white_noise(clean.len(), &mut rng),
                NoiseKind::Pink => pink_noise(clean.len(), &mut rng),
                _ => babble(clean.len(), &pool, 3, &mut rng),
            };
            let mut mixed = clean.clone();
            add_at_snr(&mut mixed, &noise, snr).unwrap();
            let added: Vec<f32> = mixed.iter().zip(&clean).map(|(m, c)| m - c).collect();
            let got = 10.0 * (mean_square(&clean) / mean_square(&added)).log10();
            assert!(
                (got - snr).abs() < 0.5,
                "{kind:?} at {snr} dB: got {got} dB"
            );
        }
    }
    assert!(
        add_at_snr(&mut [0.0; 3], &[0.0; 4], 10.0).is_err(),
        "length mismatch"
    );
}

#[test]
fn pink_noise_has_a_1_over_f_spectrum() {
    use realfft::RealFftPlanner;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 1 << 16;
    let mut x = pink_noise(n, &mut rng);
    assert!((mean_square(&x) - 1.0).abs() < 1e-3, "unit power");
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let mut spec = fft.make_output_vec();
    fft.process(&mut x, &mut spec).unwrap();
    let density = |lo: usize, hi: usize| {
        spec[lo..hi]
            .iter()
            .map(|c| c.norm_sqr() as f64)
            .sum::<f64>()
            / (hi - lo) as f64
    };
    // Mean power density over 62-125 Hz vs 1-2 kHz (at 16 kHz): 4 octaves apart, 1/f gives
    // 16x = 12 dB. White noise would give 0 dB.
    let ratio_db = 10.0 * (density(256, 512) / density(4096, 8192)).log10();
    assert!(
        (ratio_db - 12.04).abs() < 1.5,
        "pink slope: {ratio_db} dB over 4 octaves"
    );
}

#[test]
fn babble_sums_pool_utterances() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let pool = vec![tone(4000), vec![0.0; 100], tone(3000)];
    let b = babble(10_000, &pool, 5, &mut rng);
    assert_eq!(b.len(), 10_000);
    assert!((mean_square(&b) - 1.0).abs() < 1e-3);
    assert!(
        babble(100, &[], 3, &mut rng).iter().all(|&v| v == 0.0),
        "empty pool: silence"
    );
}

#[test]
fn reverb_keeps_length_and_the_direct_path() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let h = room_impulse_response(0.5, 6.0, 16000, &mut rng);
    assert_eq!(h.len(), 8000, "rt60 seconds long");
    assert_eq!(h[0], 1.0);
    let tail: f64 = h[1..].iter().map(|&v| (v as f64).powi(2)).sum();
    assert!(
        (10.0 * (1.0 / tail).log10() - 6.0).abs() < 1e-3,
        "direct-to-reverberant ratio"
    );
    let early: f64 = h[100..900].iter().map(|&v| (v as f64).powi(2)).sum();
    let late: f64 = h[7200..8000].iter().map(|&v| (v as f64).powi(2)).sum();
    assert!(10.0 * (early / late).log10() > 40.0, "the tail decays");

    let x = tone(12345);
    let y = convolve_keep_length(&x, &h);
    assert_eq!(y.len(), x.len(), "reverb keeps the length");
    let direct: f32 = (0..2001).map(|k| h[k] * x[2000 - k]).sum();
    assert!(
        (y[2000] - direct).abs() < 1e-4,
        "FFT convolution {} vs direct {direct}",
        y[2000]
    );
    // A click comes out at the same sample (direct path), nothing before it.
    let mut click = vec![0.0f32; 4000];
    click[1000] = 0.5;
    let yc = convolve_keep_length(&click, &h);
    assert!(yc[..1000].iter().all(|v| v.abs() < 1e-5));
    assert!((yc[1000] - 0.5).abs() < 1e-5);
}

#[test]
fn peaks_are_limited_not_clipped() {
    let mut x = vec![0.5, -2.0, 1.0];
    let g = limit_peak(&mut x, 0.99);
    assert!((g - 0.495).abs() < 1e-6);
    assert!(x.iter().all(|v| v.abs() <= 0.99));
    assert_eq!(limit_peak(&mut x, 0.99), 1.0, "already within the ceiling");
    assert_eq!(
        to_i16(&[0.0, 1.0, -1.0, 0.5]),
        vec![0, 32767, -32768, 16384]
    );
}

// ---------------------------------------------------------------- synth-corpus end to end

fn flite_installed() -> bool {
    let ok = Command::new("flite")
        .arg("-lv")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("note: flite is not installed (apt-get install -y flite); skipping the synth-corpus run");
    }
    ok
}

fn amdistill() -> Command {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
}

/// Runs `synth-corpus` on a tiny corpus; returns stderr.
fn synth(out: &Path, words: &Path, seed: u64) -> std::result::Result<String, String> {
    synth_with(out, words, seed, &[])
}

/// [`synth`] with more options.
fn synth_with(
    out: &Path,
    words: &Path,
    seed: u64,
    extra: &[&str],
) -> std::result::Result<String, String> {
    let o = amdistill()
        .args([
            "synth-corpus",
            "--hours",
            "0.01",
            "--jobs",
            "2",
            "--seed",
            &seed.to_string(),
            "--word-list",
        ])
        .arg(words)
        .args(extra)
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        Ok(stderr)
    } else {
        Err(stderr)
    }
}

/// Every file under `dir`: relative path -> bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn tiny_corpus_is_valid_aligned_disjoint_and_reproducible() {
    if !flite_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let words = tmp.path().join("words.txt");
    std::fs::write(&words, pseudo_words(3000).join("\n")).unwrap();
    let out = tmp.path().join("corpus");
    let log = synth(&out, &words, 7).unwrap_or_else(|e| panic!("synth-corpus failed:\n{e}"));
    assert!(log.contains("done "), "{log}");

    let mut texts: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for split in SPLITS {
        let dir = out.join(split);
        let problems = validate_data_dir(&dir, &ValidateOptions::default()).unwrap();
        assert!(
            problems.is_empty(),
            "{split}: {}",
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );

        let wav_scp = read_map(dir.join("wav.scp")).unwrap();
        let utt2spk = read_map(dir.join("utt2spk")).unwrap();
        let ctm = read_ctm(dir.join("phones.ctm")).unwrap();
        assert!(wav_scp.len() >= 3, "{split}: {} utterances", wav_scp.len());
        assert_eq!(
            ctm.keys().collect::<Vec<_>>(),
            wav_scp.keys().collect::<Vec<_>>(),
            "{split}: CTM covers every utterance"
        );
        let mut seconds = 0.0;
        for (utt, path) in &wav_scp {
            let r = hound::WavReader::open(path).unwrap();
            let spec = r.spec();
            assert_eq!(
                (spec.channels, spec.sample_rate, spec.bits_per_sample),
                (1, 16000, 16),
                "{utt}"
            );
            let wav_s = r.duration() as f64 / 16000.0;
            seconds += wav_s;
            let phones = &ctm[utt];
            assert_eq!(phones[0].start, 0.0, "{utt}: first phone starts at 0");
            for w in phones.windows(2) {
                assert!(
                    (w[1].start - w[0].end).abs() < 0.0015,
                    "{utt}: phones are contiguous"
                );
            }
            assert_eq!(phones.first().unwrap().phone, "pau");
            assert!(
                phones
                    .iter()
                    .all(|p| p.phone.bytes().all(|b| b.is_ascii_lowercase())),
                "{utt}: ARPAbet names"
            );
            let end = phones.last().unwrap().end;
            assert!(
                (end - wav_s).abs() <= 0.020,
                "{utt}: last phone ends at {end} s, audio at {wav_s} s"
            );
        }
        if split == "train" {
            assert!(seconds >= 36.0, "train has {seconds} s, asked for 0.01 h");
        }
        // test_unseen is spoken by the held-out voice only, and only it.
        for spk in utt2spk.values() {
            assert_eq!(
                spk == "rms",
                split == "test_unseen",
                "{split}: speaker {spk}"
            );
        }
        let synth_rows = std::fs::read_to_string(dir.join("utt2synth.tsv")).unwrap();
        assert_eq!(
            synth_rows.lines().count(),
            wav_scp.len() + 1,
            "{split}: one utt2synth row per utterance"
        );
        texts.insert(
            split,
            read_map(dir.join("text")).unwrap().into_values().collect(),
        );
    }
    for (i, a) in SPLITS.iter().enumerate() {
        for b in &SPLITS[i + 1..] {
            let shared: Vec<_> = texts[a].intersection(&texts[b]).collect();
            assert!(shared.is_empty(), "{a} and {b} share sentences: {shared:?}");
        }
    }

    // Same seed: identical bytes, in every file.
    let first = snapshot(&out);
    std::fs::remove_dir_all(&out).unwrap();
    synth(&out, &words, 7).unwrap();
    let second = snapshot(&out);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &first {
        assert!(
            &second[path] == bytes,
            "{} differs between two runs with the same seed",
            path.display()
        );
    }

    // Resume after a kill: lost utterances and a stale temporary; the result is the same.
    let train = out.join("train");
    let lost: Vec<String> = read_map(train.join("wav.scp"))
        .unwrap()
        .into_keys()
        .take(2)
        .collect();
    for utt in &lost {
        std::fs::remove_file(train.join("wav").join(format!("{utt}.wav"))).unwrap();
        std::fs::remove_file(train.join("synth").join(format!("{utt}.json"))).unwrap();
    }
    std::fs::write(train.join("wav").join("x.wav.tmp.1234"), b"half").unwrap();
    let log = synth(&out, &words, 7).unwrap();
    assert!(log.contains("from an earlier run"), "{log}");
    assert_eq!(snapshot(&out), first, "resumed corpus differs");

    // An untranscribed split added later: the other splits stay byte for byte; it has audio of
    // the seen voices, no text or times, and sentences of its own.
    synth_with(&out, &words, 7, &["--untranscribed-hours", "0.005"]).unwrap();
    let with_untranscribed = snapshot(&out);
    for (path, bytes) in &first {
        if path != Path::new("synth_config.json") {
            assert!(
                &with_untranscribed[path] == bytes,
                "{} changed",
                path.display()
            );
        }
    }
    let unt = out.join("untranscribed");
    let no_text = ValidateOptions {
        require_text: false,
        ..ValidateOptions::default()
    };
    assert!(validate_data_dir(&unt, &no_text).unwrap().is_empty());
    assert!(!unt.join("text").exists() && !unt.join("phones.ctm").exists());
    let spk = read_map(unt.join("utt2spk")).unwrap();
    assert!(
        spk.len() >= 3 && spk.values().all(|s| s != "rms"),
        "{spk:?}"
    );
    for utt in spk.keys() {
        let rec: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(unt.join("synth").join(format!("{utt}.json"))).unwrap(),
        )
        .unwrap();
        let text = rec["text"].as_str().unwrap().to_string();
        assert!(
            texts.values().all(|t| !t.contains(&text)),
            "{utt}: '{text}' is also in a transcribed split"
        );
    }
    // Back to none: accepted (the other splits are unchanged either way).
    synth(&out, &words, 7).unwrap();

    // Another seed into the same directory is refused; into a new one it gives other text.
    let err = synth(&out, &words, 8).unwrap_err();
    assert!(
        err.contains("synth_config.json") && err.contains("other options"),
        "{err}"
    );
    let other = tmp.path().join("other");
    synth(&other, &words, 8).unwrap();
    assert_ne!(
        std::fs::read(other.join("train/text")).unwrap(),
        first[Path::new("train/text")]
    );
}

#[test]
fn a_failing_utterance_is_named_and_the_rest_go_on() {
    if !flite_installed() {
        return;
    }
    let real = Command::new("sh")
        .args(["-c", "command -v flite"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let words = tmp.path().join("words.txt");
    std::fs::write(&words, pseudo_words(3000).join("\n")).unwrap();
    // A flite that fails on its 30th call (past the 2 probes and the 24-utterance babble pool).
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let counter = tmp.path().join("calls");
    let script = format!(
        "#!/bin/sh\nn=$(cat '{c}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{c}'\n\
         if [ \"$n\" = 30 ]; then echo 'synthetic failure' >&2; exit 3; fi\nexec '{real}' \"$@\"\n",
        c = counter.display()
    );
    std::fs::write(bin.join("flite"), script).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("flite"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = tmp.path().join("corpus");
    let o = amdistill()
        .args([
            "synth-corpus",
            "--hours",
            "0.01",
            "--jobs",
            "1",
            "--word-list",
        ])
        .arg(&words)
        .arg(&out)
        .env("PATH", path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a failed utterance gives exit status 1:\n{err}"
    );
    assert!(
        err.contains("flite failed") && err.contains("synthetic failure"),
        "{err}"
    );
    let failed_line = err
        .lines()
        .find(|l| l.contains("synthetic failure"))
        .unwrap();
    let utt = failed_line
        .split("utterance ")
        .nth(1)
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_string();
    assert!(utt.contains("-train-"), "{failed_line}");
    assert!(err.contains("(1 failed)"), "{err}");
    // The other utterances were written, and the split is still a valid data directory.
    let train = out.join("train");
    let problems = validate_data_dir(&train, &ValidateOptions::default()).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    let wav_scp = read_map(train.join("wav.scp")).unwrap();
    assert!(!wav_scp.contains_key(&utt) && wav_scp.len() >= 3);
    for split in SPLITS {
        assert!(
            out.join(split).join("phones.ctm").is_file(),
            "{split} written"
        );
    }
}

#[test]
fn missing_flite_names_the_install_command() {
    let tmp = tempfile::tempdir().unwrap();
    let o = amdistill()
        .args(["synth-corpus", "--hours", "0.01"])
        .arg(tmp.path().join("out"))
        .env("PATH", tmp.path()) // no flite here
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("apt-get install -y flite"), "{err}");
}

#[test]
fn bad_options_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let o = amdistill()
            .arg("synth-corpus")
            .args(args)
            .arg(tmp.path().join("out"))
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run(&["--voices", "kal16,bogus"]);
    assert!(e.contains("unknown voice 'bogus'"), "{e}");
    let e = run(&["--voices", "kal16,rms"]);
    assert!(e.contains("unseen voice 'rms'"), "{e}");
    let e = run(&["--hours=0"]);
    assert!(e.contains("--hours"), "{e}");
}
