#!/usr/bin/env bash
# amdistill default recipe: a synthetic multi-voice corpus (flite) end to end.
#
# Needs:  a Debian machine with a Rust toolchain; installs flite, sox and the CMU dictionary
#         through apt-get when missing (and says so).
# Writes: recipes/synth/data/{train,dev,test,test_unseen}   corpus data directories + phones.ctm
#         recipes/synth/data/fbank/<split>                  feature stores (Kaldi ark/scp) + cmvn
#         recipes/synth/exp/tree                            senone tree, senones.txt, report
#         recipes/synth/exp/ali/<split>/ali.txt             one senone per frame (ali-to-pdf shape)
#         recipes/synth/exp/{teacher,student_hard,student_kd}  trained models (model.json, model.safetensors,
#                                                            metrics.jsonl, checkpoints/)
#         recipes/synth/exp/teacher/targets_train           the teacher's top-10 soft targets on train
#         recipes/synth/exp/scores/<split>/<model>.json      frame accuracy, agreement, KL ...
#         recipes/synth/exp/export/student_kd               the KD student's bundle (bundle.json, fp32 + int8
#                                                            safetensors, model.onnx, model.int8.onnx)
#         recipes/synth/exp/compare/<split>/                 compare.md/.csv, learning curves, accuracy vs size
#         recipes/synth/exp/log/                            logs
#
# Usage: recipes/synth/run.sh [--stage N] [--stop-stage N] [--quick] [--hours H] [--num-leaves K]
#   --quick   a small corpus for CI (about a minute), under data/quick and exp/quick
# Stages run when stage <= N <= stop-stage and are marked done in exp/.done/, so a rerun skips
# finished stages; remove exp/.done/stageN to redo one.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
. ../common/utils.sh

stage=1
stop_stage=100
quick=false
hours=2.0
seed=1
num_leaves=1000
quick_teacher=""
quick_student=""
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
  quick_teacher="--set train.epochs=12 --set model.hidden=512"
  quick_student="--set train.epochs=12"
fi
amdistill="$root/target/release/amdistill"
mkdir -p "$exp/log"
splits="train dev test test_unseen"

# Always: install what is missing and bring the binary up to date (both no-ops when done).
bash "$root/scripts/install_deps.sh"
log "building amdistill (cargo build --release)"
(cd "$root" && cargo build --release --quiet)

make_corpus() {
  "$amdistill" synth-corpus "$data" --hours "$hours" --seed "$seed" 2>&1 | tee "$exp/log/synth_corpus.log"
}
run_stage 1 "synthesise the corpus ($hours h of training audio)" make_corpus

validate() {
  for s in $splits; do "$amdistill" validate-data-dir "$data/$s"; done
}
run_stage 2 "validate data directories" validate

features() {
  for s in $splits; do
    "$amdistill" compute-fbank --config=conf/fbank.conf "$data/$s" "$data/fbank/$s" 2>&1 | tee "$exp/log/fbank_$s.log"
    "$amdistill" compute-cmvn --per spk "$data/fbank/$s" 2>&1 | tee -a "$exp/log/fbank_$s.log"
  done
}
run_stage 3 "fbank features and CMVN statistics" features

tree() {
  "$amdistill" build-tree "$data/fbank/train" "$exp/tree" --phones arpabet \
    --num-leaves "$num_leaves" --min-occupancy "$min_occupancy" 2>&1 | tee "$exp/log/build_tree.log"
}
run_stage 4 "senone tree on train ($num_leaves leaves)" tree

alignments() {
  for s in $splits; do
    mkdir -p "$exp/ali/$s"
    "$amdistill" make-alignments "$data/fbank/$s" "$exp/tree" "$exp/ali/$s" 2>&1 | tee "$exp/log/ali_$s.log"
  done
}
run_stage 5 "senone alignments for every split" alignments

