#!/usr/bin/env bash
# The checks to run when a GPU machine is lent (project rule: the CuPy test
# suite and the GPU benchmarks, figures recorded in benchmarks/results/gpu.md).
#
# Runs from the tree it lies in (a `git archive` snapshot of one commit, so the
# figures belong to that commit, or the working tree).  Carried pure-Python
# wheels (array-api-compat and array-api-strict, which the GPU image lacks)
# are installed into /tmp/site from $WHL_DIR (default: <tree>/.whl).  Output
# goes to $OUT (the device tool's return folder; /tmp/gpu-run elsewhere).
# Every stage has a timeout so that the whole script ends within about
# 7 minutes:
#
#   WHL_DIR=$PWD/.whl bash .snap/benchmarks/gpu_run.sh
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
OUT=${OUT:-/tmp/gpu-run}
mkdir -p "$OUT"
stage() { echo "=== $1 (t = ${SECONDS} s)"; }

stage "install the carried wheels"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "${WHL_DIR:-$root/.whl}"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$root
# JAX (imported by tests/conftest.py) would otherwise take 75 % of the GPU's
# memory in each of the pytest workers that touches it
export XLA_PYTHON_CLIENT_PREALLOCATE=false

stage "versions"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    echo "natgrad commit: $(cat COMMIT 2>/dev/null || git rev-parse HEAD 2>/dev/null || echo unknown)"
    timeout 120 python3 - <<'EOF'
import platform, importlib.metadata as md
print("python", platform.python_version(), "| CPU cores", __import__("os").cpu_count())
for pkg in ("numpy", "scipy", "cupy-cuda13x", "cupy-cuda12x", "torch", "jax", "jaxlib", "numba",
            "array-api-compat", "array-api-strict", "pytest", "pytest-xdist", "hypothesis"):
    try:
        print(pkg, md.version(pkg))
    except md.PackageNotFoundError:
        pass
import cupy, torch
print("CUDA runtime (CuPy)", cupy.cuda.runtime.runtimeGetVersion(),
      "| driver API", cupy.cuda.runtime.driverGetVersion(), "| torch CUDA", torch.version.cuda)
import natgrad
print("natgrad from", natgrad.__file__)
EOF
} 2>&1 | tee "$OUT/versions.txt"

stage "CuPy-parametrised tests"
# all of them (no -x: every failure is a finding); -v so that a log cut short
# by the timeout still says which tests passed; a per-test limit where
# pytest-timeout is installed (the GPU image has it)
per_test=$(python3 -c "import pytest_timeout" 2>/dev/null && echo "--timeout=90")
timeout 210 python3 -m pytest -v -k cupy -p no:cacheprovider -n ${NPROC_TESTS:-12} ${per_test} --durations=15 \
    --junitxml="$OUT/cupy-tests.xml" ${TESTS:-tests/} > "$OUT/cupy-tests.log" 2>&1
echo "pytest exit status $? (124: stage timeout)"
grep -E "^(FAILED|ERROR) |^=+ .*(passed|failed|error|skipped)" "$OUT/cupy-tests.log" | tail -60

stage "bench_gpu.py"
timeout 150 python3 benchmarks/bench_gpu.py > "$OUT/bench_gpu.log" 2>&1
echo "exit status $?"
cp benchmarks/results/gpu_solvers.md "$OUT/" 2>/dev/null
grep -E "^\|" "$OUT/bench_gpu.log" || tail -20 "$OUT/bench_gpu.log"

stage "bench_hmatrix.py's GPU section (n = 20k)"
timeout 80 python3 -c "
import sys; sys.path.insert(0, 'benchmarks')
import bench_hmatrix
print(bench_hmatrix.gpu_section(True))" > "$OUT/hmatrix_gpu.log" 2>&1
echo "exit status $?"
tail -20 "$OUT/hmatrix_gpu.log"
stage "done"
