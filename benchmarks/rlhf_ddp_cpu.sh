#!/usr/bin/env bash
# rlhf_ppo.py's PPO stage in one process and in two (torchrun, gloo) on the CPU, side by side (docs/rlhf_ppo.md):
# the default model, SFT policy and reward model made once (pretraining shortened to 200 iterations: the speed
# does not depend on it), then PPO for 20 steps of 64 prompts x 32 tokens, one process and two in turns, ROUNDS
# times. Each process runs one thread, so two processes use both cores of a 2-core machine. Each line: the round,
# and the PPO stage's tokens/s (rollout and update, rank 0's clock) with 1 and with 2 processes; results go to
# benchmarks/results/rlhf_ddp_cpu.txt.
# Offline, pass the corpus: DATA=tinyshakespeare.txt bash benchmarks/rlhf_ddp_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-rlhf-ddp-cpu}
data=${DATA:+--data $DATA}
flags="$data --device cpu --pretrain-iters 200 --rm-prompts 1000 --ppo-steps 20"
mkdir -p "$out"
for stage in pretrain sft rm; do
  [ -f "$out/base/$stage.pt" ] || python rlhf_ppo.py $flags --stage $stage --out "$out/base" > "$out/base-$stage.log"
done
results=benchmarks/results/rlhf_ddp_cpu.txt
echo "# PPO tokens/s, rlhf_ppo.py defaults, 20 steps of 64 x 32 tokens; $(nproc) cores \
($(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -1)), torch $(python -c \
'import torch; print(torch.__version__)')" | tee "$results"
speed() { tail -1 "$1" | python -c "import json, sys; print(json.loads(sys.stdin.read())['tokens_per_s'])"; }
for round in $(seq 1 "${ROUNDS:-3}"); do
  rm -rf "$out/one" "$out/two"
  python rlhf_ppo.py $flags --stage ppo --load "$out/base" --out "$out/one" > "$out/one.log"
  python -m torch.distributed.run --standalone --nproc-per-node 2 rlhf_ppo.py $flags --stage ppo --load "$out/base" \
    --out "$out/two" > "$out/two.log" 2> "$out/two.err"
  one=$(speed "$out/one.log")
  two=$(speed "$out/two.log")
  ratio=$(python -c "print(round($two / $one, 2))")
  echo "round $round: 1 process $one tokens/s, 2 processes $two tokens/s, ratio $ratio" | tee -a "$results"
done
