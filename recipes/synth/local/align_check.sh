#!/usr/bin/env bash
# Flat-start alignment on the synthetic corpus, scored against flite's true phone times, for
# RESULTS.md (issue: alignment from transcripts). Run after run.sh stage 3 (corpus, features):
#   recipes/synth/local/align_check.sh [--quick] [--rounds 8]
# Writes exp[/quick]/flat_start/ (the rounds, see recipes/common/flat_start.sh) and
# exp[/quick]/flat_start_oracle/ (the ceiling: one round from a model trained on the true
# times); prints each round's agreement and boundary errors on dev.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"
. ../common/utils.sh

quick=false; rounds=8; positional=()
parse_options "$@"
data=data; exp=exp
if [ "$quick" = true ]; then data=data/quick; exp=exp/quick; fi
[ -s "$data/fbank/dev/feats.scp" ] || die "run recipes/synth/run.sh${quick:+ --quick} --stop-stage 3 first"
amdistill="$root/target/release/amdistill"
export amdistill
# flite's own pronunciations (t2p) for every word: the lexicon the corpus was spoken with.
common=(--num-leaves 150 --align-opts="--lexicon none" --reference-dir "$data")
args=(conf/flat_start.toml "$data/train" "$data/fbank/train" "$data/dev" "$data/fbank/dev")

# Narrow context (1 frame each side) for the first 5 models, then the configuration's 5.
../common/flat_start.sh --rounds "$rounds" --early-rounds 5 --early-opts="--set model.splice=1" \
  "${common[@]}" "${args[@]}" "$exp/flat_start"
../common/flat_start.sh --rounds 1 --init "$data" "${common[@]}" "${args[@]}" "$exp/flat_start_oracle"

echo "| round | frame agreement (phone level) | median boundary error | within 20 ms |"
echo "|---|---|---|---|"
for dir in $(ls -d "$exp"/flat_start/round* | sort -V) "$exp/flat_start_oracle/round1"; do
  r="$dir/dev/align_report.txt"
  [ -f "$r" ] || continue
  name="${dir##*/round}"; [[ "$dir" == *oracle* ]] && name="trained on the true times"
  agree=$(sed -n 's/^agreement with reference: \([0-9.]*%\).*/\1/p' "$r")
  median=$(sed -n 's/^boundary error: median \([0-9.]* ms\).*/\1/p' "$r")
  within=$(sed -n 's/.* \([0-9.]*%\) within 20 ms.*/\1/p' "$r")
  echo "| $name | $agree | $median | $within |"
done
