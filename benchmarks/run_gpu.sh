#!/usr/bin/env bash
# One call on a lent GPU machine: install, the test suite on CUDA, then the kernel benchmarks.
# Logs and JSON are written to a work folder, then packed into one $OUT/gpu-results.tar.gz (the device tool
# returns at most 8 files from $OUT, its output folder; ./gpu-out elsewhere). Usage:
#   bash benchmarks/run_gpu.sh [tests] [lif] [s4d_lif] [scans] [profile] [overhead] [tune]
#   (no argument: all but profile and tune)
# TUNE_ONLY picks the sweeps of tune (default all: "lif diag_scan s4d"); give tune a call of its own.
set -u
OUT=${OUT:-gpu-out}
WORK=$(mktemp -d)  # env.txt, pytest.log, and a .txt table and .json per benchmark
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
steps=${*:-tests lif s4d_lif scans overhead}
python3 -m pip install -q --no-deps --no-build-isolation -e . >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  python3 -c "import torch, triton, spikessm; print('torch', torch.__version__, '| triton', triton.__version__)"
} 2>&1 | tee "$WORK/env.txt"
status=0
for step in $steps; do
  start=$(date +%s)
  case $step in
    tests) timeout ${TESTS_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider -p no:benchmark -n 16 --timeout 120 --tb=short -rfE \
             ${TEST_PATHS:-tests/ops tests/kernels tests/layers tests/models tests/test_stats.py} >"$WORK/pytest.log" 2>&1 ;;
    lif) timeout 70 python3 benchmarks/bench_lif.py --device cuda --target-seconds 0.3 \
           --out "$WORK/lif.json" >"$WORK/lif.txt" 2>&1 ;;
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
for f in "$WORK"/lif.txt "$WORK"/s4d_lif.txt "$WORK"/scans.txt "$WORK"/profile.txt "$WORK"/overhead.txt "$WORK"/tune.txt; do
  [ -f "$f" ] && grep -v "^  " "$f" | tail -60
done
tar -czf "$OUT/gpu-results.tar.gz" -C "$WORK" .
exit $status
