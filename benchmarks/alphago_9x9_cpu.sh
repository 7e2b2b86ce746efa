#!/usr/bin/env bash
# alphago_mcts.py on 9x9 on the CPU (docs/alphago_mcts.md): 1,500 expert games of GNU Go level 1 (apt-get install
# gnugo), the default 6-layer 64-wide networks (SL 4 epochs, best held out, and the rollout policy; RL 100 steps of 64
# games; value net on 16,000 self-play games), then 40 games against random moves with 400 simulations a move; then
# the saved model against GNU Go level 1, 40 games, and level 10, 20 games, at 400 simulations (--eval-only).
# Seed 1, komi 7.5. The expert games run in two processes, the rest in one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-alphago-9x9-cpu}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 9 --expert gnugo --gnugo-level 1 --expert-games 1500 \
  --sl-epochs 4 --log-every 1 --rl-iters 100 --value-games 16000 --sims 400 --games 40 \
  --opponents random --device cpu --out "$out" | tail -1 | tee -a "$out/results.txt"
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 9 --eval-only --load "$out/model.pt" --opponents gnugo \
  --gnugo-level 1 --sims 400 --games 40 --device cpu --out "$out/eval" | tail -1 | tee -a "$out/results.txt"
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 9 --eval-only --load "$out/model.pt" --opponents gnugo \
  --gnugo-level 10 --sims 400 --games 20 --device cpu --out "$out/eval10" | tail -1 | tee -a "$out/results.txt"
# the summaries, every match record (games, draws, win rates by colour, search speed) and the training records, for
# docs/alphago_mcts.md and benchmarks/plot.py
results=benchmarks/results/alphago_9x9_cpu
mkdir -p "$results"
cp "$out/results.txt" "$results/summaries.txt"
cat "$out"/metrics.jsonl "$out"/eval*/metrics.jsonl > "$results/metrics.jsonl"
