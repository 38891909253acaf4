#!/usr/bin/env bash
# The GPU measurements in one script: everything a GPU's minutes are for, written to OUT.
#
#   benchmarks/gpu.sh OUT                    # on a GPU machine: under 10 minutes
#   benchmarks/gpu.sh OUT --device cpu --toy # every stage end to end on a CPU, at toy sizes
#
# Needs the project installed (`make setup`, or the machine's own torch with `pip install -e .`)
# and MNIST under $BUDGETNAS_DATA (`make data`). Stages, each timed, each one's output in its
# own file; a stage that fails is recorded in OUT/stages.tsv and the next one still runs:
#
#   device      torch, the device, nvidia-smi where present            -> device.txt
#   bench       budgetnas bench: the seeds' pipeline, eager, CUDA graphs, K at once, N fused
#                                                                      -> bench.txt
#   gpu-tests   the tests marked gpu (captured vs eager, K at once, fused seeds)
#                                                                      -> gpu-tests.txt
#   ladder      budgetnas search --budget 5k,10k,13k,25k --epochs 15 --budget-time 6m, its
#               candidates K at once (K measured at its start and named in its header), its
#               race verifying each answer and the seed networks with 3 seeds or more
#                                                                      -> ladder/, ladder.txt
#   one-epoch   budgetnas search --budget 25k --epochs 1 --budget-time 2m  -> one-epoch/, .txt
#   export      each search's answer exported with its verdict         -> export.txt
#   summary     the race's lines of both searches and the stage times  -> summary.txt
set -uo pipefail

usage() { echo "usage: benchmarks/gpu.sh OUT [--device cpu|cuda|cuda:N] [--toy]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUT=$1; shift
DEVICE=cuda
TOY=0
while [ $# -gt 0 ]; do
  case $1 in
    --device) [ $# -ge 2 ] || usage; DEVICE=$2; shift 2 ;;
    --toy) TOY=1; shift ;;
    *) usage ;;
  esac
done

HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
if [ -x "$HERE/.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then PY="$HERE/.venv/bin/python"; fi
BUDGETNAS=("$PY" -m budgetnas.search.cli)
if [ -z "${BUDGETNAS_DATA:-}" ] || [ ! -d "$BUDGETNAS_DATA/MNIST/raw" ]; then
  echo "gpu.sh: set BUDGETNAS_DATA to a folder holding MNIST/raw (make data)" >&2
  exit 2
fi
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
  echo "gpu.sh: $OUT is not empty; give a new folder" >&2
  exit 2
fi
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# the searches' results cache lives in OUT: every training here is measured, none reused
export BUDGETNAS_CACHE="$OUT/cache"

if [ $TOY = 1 ]; then
  # toy sizes: every stage runs, nothing is a measurement
  BENCH=(--steps 4 --nets 001 --batches 64 --at-once 1,2 --fused-seeds 2 --no-loader)
  SMALL=(--train-subset 600 --val-size 200 --batch-size 64 --trials 3 --rungs 1 --workers 1)
  # the ladder trains two candidates at once (on CUDA the search measures how many)
  LADDER=(--budget 5k,10k,13k,25k --epochs 1 --verify-seeds 3 --race-seeds 3 --concurrent 2
    "${SMALL[@]}")
  ONE=(--budget 25k --epochs 1 --verify-seeds 3 --race-seeds 3 "${SMALL[@]}")
else
  BENCH=()
  LADDER=(--budget 5k,10k,13k,25k --epochs 15 --budget-time 6m --verify-seeds 3)
  ONE=(--budget 25k --epochs 1 --budget-time 2m --verify-seeds 3)
fi

printf 'stage\texit\tseconds\n' > "$OUT/stages.tsv"
stage() {  # stage NAME LOGFILE COMMAND...: run, time, record; never stop the script
  local name=$1 log=$2; shift 2
  local start rc
  start=$(date +%s)
  echo "gpu.sh: $name ..." >&2
  "$@" > "$OUT/$log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$OUT/stages.tsv"
  [ $rc = 0 ] || echo "gpu.sh: $name failed (exit $rc); see $OUT/$log" >&2
  return 0
}

device_info() {
  "$PY" - "$DEVICE" <<'EOF'
import platform, sys
import torch
device = sys.argv[1]
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if device.startswith("cuda"):
    if not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu --toy for the rehearsal")
    print("device", torch.cuda.get_device_name(torch.device(device)))
else:
    print("device cpu,", torch.get_num_threads(), "threads")
EOF
  if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi; fi
}

stage device device.txt device_info
if [ "$(awk -F'\t' '$1=="device"{print $2}' "$OUT/stages.tsv")" != 0 ]; then
  cat "$OUT/device.txt" >&2
  exit 1
fi
stage bench bench.txt "${BUDGETNAS[@]}" bench --device "$DEVICE" "${BENCH[@]}"
stage gpu-tests gpu-tests.txt "$PY" -m pytest -m gpu -q -p no:cacheprovider "$HERE/tests"
stage ladder ladder.txt "${BUDGETNAS[@]}" search "${LADDER[@]}" --device "$DEVICE" --out "$OUT/ladder"
stage one-epoch one-epoch.txt "${BUDGETNAS[@]}" search "${ONE[@]}" --device "$DEVICE" --out "$OUT/one-epoch"

export_all() {
  local run
  for run in ladder one-epoch; do
    [ -d "$OUT/$run" ] || continue
    echo "== $run"
    "${BUDGETNAS[@]}" export "$OUT/$run" --out "$OUT/$run/best.py" --force || return 1
  done
}
stage export export.txt export_all

summary() {
  local run
  echo "budgetnas on $DEVICE$([ $TOY = 1 ] && echo ' (toy sizes: a rehearsal, not a measurement)')"
  grep -E '^(python|device)' "$OUT/device.txt"
  for run in ladder one-epoch; do
    echo
    echo "== $run: $(head -n 1 "$OUT/$run.txt" 2>/dev/null)"
    grep -E '^note: .* at once' "$OUT/$run.txt"  # the K each search measured
    [ -d "$OUT/$run" ] && "${BUDGETNAS[@]}" report "$OUT/$run" 2>&1 | grep -E '^(answer|verdict|race)'
  done
  echo
  echo "== bench"
  cat "$OUT/bench.txt"
  echo
  echo "== gpu tests: $(tail -n 1 "$OUT/gpu-tests.txt")"
  echo
  cat "$OUT/stages.tsv"
}
stage summary summary.txt summary
cat "$OUT/summary.txt"
# the exit code says whether every stage ran
! awk -F'\t' 'NR > 1 && $2 != 0 { bad = 1 } END { exit !bad }' "$OUT/stages.tsv"
