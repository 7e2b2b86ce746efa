#!/usr/bin/env bash
# rlhf_ppo.py on the CPU (docs/rlhf_ppo.md): the whole pipeline with the defaults (pretrain 1,000 iterations,
# SFT 3 epochs, RM on 4,000 prompts x 4 samples, PPO 200 steps of 64 prompts, beta 0.1), seed 1; then PPO alone
# from the same SFT policy and reward model with other KL coefficients, and its evaluation, for the reward-vs-KL
# table (the gold and RM curves during PPO are in each folder's metrics.jsonl). Each line is the script's summary
# (an evaluation's holds its PPO stage's too); the summaries and each beta's PPO records go to
# benchmarks/results/rlhf_ppo_cpu/.
# Offline, pass the corpus: DATA=tinyshakespeare.txt bash benchmarks/rlhf_ppo_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-rlhf-ppo-cpu}
data=${DATA:+--data $DATA}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
# a rerun reuses what an earlier run of this script finished (the full run's summary.json, each beta's ppo.pt)
[ -f "$out/beta0.1/summary.json" ] || python rlhf_ppo.py $data --device cpu --out "$out/beta0.1" > "$out/beta0.1.log"
echo "beta 0.1 $(cat "$out/beta0.1/summary.json")" | tee "$out/results.txt"
for beta in 0.1 ${BETAS:-0 0.02 0.05 0.3}; do
  [ -f "$out/beta$beta/ppo.pt" ] || python rlhf_ppo.py $data --device cpu --stage ppo --beta "$beta" \
    --load "$out/beta0.1" --out "$out/beta$beta" > "$out/beta$beta-ppo.log"
  python rlhf_ppo.py $data --device cpu --eval-only --beta "$beta" --load "$out/beta0.1" --out "$out/beta$beta" \
    --prompt "I will kill thee, and" > "$out/beta$beta-eval.log"  # writes eval.json, leaves summary.json alone
  echo "beta $beta eval $(tail -1 "$out/beta$beta-eval.log")" | tee -a "$out/results.txt"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
results=benchmarks/results/rlhf_ppo_cpu
mkdir -p "$results"
cp "$out/results.txt" "$results/summaries.txt"
for beta in 0.1 ${BETAS:-0 0.02 0.05 0.3}; do
  grep '"stage": "ppo"' "$out/beta$beta/metrics.jsonl" > "$results/ppo-beta$beta.jsonl"
  grep -v '^{' "$out/beta$beta-eval.log" > "$results/samples-beta$beta.txt"  # SFT's and PPO's answers to six prompts
done
