#!/usr/bin/env bash
# What the paper's full SeqGAN run costs on one CPU thread (docs/seqgan.md), from the time of each of its parts at
# the default sizes (the paper's 1,720-filter D, 16 rollouts, 5 D rounds of 3 epochs per adversarial epoch):
# 2 MLE epochs (records at each), then from scratch 1 D pretraining round and 1 adversarial epoch (adv_epoch_s).
# ORACLE=path/to/seqgan_oracle_params.npz (the paper's oracle; without it the script draws its own). Seed 1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-seqgan-cpu-epoch-times}
results=benchmarks/results/seqgan_cpu_epoch_times.txt
mkdir -p "$out"
echo "# bash benchmarks/seqgan_cpu_epoch_times.sh, $(date +%F), one thread of a $(nproc)-core $(lscpu | sed -n \
  's/^Model name: *//p'), seed 1" > "$results"
common="--device cpu ${ORACLE:+--oracle $ORACLE} --eval-samples 2000 --eval-every 1 --log-every 1 --no-controls"
python seqgan.py $common --mle-epochs 2 --d-pretrain 0 --adv-epochs 0 --out "$out/mle" | tail -1 \
  | sed "s/^/2 MLE epochs: /" | tee -a "$results"
grep '"mle_pretraining"' "$out/mle/metrics.jsonl" | sed "s/^/  /" | tee -a "$results"
python seqgan.py $common --mle-epochs 0 --d-pretrain 1 --adv-epochs 1 --out "$out/adv" | tail -1 \
  | sed "s/^/1 D pretraining round and 1 adversarial epoch: /" | tee -a "$results"
