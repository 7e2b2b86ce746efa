#!/usr/bin/env bash
# seqgan.py with the paper's oracle on the CPU, a reduced configuration (docs/seqgan.md): 30 MLE epochs instead
# of 120, a discriminator with 1/8 of the paper's filters, 5 pretraining rounds and 1 round per adversarial epoch
# (1 epoch each instead of 3), 8 rollouts instead of 16, 30 adversarial epochs instead of 200, NLL-oracle on 2,000
# samples. Seed 1. The controls (continued MLE, constant reward) get the same number of generator steps.
# ORACLE=path/to/seqgan_oracle_params.npz (the paper's oracle; without it the script draws its own).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-seqgan-cpu-reduced}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python seqgan.py --device cpu ${ORACLE:+--oracle "$ORACLE"} --mle-epochs 30 --log-every 5 --d-filter-scale 0.125 \
  --d-pretrain 5 --d-epochs 1 --adv-epochs 30 --d-steps 1 --rollouts 8 --eval-every 5 --eval-samples 2000 \
  --seed 1 --out "$out/s1" | tee "$out/s1.log" | tail -1
# the summary and the curves, for docs/seqgan.md and benchmarks/plot.py
{ echo "# bash benchmarks/seqgan_cpu_reduced.sh with the paper's oracle, $(date +%F), one thread of a $(nproc)-core" \
    "$(lscpu | sed -n 's/^Model name: *//p'), seed 1"
  echo "# summary:"; tail -1 "$out/s1.log"
  echo "# NLL-oracle by stage and adversarial epoch (metrics.jsonl):"; cat "$out/s1/metrics.jsonl"
} > benchmarks/results/seqgan_cpu_reduced.txt
