#!/usr/bin/env python3
"""A TIMIT-shaped corpus from amdistill data directories with phone times, to smoke-test
recipes/timit/run.sh without the licensed corpus (CI runs it on the synthetic quick corpus).

    recipes/timit/local/mini_timit.py TRAIN_DATA_DIR TEST_DATA_DIR OUT_DIR

Writes OUT_DIR/TRAIN/DR1/<SPK>/<UTT>.WAV + .PHN (each source speaker becomes a TIMIT-style
speaker) and OUT_DIR/TEST/DR1/<SPK>/..., whose speakers take names from Kaldi's dev and core
test lists so that `amdistill import timit` finds a dev and a test split. The audio must be
16 kHz WAV; .PHN times are in samples; flite's `pau` becomes `h#` at the edges and `pau`
inside. Not TIMIT: only its layout.
"""
import os
import shutil
import sys
import wave

DEV = ["faks0", "fdac1", "fjem0", "mgwt0", "mjar0", "mmdb1", "mmdm2", "mpdf0", "fcmh0", "fkms0"]
CORE = ["mdab0", "mwbt0", "felc0", "mtas1", "mwew0", "fpas0", "mjmp0", "mlnt0", "fpkt0", "mlll0"]


def table(path):
    with open(path) as f:
        return [line.split(None, 1) for line in f if line.strip()]


def convert(src, out, part, names):
    wavs = {k: v.strip() for k, v in table(os.path.join(src, "wav.scp"))}
    spk_of = {k: v.strip() for k, v in table(os.path.join(src, "utt2spk"))}
    phones = {}
    with open(os.path.join(src, "phones.ctm")) as f:
        for line in f:
            utt, _, start, dur, ph = line.split()
            phones.setdefault(utt, []).append((float(start), float(start) + float(dur), ph))
    speakers = sorted(set(spk_of.values()))
    rename = {s: (names[i] if names else "m%s%d" % ("abcdefghij"[i % 10], i // 10)) for i, s in enumerate(speakers)}
    n = 0
    for utt, path in sorted(wavs.items()):
        if utt not in phones:
            continue
        with wave.open(path) as w:
            if w.getframerate() != 16000:
                sys.exit("%s: %d Hz, TIMIT is 16 kHz" % (path, w.getframerate()))
            num = w.getnframes()
        d = os.path.join(out, part, "DR1", rename[spk_of[utt]].upper())
        os.makedirs(d, exist_ok=True)
        name = "SX%d" % n
        shutil.copyfile(path, os.path.join(d, name + ".WAV"))
        segs = phones[utt]
        with open(os.path.join(d, name + ".PHN"), "w") as f:
            for i, (a, b, ph) in enumerate(segs):
                lab = ph.lower()
                if lab in ("pau", "sil"):
                    lab = "h#" if i in (0, len(segs) - 1) else "pau"
                s0, s1 = round(a * 16000), min(round(b * 16000), num)
                if s1 > s0:
                    f.write("%d %d %s\n" % (s0, s1, lab))
        n += 1
    return n, len(speakers)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    train, test, out = sys.argv[1:]
    if len(table(os.path.join(test, "utt2spk"))) < 2:
        sys.exit("%s: need at least two utterances" % test)
    n_train, s_train = convert(train, out, "TRAIN", None)
    # Test speakers alternate between the dev and the core-test lists.
    spk = sorted({v.strip() for _, v in table(os.path.join(test, "utt2spk"))})
    names = [(DEV if i % 2 == 0 else CORE)[i // 2] for i in range(len(spk))]
    n_test, s_test = convert(test, out, "TEST", names)
    print("mini TIMIT: %d train utterances (%d speakers), %d test utterances (%d speakers) -> %s"
          % (n_train, s_train, n_test, s_test, out))


if __name__ == "__main__":
    main()
