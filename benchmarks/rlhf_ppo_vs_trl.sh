#!/usr/bin/env bash
# PPO seconds per step, rlhf_ppo.py vs TRL 1.12.0's PPOTrainer, side by side on the CPU with one thread: the same
# tiny GPT (vocab 4096 + 2, width 64, 3 layers, 4 heads), random weights, batch 16 prompts of 16 tokens, 32-token
# responses, 4 PPO epochs over one minibatch, temperature 0.7. TRL needs a venv of its own:
#   python3 -m venv trl-venv && trl-venv/bin/pip install torch==2.13.0 trl==1.12.0
# Usage: TRL_PYTHON=trl-venv/bin/python DATA=tinyshakespeare.txt bash benchmarks/rlhf_ppo_vs_trl.sh
# Each run prints rlhf_ppo.py's summary (ppo_step_s, ppo_gen_s, ppo_train_s) and TRL's line (step_s_median); both go
# to benchmarks/results/rlhf_ppo_vs_trl.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
STEPS=${STEPS:-20}
OUT=${OUT:-runs/rlhf_ppo_speed}
FLAGS=(--data "$DATA" --vocab-size 4096 --n-embd 64 --n-layer 3 --n-head 4 --block-size 64 --prompt-len 16
       --response-len 32 --temperature 0.7 --device cpu
       --pretrain-iters 0 --sft-epochs 0 --rm-epochs 0 --rm-prompts 16)  # random weights: no training before PPO
results=benchmarks/results/rlhf_ppo_vs_trl.txt
echo "# $(date -u +%F), $(nproc --all) cores ($(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -1)), \
TRL $("$TRL_PYTHON" -c 'import trl; print(trl.__version__)'), \
torch $(python -c 'import torch; print(torch.__version__)'), $STEPS steps" | tee "$results"
for stage in pretrain sft rm; do
  python rlhf_ppo.py "${FLAGS[@]}" --out "$OUT/base" --stage $stage | tail -1
done
for run in 1 2 3; do  # each run its own --out: a stage whose checkpoint --out holds is not trained again
  ours=$(python rlhf_ppo.py "${FLAGS[@]}" --load "$OUT/base" --out "$OUT/run$run" --stage ppo --ppo-steps "$STEPS" \
    --rollout-batch 16 --minibatch 16 --ppo-epochs 4 --log-every "$STEPS" | tail -1)
  echo "run $run rlhf_ppo.py $ours" | tee -a "$results"
  trl=$(cd /tmp && "$TRL_PYTHON" "$OLDPWD/benchmarks/trl_ppo_speed.py" "$STEPS" 2>/dev/null | tail -1)
  echo "run $run TRL $trl" | tee -a "$results"
done
