#!/usr/bin/env bash
# The auto rho_max grid on a GPU, in one call: auto rho_max against a grid of fixed rho_max
# values around the truth, with retraining, on the CPU protocol (1,000 images per class, 30 epochs,
# 32 px, ImageNet stem) at every noise setting. Run by hand, never in CI. Results: BENCHMARKS.md.
#   bash benchmarks/gpu_auto_grid.sh DATA_DIR RESULTS_DIR [SECONDS] [PLAN]
# PLAN "grid" (the default): every setting, auto and a grid of fixed values; "repeats": more seeds where single
# runs were close to the bar, and the 500-images-per-class, 60-epoch protocol (later options override earlier ones).
# The settings run side by side, one process each: one small ResNet-18 leaves an H200 mostly idle. Each process
# stops after SECONDS (default 450) so that a slow one cannot eat the others' time; the rows it finished are in its log
# (one JSON line per run). In each grid the truth comes first, so a cut-off process still has it.
set -u
data=${1:?data folder with train.parquet and test.parquet}
results=${2:?folder for the logs}
seconds=${3:-450}
plan=${4:-grid}
mkdir -p "$results"
export PYTHONPATH="$PWD/benchmarks:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
protocol=(--data "$data" --train-per-class "${PROTOCOL_PER_CLASS:-1000}" --test-per-class 200
          --epochs "${PROTOCOL_EPOCHS:-30}" --stem imagenet --image-size 32 --device "${DEVICE:-cuda}" --retrain)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  nproc; } > "$results/machine.txt"

grid() {  # NAME AUTO_RHO_BENCHMARK_ARGUMENTS...: one process, its output in RESULTS/NAME.log
    local name=$1
    shift
    timeout "$seconds" python3 benchmarks/auto_rho_benchmark.py "${protocol[@]}" "$@" --out "/tmp/grid-$name" \
        > "$results/$name.log" 2>&1
}

if [ "$plan" = grid ]; then
    grid sym0 --noise sym0 --fixed 0 &
    grid sym10 --noise sym10 --fixed 0.1 0.05 0.15 &
    grid sym20 --noise sym20 --fixed 0.2 0.15 0.25 &
    grid sym40 --noise sym40 --fixed 0.4 0.3 0.5 &
    grid asym40 --noise asym40 --fixed 0.2 0.1 0.3 &
    grid asym40-per-class --noise asym40 --select per-class --fixed 0.2 &
else
    grid sym10-seed1 --noise sym10 --fixed 0.1 --seed 1 &
    grid sym20-seed1 --noise sym20 --fixed 0.2 --seed 1 &
    grid sym20-seed2 --noise sym20 --fixed 0.2 --seed 2 &
    grid sym40-seed1 --noise sym40 --fixed 0.4 --seed 1 &
    grid p500-sym40 --noise sym40 --fixed 0.4 --train-per-class 500 --epochs 60 &
    grid p500-sym0 --noise sym0 --train-per-class 500 --epochs 60 &
fi
wait
