#!/usr/bin/env bash
# amdistill default recipe: a synthetic multi-voice corpus (flite) end to end.
#
# Needs:  a Debian machine with a Rust toolchain; installs flite, sox and the CMU dictionary
#         through apt-get when missing (and says so).
# Writes: recipes/synth/data/{train,dev,test,test_unseen}   corpus data directories + phones.ctm
#         recipes/synth/data/untranscribed, train_kd        with --untranscribed-hours: audio without
#                                                            text, and train + it (the KD student's set)
#         recipes/synth/data/fbank/<split>                  feature stores (Kaldi ark/scp) + cmvn
#         recipes/synth/exp/tree                            senone tree, senones.txt, report
#         recipes/synth/exp/ali/<split>/ali.txt             one senone per frame (ali-to-pdf shape)
#         recipes/synth/exp/{teacher,student_hard,student_kd}  trained models (model.json, model.safetensors,
#                                                            metrics.jsonl, checkpoints/)
#         recipes/synth/exp/teacher/targets_train           the teacher's top-10 soft targets on train
#                                                            (targets_train_kd with untranscribed audio)
#         recipes/synth/exp/scores/<split>/<model>.json      frame accuracy, agreement, KL ...
#         recipes/synth/exp/export/student_kd               the KD student's bundle (bundle.json, fp32 + int8
#                                                            safetensors, model.onnx, model.int8.onnx)
#         recipes/synth/exp/compare/<split>/                 compare.md/.csv, learning curves, accuracy vs size
#         recipes/synth/exp/log/                            logs
#
# Usage: recipes/synth/run.sh [--stage N] [--stop-stage N] [--quick] [--hours H] [--num-leaves K]
#                             [--untranscribed-hours H]
#   --quick   a small corpus for CI (about a minute), under data/quick and exp/quick
#   --untranscribed-hours H   audio without transcripts that only the KD student learns from,
#             through the teacher's soft targets (default 0: the KD student trains on train
#             alone; --quick makes 0.3 h so that CI runs that path; RESULTS.md measures 4 h)
# Stages run when stage <= N <= stop-stage and are marked done in exp/.done/, so a rerun skips
# finished stages; remove exp/.done/stageN to redo one.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
. ../common/utils.sh
. ../common/distill_stages.sh

stage=1
stop_stage=100
quick=false
hours=2.0
untranscribed_hours=""
seed=1
num_leaves=1000
teacher_opts=""
student_opts=""
kd_opts=""
min_occupancy=100
positional=()
parse_options "$@"

data=data
exp=exp
if [ "$quick" = true ]; then
  # A separate corpus, so quick and full runs never mix outputs or .done markers.
  hours=0.15; num_leaves=300; min_occupancy=40
  data=data/quick; exp=exp/quick
  # Fewer epochs and a smaller teacher, so the whole quick run stays within a few minutes.
  teacher_opts="--set train.epochs=12 --set model.hidden=512"
  # The rate the quick corpus's results were measured at (the full corpus's is in conf).
  student_opts="--set train.epochs=12 --set optim.lr=0.002"
  # The best KD setting of the quick corpus's sweep (RESULTS.md); the full corpus's is in conf.
  kd_opts="--set kd.temperature=2 --set kd.alpha=0.5"
fi
[ -n "$untranscribed_hours" ] || untranscribed_hours=$([ "$quick" = true ] && echo 0.3 || echo 0)
untranscribed_data=""
if awk -v h="$untranscribed_hours" 'BEGIN { exit !(h > 0) }'; then untranscribed_data="$data/untranscribed"; fi
amdistill="$root/target/release/amdistill"
mkdir -p "$exp/log"
splits="train dev test test_unseen"
test_splits="test test_unseen"
stream_data="$data/test"

# Always: install what is missing and bring the binary up to date (both no-ops when done).
bash "$root/scripts/install_deps.sh"
log "building amdistill (cargo build --release)"
(cd "$root" && cargo build --release --quiet)

make_corpus() {
  "$amdistill" synth-corpus "$data" --hours "$hours" --untranscribed-hours "$untranscribed_hours" \
    --seed "$seed" 2>&1 | tee "$exp/log/synth_corpus.log"
}
run_stage 1 "synthesise the corpus ($hours h of training audio)" make_corpus

run_stage 2 "validate data directories" stage_validate

run_stage 3 "fbank features and CMVN statistics" stage_features

tree() {
  "$amdistill" build-tree "$data/fbank/train" "$exp/tree" --phones arpabet \
    --num-leaves "$num_leaves" --min-occupancy "$min_occupancy" 2>&1 | tee "$exp/log/build_tree.log"
}
run_stage 4 "senone tree on train ($num_leaves leaves)" tree

run_stage 5 "senone alignments for every split" stage_alignments

run_stage 6 "train the teacher (conf/teacher.toml)" stage_teacher
run_stage 7 "teacher soft targets (top-10 logits) on $(kd_set)" stage_soft_targets
run_stage 8 "train the hard-label student (conf/student_hard.toml)" stage_student_hard
run_stage 9 "train the KD student (conf/student_kd.toml)" stage_student_kd
run_stage 10 "score teacher and students on $test_splits" stage_score
run_stage 11 "export the KD student (bundle: fp32, int8, ONNX) and score its int8 weights" stage_export
run_stage 12 "comparison tables and plots" stage_compare

print_tables
log "finished: tables and plots in $exp/compare/{test,test_unseen}, models in $exp/{teacher,student_hard,student_kd}, the exported student in $exp/export/student_kd"
