#!/usr/bin/env bash
# KD sweep over temperature and alpha, plus top-10 against dense soft targets, for RESULTS.md.
# The students learn from train alone (no untranscribed data), so the sweep measures the loss's
# settings, not the extra audio. Run after run.sh (stages 1-9) has made the teacher:
#   recipes/synth/local/kd_sweep.sh [--quick] [--epochs N] [--lr R] [--hidden H]
#   --epochs N   train each student N epochs instead of conf/student_kd.toml's (12 with --quick)
#   --lr R       learning rate instead of conf/student_kd.toml's (RESULTS.md's sweeps: 0.002)
#   --hidden H   hidden units instead of conf/student_kd.toml's (RESULTS.md's sweeps: 160)
#   --dense false  skip the dense-target student (its targets take 2 bytes x senones per frame:
#                1.4 GB for the full corpus's train split)
# Writes exp[/quick]/sweep/T<T>_a<alpha>/ (students), exp[/quick]/sweep/scores/*.json and
# prints a markdown table (frame accuracy on test) to stdout and exp[/quick]/sweep/sweep.md.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
. ../common/utils.sh

stage=1; stop_stage=100; quick=false; epochs=""; lr=""; hidden=""; dense=true; positional=()
parse_options "$@"
data=data; exp=exp; extra=""
if [ "$quick" = true ]; then data=data/quick; exp=exp/quick; extra="--set train.epochs=12"; fi
if [ -n "$epochs" ]; then extra="--set train.epochs=$epochs"; fi
if [ -n "$lr" ]; then extra="$extra --set optim.lr=$lr"; fi
if [ -n "$hidden" ]; then extra="$extra --set model.hidden=$hidden"; fi
amdistill="$root/target/release/amdistill"
sw="$exp/sweep"
mkdir -p "$sw/scores"
set_data="--set data.train=$data/fbank/train --set data.train_ali=$exp/ali/train/ali.txt
  --set data.valid=$data/fbank/dev --set data.valid_ali=$exp/ali/dev/ali.txt --set data.senones=$exp/tree/senones.txt"

student() {  # name, extra --set ...
  local name="$1"; shift
  if [ ! -f "$sw/scores/$name.json" ]; then
    "$amdistill" train conf/student_kd.toml "$sw/$name" --resume --quiet $set_data $extra "$@" >/dev/null
    "$amdistill" --threads 1 score "$sw/$name" "$data/fbank/test" "$exp/ali/test/ali.txt" \
      "$sw/scores/$name.json" --teacher "$exp/teacher" --name "$name" >/dev/null 2>&1
  fi
}
# run.sh dumps targets for train_kd when it has untranscribed data; the sweep's are train's.
if [ ! -f "$exp/teacher/targets_train/targets.scp" ]; then
  "$amdistill" dump-posteriors "$exp/teacher" "$data/fbank/train" "$exp/teacher/targets_train" --top-k 10
fi
acc() { python3 -c "import json,sys; print('%.2f' % (100*json.load(open(sys.argv[1]))['all']['frame_acc']))" "$1"; }

for t in 1 2 4; do
  for a in 0.25 0.5 0.75 1.0; do
    log "T=$t alpha=$a"
    student "T${t}_a${a}" --set "kd.targets=$exp/teacher/targets_train" --set "kd.temperature=$t" --set "kd.alpha=$a"
  done
done
if [ "$dense" = true ]; then
  if [ ! -f "$exp/teacher/targets_train_dense/targets.scp" ]; then
    "$amdistill" dump-posteriors "$exp/teacher" "$data/fbank/train" "$exp/teacher/targets_train_dense" --dense
  fi
  student "dense_T2_a0.5" --set "kd.targets=$exp/teacher/targets_train_dense" --set kd.temperature=2 --set kd.alpha=0.5
fi

{
  echo "| T \\ alpha | 0.25 | 0.5 | 0.75 | 1.0 |"
  echo "|---|---|---|---|---|"
  for t in 1 2 4; do
    row="| $t"
    for a in 0.25 0.5 0.75 1.0; do row="$row | $(acc "$sw/scores/T${t}_a${a}.json")"; done
    echo "$row |"
  done
  if [ "$dense" = true ]; then
    echo
    echo "Top-10 (48 bytes/frame) vs dense (2 bytes x senones per frame) soft targets, T=2, alpha=0.5:"
    echo "top-10 $(acc "$sw/scores/T2_a0.5.json")%, dense $(acc "$sw/scores/dense_T2_a0.5.json")%"
  fi
} | tee "$sw/sweep.md"
