#!/usr/bin/env bash
# Alignment from transcripts on the synthetic corpus, scored against flite's true phone times,
# for RESULTS.md (issue: alignment from transcripts). Run after run.sh stage 3 (corpus,
# features):
#   recipes/synth/local/align_check.sh [--quick] [--rounds 2]
# Writes exp[/quick]/flat_start/ (a monophone GMM-HMM flat start, then ROUNDS DNN rounds; see
# recipes/common/flat_start.sh), exp[/quick]/flat_start_oracle/ (the ceiling: one DNN round
# from the true times) and exp[/quick]/gmm_oracle_{keep,realign}/ (a GMM-HMM trained on the
# true times, as they are and realigned on the flat start's schedule); prints a table of
# agreement and boundary errors on dev.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
. ../common/utils.sh

quick=false; rounds=2; positional=()
parse_options "$@"
data=data; exp=exp
if [ "$quick" = true ]; then data=data/quick; exp=exp/quick; fi
[ -s "$data/fbank/dev/feats.scp" ] || die "run recipes/synth/run.sh${quick:+ --quick} --stop-stage 3 first"
amdistill="$root/target/release/amdistill"
export amdistill
# flite's own pronunciations (t2p) for every word: the lexicon the corpus was spoken with; flite
# reads these sentences without pauses, so no silence between words.
align_opts=(--lexicon none --interword-silence 0)
gmm_opts=(--acoustic-scale 0.3)
common=(--num-leaves 150 --align-opts="${align_opts[*]}" --reference-dir "$data")
args=(conf/flat_start.toml "$data/train" "$data/fbank/train" "$data/dev" "$data/fbank/dev")

../common/flat_start.sh --gmm --gmm-opts="${gmm_opts[*]}" --rounds "$rounds" "${common[@]}" "${args[@]}" \
  "$exp/flat_start"
../common/flat_start.sh --rounds 1 --init "$data" "${common[@]}" "${args[@]}" "$exp/flat_start_oracle"

# The GMM-HMM's own ceiling, and where realignment takes it from the true times.
for kind in keep realign; do
  dir="$exp/gmm_oracle_$kind"
  keep=(); [ "$kind" = keep ] && keep=(--gmm-keep-alignment)
  if [ ! -s "$dir/dev/phones.ctm" ]; then
    "$amdistill" align "$data/train" "$data/fbank/train" "$dir/train" "${align_opts[@]}" "${gmm_opts[@]}" \
      --train-gmm --gmm-init "$data/train/phones.ctm" "${keep[@]}" --reference "$data/train/phones.ctm" \
      > "$dir.train.log" 2>&1 || { tail -n 20 "$dir.train.log" >&2; die "GMM on the true times failed"; }
    "$amdistill" align "$data/dev" "$data/fbank/dev" "$dir/dev" "${align_opts[@]}" "${gmm_opts[@]}" \
      --gmm "$dir/train/gmm.json" --reference "$data/dev/phones.ctm" \
      > "$dir.dev.log" 2>&1 || { tail -n 20 "$dir.dev.log" >&2; die "GMM on the true times failed (dev)"; }
  fi
done

echo "| alignment | frame agreement (phone level) | median boundary error | within 20 ms |"
echo "|---|---|---|---|"
row() {
  local name="$1" r="$2"
  [ -f "$r" ] || return 0
  agree=$(sed -n 's/^agreement with reference: \([0-9.]*%\).*/\1/p' "$r")
  median=$(sed -n 's/^boundary error: median \([0-9.]* ms\).*/\1/p' "$r")
  within=$(sed -n 's/.* \([0-9.]*%\) within 20 ms.*/\1/p' "$r")
  echo "| $name | $agree | $median | $within |"
}
row "monophone GMM-HMM flat start" "$exp/flat_start/gmm/mono/dev/align_report.txt"
for r in $(seq 1 "$rounds"); do
  row "DNN round $r" "$exp/flat_start/round$r/dev/align_report.txt"
done
row "GMM-HMM on the true times" "$exp/gmm_oracle_keep/dev/align_report.txt"
row "GMM-HMM from the true times, realigned" "$exp/gmm_oracle_realign/dev/align_report.txt"
row "DNN on the true times (ceiling)" "$exp/flat_start_oracle/round1/dev/align_report.txt"
