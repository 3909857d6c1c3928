#!/usr/bin/env bash
# Fbank speed, the peers and amdistill one after the other on the same audio and machine.
#
#   bash benches/fbank_side_by_side.sh            # from the repository root
#
# Steps:
#   1. the peers' test set (make_audio.py: 200 x 10 s + espeak clips, 16 kHz int16) into
#      $PEERS_AUDIO (default /tmp/peers-audio), unless it is there already;
#   2. the peers' fbank bench (bench_fbank.py --no-golden --no-results) if their venv exists;
#   3. amdistill's corpus bench (cargo bench --bench fbank_corpus -- AUDIO): WAV decoding,
#      1-thread fbank, rayon at 1 and 2 threads, the peers' exact configuration;
#   4. the whole path from files on disk to the feature store, `amdistill compute-fbank`, at
#      --threads 1 and 2, wall time and peak memory (/usr/bin/time -v); then once over a
#      10-hour corpus (the same files listed repeatedly) for its peak memory.
#
# Environment:
#   PEERS_DIR    the peers' harness (default: ../shared/peers next to the repository)
#   PEERS_VENV   their virtualenv (default /tmp/peers-venv; created by `bash $PEERS_DIR/setup.sh`,
#                ~5 GB with torch; a light one with only kaldi-native-fbank and numpy is enough for
#                the kaldi-native-fbank and numpy-kaldi rows: see LIGHT_VENV below)
#   PEERS_AUDIO  audio directory (default /tmp/peers-audio)
#   WORK         scratch for the data and feature directories (default /tmp/amdistill-side-by-side)
#   REPEATS      passes per figure (default 3)
#   HOURS        corpus size for the peak-memory run (default 10; the files are listed repeatedly)
#   KEEP=1       keep that run's feature store (~1.2 GB for 10 h)
#   SKIP_PEERS=1 / SKIP_CORPUS=1 / SKIP_E2E=1 / SKIP_10H=1   leave a step out
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PEERS_DIR="${PEERS_DIR:-$REPO/../shared/peers}"
PEERS_VENV="${PEERS_VENV:-/tmp/peers-venv}"
PEERS_AUDIO="${PEERS_AUDIO:-/tmp/peers-audio}"
WORK="${WORK:-/tmp/amdistill-side-by-side}"
REPEATS="${REPEATS:-3}"
LIGHT_VENV="python3 -m venv $PEERS_VENV && $PEERS_VENV/bin/pip install kaldi-native-fbank numpy"

say() { printf '\n== %s\n' "$*"; }

if [ ! -f "$PEERS_DIR/bench_fbank.py" ]; then
  echo "no peers harness at $PEERS_DIR (set PEERS_DIR)" >&2
  exit 1
fi
PEERS_DIR="$(cd "$PEERS_DIR" && pwd)"

# Python for make_audio.py: the peers' venv if any, else the system python3 (needs numpy).
PY=python3
if [ -x "$PEERS_VENV/bin/python" ]; then
  PY="$PEERS_VENV/bin/python"
fi

say "machine"
echo "$(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "rustc: $(rustc --version)"

