#!/usr/bin/env bash
# Interleaved A/B runs of a6measure: for each repetition, each scenario, each runner in
# turn, so that a load change on a shared machine hits every side alike.
#
#   bench/ab.sh REPS "SCENARIO ..." "LABEL=RUNNER COMMAND" "LABEL=RUNNER COMMAND" ...
#   CONNS=16 DUR=4 bench/ab.sh 3 "say rewrite" "ours=.venv/bin/a6-runner run --workers 2" \
#       "go=/path/to/go-runner run -m prod"
#
# CONNS (default 16) and DUR (measured seconds, default 4) go to a6measure, found at
# $A6MEASURE (default: ../shared/tools/a6measure beside this repository). One line per run:
# repetition, scenario, label, calls/s, runner CPU µs per call, p99 µs, errors.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
measure=${A6MEASURE:-$here/../../shared/tools/a6measure}
reps=$1 scenarios=$2
shift 2
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
for rep in $(seq "$reps"); do
  for scenario in $scenarios; do
    for spec in "$@"; do
      label=${spec%%=*} command=${spec#*=}
      # shellcheck disable=SC2086 # the runner command is split into its words on purpose
      result=$("$measure" --scenario "$scenario" --conns "${CONNS:-16}" --duration "${DUR:-4}" \
        --warmup 1 -- $command 2>&1 | grep RESULT || true)
      echo "$rep $scenario $label rps=$(field rps <<<" $result")" \
        "cpu_us=$(field runner_cpu_us_per_call <<<" $result")" \
        "p99=$(field p99_us <<<" $result") err=$(field errors <<<" $result")"
    done
  done
done
