#!/usr/bin/env bash
# Builds the training corpus (tinyalign corpus build) with JOBS processes side by side, each on
# its own shards (--part i/JOBS), logging to $TINYALIGN_HOME/logs/corpus-i.log. Resumable: stop it
# at any time (Ctrl-C, kill, power loss) and run it again; finished shards are kept.
# Settings (environment): JOBS (processes, default: CPU cores), NICE (default 10: a background job),
# CORPUS_DIR (default $TINYALIGN_HOME/corpora/main); extra arguments go to `tinyalign corpus build`.
set -eo pipefail   # not -u: colcon's setup scripts (sourced by env.sh) read unset variables
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/env.sh" >/dev/null
JOBS=${JOBS:-$(nproc)}
home=${TINYALIGN_HOME:-$HOME/.local/share/tinyalign_ros}
dir=${CORPUS_DIR:-$home/corpora/main}
mkdir -p "$home/logs"
# the plan first, once, so the parts never race to write it
tinyalign corpus plan "$dir" "$@"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' INT TERM
for ((i = 0; i < JOBS; i++)); do
  OMP_NUM_THREADS=1 TINYALIGN_TTS_THREADS=1 nice -n "${NICE:-10}" \
    tinyalign corpus build "$dir" --part "$i/$JOBS" --threads 1 "$@" \
    > "$home/logs/corpus-$i.log" 2>&1 &
  pids+=($!)
done
echo "corpus: $JOBS processes on $dir; logs in $home/logs/corpus-*.log"
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
tinyalign corpus status "$dir" --with-asr
exit $status
