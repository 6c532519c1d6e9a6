#!/usr/bin/env bash
# Drift of the default GPU inference path on a trained model: trains the demo (resnet18/full) on the
# GPU, then predicts its synthetic test split with the plain fp32 network and with the fast path
# (bf16, channels_last, fused convs, CUDA graphs), writing $OUT/drift.json.
# Usage (repository root): OUT=/tmp/out bash benchmarks/gpu_drift.sh   (about 1-2 minutes)
set -u
OUT=${OUT:-/tmp/mmchange-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MMCHANGE_CACHE=${MMCHANGE_CACHE:-/tmp/mmchange-cache}
PY=${PY:-python3}
timeout 150 $PY -m mmchange_cli demo --device cuda --output /tmp/demo-gpu --json > /tmp/demo.json || exit 1
timeout 60 $PY - > "$OUT/drift.json" <<'PYEOF'
import json
from dataclasses import asdict
from mmchange_core.evaluation.drift import measure_drift
demo = json.load(open("/tmp/demo.json"))
report = measure_drift(demo["checkpoint"], demo["dataset"], "test", device="cuda", tile=64, overlap=16)
print(json.dumps({**asdict(report), "f1_diff_points": report.f1_diff_points, "demo": demo}, indent=1))
PYEOF
$PY -c "import json; d=json.load(open('$OUT/drift.json')); print({k: d[k] for k in d if k != 'demo'})"
