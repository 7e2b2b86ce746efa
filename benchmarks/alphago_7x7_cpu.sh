#!/usr/bin/env bash
# alphago_mcts.py on 7x7 on the CPU (docs/alphago_mcts.md): 600 expert games of GNU Go level 10 (apt-get
# install gnugo), the default 6-layer 64-wide policy and value networks (SL 8 epochs, best held out; RL 200 steps of
# 64 games; value net on 20,000 self-play games), then 20 games against each opponent with 400 simulations a move,
# GNU Go level 10 among them. Seed 1, komi 9. The expert games run in two processes, the rest in one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-alphago-7x7-cpu}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 7 --expert gnugo --gnugo-level 10 --expert-games 600 \
  --sl-epochs 8 --log-every 2 --rl-iters 200 --value-games 20000 --sims 400 --games 20 --device cpu --out "$out" \
  | tail -1 | tee -a "$out/results.txt"
# the same model at 800 simulations a move, 40 games against GNU Go level 10
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 7 --eval-only --load "$out/model.pt" --opponents gnugo \
  --sims 800 --games 40 --device cpu --out "$out/eval800" | tail -1 | tee -a "$out/results.txt"
# the same model with lambda = 0 (value network only, no playouts: a simulation costs about half as much) at 1,600
# simulations a move, 40 games against GNU Go level 10
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 7 --eval-only --load "$out/model.pt" --opponents gnugo \
  --sims 1600 --mix 0 --games 40 --device cpu --out "$out/eval1600mix0" | tail -1 | tee -a "$out/results.txt"
# the summaries, every match record (games, draws, win rates by colour, search speed) and the training records, for
# docs/alphago_mcts.md and benchmarks/plot.py
results=benchmarks/results/alphago_7x7_cpu
mkdir -p "$results"
cp "$out/results.txt" "$results/summaries.txt"
cat "$out"/metrics.jsonl "$out"/eval*/metrics.jsonl > "$results/metrics.jsonl"
