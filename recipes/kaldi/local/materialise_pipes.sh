#!/usr/bin/env bash
# Kaldi wav.scp entries that are pipe commands (`sph2pipe -f wav x.sph |`, `sox ... - |`) run
# once, into WAV files, since amdistill reads audio files only:
#   local/materialise_pipes.sh SRC_DATA_DIR OUT_DATA_DIR WAV_DIR
# OUT_DATA_DIR is SRC_DATA_DIR's files with wav.scp pointing at WAV_DIR/<recording>.wav for
# the piped entries (plain paths are kept). A rerun keeps the WAVs already made (each is
# written to a temporary name and renamed, so a killed run leaves none half-written). Every
# command is tried; each failing one is named, the script ends "done N of M" and fails if
# N < M (fix or drop those recordings and rerun).
set -euo pipefail
[ $# -eq 3 ] || { sed -n '2,9p' "$0"; exit 2; }
src="$1"; out="$2"; wav_dir="$3"
[ -f "$src/wav.scp" ] || { echo "$src/wav.scp: no such file" >&2; exit 1; }
mkdir -p "$out" "$wav_dir"
wav_dir="$(cd "$wav_dir" && pwd)"
for f in "$src"/*; do [ -f "$f" ] && [ "$(basename "$f")" != wav.scp ] && cp "$f" "$out/"; done
total=0; ok=0; : > "$out/wav.scp.tmp"
while read -r rec value; do
  [ -n "$rec" ] || continue
  total=$((total + 1))
  case "$value" in
    *\|)
      target="$wav_dir/$rec.wav"
      if [ ! -s "$target" ]; then
        if ! bash -c "${value%|}" > "$target.tmp" 2> "$target.err" || [ ! -s "$target.tmp" ]; then
          echo "$rec: '${value}' failed: $(head -c 300 "$target.err")" >&2
          rm -f "$target.tmp"; continue
        fi
        mv "$target.tmp" "$target"; rm -f "$target.err"
      fi
      echo "$rec $target" >> "$out/wav.scp.tmp" ;;
    *) echo "$rec $value" >> "$out/wav.scp.tmp" ;;
  esac
  ok=$((ok + 1))
done < "$src/wav.scp"
echo "materialise_pipes: done $ok of $total recordings ($out/wav.scp)"
[ "$ok" -eq "$total" ] || { rm -f "$out/wav.scp.tmp"; exit 1; }
mv "$out/wav.scp.tmp" "$out/wav.scp"
