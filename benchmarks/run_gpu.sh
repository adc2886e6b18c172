#!/usr/bin/env bash
# One call on a lent GPU machine: install, the test suite on CUDA, then the kernel benchmarks.
# Logs and JSON go to $OUT (the device tool's output folder; ./gpu-out elsewhere). Usage:
#   bash benchmarks/run_gpu.sh [tests] [lif] [s4d_lif] [scans] [tune]      (no argument: all but tune)
# TUNE_ONLY picks the sweeps of tune (default "diag_scan s4d"; "lif" as well re-tunes the LIF plans).
# At most 8 files come back from $OUT: env.txt, pytest.log, and a .txt table and .json per benchmark.
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
steps=${*:-tests lif s4d_lif scans}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton, spikessm; print('torch', torch.__version__, '| triton', triton.__version__)"
} 2>&1 | tee "$OUT/env.txt"
status=0
for step in $steps; do
  start=$(date +%s)
  case $step in
    tests) timeout ${TESTS_TIMEOUT:-150} python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 16 --timeout 120 --tb=short -rfE \
             ${TEST_PATHS:-tests/ops tests/kernels tests/layers tests/models tests/test_stats.py} >"$OUT/pytest.log" 2>&1 ;;
    lif) timeout 70 python3 benchmarks/bench_lif.py --device cuda --target-seconds 0.3 \
           --out "$OUT/lif.json" >"$OUT/lif.txt" 2>&1 ;;
    s4d_lif) timeout 160 python3 benchmarks/bench_s4d_lif.py --target-seconds 0.3 \
               --out "$OUT/s4d_lif.json" >"$OUT/s4d_lif.txt" 2>&1 ;;
    scans) timeout 170 python3 benchmarks/bench_scans.py --target-seconds 0.3 \
             --out "$OUT/scans.json" >"$OUT/scans.txt" 2>&1 ;;
    tune) timeout ${TUNE_TIMEOUT:-200} python3 benchmarks/tune_kernels.py --only ${TUNE_ONLY:-diag_scan s4d} \
            --out "$OUT/tune.json" >"$OUT/tune.txt" 2>&1 ;;
    *) echo "unknown step $step"; exit 2 ;;
  esac
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "== $step: exit $rc after $(( $(date +%s) - start )) s"
done
[ -f "$OUT/pytest.log" ] && { grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | cut -c1-200; tail -2 "$OUT/pytest.log"; }
for f in "$OUT"/lif.txt "$OUT"/s4d_lif.txt "$OUT"/scans.txt "$OUT"/tune.txt; do
  [ -f "$f" ] && grep -v "^  " "$f" | tail -60
done
exit $status
