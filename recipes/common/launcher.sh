# run_sharded: runs one amdistill command as N shards (`--shard I/N` appended) the way
# cmd.sh's $launcher says, and waits for all of them (source it; bash only).
#   run_sharded N LOGDIR CMD ARGS...
# Shard I logs to LOGDIR/shard.I.log. Returns non-zero when any shard failed, after naming
# each failed shard and the end of its log. The commands merge their shards themselves
# (compute-fbank and dump-posteriors write the merged outputs when the last shard ends).

run_sharded() {
  local n="$1" logdir="$2"; shift 2
  mkdir -p "$logdir"
  case "$launcher" in
    local) run_sharded_local "$n" "$logdir" "$@" ;;
    slurm|slurm\ *) run_sharded_slurm "$n" "$logdir" "${launcher#slurm}" "$@" ;;
    *) echo "launcher '$launcher': expected local or 'slurm [sbatch options]' (recipes/common/cmd.sh)" >&2; return 1 ;;
  esac
}

run_sharded_local() {
  local n="$1" logdir="$2"; shift 2
  local pids=() i failed=0
  for i in $(seq 1 "$n"); do
    "$@" --shard "$i/$n" > "$logdir/shard.$i.log" 2>&1 &
    pids+=($!)
  done
  for i in $(seq 1 "$n"); do
    if ! wait "${pids[$((i - 1))]}"; then
      failed=$((failed + 1))
      echo "shard $i/$n failed ($logdir/shard.$i.log):" >&2
      tail -n 5 "$logdir/shard.$i.log" >&2
    fi
  done
  echo "run_sharded: done $((n - failed)) of $n shards ($logdir)" >&2
  [ "$failed" -eq 0 ]
}

run_sharded_slurm() {
  local n="$1" logdir="$2" opts="$3"; shift 3
  local script="$logdir/job.sh"
  # The job script: the command, quoted as given, with this task's shard.
  {
    echo "#!/usr/bin/env bash"
    echo "set -euo pipefail"
    echo "cd $(printf '%q' "$PWD")"
    printf 'exec'; printf ' %q' "$@"; echo ' --shard "$SLURM_ARRAY_TASK_ID/'"$n"'"'
  } > "$script"
  chmod +x "$script"
  # shellcheck disable=SC2086  # opts are sbatch options, split on purpose
  if ! sbatch --wait --array="1-$n" --job-name=amdistill --output="$logdir/shard.%a.log" $opts "$script"; then
    echo "slurm array failed; shard logs in $logdir:" >&2
    grep -l -i "error" "$logdir"/shard.*.log >&2 || true
    return 1
  fi
  echo "run_sharded: done $n of $n shards (slurm, $logdir)" >&2
}
