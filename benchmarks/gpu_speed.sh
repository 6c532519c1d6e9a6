#!/usr/bin/env bash
# One call on a GPU machine for issue 6 (inference speed), within a fixed time budget:
#   1. fused conv check (correctness, NaN poisoning, drift against fp32)
#   2. eager + CUDA graphs, bf16, batch 1 and 32, fused convs off / trunk / all, then the best of
#      those with exhaustive cuDNN autotuning
#   3. torch.compile + CUDA graphs with the best of step 2: cold cache, then warm cache (new process)
#   4. profile of that configuration (stages and kernel categories)
#   5. torch.compile + CUDA graphs without fusion (baseline) and its kernel profile
#   6. the best configuration with the sub-grid trunk (batch 32)
# All JSON lands in $OUT/results.json (merged after every step), the log in $OUT/log.txt.
# Usage (repository root): OUT=/tmp/out BUDGET=560 bash benchmarks/gpu_speed.sh
set -u
OUT=${OUT:-/tmp/mmchange-gpu}
BUDGET=${BUDGET:-560}
RES=/tmp/mmchange-results
mkdir -p "$OUT" "$RES"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MMCHANGE_CACHE=${MMCHANGE_CACHE:-/tmp/mmchange-cache}
PY=${PY:-python3}
BIG=${BIG:-32}                 # the large batch (smoke tests on a CPU: BIG=2 EXTRA="--backbone resnet18 --size 64")
EXTRA=${EXTRA:-}               # extra arguments for benchmark and profile (model, size, device)
CHECK_DEVICE=${CHECK_DEVICE:-cuda}
SLACK=${SLACK:-2}               # a step is killed after SLACK x its expected seconds
log() { echo "== $(date +%T) [${SECONDS}s] $*"; }
merge() { $PY - "$RES" "$OUT/results.json" <<'PYEOF'
import glob, json, os, sys
merged = {}
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    try:
        merged[os.path.basename(path)[:-5]] = json.load(open(path))
    except Exception as exc:
        merged[os.path.basename(path)[:-5]] = {"error": str(exc)}
json.dump(merged, open(sys.argv[2], "w"), indent=1)
PYEOF
}
# step NAME SECONDS CMD...: runs CMD if the budget allows SECONDS more (killed after SLACK x SECONDS);
# stdout that is JSON becomes $RES/NAME.json, other stdout goes to the log.
step() {
  local name=$1 need=$2; shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt "$need" ]; then log "skip $name (needs ${need}s, ${left}s left)"; return 1; fi
  [ "$left" -gt $((SLACK * need)) ] && left=$((SLACK * need))
  log "$name"
  timeout "$left" "$@" > "$RES/$name.out"; local rc=$?
  [ $rc -eq 0 ] || echo "!! $name exited $rc"
  if $PY -c "import json,sys; json.load(open(sys.argv[1]))" "$RES/$name.out" 2>/dev/null; then
    mv "$RES/$name.out" "$RES/$name.json"
  else
    cat "$RES/$name.out"
  fi
  merge
  return $rc
}
b32() { $PY -c "import json,sys; r=json.load(open(sys.argv[1]))['rows']; print(max(x['pairs_per_s'] for x in r if x['batch']==$BIG))" "$1" 2>/dev/null || echo 0; }
{
log "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cudnn', torch.backends.cudnn.version())"
BENCH="$PY -m mmchange_cli benchmark --precision bf16 --json $EXTRA"
PROFILE="$PY benchmarks/gpu_profile.py --batch $BIG --precision bf16 $EXTRA"
step check 40 $PY benchmarks/fused_conv_check.py --device $CHECK_DEVICE --json-out $RES/check.json
for scope in off trunk all; do
  step "eager_$scope" 30 $BENCH --batch-size 1,$BIG --repeats 3 --fused-convs $scope
done
faster() { $PY -c "import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[3]) * float(sys.argv[2]) else 1)" "$@"; }
BEST=off; BEST_V=$(b32 "$RES/eager_off.json")
v=$(b32 "$RES/eager_trunk.json"); if faster "$v" "$BEST_V" 1.02; then BEST=trunk; BEST_V=$v; fi
v=$(b32 "$RES/eager_all.json"); if faster "$v" "$BEST_V" 1.03; then BEST=all; BEST_V=$v; fi
step "eager_${BEST}_exh" 30 $BENCH --batch-size 1,$BIG --repeats 3 --fused-convs $BEST --exhaustive-autotune
EXH=""; v=$(b32 "$RES/eager_${BEST}_exh.json"); if faster "$v" "$BEST_V" 1.02; then EXH=--exhaustive-autotune; BEST_V=$v; fi
CFG="--fused-convs $BEST $EXH"; TAG=$BEST${EXH:+_exh}
log "best eager configuration: $CFG ($BEST_V pairs/s at batch $BIG)"
step "compile_cold_$TAG" 120 $BENCH --batch-size $BIG,1 --compile $CFG
step "compile_warm_$TAG" 45 $BENCH --batch-size $BIG,1 --compile $CFG
step "profile_$TAG" 50 $PROFILE --compile $CFG --json-out "$RES/profile_$TAG.json"
if [ "$TAG" != off ]; then
  step compile_cold_off 120 $BENCH --batch-size $BIG,1 --compile --fused-convs off
  step profile_off 40 $PROFILE --compile --fused-convs off --skip-stages --json-out "$RES/profile_off.json"
fi
log "done"
} 2>&1 | grep --line-buffered -v "^USDT\|warnings.warn\|Online softmax\|split the reduction\|important use case\|softmax.$\|^$" | tee "$OUT/log.txt"
