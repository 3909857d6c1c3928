#!/usr/bin/env bash
# amdistill on the Free Spoken Digit Dataset: real 8 kHz speech with word transcripts only,
# aligned by flat start (a monophone GMM-HMM, then DNN rounds; or bootstrapped from the
# synthetic recipe's teacher), then teacher, hard-label and KD students and the comparison table.
#
# Needs:  FSDD_DIR, a checkout of github.com/Jakobovski/free-spoken-digit-dataset (recordings/);
#         a Rust toolchain; the CMU dictionary (Debian pocketsphinx-en-us, installed when
#         missing). With --bootstrap, a finished recipes/synth run (its exp/teacher, exp/tree).
# Writes: recipes/fsdd/data/{train,dev,test}        data directories (speaker-disjoint: dev
#                                                   yweweler, test theo, train the other four)
#         recipes/fsdd/data/fbank/<split>           8 kHz, 40-bin fbank + CMVN
#         recipes/fsdd/exp/flat_start/gmm/mono/     the monophone GMM-HMM and its phone times
#         recipes/fsdd/exp/flat_start/round<r>/     alignment rounds (phone times, models, trees)
#         recipes/fsdd/exp/tree, exp/ali/<split>    senone tree and alignments from the last round
#         recipes/fsdd/exp/{teacher,student_hard,student_kd,scores,compare,log}
#
# Usage: recipes/fsdd/run.sh [--stage N] [--stop-stage N] [--rounds 4] [--num-leaves 200]
#                            [--round0 gmm|uniform] [--bootstrap SYNTH_RECIPE_DIR]
#                            [--flat-start-opts="..."] [--exp exp] FSDD_DIR
#   --round0 R     the flat start's first phone times: a monophone GMM-HMM trained on the
#                  transcripts (gmm, Kaldi's train_mono.sh) or uniform segmentation (uniform)
#   --bootstrap D  round 0 is D's teacher aligning FSDD (features recomputed with D's
#                  conf/fbank.conf, resampled to its rate) instead of --round0
#   --flat-start-opts="..."  more recipes/common/flat_start.sh options, e.g.
#                  "--tri-leaves 200" (a context-dependent GMM pass after the monophone one)
#   --exp DIR      where models and results go (default exp; data/ is shared)
# Stages are marked done in exp/.done/, so a rerun skips finished stages.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
. "$here/../common/utils.sh"
. "$here/../common/distill_stages.sh"

stage=1
stop_stage=100
rounds=4
num_leaves=200
min_occupancy=30
round0=gmm
bootstrap=""
flat_start_opts=""
exp=exp
positional=()
parse_options "$@"
[ ${#positional[@]} -eq 1 ] || die "usage: recipes/fsdd/run.sh [options] FSDD_DIR"
fsdd_dir="$(cd "${positional[0]}" && pwd)" || die "no FSDD directory ${positional[0]}"
if [ -n "$bootstrap" ]; then bootstrap="$(cd "$bootstrap" && pwd)"; fi
cd "$here"

data=data
amdistill="$root/target/release/amdistill"
export amdistill
splits="train dev test"
test_splits="test"
stream_data="$data/test"
teacher_opts=""
student_opts=""
mkdir -p "$exp/log"

bash "$root/scripts/install_deps.sh"
log "building amdistill (cargo build --release)"
(cd "$root" && cargo build --release --quiet)

import() {
  "$amdistill" import fsdd "$fsdd_dir" "$data" 2>&1 | tee "$exp/log/import.log"
}
run_stage 1 "import FSDD ($fsdd_dir)" import

run_stage 2 "validate data directories" stage_validate

run_stage 3 "fbank features (8 kHz, 40 bins) and CMVN statistics" stage_features

case "$round0" in
  gmm) init_opt=(--gmm) ;;
  uniform) init_opt=() ;;
  *) die "--round0 must be gmm or uniform, not '$round0'" ;;
esac
if [ -n "$bootstrap" ]; then
  boot() {
    for s in train dev; do
      "$amdistill" compute-fbank --config="$bootstrap/conf/fbank.conf" "$data/$s" "$data/fbank_boot/$s" \
        2>&1 | tee "$exp/log/fbank_boot_$s.log"
      "$amdistill" compute-cmvn --per spk "$data/fbank_boot/$s" 2>&1 | tee -a "$exp/log/fbank_boot_$s.log"
      "$amdistill" align "$data/$s" "$data/fbank_boot/$s" "$exp/bootstrap/$s" \
        --model "$bootstrap/exp/teacher" --tree "$bootstrap/exp/tree" 2>&1 | tee "$exp/log/bootstrap_$s.log"
    done
  }
  run_stage 4 "bootstrap alignment with $bootstrap/exp/teacher" boot
  init_opt=(--init "$exp/bootstrap")
fi

flat_start() {
  # shellcheck disable=SC2086
  "$root/recipes/common/flat_start.sh" --rounds "$rounds" --num-leaves 150 --min-occupancy 20 "${init_opt[@]}" $flat_start_opts \
    --extra "test,$data/test,$data/fbank/test" \
    conf/flat_start.toml "$data/train" "$data/fbank/train" "$data/dev" "$data/fbank/dev" "$exp/flat_start" \
    2>&1 | tee "$exp/log/flat_start.log"
}
run_stage 5 "flat-start alignment ($rounds rounds of train and realign)" flat_start

tree() {
  "$amdistill" build-tree "$data/fbank/train" "$exp/tree" --ctm "$exp/flat_start/final/train/phones.ctm" \
    --num-leaves "$num_leaves" --min-occupancy "$min_occupancy" 2>&1 | tee "$exp/log/build_tree.log"
}
run_stage 6 "senone tree on train ($num_leaves leaves, last round's phone times)" tree

ctm_dir="$exp/flat_start/final"
run_stage 7 "senone alignments for every split" stage_alignments

run_stage 8 "train the teacher (conf/teacher.toml)" stage_teacher
run_stage 9 "teacher soft targets on train (top-10 logits)" stage_soft_targets
run_stage 10 "train the hard-label student (conf/student_hard.toml)" stage_student_hard
run_stage 11 "train the KD student (conf/student_kd.toml)" stage_student_kd
run_stage 12 "score teacher and students on $test_splits" stage_score
# No stage 13 (export): the students normalise per speaker (conf/student_*.toml), which a
# streaming bundle cannot; the synthetic recipe exports.
run_stage 14 "comparison tables and plots" stage_compare

print_tables
log "finished: tables and plots in $exp/compare/test, models in $exp/{teacher,student_hard,student_kd}"
