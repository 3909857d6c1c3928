#!/usr/bin/env bash
# Flat-start alignment (GMM-free DNN training, Senior et al. 2014): phone times for a
# transcribed corpus that has none.
#
#   round 0: uniform segmentation of sil + phones + sil        (amdistill align, no model)
#            or, with --gmm, GMM-HMMs' alignment                 (amdistill align --train-gmm)
#   round r: tree + alignments from round r's phone times, train a small DNN on them,
#            realign train and dev with it (Viterbi)          -> round r+1's phone times
#
# Needs:  amdistill on PATH or $amdistill; TRAIN_DATA/text and DEV_DATA/text; their feature
#         directories from compute-fbank; a train config (CONF, only non-default values).
# Writes: EXP/round<r>/{train,dev}/phones.ctm (+ phone_ali.txt, lexicon.txt, align_report.txt),
#         EXP/round<r>/{tree,ali_train,ali_dev,model} for r < ROUNDS, and EXP/final -> the
#         last round's phone times (EXP/final/{train,dev}/phones.ctm).
# Each step is skipped when its output exists (written last and atomically by amdistill), so
# a killed run restarts where it stopped.
#
# Usage: flat_start.sh [--rounds 3] [--num-leaves 200] [--min-occupancy 20] [--reference-dir D]
#                      [--align-opts "..."] [--train-opts "..."] [--extra "NAME,DATA,FEATS ..."]
#                      [--init D | --gmm [--gmm-opts "..."] [--tri-leaves N --tri-gaussians G]]
#                      [--early-rounds K --early-opts "..."]
#                      CONF TRAIN_DATA TRAIN_FEATS DEV_DATA DEV_FEATS EXP
#   --reference-dir D  D/<split>/phones.ctm: true phone times to score each round against
#   --init D           round 0 from D/{train,dev}/phones.ctm (e.g. a bootstrap alignment with a
#                      model trained on another corpus) instead of uniform segmentation
#   --gmm              round 0 from GMM-HMMs trained here on train, dev aligned with them:
#                      a monophone model (Kaldi's train_mono.sh: 40 EM iterations from an equal
#                      alignment, 1000 Gaussians) in EXP/gmm/mono, then, with --tri-leaves N, a
#                      context-dependent one (train_deltas.sh) on a tree of N leaves from the
#                      monophone alignment in EXP/gmm/tri. Frame-local generative models place
#                      boundaries where the spectrum changes, and train in minutes
#   --gmm-opts "..."   more align options for the GMM passes (e.g. "--acoustic-scale 0.3")
#   --tri-gaussians G  Gaussians of the context-dependent model (default 5 per leaf)
#   --early-rounds K   the first K models (round0/model ... round<K-1>/model) train with
#                      --early-opts added to --train-opts,
#   --early-opts "..."   e.g. "--set model.splice=1": narrow context first, as Kaldi's monophone
#                      and delta passes come before spliced LDA+MLLT features. A wide-context
#                      DNN can learn labels that lag the acoustics (reverberation smears each
#                      phone into the next) and keep them round after round; a narrow one places
#                      boundaries where the spectrum changes (recipes/synth/RESULTS.md)
#   --extra "..."      more splits (e.g. test) aligned by the last round's model only, into
#                      EXP/round<ROUNDS>/NAME
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/utils.sh"

