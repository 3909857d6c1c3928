# Shared helpers for amdistill recipes (source it; bash only).
#   log MSG...             time-stamped message with the calling script and line
#   parse_options "$@"     Kaldi-style: --name value or --name=value sets $name if it exists;
#                          a boolean option (default true/false) alone means true
#   run_stage N NAME CMD.. runs CMD when stage <= N <= stop_stage and N's .done marker is absent,
#                          then writes the marker; a rerun skips finished stages and says so
#   combine_data_dirs OUT DIR...  Kaldi's utils/combine_data.sh for wav.scp, utt2spk, spk2utt
#                          (and text when every DIR has one); an utterance in two DIRs is an error
# Variables read: stage, stop_stage, exp (where .done markers live).

log() {
  local src="${BASH_SOURCE[1]##*/}:${BASH_LINENO[0]}"
  echo "$(date '+%Y-%m-%d %H:%M:%S') ($src) $*" >&2
}

die() { log "ERROR: $*"; exit 1; }

parse_options() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --help|-h) usage 2>/dev/null || sed -n '2,/^$/p' "$0"; exit 0 ;;
      --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
      --*)
        name="${1#--}"; name="${name//-/_}"
        # A boolean option (its default is true or false) takes a value only if one is given
        # as true/false, so `--quick DIR` leaves DIR as a positional argument.
        local current=""
        declare -p "$name" >/dev/null 2>&1 && current="${!name}"
        if [ "$current" = true ] || [ "$current" = false ]; then
          if [ $# -ge 2 ] && { [ "$2" = true ] || [ "$2" = false ]; }; then value="$2"; shift 2; else value=true; shift; fi
        elif [ $# -ge 2 ] && [[ "$2" != --* ]]; then value="$2"; shift 2
        else value=true; shift; fi ;;
      *) positional+=("$1"); shift; continue ;;
    esac
    name="${name#--}"; name="${name//-/_}"
    if ! declare -p "$name" >/dev/null 2>&1; then die "unknown option --${name//_/-}"; fi
    printf -v "$name" '%s' "$value"
  done
}

# run_stage N "description" command args...
run_stage() {
  local n="$1" what="$2"; shift 2
  if [ "$n" -lt "$stage" ] || [ "$n" -gt "$stop_stage" ]; then return 0; fi
  local marker="$exp/.done/stage$n"
  if [ -f "$marker" ]; then
    log "stage $n ($what): already done, skipping (remove $marker to redo)"
    return 0
  fi
  log "stage $n: $what"
  local t0=$SECONDS
  "$@"
  mkdir -p "$exp/.done"
  echo "$what" > "$marker"
  log "stage $n done in $((SECONDS - t0)) s"
}

# combine_data_dirs OUT DIR...: one data directory of every DIR's utterances (wav.scp and
# utt2spk concatenated and sorted, spk2utt remade, text only if every DIR has one). Written
# beside OUT and renamed into place, so OUT is never half-written.
combine_data_dirs() {
  local out="$1"; shift
  local tmp="$out.tmp.$$" d f
  rm -rf "$tmp"; mkdir -p "$tmp"
  local files=(wav.scp utt2spk)
  local all_text=true
  for d in "$@"; do [ -f "$d/text" ] || all_text=false; done
  [ "$all_text" = true ] && files+=(text)
  for f in "${files[@]}"; do
    for d in "$@"; do
      [ -f "$d/$f" ] || die "combine_data_dirs: $d/$f is missing"
      cat "$d/$f"
    done | LC_ALL=C sort -k1,1 > "$tmp/$f"
    local dup; dup=$(cut -d' ' -f1 "$tmp/$f" | uniq -d | head -n 1)
    [ -z "$dup" ] || { rm -rf "$tmp"; die "combine_data_dirs: utterance $dup is in more than one of $*"; }
  done
  LC_ALL=C awk '{ if ($2 != s) { if (NR > 1) printf "\n"; printf "%s", $2; s = $2 } printf " %s", $1 }
                END { if (NR > 0) printf "\n" }' <(LC_ALL=C sort -k2,2 -k1,1 "$tmp/utt2spk") > "$tmp/spk2utt"
  rm -rf "$out"; mv "$tmp" "$out"
  log "combined $(wc -l < "$out/utt2spk") utterances of $* into $out"
}
