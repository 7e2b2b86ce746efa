#!/usr/bin/env bash
# GRPO seconds per rollout batch, rlhf_ppo.py --algo grpo vs TRL's GRPOTrainer (its current release), side by side on
# the CPU with one thread each, alternating: the same tiny GPT (vocab 4096 + 2, width 64, 3 layers, 4 heads), random
# weights, 16 prompts of 16 tokens x 4 responses (--group-size 4) of at most 32 tokens, 4 epochs (TRL: iterations,
# mu) in minibatches of 16, and 1 epoch (TRL's default mu), temperature 0.7, KL coefficient 0.1, clip 0.2. TRL needs
# a venv of its own:
#   python3 -m venv trl-venv && trl-venv/bin/pip install torch==2.13.0 trl
# Usage: TRL_PYTHON=trl-venv/bin/python DATA=tinyshakespeare.txt bash benchmarks/rlhf_grpo_vs_trl.sh
# Each run prints rlhf_ppo.py's summary and its seconds per rollout batch (generation and update) over the steps after
# the first (after_first_s, from metrics.jsonl), and TRL's line (rollout_s_mean, also after the first); all go to
# benchmarks/results/rlhf_grpo_vs_trl.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
STEPS=${STEPS:-20}
OUT=${OUT:-runs/rlhf_grpo_speed}
FLAGS=(--data "$DATA" --vocab-size 4096 --n-embd 64 --n-layer 3 --n-head 4 --block-size 64 --prompt-len 16
       --response-len 32 --temperature 0.7 --device cpu --algo grpo --group-size 4 --beta 0.1
       --pretrain-iters 0 --sft-epochs 0 --rm-epochs 0 --rm-prompts 16)  # random weights: no training before GRPO
results=benchmarks/results/rlhf_grpo_vs_trl.txt
echo "# $(date -u +%F), $(nproc --all) cores ($(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -1)), \
TRL $("$TRL_PYTHON" -c 'import trl; print(trl.__version__)'), \
torch $(python -c 'import torch; print(torch.__version__)'), $STEPS rollout batches" | tee "$results"
for stage in pretrain sft rm; do
  python rlhf_ppo.py "${FLAGS[@]}" --out "$OUT/base" --stage $stage | tail -1
done
for epochs in 4 1; do
  for run in 1 2 3; do  # each run its own --out: a stage whose checkpoint --out holds is not trained again
    ours=$(python rlhf_ppo.py "${FLAGS[@]}" --load "$OUT/base" --out "$OUT/e$epochs-run$run" --stage ppo \
      --ppo-steps "$STEPS" --rollout-batch 64 --minibatch 16 --ppo-epochs "$epochs" --log-every 1 | tail -1)
    after_first=$(python -c 'import json, sys
r = [json.loads(line) for line in open(sys.argv[1]) if "\"ppo\"" in line]  # cumulative gen_s, train_s per step
print(round((r[-1]["gen_s"] + r[-1]["train_s"] - r[0]["gen_s"] - r[0]["train_s"]) / (len(r) - 1), 4))' \
      "$OUT/e$epochs-run$run/metrics.jsonl")
    echo "epochs $epochs run $run rlhf_ppo.py after_first_s $after_first $ours" | tee -a "$results"
    trl=$(cd /tmp && "$TRL_PYTHON" "$OLDPWD/benchmarks/trl_grpo_speed.py" "$STEPS" "$epochs" 2>/dev/null | tail -1)
    echo "epochs $epochs run $run TRL $trl" | tee -a "$results"
  done
done
