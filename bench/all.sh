#!/usr/bin/env bash
# Run every bench/*.py script (small default sizes), then list every figure with the command that made it.
#
#   bash bench/all.sh                                  # from anywhere; uses .venv/bin/python when present
#   BENCH_ARGS_HEADS="--image-size 96" bash bench/all.sh   # extra flags for one script (name in capitals)
#   PYTHON=python3 BENCH_TIMEOUT=600 bash bench/all.sh
#   BENCH_LONG=1 BENCH_TIMEOUT=1800 bash bench/all.sh   # also the scripts marked '# bench: long'
#
# A script that exits 77 was skipped (bench/gpu.py without a GPU). Exit status: 1 if any script failed.
set -u
cd "$(dirname "$0")/.."

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3} PYTHONUNBUFFERED=1
LIMIT=${BENCH_TIMEOUT:-900}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
summary=()
all_start=$(date +%s)
for script in bench/*.py; do
  name=$(basename "$script" .py)
  case "$name" in _*) continue ;; esac
  # Scripts marked long (a training run to an accuracy, tens of minutes) run only when asked.
  if grep -q '^# bench: long' "$script" && [ -z "${BENCH_LONG:-}" ]; then
    echo "--- $script: skipped (long; BENCH_LONG=1 runs it)"
    summary+=("\$ python $script    # skipped: long, BENCH_LONG=1 runs it")
    continue
  fi
  var="BENCH_ARGS_$(echo "$name" | tr '[:lower:]' '[:upper:]')"
  extra=${!var:-}
  cmd="python $script${extra:+ $extra}"
  echo "=== $cmd"
  start=$(date +%s)
  # shellcheck disable=SC2086  # extra flags are meant to split
  timeout "$LIMIT" "$PY" "$script" $extra 2>"$work/$name.err" | tee "$work/$name.out"
  rc=${PIPESTATUS[0]}
  secs=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then
    state="ok, ${secs} s"
  elif [ $rc -eq 77 ]; then
    state="skipped, ${secs} s: $(grep -v -E '^(WARNING: All log|[IWE][0-9]{4} )' "$work/$name.err" | tail -n 1)"
  else
    [ $rc -eq 124 ] && why="timed out after ${LIMIT} s" || why="exit $rc"
    state="FAILED ($why), ${secs} s"
    failed+=("$script")
    grep -v -E '^(WARNING: All log|[IWE][0-9]{4} )' "$work/$name.err" | tail -n 5 | sed 's/^/    /'
  fi
  echo "--- $script: $state"
  summary+=("\$ $cmd    # $state")
  while IFS= read -r line; do summary+=("    $line"); done < <(grep '^FIGURE ' "$work/$name.out")
done

echo
echo "=== every figure, by the command that made it (total $(( $(date +%s) - all_start )) s, $(nproc 2>/dev/null || echo '?') CPUs)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]}"
  exit 1
fi
