#!/usr/bin/env bash
# Tests recipes/common/launcher.sh without a cluster: local shards, a failing shard, and the
# Slurm path through a stand-in `sbatch` that runs the array's tasks the way Slurm would
# (SLURM_ARRAY_TASK_ID set, output to --output with %a replaced). CI runs it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/launcher.sh"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fail() { echo "test_launcher: FAIL: $*" >&2; exit 1; }

# A command that records its shard; shard 2/3 fails when asked to.
cat > "$tmp/job" <<'J'
#!/usr/bin/env bash
out="$1"; shift
[ "$1" = --shard ] || { echo "no --shard" >&2; exit 2; }
echo "$2" > "$out.${2%/*}"
[ "${FAIL_SHARD:-}" = "$2" ] && { echo "error: shard $2 broke" >&2; exit 3; }
exit 0
J
chmod +x "$tmp/job"

launcher=local
run_sharded 3 "$tmp/log" "$tmp/job" "$tmp/out a" 2> "$tmp/err" || fail "local shards failed: $(cat "$tmp/err")"
for i in 1 2 3; do [ "$(cat "$tmp/out a.$i")" = "$i/3" ] || fail "local shard $i"; done
grep -q "done 3 of 3" "$tmp/err" || fail "no 'done 3 of 3'"
if FAIL_SHARD=2/3 run_sharded 3 "$tmp/log" "$tmp/job" "$tmp/out b" 2> "$tmp/err"; then fail "a failed shard went unnoticed"; fi
grep -q "shard 2/3 failed" "$tmp/err" && grep -q "done 2 of 3" "$tmp/err" && grep -q "shard 2/3 broke" "$tmp/err" \
  || fail "failed shard not reported: $(cat "$tmp/err")"

# Slurm: a stand-in sbatch on PATH.
mkdir "$tmp/bin"
cat > "$tmp/bin/sbatch" <<'S'
#!/usr/bin/env bash
array=""; output=""; script=""; seen=()
for a in "$@"; do
  case "$a" in
    --array=*) array="${a#--array=}" ;;
    --output=*) output="${a#--output=}" ;;
    --wait|--job-name=*) ;;
    --*) seen+=("$a") ;;
    *) script="$a" ;;
  esac
done
echo "${seen[*]}" > "$(dirname "$script")/sbatch_opts"
status=0
for i in $(seq "${array%-*}" "${array#*-}"); do
  SLURM_ARRAY_TASK_ID=$i bash "$script" > "${output//%a/$i}" 2>&1 || status=1
done
exit $status
S
chmod +x "$tmp/bin/sbatch"
PATH="$tmp/bin:$PATH"
launcher="slurm --partition=cpu --mem=2G"
run_sharded 2 "$tmp/slog" "$tmp/job" "$tmp/out c" 2> "$tmp/err" || fail "slurm shards failed: $(cat "$tmp/err")"
for i in 1 2; do [ "$(cat "$tmp/out c.$i")" = "$i/2" ] || fail "slurm shard $i"; done
[ "$(cat "$tmp/slog/sbatch_opts")" = "--partition=cpu --mem=2G" ] || fail "sbatch options: $(cat "$tmp/slog/sbatch_opts")"
if FAIL_SHARD=1/2 run_sharded 2 "$tmp/slog" "$tmp/job" "$tmp/out d" 2> "$tmp/err"; then fail "a failed slurm task went unnoticed"; fi
grep -q "slurm array failed" "$tmp/err" || fail "slurm failure not reported"

launcher=pbs
if run_sharded 1 "$tmp/log" "$tmp/job" x 2> "$tmp/err"; then fail "unknown launcher accepted"; fi
grep -q "expected local or 'slurm" "$tmp/err" || fail "unknown launcher message"
echo "test_launcher: ok (local, failing shard, slurm array, unknown launcher)"
