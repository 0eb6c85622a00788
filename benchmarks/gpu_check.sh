#!/usr/bin/env bash
# The GPU check, one script for the first machine with a GPU (at most about 8 minutes on one GPU):
#   1. the CUDA tests (tests/test_device.py: a run on cuda, a CUDA checkpoint loaded on the CPU,
#      the Python API's meta-gradient on cuda equal to the CPU's in float64);
#   2. the step-time suite with --device cuda (benchmarks/run_benchmarks.py --only steps) and the
#      peers side by side (--only peers);
#   3. a 3-minute Omniglot 20-way 1-shot anil run (--preset anil-omniglot-20w1s --time-budget 180).
# Everything goes under OUT (default: $OUT, else runs/gpu-check-<time>); a summary table is printed
# at the end and written to OUT/summary.txt.
#
#   bash benchmarks/gpu_check.sh --data-root DIR [--out DIR]
#   bash benchmarks/gpu_check.sh --dry-run [--data-root DIR] [--out DIR]   # the same steps on the CPU, tiny
set -uo pipefail
cd "$(dirname "$0")/.."
dry=0 data_root="" out="${OUT:-}"
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --data-root) data_root="$2"; shift ;;
        --out) out="$2"; shift ;;
        *) echo "gpu_check.sh: error: unknown argument $1 (see the header of this file)" >&2; exit 2 ;;
    esac
    shift
done
py="${PY:-python}"
out="${out:-runs/gpu-check-$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$out" || { echo "gpu_check.sh: error: cannot create $out" >&2; exit 2; }
if [ "$dry" = 1 ]; then
    device=cpu repeats=1 budget=5 iterations=3
else
    "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
        { echo "gpu_check.sh: error: no CUDA device; run with --dry-run to check the script on the CPU" >&2; exit 2; }
    [ -n "$data_root" ] && [ -d "$data_root/omniglot-py" ] ||
        { echo "gpu_check.sh: error: --data-root DIR must hold omniglot-py/" >&2; exit 2; }
    device=cuda repeats=5 budget=180 iterations=100000
fi
status=0
step() {  # name, command...: run it, keep its output, note its exit code
    local name="$1"; shift
    echo "== $name: $*"
    local t0=$SECONDS
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    [ $rc = 0 ] || status=1
    printf "%-10s exit %-3s %5ss  %s\n" "$name" "$rc" "$((SECONDS - t0))" "$out/$name.log" >> "$out/summary.txt"
    tail -n 3 "$out/$name.log"
}
: > "$out/summary.txt"
"$py" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' >> "$out/summary.txt"
step tests "$py" -m pytest -q -p no:cacheprovider tests/test_device.py
if [ "$dry" = 1 ]; then  # the regression case of the peers (no Omniglot needed), one repeat
    step peers "$py" benchmarks/peers.py --device "$device" --repeats "$repeats" --out "$out/bench"
    step run "$py" run.py --problem anil --dataset sine --iterations "$iterations" --val-every "$iterations" \
        --val-tasks 4 --test-tasks 4 --device "$device" --no-progress --out "$out/run"
else
    step steps "$py" benchmarks/run_benchmarks.py --only steps --device "$device" --repeats "$repeats" \
        --data-root "$data_root" --out "$out/bench"
    step peers "$py" benchmarks/peers.py --device "$device" --repeats "$repeats" --data-root "$data_root" \
        --out "$out/bench"
    step run "$py" run.py --preset anil-omniglot-20w1s --time-budget "$budget" --iterations "$iterations" \
        --val-every 200 --device "$device" --no-progress --data-root "$data_root" --out "$out/run"
fi
echo "== summary ($out/summary.txt)"
cat "$out/summary.txt"
exit $status