train_set() {  # --set overrides that point a config at this run's data
  echo --set "data.train=$data/fbank/train" --set "data.train_ali=$exp/ali/train/ali.txt" \
       --set "data.valid=$data/fbank/dev" --set "data.valid_ali=$exp/ali/dev/ali.txt" \
       --set "data.senones=$exp/tree/senones.txt"
}

teacher() {
  "$amdistill" train conf/teacher.toml "$exp/teacher" --resume $(train_set) $quick_teacher 2>&1 | tee "$exp/log/train_teacher.log"
}
run_stage 6 "train the teacher (conf/teacher.toml)" teacher

soft_targets() {
  "$amdistill" dump-posteriors "$exp/teacher" "$data/fbank/train" "$exp/teacher/targets_train" --top-k 10 \
    2>&1 | tee "$exp/log/dump_posteriors.log"
}
run_stage 7 "teacher soft targets on train (top-10 logits)" soft_targets

student_hard() {
  "$amdistill" train conf/student_hard.toml "$exp/student_hard" --resume $(train_set) $quick_student 2>&1 | tee "$exp/log/train_student_hard.log"
}
run_stage 8 "train the hard-label student (conf/student_hard.toml)" student_hard

student_kd() {
  "$amdistill" train conf/student_kd.toml "$exp/student_kd" --resume $(train_set) $quick_student \
    --set "kd.targets=$exp/teacher/targets_train" 2>&1 | tee "$exp/log/train_student_kd.log"
}
run_stage 9 "train the KD student (conf/student_kd.toml)" student_kd

score() {
  for s in test test_unseen; do
    for m in teacher student_hard student_kd; do
      "$amdistill" score "$exp/$m" "$data/fbank/$s" "$exp/ali/$s/ali.txt" "$exp/scores/$s/$m.json" \
        --teacher "$exp/teacher" --name "$m" 2>&1 | tee -a "$exp/log/score.log"
    done
  done
}
run_stage 10 "score teacher and students on test and test_unseen" score

export_student() {
  "$amdistill" export "$exp/student_kd" "$exp/export/student_kd" \
    --eval "$data/fbank/test" --eval-ali "$exp/ali/test/ali.txt" 2>&1 | tee "$exp/log/export.log"
  for s in test test_unseen; do
    "$amdistill" score "$exp/export/student_kd" "$data/fbank/$s" "$exp/ali/$s/ali.txt" \
      "$exp/scores/$s/student_kd_int8.json" --int8 --teacher "$exp/teacher" --name student_kd_int8 \
      2>&1 | tee -a "$exp/log/export.log"
  done
  # The device path: audio in 10 ms chunks through the int8 bundle, checked against offline.
  "$amdistill" stream "$exp/export/student_kd" --int8 --check \
    $(head -n 2 "$data/test/wav.scp" | awk '{print $2}') 2>&1 | tee -a "$exp/log/export.log"
}
run_stage 11 "export the KD student (bundle: fp32, int8, ONNX) and score its int8 weights" export_student

compare() {
  for s in test test_unseen; do
    "$amdistill" compare "$exp/scores/$s/teacher.json" "$exp/scores/$s/student_hard.json" \
      "$exp/scores/$s/student_kd.json" "$exp/scores/$s/student_kd_int8.json" --out "$exp/compare/$s" \
      --curves "teacher=$exp/teacher/metrics.jsonl" --curves "student_hard=$exp/student_hard/metrics.jsonl" \
      --curves "student_kd=$exp/student_kd/metrics.jsonl" > "$exp/log/compare_$s.log"
  done
}
run_stage 12 "comparison tables and plots" compare

for s in test test_unseen; do
  if [ -f "$exp/compare/$s/compare.md" ]; then
    echo "== $s =="; cat "$exp/compare/$s/compare.md"
  fi
done
log "finished: tables and plots in $exp/compare/{test,test_unseen}, models in $exp/{teacher,student_hard,student_kd}, the exported student in $exp/export/student_kd"
