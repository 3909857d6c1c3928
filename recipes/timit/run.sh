#!/usr/bin/env bash
# amdistill on TIMIT: hand-labelled phone times -> senones -> teacher, hard-label and KD
# students, the int8 export, scored on the core test set with the 39-phone folding.
#
# Needs:  TIMIT_DIR, the LDC TIMIT (LDC93S1) directory holding TRAIN and TEST (any case,
#         SPHERE or WAV audio); a Rust toolchain. Without the corpus,
#         local/mini_timit.py makes a TIMIT-shaped smoke test from the synthetic corpus.
# Writes: recipes/timit/data/{train,dev,test}     data dirs + phones.ctm (48 phones; train = all
#                                                 of TRAIN without SA, dev = Kaldi's 50 speakers,
#                                                 test = the 24-speaker core test set)
#         recipes/timit/data/fbank/<split>        40-bin fbank + CMVN
#         recipes/timit/exp/tree, exp/ali/<split> senone tree (2000 leaves) and alignments
#         recipes/timit/exp/{teacher,student_hard,student_kd,export,scores,compare,log}
#
# Usage: recipes/timit/run.sh [--stage N] [--stop-stage N] [--num-leaves 2000] [--quick]
#                             [--exp exp] TIMIT_DIR
#   --quick  small models and few epochs (for the mini corpus of local/mini_timit.py)
# Stages are marked done in exp/.done/, so a rerun skips finished stages. Frame accuracy is
# reported on the 48 training phones' senones and, folded, on the 39 scoring classes.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../common/utils.sh"
. "$here/../common/distill_stages.sh"

stage=1
stop_stage=100
num_leaves=2000
min_occupancy=100
quick=false
exp=exp
positional=()
parse_options "$@"
[ ${#positional[@]} -eq 1 ] || die "usage: recipes/timit/run.sh [options] TIMIT_DIR"
timit_dir="$(cd "${positional[0]}" && pwd)" || die "no TIMIT directory ${positional[0]}"
cd "$here"

data=data
teacher_opts=""
student_opts=""
if [ "$quick" = true ]; then
  num_leaves=200; min_occupancy=20
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
  "$amdistill" import timit "$timit_dir" "$data" --phones 48 2>&1 | tee "$exp/log/import.log"
}
run_stage 1 "import TIMIT ($timit_dir, 48 phones)" import

run_stage 2 "validate data directories" stage_validate

run_stage 3 "fbank features (40 bins) and CMVN statistics" stage_features

tree() {
  "$amdistill" build-tree "$data/fbank/train" "$exp/tree" --phones "$data/train" \
    --num-leaves "$num_leaves" --min-occupancy "$min_occupancy" 2>&1 | tee "$exp/log/build_tree.log"
}
run_stage 4 "senone tree on train ($num_leaves leaves, TIMIT's phone times)" tree

run_stage 5 "senone alignments for every split" stage_alignments

run_stage 6 "train the teacher (conf/teacher.toml)" stage_teacher
run_stage 7 "teacher soft targets on train (top-10 logits)" stage_soft_targets
run_stage 8 "train the hard-label student (conf/student_hard.toml)" stage_student_hard
run_stage 9 "train the KD student (conf/student_kd.toml)" stage_student_kd
run_stage 10 "score teacher and students on the core test set" stage_score
run_stage 11 "export the KD student (bundle: fp32, int8, ONNX) and score its int8 weights" stage_export
run_stage 12 "comparison tables and plots" stage_compare

print_tables
log "finished: tables and plots in $exp/compare/test, models in $exp/{teacher,student_hard,student_kd}, the exported student in $exp/export/student_kd"
