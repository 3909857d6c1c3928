#!/usr/bin/env bash
# amdistill on an existing Kaldi experiment: a data directory and its pdf-id alignments ->
# teacher, hard-label and KD students, the int8 export and the comparison table.
#
# Needs:  DATA_DIR, a Kaldi data directory (wav.scp, utt2spk; segments and text optional;
#         wav.scp pipe commands such as `sph2pipe -f wav x.sph |` are run once, into WAVs
#         under data/source/wav, by local/materialise_pipes.sh);
#         ALI, its pdf-id alignments, text or binary, from the alignment directory:
#           ali-to-pdf exp/tri3_ali/final.mdl "ark:gunzip -c exp/tri3_ali/ali.*.gz|" ark:pdf_ali.ark
#         optionally, for each senone's phone (per-phone scores, accuracy without silence):
#           ali-to-phones --per-frame=true exp/tri3_ali/final.mdl \
#             "ark:gunzip -c exp/tri3_ali/ali.*.gz|" ark,t:phone_ali.txt
#         with --phones data/lang/phones.txt --phone-ali phone_ali.txt, and the model's pdf
#         count (`tree-info exp/tri3_ali/tree | grep num-pdfs`) as --num-senones. The
#         alignments must use Kaldi's default framing (25 ms / 10 ms, snip-edges=true), which
#         conf/fbank.conf keeps. A Rust toolchain. Kaldi itself is not needed.
#         Without Kaldi, local/kaldi_from_synth.py makes such an experiment from the synthetic
#         recipe (CI runs it).
# Writes: recipes/kaldi/data/{train,dev,test}     the aligned utterances, dev and test held
#                                                 out by speaker (--holdout percent each)
#         recipes/kaldi/data/lang                 senones.txt (pdf -> phone, train counts),
#                                                 phones.txt, phone_classes.txt
#         recipes/kaldi/data/fbank/<split>        40-bin fbank + CMVN
#         recipes/kaldi/exp/tree, exp/ali/<split> the senone table and alignments as the
#                                                 shared stages read them
#         recipes/kaldi/exp/{teacher,student_hard,student_kd,export,scores,compare,log}
#
# Usage: recipes/kaldi/run.sh [--stage N] [--stop-stage N] [--phones F --phone-ali F]
#                             [--num-senones N] [--holdout 10] [--holdout-by speaker]
#                             [--quick] [--exp exp] DATA_DIR ALI
#   --holdout-by utterance  for corpora with too few speakers to hold whole ones out
#   --quick                 small models and few epochs (for local/kaldi_from_synth.py)
# Stages are marked done in exp/.done/, so a rerun skips finished stages.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../common/utils.sh"
. "$here/../common/distill_stages.sh"

stage=1
stop_stage=100
phones=""
phone_ali=""
num_senones=""
holdout=10
holdout_by=speaker
quick=false
exp=exp
positional=()
parse_options "$@"
[ ${#positional[@]} -eq 2 ] || die "usage: recipes/kaldi/run.sh [options] DATA_DIR ALI"
abs() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
[ -d "${positional[0]}" ] || die "no data directory ${positional[0]}"
[ -f "${positional[1]}" ] || die "no alignment file ${positional[1]}"
kaldi_data="$(abs "${positional[0]}")"
kaldi_ali="$(abs "${positional[1]}")"
phone_opts=()
if [ -n "$phones" ] || [ -n "$phone_ali" ]; then
  [ -f "$phones" ] && [ -f "$phone_ali" ] || die "--phones and --phone-ali go together (files)"
  phone_opts=(--phones "$(abs "$phones")" --phone-ali "$(abs "$phone_ali")")
fi
senone_opts=()
[ -n "$num_senones" ] && senone_opts=(--num-senones "$num_senones")
cd "$here"

data=data
teacher_opts=""
student_opts=""
if [ "$quick" = true ]; then
  teacher_opts="--set model.hidden=256 --set train.epochs=8"
  student_opts="--set model.hidden=64 --set train.epochs=8"
fi
amdistill="$root/target/release/amdistill"
splits="train dev test"
test_splits="test"
stream_data="$data/test"
mkdir -p "$exp/log"

bash "$root/scripts/install_deps.sh"
log "building amdistill (cargo build --release)"
(cd "$root" && cargo build --release --quiet)

import() {
  local src="$kaldi_data"
  : > "$exp/log/import.log"
  # Pipe commands in wav.scp (sph2pipe, sox) become WAV files first: amdistill reads files.
  if grep -qE '\|[[:space:]]*$' "$kaldi_data/wav.scp"; then
    local/materialise_pipes.sh "$kaldi_data" "$data/source" "$data/source/wav" 2>&1 | tee "$exp/log/import.log"
    src="$data/source"
  fi
  "$amdistill" import kaldi "$src" "$kaldi_ali" "$data" "${phone_opts[@]}" "${senone_opts[@]}" \
    --holdout "$holdout" --holdout-by "$holdout_by" 2>&1 | tee -a "$exp/log/import.log"
}
run_stage 1 "import $kaldi_data with $kaldi_ali (dev, test: $holdout% of the ${holdout_by}s each)" import

run_stage 2 "validate data directories" stage_validate

run_stage 3 "fbank features (40 bins, Kaldi framing) and CMVN statistics" stage_features

# The shared stages read the senone table from exp/tree and alignments from exp/ali/<split>;
# Kaldi's alignments are already senones, so they are copied, not made.
place_alignments() {
  mkdir -p "$exp/tree"
  cp "$data/lang/senones.txt" "$data/lang/phones.txt" "$data/lang/phone_classes.txt" "$exp/tree/"
  for s in $splits; do
    mkdir -p "$exp/ali/$s"
    cp "$data/$s/ali.txt" "$exp/ali/$s/ali.txt"
  done
}
run_stage 4 "senone table and alignments from the import" place_alignments

run_stage 5 "train the teacher (conf/teacher.toml)" stage_teacher
run_stage 6 "teacher soft targets on train (top-10 logits)" stage_soft_targets
run_stage 7 "train the hard-label student (conf/student_hard.toml)" stage_student_hard
run_stage 8 "train the KD student (conf/student_kd.toml)" stage_student_kd
run_stage 9 "score teacher and students on the held-out test speakers" stage_score
run_stage 10 "export the KD student (bundle: fp32, int8, ONNX) and score its int8 weights" stage_export
run_stage 11 "comparison tables and plots" stage_compare

print_tables
log "finished: tables and plots in $exp/compare/test, models in $exp/{teacher,student_hard,student_kd}, the exported student in $exp/export/student_kd"
