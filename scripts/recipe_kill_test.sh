#!/usr/bin/env bash
# Kill test for a recipe: kill -9 at random points, restart, and check that the finished run
# equals an uninterrupted one (issue 7: "a run killed in the middle of any stage and restarted
# finishes with the same results").
#
# Usage: scripts/recipe_kill_test.sh [--kills N] [--seed S] RECIPE_DIR [recipe options and args]
#   Runs RECIPE_DIR/run.sh ARGS --exp exp_ref uninterrupted, then RECIPE_DIR/run.sh ARGS
#   --exp exp_kill killed N times (default 4): in N random stages of those that take a second
#   or more, at a random time within what the stage took (each restart resumes), then to the
#   end. Compares every score file's accuracy,
#   agreement, KL and cross-entropy (not the measured timings) and the trained weights.
#   Both exp dirs are removed first; data/ is shared (the killed run also redoes stages 1-3).
set -euo pipefail
kills=4
seed=1
while [ $# -gt 0 ]; do
  case "$1" in
    --kills) kills="$2"; shift 2 ;;
    --seed) seed="$2"; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { sed -n '2,12p' "$0"; exit 2; }
recipe="$(cd "$1" && pwd)"; shift
log() { echo "[kill-test $(date +%H:%M:%S)] $*"; }
RANDOM=$seed

rm -rf "$recipe/exp_ref" "$recipe/exp_kill"
log "reference run: $recipe/run.sh $* --exp exp_ref"
t0=$SECONDS
"$recipe/run.sh" "$@" --exp exp_ref > /tmp/amdistill_kill_ref.log 2>&1 || { tail -n 30 /tmp/amdistill_kill_ref.log; exit 1; }
duration=$((SECONDS - t0))
log "reference run took $duration s"
: > /tmp/amdistill_kill_run.log

# Kill points: N distinct stages that take at least a second, chosen at random and taken in
# order (so each restart meets a stage not yet done), each at a random time within what the
# stage took in the reference run.
mapfile -t timed < <(grep -oE "stage [0-9]+ done in [0-9]+ s" /tmp/amdistill_kill_ref.log \
  | awk '$5 >= 1 {print $2, $5}')
[ ${#timed[@]} -gt 0 ] || { echo "no stage of the reference run took a second"; exit 1; }
mapfile -t picks < <(printf '%s\n' "${timed[@]}" | awk -v seed="$seed" 'BEGIN{srand(seed)} {print rand(), $0}' \
  | sort -n | head -n "$kills" | cut -d' ' -f2- | sort -n)
k=0
for pick in "${picks[@]}"; do
  k=$((k + 1))
  target=${pick% *}; took=${pick#* }
  delay=$(awk -v t="$took" -v r="$RANDOM" 'BEGIN{printf "%.2f", t * r / 32768}')
  : > /tmp/amdistill_kill_step.log
  setsid "$recipe/run.sh" "$@" --exp exp_kill > /tmp/amdistill_kill_step.log 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null && ! grep -q "stage $target: " /tmp/amdistill_kill_step.log; do sleep 0.2; done
  sleep "$delay"
  if kill -0 "$pid" 2>/dev/null; then
    now=$(grep -oE "stage [0-9]+: .*" /tmp/amdistill_kill_step.log | tail -n 1 | cut -c1-70)
    kill -9 -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    log "kill $k: ${delay} s into stage $target (took ${took} s in the reference run); running: $now"
  else
    wait "$pid" || true
    log "kill $k: the run finished before ${delay} s into stage $target"
  fi
  cat /tmp/amdistill_kill_step.log >> /tmp/amdistill_kill_run.log
done
log "restart to the end"
"$recipe/run.sh" "$@" --exp exp_kill >> /tmp/amdistill_kill_run.log 2>&1 || { tail -n 30 /tmp/amdistill_kill_run.log; exit 1; }

python3 - "$recipe" <<'PY'
import json, os, sys, glob, struct
recipe = sys.argv[1]
ref, got = os.path.join(recipe, "exp_ref"), os.path.join(recipe, "exp_kill")
keys = ("frames", "frame_acc", "top_n_acc", "cross_entropy", "phone_acc", "teacher_agreement", "kl")
scores = sorted(glob.glob(os.path.join(ref, "scores", "*", "*.json")))
if not scores:
    sys.exit("no score files in " + ref)
bad = []
for f in scores:
    g = os.path.join(got, os.path.relpath(f, ref))
    if not os.path.exists(g):
        bad.append("missing " + g); continue
    a, b = json.load(open(f))["all"], json.load(open(g))["all"]
    for k in keys:
        if a.get(k) != b.get(k):
            bad.append("%s: %s %r != %r" % (os.path.relpath(g, got), k, a.get(k), b.get(k)))

def tensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    head = json.loads(data[8:8 + n]); body = data[8 + n:]
    return {k: body[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in head.items() if k != "__metadata__"}
models = sorted(glob.glob(os.path.join(ref, "*", "model.safetensors")))
for f in models:
    g = os.path.join(got, os.path.relpath(f, ref))
    if tensors(f) != tensors(g):
        bad.append("weights differ: " + os.path.relpath(g, got))
if bad:
    sys.exit("killed-and-restarted run differs from the uninterrupted one:\n  " + "\n  ".join(bad))
print("kill test: %d score files and %d models equal to the uninterrupted run" % (len(scores), len(models)))
PY
