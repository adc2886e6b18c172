#!/usr/bin/env bash
# One call on a lent GPU machine. With no argument it fits one 420 s device call on an H100/H200: install, the
# CUDA tests of the ops and kernels, then benchmarks/headline.py (one summary table of every op's headline rows
# at B=32, L=4096, H=256, N=64 beside its targets). Longer runs are named steps, each for a call of its own:
#   bash benchmarks/run_gpu.sh                       # tests headline  (~400 s)
#   bash benchmarks/run_gpu.sh lif s4d_lif scans rf  # the full sweeps over lengths
#   bash benchmarks/run_gpu.sh profile overhead tune # per-kernel profile, host overhead, launch-plan sweeps
# Logs and JSON are written to a work folder, then packed into $OUT/gpu-results.tar.gz (the device tool
# returns at most 8 files from $OUT, its output folder; ./gpu-out elsewhere). TUNE_ONLY picks tune's sweeps.
set -u
OUT=${OUT:-gpu-out}
WORK=$(mktemp -d)  # env.txt, pytest.log, and a .txt table and .json per benchmark
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
steps=${*:-tests headline}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton, spikessm; print('torch', torch.__version__, '| triton', triton.__version__)"
  git rev-parse HEAD 2>/dev/null; date -u +%FT%TZ
} 2>&1 | tee "$WORK/env.txt"
status=0
for step in $steps; do
  start=$(date +%s)
  case $step in
    # The tests compile ~440 kernel variants over 16 workers; the ops and kernels folders hold every CUDA test of
    # the kernels (layers and models add no kernel variant and run as named paths with TEST_PATHS).
    tests) timeout ${TESTS_TIMEOUT:-200} python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 16 --timeout 120 \
             --tb=short -rfE ${TEST_PATHS:-tests/ops tests/kernels} >"$WORK/pytest.log" 2>&1 ;;
    headline) timeout ${HEADLINE_TIMEOUT:-170} python3 benchmarks/headline.py --target-seconds 0.3 \
                --out "$WORK/headline.json" >"$WORK/headline.txt" 2>&1 ;;
    lif) timeout 70 python3 benchmarks/bench_lif.py --device cuda --target-seconds 0.3 \
           --out "$WORK/lif.json" >"$WORK/lif.txt" 2>&1 ;;
    rf) timeout 120 python3 benchmarks/bench_rf.py --device cuda --target-seconds 0.3 \
          --out "$WORK/rf.json" >"$WORK/rf.txt" 2>&1 ;;
    s4d_lif) timeout 160 python3 benchmarks/bench_s4d_lif.py --target-seconds 0.3 \
               --out "$WORK/s4d_lif.json" >"$WORK/s4d_lif.txt" 2>&1 ;;
    scans) timeout 170 python3 benchmarks/bench_scans.py --target-seconds 0.3 \
             --out "$WORK/scans.json" >"$WORK/scans.txt" 2>&1 ;;
    profile) timeout 150 python3 benchmarks/profile_ops.py --top 8 --out "$WORK/profile.json" \
               >"$WORK/profile.txt" 2>&1 ;;
    overhead) timeout 60 python3 benchmarks/bench_overhead.py --device cuda --out "$WORK/overhead.json" \
                >"$WORK/overhead.txt" 2>&1 ;;
    tune) timeout ${TUNE_TIMEOUT:-500} python3 benchmarks/tune_kernels.py --only ${TUNE_ONLY:-lif diag_scan s4d} \
            --out "$WORK/tune.json" >"$WORK/tune.txt" 2>&1 ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "== $step: exit $rc after $(( $(date +%s) - start )) s"
done
[ -f "$WORK/pytest.log" ] && { grep -E "^(FAILED|ERROR)" "$WORK/pytest.log" | cut -c1-200; tail -2 "$WORK/pytest.log"; }
for f in "$WORK"/headline.txt "$WORK"/lif.txt "$WORK"/rf.txt "$WORK"/s4d_lif.txt "$WORK"/scans.txt "$WORK"/profile.txt \
         "$WORK"/overhead.txt "$WORK"/tune.txt; do
  [ -f "$f" ] && grep -v "^  " "$f" | tail -60
done
tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" .
exit $status
