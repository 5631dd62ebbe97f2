#!/usr/bin/env bash
# GPU evidence for a session lent a GPU through the device tool. Run from the repo root on the device machine,
# with the pydantic wheels carried in .whl (see README "GPU sessions"):
#   bash benchmarks/gpu_session.sh [STEP ...]      (default: every step, in this order)
# Steps: info gpu-tests evidence calibrate kernels cnn train-vs-torch (and kernels-quick, cnn-quick for a
# short pass; diag: per-parameter errors of the GPU train-step checks, benchmarks/gpu_diag_models.py). Each step is time-boxed (STEP_LIMIT_<name> overrides, seconds) so one failing step does not
# eat the lease. Everything lands under $OUT as at most 8 files (the device tool's limit): all.log (every
# step's output), evidence.json, train_vs_torch.json, bundle.tgz (fixtures/ and the result directories).
set -u
OUT=${OUT:-/tmp/accelbench-gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:.
else
  export PYTHONPATH=.
fi
export PYTHONUNBUFFERED=1 COLUMNS=${COLUMNS:-200}  # rich tables in the log at full width
AB="python3 -m accelbench"
WORK=/tmp/accelbench-gpu
RES=$WORK/results
mkdir -p "$WORK/fixtures" "$RES"
LOG="$OUT/all.log"
: >"$LOG"
declare -A LIMIT=([info]=40 [gpu-tests]=150 [evidence]=170 [calibrate]=90 [kernels]=200 [cnn]=240
                  [kernels-quick]=70 [cnn-quick]=100 [train-vs-torch]=110 [diag]=90 [cnn-gpu]=150)
SUMMARY=()
step() {
  local name=$1; shift
  local var="STEP_LIMIT_${name//-/_}"; local limit=${!var:-${LIMIT[$name]}}
  echo "=== $name (limit ${limit}s)" | tee -a "$LOG"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" >>"$LOG" 2>&1
  local rc=$?
  echo "=== $name rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
  SUMMARY+=("$name rc=$rc $((SECONDS - t0))s")
}
run_step() {
  case $1 in
    info) step info $AB info --json ;;
    gpu-tests) step gpu-tests python3 -m pytest -m gpu -q -p no:cacheprovider --timeout 90 tests ;;
    evidence) step evidence python3 benchmarks/gpu_evidence.py --out "$WORK" ;;
    calibrate) step calibrate $AB calibrate ;;
    kernels) step kernels $AB run suites/kernels.yaml --out $RES/kernels ;;
    cnn) step cnn $AB run suites/cnn.yaml --out $RES/cnn ;;
    kernels-quick) step kernels-quick $AB run suites/kernels.yaml --quick --backend gpu --out $RES/kernels-quick ;;
    cnn-gpu) step cnn-gpu $AB run suites/cnn.yaml --backend gpu --out $RES/cnn-gpu ;;
    cnn-quick) step cnn-quick $AB run suites/cnn.yaml --quick --backend gpu --out $RES/cnn-quick ;;
    diag) step diag python3 benchmarks/gpu_diag_models.py ;;
    train-vs-torch) step train-vs-torch python3 benchmarks/bench_train_vs_torch.py --device gpu --rounds 3 \
                      --min-time 1 --out "$WORK/train_vs_torch.json" ;;
    *) echo "unknown step $1" | tee -a "$LOG" ;;
  esac
}
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv | tee -a "$LOG"
STEPS=("$@")
[ ${#STEPS[@]} -eq 0 ] && STEPS=(info gpu-tests evidence calibrate kernels cnn train-vs-torch)
collect() {  # after every step, so a call cut off at its limit still brings back what finished
  [ -f "$WORK/evidence.json" ] && cp "$WORK/evidence.json" "$OUT/"
  [ -f "$WORK/train_vs_torch.json" ] && cp "$WORK/train_vs_torch.json" "$OUT/"
  [ -f ~/.cache/accelbench/peaks.json ] && cp ~/.cache/accelbench/peaks.json "$WORK/peaks.json"
  tar czf "$OUT/bundle.tgz.part" -C "$WORK" . 2>/dev/null && mv "$OUT/bundle.tgz.part" "$OUT/bundle.tgz"
}
for s in "${STEPS[@]}"; do run_step "$s"; collect; done
echo "=== summary"; printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
grep -E "^(=== evidence on|[a-z_0-9]+ +.*(us|GB/s|GFLOP|%))" "$LOG" | tail -n 20
ls -la "$OUT"
