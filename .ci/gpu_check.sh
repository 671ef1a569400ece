#!/usr/bin/env bash
# Everything issue 14 asks of a GPU machine, in one run of under 10 minutes:
#   1. the gpu-marked tests;
#   2. bench/cuda_overhead.py (logging on a launch-bound CUDA step);
#   3. bench/fork_latency.py (fork and resume to first step, warm pool on and off) and
#      bench/burst_start.py (8 runs at once: CUDA runs forked by the warm pool's server);
#   4. the rest of the test suite with -n 14, in what is left of BUDGET_S (560 s);
#   5. beside it, the README's GPU panel from the real GPU (make_screenshots.py gpu).
# Each part has its own time limit and the script goes on past a failing one, so one
# run gives every figure; the summary at the end says which parts failed, loudly, and
# the exit status is the number of failed parts.
#
# What the device image lacks travels as wheels in .whl/ (git-ignored; carry it). Made here:
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_17_x86_64 --platform any -d .whl \
#         textual==8.2.8 pytest-textual-snapshot==1.1.0 syrupy==4.8.0 tensorboardX==2.6.5 \
#         linkify-it-py==2.2.0 mdit-py-plugins==0.7.0 uc-micro-py==2.0.0 platformdirs==4.14.8 \
#         rich==15.0.0 markdown-it-py==4.3.0 mdurl==0.1.2 pygments==2.21.0
# Then, on the device machine, from the repository root (run: carry [".whl"], timeout 600;
# give the machine back at once after, as a second start needs 4 of the 15 minutes):
#     bash .ci/gpu_check.sh            # results under $OUT (or ./gpu-results)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
failed=0
BUDGET_S=${BUDGET_S:-560}  # the whole script's seconds; the suite gets what the benches leave
WORKERS=${WORKERS:-14}
part() {  # part NAME SECONDS LOG COMMAND...: run one part, note how it ended
    local name=$1 limit=$2 logfile=$3
    shift 3
    local began=$SECONDS
    timeout -s INT --kill-after=15 "$limit" "$@" > "$logfile" 2>&1  # INT: pytest still sums up
    local rc=$?
    if [ $rc -eq 0 ]; then
        say "PASS  $name ($((SECONDS - began)) s)"
    else
        [ $rc -eq 124 ] && rc="$rc (timed out after $limit s)"
        say "FAIL  $name: exit $rc ($((SECONDS - began)) s), see $(basename "$logfile")"
        tail -n 25 "$logfile" | sed 's/^/      /' | tee -a "$SUMMARY"
        failed=$((failed + 1))
    fi
}

say "== gpu_check $(date -u +%FT%TZ) on $(hostname)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 \
    | sed 's/^/   /' | tee -a "$SUMMARY"

# Wheels into a directory of their own, in front of the image's packages.
if ls .whl/*.whl > /dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl > "$OUT/install.log" 2>&1 \
        || { say "FAIL  installing the carried wheels (install.log)"; failed=$((failed + 1)); }
fi
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
python3 -c "import torch, textual; print('   torch', torch.__version__, 'cuda', \
torch.cuda.is_available(), '| textual', textual.__version__)" 2>&1 | tee -a "$SUMMARY"

# Daemons start their own sessions, so a part cut short by its limit can leave one
# training on the GPU: that would skew every part after it (it did once).
leftovers() { pkill -9 -f '[e]ngine[.]server[.]daemon|[-]-zygote' || true; }

# What only a GPU machine can check comes first: the gpu-marked tests, then the
# benches, alone on the machine as they time things; then the rest of the suite in
# whatever is left of the budget, with the screenshot beside it (it times nothing).
part "gpu-marked tests (-n 6)" 150 "$OUT/pytest-gpu.log" \
    python3 -m pytest -v -n 6 -m gpu -rfEs -p no:cacheprovider tests
leftovers
part "bench/cuda_overhead.py" 90 "$OUT/cuda_overhead.txt" \
    python3 bench/cuda_overhead.py --reps 10 --steps 400
part "bench/fork_latency.py" 160 "$OUT/fork_latency.txt" \
    python3 bench/fork_latency.py --reps 2
leftovers
part "bench/burst_start.py" 90 "$OUT/burst_start.txt" \
    python3 bench/burst_start.py --runs 8 --reps 1
leftovers

shots_began=$SECONDS
timeout --kill-after=10 200 python3 screenshots/make_screenshots.py gpu \
    > "$OUT/screenshots.log" 2>&1 &
shots=$!

# About 300 s on an H200 with -n 12 (504 of 601 tests took 217 s).
left=$((BUDGET_S - SECONDS))
part "the rest of the suite (-n $WORKERS)" $((left > 60 ? left : 60)) "$OUT/pytest.log" \
    python3 -m pytest -v -n "$WORKERS" -m "not gpu" -rfEs --durations=30 \
    -p no:cacheprovider tests

if wait $shots; then
    cp screenshots/gpu-panel.svg "$OUT/" 2>/dev/null
    cp screenshots/gpu-panel.png "$OUT/" 2>/dev/null
    say "PASS  GPU panel screenshot ($((SECONDS - shots_began)) s): gpu-panel.svg"
else
    say "FAIL  GPU panel screenshot, see screenshots.log"
    tail -n 25 "$OUT/screenshots.log" | sed 's/^/      /' | tee -a "$SUMMARY"
    failed=$((failed + 1))
fi

say ""
say "== figures"
cat "$OUT/cuda_overhead.txt" "$OUT/fork_latency.txt" "$OUT/burst_start.txt" 2>/dev/null | grep -v "^rep " | tee -a "$SUMMARY"
for log in pytest-gpu.log pytest.log; do
    grep -E "passed|failed" "$OUT/$log" | tail -n 1 | sed "s/^/$log: /" | tee -a "$SUMMARY"
done
leftovers
if [ $failed -ne 0 ]; then
    say "!!!!!!!! $failed PART(S) FAILED: see above !!!!!!!!"
fi
exit $failed
