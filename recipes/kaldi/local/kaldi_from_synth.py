#!/usr/bin/env python3
"""A Kaldi-shaped experiment from another amdistill recipe's output, to smoke-test
recipes/kaldi/run.sh without Kaldi (CI runs it on the synthetic quick corpus).

    recipes/kaldi/local/kaldi_from_synth.py DATA_ROOT EXP_DIR OUT_DIR [SPLIT ...]

Reads DATA_ROOT/<split>/{wav.scp,utt2spk,text} (16 kHz WAV), EXP_DIR/ali/<split>/ali.txt
(senone ids, snip-edges=false frames) and EXP_DIR/tree/{senones.txt,phones.txt}; SPLITs
default to train dev test. Writes what a Kaldi user has after `steps/align_si.sh`:

    OUT_DIR/data/train/       wav.scp utt2spk spk2utt text utt2num_frames (all SPLITs merged;
                              every third wav.scp entry a `sox FILE -t wav - |` pipe)
    OUT_DIR/data/lang/        phones.txt (position-dependent, <eps> and #0 #1, as
                              utils/prepare_lang.sh writes it) and phones/silence.txt
    OUT_DIR/pdf_ali.ark       binary, as `ali-to-pdf final.mdl ARK ark:-` writes it
    OUT_DIR/phone_ali.txt     as `ali-to-phones --per-frame=true final.mdl ARK ark,t:-`
    OUT_DIR/num_pdfs          as `tree-info tree | grep num-pdfs` would say

Frames become Kaldi's default framing (snip-edges=true: 1 + (samples - 400) // 160): frame i
is centred at 160 i + 200 samples, the source's frame j at 160 j + 80, so i takes j = i + 1.
Not Kaldi output: only its shapes.
"""
import os
import struct
import sys
import wave


def table(path):
    with open(path) as f:
        return [line.rstrip("\n").split(None, 1) for line in f if line.strip()]


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    data_root, exp, out = sys.argv[1:4]
    splits = sys.argv[4:] or ["train", "dev", "test"]
    phones = [p for p, _ in table(os.path.join(exp, "tree", "phones.txt"))]
    senone_phone = {}
    for line in open(os.path.join(exp, "tree", "senones.txt")):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        senone_phone[int(f[0])] = phones[int(f[1])]
    num_pdfs = len(senone_phone)

    # Kaldi's position-dependent phone table: silence first.
    upper = [p.upper() for p in phones]
    kaldi = ["<eps>"]
    for p in upper:
        kaldi += [p] if p == "SIL" else []
        kaldi += [p + s for s in ("_B", "_E", "_I", "_S")]
    kaldi += ["#0", "#1"]
    kid = {p: i for i, p in enumerate(kaldi)}
    lang = os.path.join(out, "data", "lang")
    os.makedirs(os.path.join(lang, "phones"), exist_ok=True)
    with open(os.path.join(lang, "phones.txt"), "w") as f:
        f.writelines(f"{p} {i}\n" for i, p in enumerate(kaldi))
    with open(os.path.join(lang, "phones", "silence.txt"), "w") as f:
        f.writelines(f"SIL{s}\n" for s in ("", "_B", "_E", "_I", "_S"))

    data = os.path.join(out, "data", "train")
    os.makedirs(data, exist_ok=True)
    rows = {name: {} for name in ("wav.scp", "utt2spk", "text", "utt2num_frames")}
    pdf_ali, phone_ali = {}, {}
    for split in splits:
        src = os.path.join(data_root, split)
        wavs = dict(table(os.path.join(src, "wav.scp")))
        spk = dict(table(os.path.join(src, "utt2spk")))
        text = dict(table(os.path.join(src, "text")))
        for utt, ids in table(os.path.join(exp, "ali", split, "ali.txt")):
            ids = [int(x) for x in ids.split()]
            with wave.open(wavs[utt]) as w:
                n, rate = w.getnframes(), w.getframerate()
            length, shift = rate // 40, rate // 100
            frames = 1 + (n - length) // shift if n >= length else 0
            if frames == 0:
                continue
            offset = round((length - shift) / (2 * shift))
            pdf = [ids[min(i + offset, len(ids) - 1)] for i in range(frames)]
            # Word positions are unknown here: a run after silence is _B, before it _E, else _I.
            names = [senone_phone[p].upper() for p in pdf]
            pos = []
            for i, p in enumerate(names):
                if p == "SIL":
                    pos.append(kid["SIL"])
                    continue
                before = i == 0 or names[i - 1] == "SIL"
                after = i + 1 == len(names) or names[i + 1] == "SIL"
                suffix = "_S" if before and after else "_B" if before else "_E" if after else "_I"
                pos.append(kid[p + suffix])
            pdf_ali[utt], phone_ali[utt] = pdf, pos
            # Every third recording as a pipe command, as Kaldi's TIMIT/WSJ recipes write
            # them (`sph2pipe -f wav x.sph |`): the recipe must run it.
            piped = len(pdf_ali) % 3 == 0
            rows["wav.scp"][utt] = f"sox {wavs[utt]} -t wav - |" if piped else wavs[utt]
            rows["utt2spk"][utt] = spk[utt]
            rows["text"][utt] = text.get(utt, "")
            rows["utt2num_frames"][utt] = str(frames)
    for name, m in rows.items():
        with open(os.path.join(data, name), "w") as f:
            f.writelines(f"{u} {v}\n" for u, v in sorted(m.items()))
    spk2utt = {}
    for u, s in sorted(rows["utt2spk"].items()):
        spk2utt.setdefault(s, []).append(u)
    with open(os.path.join(data, "spk2utt"), "w") as f:
        f.writelines(f"{s} {' '.join(us)}\n" for s, us in sorted(spk2utt.items()))
    # Kaldi's binary int32 vectors: key, space, \0B, \4, int32 count, then the int32s.
    with open(os.path.join(out, "pdf_ali.ark"), "wb") as f:
        for utt in sorted(pdf_ali):
            v = pdf_ali[utt]
            f.write(utt.encode() + b" \0B\x04" + struct.pack(f"<i{len(v)}i", len(v), *v))
    with open(os.path.join(out, "phone_ali.txt"), "w") as f:
        f.writelines(f"{u} {' '.join(map(str, v))}\n" for u, v in sorted(phone_ali.items()))
    with open(os.path.join(out, "num_pdfs"), "w") as f:
        f.write(f"{num_pdfs}\n")
    print(f"{out}: {len(pdf_ali)} utterances, {len(spk2utt)} speakers, {num_pdfs} pdfs, "
          f"{len(kaldi)} phone symbols")


if __name__ == "__main__":
    main()
