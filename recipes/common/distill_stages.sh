# The stages every recipe shares, from data directories to the exported student (source it
# after utils.sh; bash only). Each is a function for run_stage:
#   stage_validate      validate-data-dir on $splits
#   stage_features      conf/fbank.conf features + per-speaker CMVN stats -> $data/fbank/<split>
#                       ($nj shards through cmd.sh's $launcher when nj > 1)
#   stage_alignments    make-alignments with $exp/tree    -> $exp/ali/<split>/ali.txt
#                       (phone times: $ctm_dir/<split>/phones.ctm when set, else the store's)
#   stage_teacher       train conf/teacher.toml           -> $exp/teacher
#   stage_soft_targets  teacher's top-10 logits on the KD training set -> $exp/teacher/targets_<set>
#                       ($nj shards, as stage_features); the set is train, or with
#                       $untranscribed_data train and that data directory combined into
#                       $data/train_kd (features and CMVN as stage_features)
#   stage_student_hard  train conf/student_hard.toml      -> $exp/student_hard
#   stage_student_kd    train conf/student_kd.toml on the soft targets -> $exp/student_kd
#                       (untranscribed utterances learn from the teacher alone)
#   stage_score         score the three on $test_splits   -> $exp/scores/<split>/<model>.json
#   stage_export        bundle the KD student, score its int8 weights, stream check
#                                                         -> $exp/export/student_kd
#   stage_compare       tables and plots (with the int8 row when exported) -> $exp/compare/<split>/
#   print_tables        prints the comparison tables
# Variables read: amdistill (the binary), data (with fbank/<split>), exp (with tree/ and
# ali/<split>/ali.txt), splits (every split), test_splits, ctm_dir (may be empty), teacher_opts and student_opts (extra `train` options, may
# be empty), kd_opts (extra options of the KD student alone; may be unset), stream_data (a data
# directory whose first two recordings are streamed), untranscribed_data (a data directory of
# audio without text for the KD student; may be unset or empty).

_common="$(dirname "${BASH_SOURCE[0]}")"
. "$_common/cmd.sh"
. "$_common/launcher.sh"

stage_validate() {
  for s in $splits; do "$amdistill" validate-data-dir "$data/$s"; done
}

features_of() {  # features_of SPLIT: $data/SPLIT -> $data/fbank/SPLIT with per-speaker CMVN stats
  local s="$1"
  if [ "$nj" -gt 1 ]; then
    run_sharded "$nj" "$exp/log/fbank_$s" "$amdistill" compute-fbank --config=conf/fbank.conf "$data/$s" "$data/fbank/$s"
  else
    "$amdistill" compute-fbank --config=conf/fbank.conf "$data/$s" "$data/fbank/$s" 2>&1 | tee "$exp/log/fbank_$s.log"
  fi
  "$amdistill" compute-cmvn --per spk "$data/fbank/$s" 2>&1 | tee -a "$exp/log/fbank_$s.log"
}

stage_features() {
  for s in $splits; do features_of "$s"; done
}

kd_set() {  # the KD student's training set: train, or train_kd with untranscribed data
  if [ -n "${untranscribed_data:-}" ]; then echo train_kd; else echo train; fi
}

stage_alignments() {
  for s in $splits; do
    local ctm=()
    [ -n "${ctm_dir:-}" ] && ctm=(--ctm "$ctm_dir/$s/phones.ctm")
    "$amdistill" make-alignments "$data/fbank/$s" "$exp/tree" "$exp/ali/$s" "${ctm[@]}" 2>&1 \
      | tee "$exp/log/ali_$s.log"
  done
}

train_set() {  # --set overrides that point a config at this run's data
  echo --set "data.train=$data/fbank/train" --set "data.train_ali=$exp/ali/train/ali.txt" \
       --set "data.valid=$data/fbank/dev" --set "data.valid_ali=$exp/ali/dev/ali.txt" \
       --set "data.senones=$exp/tree/senones.txt"
}

stage_teacher() {
  # shellcheck disable=SC2046,SC2086
  "$amdistill" train conf/teacher.toml "$exp/teacher" --resume $(train_set) $teacher_opts 2>&1 \
    | tee "$exp/log/train_teacher.log"
}