# 1. Audio.
if ls "$PEERS_AUDIO"/*.wav >/dev/null 2>&1; then
  say "audio: reusing $PEERS_AUDIO ($(ls "$PEERS_AUDIO"/*.wav | wc -l) files)"
else
  say "audio: make_audio.py -> $PEERS_AUDIO"
  if ! "$PY" -c 'import numpy' 2>/dev/null; then
    echo "make_audio.py needs numpy: create the peers' venv ($LIGHT_VENV), or pip install numpy" >&2
    exit 1
  fi
  "$PY" "$PEERS_DIR/make_audio.py" "$PEERS_AUDIO"
fi
NFILES=$(ls "$PEERS_AUDIO"/*.wav | wc -l)

# 2. Peers.
if [ "${SKIP_PEERS:-0}" != 1 ]; then
  if [ -x "$PEERS_VENV/bin/python" ]; then
    say "peers: bench_fbank.py (venv $PEERS_VENV)"
    "$PEERS_VENV/bin/python" "$PEERS_DIR/bench_fbank.py" "$PEERS_AUDIO" --repeats "$REPEATS" --no-golden --no-results
  else
    say "peers: skipped, no venv at $PEERS_VENV"
    echo "create it with: bash $PEERS_DIR/setup.sh   (all peers, ~5 GB)"
    echo "or, for kaldi-native-fbank and numpy-kaldi only: $LIGHT_VENV"
  fi
fi

# 3. amdistill, compute only (decoding reported separately).
if [ "${SKIP_CORPUS:-0}" != 1 ]; then
  say "amdistill: cargo bench --bench fbank_corpus"
  cargo bench --bench fbank_corpus -- "$PEERS_AUDIO" --passes "$REPEATS"
fi

# 4. amdistill, files on disk -> feature store.
if [ "${SKIP_E2E:-0}" != 1 ]; then
  say "amdistill compute-fbank: files on disk -> feature store"
  cargo build --release --bin amdistill
  BIN="$REPO/target/release/amdistill"
  TIME=/usr/bin/time
  if [ ! -x "$TIME" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; } || true
  fi
  if [ ! -x "$TIME" ]; then
    echo "/usr/bin/time missing (apt-get install time): peak memory not measured" >&2
    TIME=""
  fi
  FLAGS=(--profile kaldi --num-mel-bins=80 --dither=0 --snip-edges=true)

  # make_data_dir DIR COPIES: a Kaldi data directory over every AUDIO/*.wav, each listed COPIES
  # times under its own utterance id (rNN-<name>), one speaker per utterance.
  make_data_dir() {
    local dir="$1" copies="$2" f u c
    rm -rf "$dir"
    mkdir -p "$dir"
    for c in $(seq -w 1 "$copies"); do
      for f in "$PEERS_AUDIO"/*.wav; do
        u="$(basename "$f" .wav)"
        printf 'r%s-%s %s\n' "$c" "$u" "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")"
      done
    done | LC_ALL=C sort >"$dir/wav.scp"
    awk '{print $1, $1}' "$dir/wav.scp" >"$dir/utt2spk"
    cp "$dir/utt2spk" "$dir/spk2utt"
  }

  # store DATA FEAT THREADS: runs compute-fbank once; sets WALL (s), CPU (user + system s, which
  # other processes on the machine do not inflate as they do WALL), RSS (MiB) and DONE.
  store() {
    local log="$2.log" start end
    rm -rf "$2"
    sync
    start=$(date +%s.%N)
    if [ -n "$TIME" ]; then
      "$TIME" -v "$BIN" --threads "$3" compute-fbank "$1" "$2" "${FLAGS[@]}" >/dev/null 2>"$log"
    else
      "$BIN" --threads "$3" compute-fbank "$1" "$2" "${FLAGS[@]}" >/dev/null 2>"$log"
    fi
    end=$(date +%s.%N)
    WALL=$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.3f", b - a}')
    RSS=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); printf "%.0f", $2 / 1024}' "$log")
    RSS="${RSS:-?}"
    CPU=$(awk -F: '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$log")
    DONE="$(grep -oE 'done [0-9]+ of [0-9]+.*' "$log" | tail -1 || true)"
  }

  AUDIO_S=$("$PY" -c 'import glob, sys, wave
print(sum(w.getnframes() / w.getframerate() for w in (wave.open(p) for p in glob.glob(sys.argv[1] + "/*.wav"))))' \
    "$PEERS_AUDIO" 2>/dev/null || echo 0)
  make_data_dir "$WORK/data" 1
  declare -A BEST
  for t in 1 2; do
    BEST[$t]=""
    for r in $(seq "$REPEATS"); do
      store "$WORK/data" "$WORK/feats" "$t"
      echo "  --threads $t pass $r: $WALL s wall, $CPU s CPU, peak RSS $RSS MiB; $DONE"
      if [ -z "${BEST[$t]}" ] || awk -v a="$WALL" -v b="${BEST[$t]}" 'BEGIN{exit !(a < b)}'; then
        BEST[$t]="$WALL"
        BEST_RSS="$RSS"
      fi
    done
    awk -v s="$AUDIO_S" -v b="${BEST[$t]}" -v t="$t" -v n="$NFILES" -v m="$BEST_RSS" 'BEGIN{
      printf "compute-fbank --threads %d: best %.3f s for %d files, %.1f min of audio: %.0fx real time, peak RSS %s MiB\n",
             t, b, n, s / 60, s / b, m }'
  done
  echo "feature store: $(du -sh "$WORK/feats" | cut -f1) for $(wc -l <"$WORK/data/wav.scp") utterances"
  awk -v a="${BEST[1]}" -v b="${BEST[2]}" 'BEGIN{printf "compute-fbank speed-up 1 -> 2 threads: %.2fx\n", a / b}'

  # Peak memory over a 10-hour corpus (the same files listed until >= HOURS hours).
  HOURS="${HOURS:-10}"
  if [ "${SKIP_10H:-0}" != 1 ] && awk -v s="$AUDIO_S" 'BEGIN{exit !(s > 0)}'; then
    copies=$(awk -v s="$AUDIO_S" -v h="$HOURS" 'BEGIN{c = int(h * 3600 / s); if (c * s < h * 3600) c++; print c}')
    say "compute-fbank over $HOURS hours: the $NFILES files listed $copies times, --threads 2"
    make_data_dir "$WORK/data_${HOURS}h" "$copies"
    store "$WORK/data_${HOURS}h" "$WORK/feats_${HOURS}h" 2
    awk -v s="$AUDIO_S" -v c="$copies" -v w="$WALL" -v u="$CPU" -v m="$RSS" 'BEGIN{
      printf "%.2f h of audio: %.1f s wall (%.0fx real time), %.1f s CPU, peak RSS %s MiB\n", s * c / 3600, w, s * c / w, u, m }'
    echo "  $DONE; feature store $(du -sh "$WORK/feats_${HOURS}h" | cut -f1)"
    [ "${KEEP:-0}" = 1 ] || rm -rf "$WORK/feats_${HOURS}h"
  fi
fi
