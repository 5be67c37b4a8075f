#!/usr/bin/env bash
# The paper's experiment on one GPU in one command of under five minutes (docs/gpu.md):
#
#   bash benchmarks/gpu/wheelhouse.sh          # beforehand, with network: .whl/, what the GPU machine lacks
#   bash benchmarks/gpu/paper.sh               # on the GPU machine: no network needed
#   bash benchmarks/gpu/paper.sh --rehearse    # the same stages at micro sizes on the CPU (the test suite runs it)
#
# Stages, each under its own time limit: smoke (imports, device, tokenizer, the plan, then the CUDA-path
# tests: fails fast), run (`featstore run experiments/paper.toml` at scaled budgets), correlate (the
# correlate benchmark, torch on CUDA beside numba), collect (the record, summary tables and report of
# whatever finished). Everything lands in --out, at most 8 files; a stage that fails or runs out of time
# makes the script exit non-zero after the later stages have still collected what there is.
set -uo pipefail
cd "$(dirname "$0")/../.."

mode=()
out=gpu-out
work=
budget=         # seconds for every stage but collect (30 s at most); default 255: with the wheels, one 5-minute command
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --rehearse) mode=(--rehearse) ;;
        --out) out=$2; shift ;;
        --work) work=$2; shift ;;
        --scale) extra=(--scale "$2"); shift ;;
        --budget) budget=$2; shift ;;
        *) echo "error: unknown option $1; use --rehearse, --out DIR, --work DIR, --scale S, --budget SECONDS" >&2; exit 2 ;;
    esac
    shift
done
# a rehearsal checks paths and settings, not speed: on a busy CPU its limits are 4 times the GPU's
slow=1; [ ${#mode[@]} -gt 0 ] && slow=4
budget=${budget:-$((255 * slow))}
mkdir -p "$out" || exit 2
out=$(cd "$out" && pwd)
work=${work:-$(mktemp -d /tmp/featstore-paper.XXXXXX)}
started=$SECONDS
exec > >(tee -a "$out/paper.log") 2>&1

PY=${PYTHON:-python3}  # the GPU image's python3 holds CUDA PyTorch; here, the checkout's .venv when it has one
[ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && PY=.venv/bin/python
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ ${#mode[@]} -eq 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
    echo "== wheels: $(ls .whl/*.whl | wc -l) from .whl/ into /tmp/featstore-site"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/featstore-site .whl/*.whl \
        || { echo "error: installing .whl/ failed; rebuild it with benchmarks/gpu/wheelhouse.sh"; exit 1; }
    export PYTHONPATH=$PYTHONPATH:/tmp/featstore-site
fi

# stage NAME SECONDS ARGS...: one stage of paper.py, killed at SECONDS or when the budget is spent
failed=0
stage() {
    local name=$1 limit=$(($2 * slow)); shift 2
    local left=$((budget - (SECONDS - started)))
    [ "$limit" -gt "$left" ] && limit=$left
    if [ "$limit" -le 0 ]; then echo "== $name: skipped, the ${budget} s budget is spent"; failed=1; return 1; fi
    echo "== $name (at most ${limit} s; $((SECONDS - started)) s in)"
    timeout -k 5 "$limit" "$@"
    local rc=$?
    [ $rc -eq 124 ] && echo "== $name: stopped at its ${limit} s limit"
    [ $rc -ne 0 ] && failed=1
    return $rc
}

paper=("$PY" benchmarks/gpu/paper.py)
opts=(--work "$work" --out "$out" "${mode[@]}" "${extra[@]}")
device=cuda; [ ${#mode[@]} -gt 0 ] && device=cpu
stage smoke 45 "${paper[@]}" smoke "${opts[@]}" || exit 1
stage cuda-paths 45 env FEATSTORE_TEST_GPU_DEVICE=$device "$PY" -m pytest tests/gpu/test_cuda_paths.py -x -q -p no:cacheprovider \
    --basetemp "$work/pytest" || exit 1
stage run 120 "${paper[@]}" run "${opts[@]}"
stage correlate 90 "${paper[@]}" correlate "${opts[@]}"
echo "== collect (outside the budget, at most $((30 * slow)) s)"
timeout -k 5 $((30 * slow)) "${paper[@]}" collect "${opts[@]}" || { echo "== collect failed or ran out of time"; failed=1; }
echo "== done in $((SECONDS - started)) s; $(ls "$out" | wc -l) files in $out"
exit $failed
