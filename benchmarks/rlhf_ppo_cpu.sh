#!/usr/bin/env bash
# rlhf_ppo.py on the CPU (docs/rlhf_ppo.md): the whole pipeline with the defaults (pretrain 1,000 iterations,
# SFT 3 epochs, RM on 4,000 prompts x 4 samples, PPO 200 steps of 64 prompts, beta 0.1), seed 1; then PPO alone
# from the same SFT policy and reward model with other KL coefficients, and its evaluation, for the reward-vs-KL
# table (the gold and RM curves during PPO are in each folder's metrics.jsonl). Each line is the
# script's summary; the summaries and the PPO records of each beta go to benchmarks/results/rlhf_ppo_cpu/.
# Offline, pass the corpus: DATA=tinyshakespeare.txt bash benchmarks/rlhf_ppo_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-rlhf-ppo-cpu}
data=${DATA:+--data $DATA}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python rlhf_ppo.py $data --device cpu --out "$out/beta0.1" | tail -1 | sed "s/^/beta 0.1 /" | tee -a "$out/results.txt"
for beta in ${BETAS:-0 0.02 0.05 0.3}; do
  python rlhf_ppo.py $data --device cpu --stage ppo --beta "$beta" --load "$out/beta0.1" --out "$out/beta$beta" \
    | tail -1 | sed "s/^/beta $beta ppo /" | tee -a "$out/results.txt"
  python rlhf_ppo.py $data --device cpu --stage eval --load "$out/beta0.1" --out "$out/beta$beta" \
    | tail -1 | sed "s/^/beta $beta eval /" | tee -a "$out/results.txt"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
results=benchmarks/results/rlhf_ppo_cpu
mkdir -p "$results"
cp "$out/results.txt" "$results/summaries.txt"
for beta in 0.1 ${BETAS:-0 0.02 0.05 0.3}; do
  grep '"stage": "ppo"' "$out/beta$beta/metrics.jsonl" > "$results/ppo-beta$beta.jsonl"
done