stage_soft_targets() {
  local set; set=$(kd_set)
  if [ "$set" = train_kd ]; then
    "$amdistill" validate-data-dir --no-text "$untranscribed_data"
    combine_data_dirs "$data/train_kd" "$data/train" "$untranscribed_data"
    features_of train_kd
  fi
  if [ "$nj" -gt 1 ]; then
    run_sharded "$nj" "$exp/log/dump_posteriors" \
      "$amdistill" dump-posteriors "$exp/teacher" "$data/fbank/$set" "$exp/teacher/targets_$set" --top-k 10
  else
    "$amdistill" dump-posteriors "$exp/teacher" "$data/fbank/$set" "$exp/teacher/targets_$set" --top-k 10 \
      2>&1 | tee "$exp/log/dump_posteriors.log"
  fi
}

stage_student_hard() {
  # shellcheck disable=SC2046,SC2086
  "$amdistill" train conf/student_hard.toml "$exp/student_hard" --resume $(train_set) $student_opts 2>&1 \
    | tee "$exp/log/train_student_hard.log"
}

stage_student_kd() {
  local set; set=$(kd_set)
  local unt=()  # the combined set's untranscribed utterances train on the soft term alone
  [ "$set" = train_kd ] && unt=(--set kd.untranscribed=true)
  # shellcheck disable=SC2046,SC2086
  "$amdistill" train conf/student_kd.toml "$exp/student_kd" --resume $(train_set) $student_opts \
    ${kd_opts:-} --set "data.train=$data/fbank/$set" --set "kd.targets=$exp/teacher/targets_$set" \
    "${unt[@]}" 2>&1 | tee "$exp/log/train_student_kd.log"
}

stage_score() {
  for s in $test_splits; do
    for m in teacher student_hard student_kd; do
      "$amdistill" score "$exp/$m" "$data/fbank/$s" "$exp/ali/$s/ali.txt" "$exp/scores/$s/$m.json" \
        --teacher "$exp/teacher" --name "$m" 2>&1 | tee -a "$exp/log/score.log"
    done
  done
}

stage_export() {
  local first; first="${test_splits%% *}"
  "$amdistill" export "$exp/student_kd" "$exp/export/student_kd" \
    --eval "$data/fbank/$first" --eval-ali "$exp/ali/$first/ali.txt" 2>&1 | tee "$exp/log/export.log"
  for s in $test_splits; do
    "$amdistill" score "$exp/export/student_kd" "$data/fbank/$s" "$exp/ali/$s/ali.txt" \
      "$exp/scores/$s/student_kd_int8.json" --int8 --teacher "$exp/teacher" --name student_kd_int8 \
      2>&1 | tee -a "$exp/log/export.log"
  done
  # The device path: audio in 10 ms chunks through the int8 bundle, checked against offline.
  # shellcheck disable=SC2046
  "$amdistill" stream "$exp/export/student_kd" --int8 --check \
    $(head -n 2 "$stream_data/wav.scp" | awk '{print $2}') 2>&1 | tee -a "$exp/log/export.log"
}

stage_compare() {
  for s in $test_splits; do
    local int8=()  # the export stage's row, where the recipe exports
    [ -f "$exp/scores/$s/student_kd_int8.json" ] && int8=("$exp/scores/$s/student_kd_int8.json")
    "$amdistill" compare "$exp/scores/$s/teacher.json" "$exp/scores/$s/student_hard.json" \
      "$exp/scores/$s/student_kd.json" "${int8[@]}" --out "$exp/compare/$s" \
      --curves "teacher=$exp/teacher/metrics.jsonl" --curves "student_hard=$exp/student_hard/metrics.jsonl" \
      --curves "student_kd=$exp/student_kd/metrics.jsonl" > "$exp/log/compare_$s.log"
  done
}

print_tables() {
  for s in $test_splits; do
    if [ -f "$exp/compare/$s/compare.md" ]; then
      echo "== $s =="; cat "$exp/compare/$s/compare.md"
    fi
  done
}
