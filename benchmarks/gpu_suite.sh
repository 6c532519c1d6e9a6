#!/usr/bin/env bash
# One call on a GPU machine that measures what issues 3 and 6 ask for, writing JSON under $OUT:
#   bench_graphs.json   fast path (folded BN, bf16, channels_last, CUDA graphs), resnet50/full, 256 px
#   bench_eager.json    eager fp32 and bf16 (no CUDA graphs), plus training throughput (bf16 AMP)
#   caption.json        TinyLLaVA-v1-hf caption throughput (random weights, fixed length)
#   compile_cold.json / compile_warm.json   torch.compile + CUDA graphs, cold then warm cache
#   drift.json          demo model trained on the GPU; fast path vs fp32 masks on the synthetic test split
# Usage (repository root): OUT=/tmp/out bash benchmarks/gpu_suite.sh   (about 10 minutes at most)
set -u
OUT=${OUT:-/tmp/mmchange-gpu}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MMCHANGE_CACHE=${MMCHANGE_CACHE:-/tmp/mmchange-cache}
PY=${PY:-python3}
log() { echo "== $(date +%T) $*"; }
run() { local t=$1 name=$2; shift 2; log "$name"; timeout "$t" "$@" > "$OUT/$name.json" || echo "!! $name failed or timed out"; }
{
log "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, transformers, platform; print('python', platform.python_version(), 'torch', torch.__version__, 'transformers', transformers.__version__)"
run 40 bench_graphs $PY -m mmchange_cli benchmark --batch-size 1,32 --precision bf16 --json
run 70 bench_eager $PY -m mmchange_cli benchmark --batch-size 1,32 --precision fp32,bf16 --no-cuda-graphs --train --repeats 3 --json
run 150 caption $PY benchmarks/caption_throughput.py --device cuda --batch-sizes 1,16,32 --runs 3 --json
log "compile, cold cache"
timeout 150 $PY -m mmchange_cli benchmark --batch-size 1,32 --precision bf16 --compile --repeats 3 --json > "$OUT/compile_cold.json" \
  && { log "compile, warm cache (new process)"; timeout 80 $PY -m mmchange_cli benchmark --batch-size 1,32 --precision bf16 --compile --repeats 3 --json > "$OUT/compile_warm.json"; } \
  || echo "!! compile failed or timed out"
log "demo on the GPU, then drift of the fast path"
timeout 100 $PY -m mmchange_cli demo --device cuda --iters 400 --output /tmp/demo-gpu --json > /tmp/demo.json && \
timeout 40 $PY - > "$OUT/drift.json" <<'PYEOF'
import json
from dataclasses import asdict
from mmchange_core.evaluation.drift import measure_drift
demo = json.load(open("/tmp/demo.json"))
report = measure_drift(demo["checkpoint"], demo["dataset"], "test", device="cuda", tile=64, overlap=16)
print(json.dumps({**asdict(report), "f1_diff_points": report.f1_diff_points, "demo": demo}, indent=1))
PYEOF
log "done"
} 2>&1 | tee "$OUT/log.txt"
