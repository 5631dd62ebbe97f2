#!/usr/bin/env bash
# One full GPU evidence pass, for a session lent a GPU through the device tool. Run from the repo root on
# the device machine with the pydantic wheels carried in .whl (see README "GPU sessions"):
#   bash benchmarks/gpu_session.sh            (writes everything under $OUT, prints a short table last)
# Steps: environment, GPU-marked tests, calibrate, kernels + cnn suites on both backends, CuPy vs torch
# train-step. Each step is time-boxed so one failing step does not eat the lease.
set -u
OUT=${OUT:-/tmp/accelbench-gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:.
else
  export PYTHONPATH=.
fi
export PYTHONUNBUFFERED=1
AB="python3 -m accelbench"
RES=/tmp/accelbench-results
step() { local name=$1 limit=$2; shift 2; echo "=== $name"; timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; echo "rc=$?" | tee -a "$OUT/$name.log"; tail -n 25 "$OUT/$name.log"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv
step info 60 $AB info --json
step gpu-tests 150 python3 -m pytest -m gpu -q -p no:cacheprovider tests
step calibrate 150 $AB calibrate
step evidence 200 python3 benchmarks/gpu_evidence.py --out "$OUT"
step kernels ${KERNELS_LIMIT:-200} $AB run suites/kernels.yaml --out $RES/kernels
step cnn ${CNN_LIMIT:-200} $AB run suites/cnn.yaml --out $RES/cnn
if [ -f benchmarks/bench_train_vs_torch.py ]; then
  step train-vs-torch 120 python3 benchmarks/bench_train_vs_torch.py --device gpu --out "$OUT/train_vs_torch.json"
fi
tar czf "$OUT/runs.tgz" -C /tmp accelbench-results 2>/dev/null
cat "$OUT"/*.log > "$OUT/all.log"; rm -f "$OUT"/{info,gpu-tests,calibrate,evidence,kernels,cnn,train-vs-torch}.log
echo "=== done"; ls -la "$OUT"
