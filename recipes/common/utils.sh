# Shared helpers for amdistill recipes (source it; bash only).
#   log MSG...             time-stamped message with the calling script and line
#   parse_options "$@"     Kaldi-style: --name value or --name=value sets $name if it exists;
#                          a boolean option (default true/false) alone means true
#   run_stage N NAME CMD.. runs CMD when stage <= N <= stop_stage and N's .done marker is absent,
#                          then writes the marker; a rerun skips finished stages and says so
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
