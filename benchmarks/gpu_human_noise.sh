#!/usr/bin/env bash
# The human-noise grid on one GPU, in one call: run by hand, never in CI. Results: BENCHMARKS.md.
#   bash benchmarks/gpu_human_noise.sh DATA_DIR RESULTS_DIR [SECONDS]
# Every job is one process, all side by side (one small ResNet-18 leaves an H200 mostly idle); each stops after
# SECONDS (default 540) and its finished rows are in RESULTS/<job>.log, one JSON line per run.
# On the CPU protocol (1,000 images per class, 30 epochs, 32 px, ImageNet stem):
# - sym40 and idn40, seeds 0-2: erm (noise_benchmark.py) and auto rho_max with its retrains, drop and drop+relabel,
#   plus rho_max at the truth (auto_rho_benchmark.py); for seed 0 also the manifests at equal SGD steps.
# - sym10, sym20, asym40, idn20, seed 0: auto and its retrains.
# - idn40, seed 0: cleanlab (5 folds) and the oracle; idn40 with the reference trained on the other 40,000 images.
# On full CIFAR-10 (50,000 images, CIFAR stem, 60 epochs, batch 512, learning rate 0.4 by labelscrub's scaling):
# sym40 and idn40, erm and auto with its retrain.
# Keep --device auto: the idn reference of the CPU protocol is then the one cached on the CPU (benchmarks/cache,
# carry it along). DEVICE, PROTOCOL_PER_CLASS, PROTOCOL_EPOCHS, FULL_PER_CLASS and FULL_EPOCHS shrink it for a
# dry run on a CPU.
set -u
data=${1:?data folder with train.parquet and test.parquet}
results=${2:?folder for the logs}
seconds=${3:-540}
mkdir -p "$results"
export PYTHONPATH="$PWD/benchmarks:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
protocol=(--data "$data" --train-per-class "${PROTOCOL_PER_CLASS:-1000}" --test-per-class 200
          --epochs "${PROTOCOL_EPOCHS:-30}" --stem imagenet --image-size 32 --device "${DEVICE:-auto}")
full=(--data "$data" --train-per-class "${FULL_PER_CLASS:-0}" --test-per-class 0 --epochs "${FULL_EPOCHS:-60}"
      --stem cifar --image-size 32 --batch-size 512 --device "${DEVICE:-auto}")

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
  nproc; } > "$results/machine.txt"

job() {  # NAME COMMAND...: one process, time-limited, its output in RESULTS/NAME.log
    local name=$1
    shift
    timeout "$seconds" bash -c "$*" > "$results/$name.log" 2>&1
}

for noise in sym40 idn40; do
    for seed in 0 1 2; do
        out=/tmp/human-noise/$noise-s$seed
        steps=""
        if [ "$seed" = 0 ]; then
            steps="&& python3 benchmarks/retrain_runs.py --noise $noise --seed 0 ${protocol[*]} $out/$noise/auto \
                   --manifest drop drop+relabel --equal-steps"
        fi
        job "$noise-s$seed" "python3 benchmarks/auto_rho_benchmark.py --noise $noise --seed $seed --retrain --fixed \
            ${protocol[*]} --out $out $steps" &
        job "$noise-erm-s$seed" "python3 benchmarks/noise_benchmark.py --noise $noise --seed $seed --methods erm \
            --no-cleanlab ${protocol[*]} --out /tmp/human-noise/erm-$noise-s$seed" &
    done
done
for noise in sym10 sym20 asym40 idn20; do
    job "$noise-s0" "python3 benchmarks/auto_rho_benchmark.py --noise $noise --retrain ${protocol[*]} \
        --out /tmp/human-noise/$noise" &
done
job idn40-cleanlab-oracle "python3 benchmarks/noise_benchmark.py --noise idn40 --methods --oracle ${protocol[*]} \
    --out /tmp/human-noise/idn40-cleanlab" &
job idn40-outside "python3 benchmarks/auto_rho_benchmark.py --noise idn40 --reference-source outside --retrain \
    ${protocol[*]} --out /tmp/human-noise/idn40-outside \
    && python3 benchmarks/noise_benchmark.py --noise idn40 --reference-source outside --methods erm --no-cleanlab \
    ${protocol[*]} --out /tmp/human-noise/idn40-outside-erm" &
for noise in sym40 idn40; do
    job "full-$noise" "python3 benchmarks/noise_benchmark.py --noise $noise --methods erm stepe:rho_max=auto \
        --no-cleanlab ${full[*]} --out /tmp/human-noise/full-$noise" &
done
wait
