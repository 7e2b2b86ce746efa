#!/usr/bin/env bash
# alphago_mcts.py on 9x9 on the CPU (README, "alphago_mcts.py"): 500 expert games of GNU Go level 1 (apt-get install
# gnugo), the default 6-layer 64-wide networks (SL 6 epochs, best held out; RL 100 steps of 64 games; value net on
# 8,000 self-play games), then 20 games against random moves and against GNU Go level 1 with 200 simulations a
# move. Seed 1, komi 7.5. The expert games run in two processes, the rest in one.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-alphago-9x9-cpu}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
OMP_NUM_THREADS=1 python alphago_mcts.py --board-size 9 --expert gnugo --gnugo-level 1 --expert-games 500 \
  --sl-epochs 6 --rl-iters 100 --log-every 2 --value-games 8000 --sims 200 --games 20 \
  --opponents random,gnugo --device cpu --out "$out" | tail -1 | tee -a "$out/results.txt"