rounds=3
num_leaves=200
min_occupancy=20
reference_dir=""
align_opts=""
train_opts=""
extra=""
init=""
gmm=false
gmm_opts=""
tri_leaves=0
tri_gaussians=0
early_rounds=0
early_opts=""
positional=()
parse_options "$@"
[ ${#positional[@]} -eq 6 ] || die "usage: flat_start.sh [options] CONF TRAIN_DATA TRAIN_FEATS DEV_DATA DEV_FEATS EXP"
conf="${positional[0]}"
train_data="${positional[1]}"; train_feats="${positional[2]}"
dev_data="${positional[3]}"; dev_feats="${positional[4]}"
out="${positional[5]}"
[ "$rounds" -ge 1 ] || die "--rounds must be at least 1"
amdistill="${amdistill:-amdistill}"
mkdir -p "$out"
# Finished steps are skipped, so a directory made with other options would be silently mixed
# into this run: the options are recorded and must match (--rounds and --extra may grow).
settings="gmm=$gmm gmm_opts=$gmm_opts tri_leaves=$tri_leaves tri_gaussians=$tri_gaussians init=$init"
settings+=" num_leaves=$num_leaves min_occupancy=$min_occupancy align_opts=$align_opts"
settings+=" train_opts=$train_opts early_rounds=$early_rounds early_opts=$early_opts conf=$conf"
if [ -f "$out/flat_start.settings" ]; then
  [ "$(cat "$out/flat_start.settings")" = "$settings" ] || die "$out was made with other options:
  then: $(cat "$out/flat_start.settings")
  now:  $settings
remove it or choose another directory"
else
  echo "$settings" > "$out/flat_start.settings"
fi

# run_align DIR SPLIT LOG LABEL DATA FEATS [ALIGN ARGS...]: `amdistill align` of one split into
# DIR (skipped when DIR/phones.ctm exists), scored against --reference-dir's times when it has
# the split; the report's summary goes to stderr under LABEL.
run_align() {
  local dir="$1" split="$2" log_file="$3" label="$4" data="$5" feats="$6"; shift 6
  if [ -s "$dir/phones.ctm" ]; then return 0; fi
  local ref=()
  if [ -n "$reference_dir" ] && [ -f "$reference_dir/$split/phones.ctm" ]; then
    ref=(--reference "$reference_dir/$split/phones.ctm")
  fi
  # shellcheck disable=SC2086
  "$amdistill" align "$data" "$feats" "$dir" "${ref[@]}" "$@" $align_opts > "$log_file" 2>&1 \
    || { tail -n 20 "$log_file" >&2; die "align failed ($label): see $log_file"; }
  grep -E "^(utterances|agreement|boundary)" "$dir/align_report.txt" | sed "s/^/  $label: /" >&2 || true
}

# align_split ROUND SPLIT DATA FEATS [ALIGN ARGS...]: one round's alignment of one split.
align_split() {
  local r="$1" split="$2" data="$3" feats="$4"; shift 4
  mkdir -p "$out/round$r"
  # The log is align_<split>.log: round r's train.log is its model's training log.
  run_align "$out/round$r/$split" "$split" "$out/round$r/align_$split.log" "round $r $split" \
    "$data" "$feats" "$@"
}

# gmm_pass NAME [TREE_DIR INIT_CTM GAUSSIANS]: a GMM-HMM trained on train
# (EXP/gmm/NAME/train/gmm.json; monophone, or on TREE_DIR's senones from INIT_CTM) and its
# alignment of train and dev. Skipped when done.
gmm_pass() {
  local name="$1" tree="${2:-}" ctm="${3:-}" gaussians="${4:-}"
  local dir="$out/gmm/$name"
  mkdir -p "$dir"
  for split in train dev; do
    local data="$train_data" feats="$train_feats" model=(--train-gmm)
    [ -n "$ctm" ] && model+=(--gmm-init "$ctm" --gmm-gaussians "$gaussians")
    if [ "$split" = dev ]; then data="$dev_data"; feats="$dev_feats"; model=(--gmm "$dir/train/gmm.json"); fi
    [ -n "$tree" ] && model+=(--tree "$tree")
    # shellcheck disable=SC2086
    run_align "$dir/$split" "$split" "$dir/align_$split.log" "gmm $name $split" "$data" "$feats" \
      "${model[@]}" $gmm_opts
  done
}

if [ -n "$init" ] && [ "$gmm" = true ]; then die "--init and --gmm both give round 0: choose one"; fi
if [ "$gmm" = true ]; then
  log "flat start: monophone GMM-HMM (align --train-gmm)"
  gmm_pass mono
  init="$out/gmm/mono"
  if [ "$tri_leaves" -gt 0 ]; then
    log "flat start: context-dependent GMM-HMM on a tree of $tri_leaves leaves from the monophone alignment"
    if [ ! -s "$out/gmm/tri/tree/tree" ]; then
      "$amdistill" build-tree "$train_feats" "$out/gmm/tri/tree" --ctm "$out/gmm/mono/train/phones.ctm" \
        --num-leaves "$tri_leaves" --min-occupancy "$min_occupancy" > "$out/gmm/tri_tree.log" 2>&1 \
        || { cat "$out/gmm/tri_tree.log" >&2; die "build-tree failed: see $out/gmm/tri_tree.log"; }
    fi
    [ "$tri_gaussians" -gt 0 ] || tri_gaussians=$((5 * tri_leaves))
    gmm_pass tri "$out/gmm/tri/tree" "$out/gmm/mono/train/phones.ctm" "$tri_gaussians"
    init="$out/gmm/tri"
  fi
fi
if [ -n "$init" ]; then
  log "flat start round 0: phone times from $init"
  for split in train dev; do
    [ -s "$init/$split/phones.ctm" ] || die "--init: no $init/$split/phones.ctm"
    if [ ! -s "$out/round0/$split/phones.ctm" ]; then
      mkdir -p "$out/round0/$split"
      cp "$init/$split/phones.ctm" "$out/round0/$split/phones.ctm.tmp"
      mv "$out/round0/$split/phones.ctm.tmp" "$out/round0/$split/phones.ctm"
    fi
  done
else
  log "flat start round 0: uniform segmentation"
  align_split 0 train "$train_data" "$train_feats"
  align_split 0 dev "$dev_data" "$dev_feats"
fi

for r in $(seq 0 $((rounds - 1))); do
  d="$out/round$r"
  next=$((r + 1))
  if [ -s "$out/round$next/train/phones.ctm" ] && [ -s "$out/round$next/dev/phones.ctm" ]; then
    log "flat start round $next: already done"
    continue
  fi
  log "flat start round $next: tree, alignments and a model on round $r's phone times, then realign"
  if [ ! -s "$d/tree/tree" ]; then
    "$amdistill" build-tree "$train_feats" "$d/tree" --ctm "$d/train/phones.ctm" \
      --num-leaves "$num_leaves" --min-occupancy "$min_occupancy" > "$d/build_tree.log" 2>&1 \
      || { cat "$d/build_tree.log" >&2; die "build-tree failed: see $d/build_tree.log"; }
  fi
  for split in train dev; do
    feats="$train_feats"; [ "$split" = dev ] && feats="$dev_feats"
    if [ ! -s "$d/ali_$split/ali.txt" ]; then
      "$amdistill" make-alignments "$feats" "$d/tree" "$d/ali_$split" --ctm "$d/$split/phones.ctm" \
        > "$d/ali_$split.log" 2>&1 || { cat "$d/ali_$split.log" >&2; die "make-alignments failed: see $d/ali_$split.log"; }
    fi
  done
  opts="$train_opts"
  [ "$r" -lt "$early_rounds" ] && opts="$train_opts $early_opts"
  # shellcheck disable=SC2086
  "$amdistill" train "$conf" "$d/model" --resume \
    --set "data.train=$train_feats" --set "data.train_ali=$d/ali_train/ali.txt" \
    --set "data.valid=$dev_feats" --set "data.valid_ali=$d/ali_dev/ali.txt" \
    --set "data.senones=$d/tree/senones.txt" $opts > "$d/train.log" 2>&1 \
    || { tail -n 20 "$d/train.log" >&2; die "training failed: see $d/train.log"; }
  mkdir -p "$out/round$next"
  align_split "$next" train "$train_data" "$train_feats" --model "$d/model" --tree "$d/tree"
  align_split "$next" dev "$dev_data" "$dev_feats" --model "$d/model" --tree "$d/tree"
done

last=$((rounds - 1))
for spec in $extra; do
  IFS=, read -r name data feats <<< "$spec"
  [ -n "$feats" ] || die "--extra: '$spec' is not NAME,DATA,FEATS"
  align_split "$rounds" "$name" "$data" "$feats" --model "$out/round$last/model" --tree "$out/round$last/tree"
done
ln -sfn "round$rounds" "$out/final"
log "flat start done: phone times in $out/final/{train,dev}/phones.ctm"
