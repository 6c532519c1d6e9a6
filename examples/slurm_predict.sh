#!/bin/bash
# Distributed `mmchange predict` over several SLURM nodes: one torchrun per node (srun), every GPU of
# every node a process; the processes share the pairs of a folder, or the blocks of one large mosaic.
#
#   sbatch examples/slurm_predict.sh A_DIR_OR_TIF B_DIR_OR_TIF OUTPUT [extra predict options]
#   sbatch --nodes 4 --gpus-per-node 8 examples/slurm_predict.sh mosaic_2019.tif mosaic_2024.tif out/change.tif \
#          --prob out/prob.tif
#
# Resumable: when the job is killed (time limit, preemption, node failure), submit the same command
# again: finished pairs/blocks recorded in OUTPUT's folder (mmchange_manifest.jsonl) are skipped.
# OUTPUT must be on a file system that every node sees (the processes write rows of the same staging
# files and append to the same manifest).
#
#SBATCH --job-name=mmchange-predict
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts the per-GPU processes
#SBATCH --gpus-per-node=4
#SBATCH --cpus-per-task=32
#SBATCH --time=04:00:00
#SBATCH --requeue                    # a preempted job starts again and resumes from the manifest
#SBATCH --output=mmchange-predict-%j.log

set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: sbatch $0 IMAGE_A IMAGE_B OUTPUT [predict options...]" >&2
    exit 2
fi
CHECKPOINT=${CHECKPOINT:-best.safetensors}        # or hf://OWNER/NAME
GPUS_PER_NODE=${SLURM_GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
GPUS_PER_NODE=${GPUS_PER_NODE##*:}                # "a100:4" -> "4"
DEVICE=${DEVICE:-auto}                            # cpu: set --gpus-per-node 0 and NPROC_PER_NODE below

# Rendezvous on the first node of the allocation (c10d: no extra service needed).
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=${MASTER_PORT:-29517}
NPROC_PER_NODE=${NPROC_PER_NODE:-$GPUS_PER_NODE}
export MMCHANGE_CPU_THREADS=${MMCHANGE_CPU_THREADS:-$(( SLURM_CPUS_PER_TASK / NPROC_PER_NODE ))}  # CPU runs only

echo "predict on $SLURM_NNODES node(s) x $NPROC_PER_NODE process(es), rendezvous $MASTER_ADDR:$MASTER_PORT"
srun --kill-on-bad-exit=1 torchrun \
    --nnodes "$SLURM_NNODES" \
    --nproc-per-node "$NPROC_PER_NODE" \
    --rdzv-id "$SLURM_JOB_ID" \
    --rdzv-backend c10d \
    --rdzv-endpoint "$MASTER_ADDR:$MASTER_PORT" \
    -m mmchange_cli predict "$1" "$2" --output "$3" --checkpoint "$CHECKPOINT" --device "$DEVICE" \
    --json "${@:4}" > "mmchange-predict-$SLURM_JOB_ID.json"
echo "result: mmchange-predict-$SLURM_JOB_ID.json"
