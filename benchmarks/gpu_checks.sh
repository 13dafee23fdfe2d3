#!/usr/bin/env bash
# The checks run on a GPU, in one call: run by hand, never in CI. Results: BENCHMARKS.md.
#   bash benchmarks/gpu_checks.sh DATA_DIR RESULTS_DIR
# 1. Speed at the default batch size: stepe against erm on full CIFAR-10 (CIFAR stem, 3 epochs).
# 2. Speed at batch 512: images on the GPU, and kept on the host and streamed with and without DataLoader workers.
# 3. The rest of the time: auto rho_max against rho_max set to the truth, with retraining, on the
#    CPU protocol at 10% and 20% symmetric noise.
# Each step has its own time limit, so that a slow one cannot take the others' time out of a short time slot.
# SPEED_PER_CLASS, SPEED_EPOCHS, SPEED_STEM, PROTOCOL_PER_CLASS, PROTOCOL_EPOCHS, DEVICE and TIME_SCALE shrink or
# stretch it for a dry run on a CPU.
set -u
data=${1:?data folder with train.parquet and test.parquet}
results=${2:?folder for the logs}
mkdir -p "$results"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
speed=(--data "$data" --train-per-class "${SPEED_PER_CLASS:-0}" --epochs "${SPEED_EPOCHS:-3}"
       --stem "${SPEED_STEM:-cifar}" --image-size 32 --device "$device")
protocol=(--data "$data" --train-per-class "${PROTOCOL_PER_CLASS:-1000}" --test-per-class 200
          --epochs "${PROTOCOL_EPOCHS:-30}" --stem imagenet --image-size 32 --device "$device")

limited() {  # SECONDS LOG COMMAND...: run COMMAND for at most SECONDS x TIME_SCALE, its output also in LOG
    local seconds=$(($1 * ${TIME_SCALE:-1})) log=$2
    shift 2
    echo "\$ $*" | tee "$log"
    timeout "$seconds" "$@" 2>&1 | tee -a "$log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  nproc; } > "$results/machine.txt"

limited 120 "$results/speed-batch128.log" python3 benchmarks/speed_benchmark.py "${speed[@]}" --variants erm stepe
limited 150 "$results/speed-batch512.log" python3 benchmarks/speed_benchmark.py "${speed[@]}" --batch-size 512 \
    --variants erm stepe "stepe:host_images=true" "stepe:host_images=true,loader_workers=0" \
    "stepe:host_images=true,image_memory_gb=0"
limited 280 "$results/auto-sym10-sym20.log" python3 benchmarks/auto_rho_benchmark.py "${protocol[@]}" \
    --noise sym10 sym20 --fixed --retrain --out /tmp/gpu-auto
