#!/usr/bin/env bash
# CleanRL's dqn.py side by side with ours (docs/dqn.md), run in its own venv with its pins.
# Nothing of CleanRL is committed here: fetch it yourself, then
#   CLEANRL=/path/to/cleanrl  (commit fe8d8a03 was measured)
#   python3 -m venv /tmp/cleanrl-venv && /tmp/cleanrl-venv/bin/pip install torch==2.13.0 gymnasium==0.29.1 \
#       "numpy<2" tyro tensorboard "moviepy<2" pygame
#   CLEANRL=... PY=/tmp/cleanrl-venv/bin/python bash benchmarks/cleanrl_dqn.sh
# Its default 500k-step run, --save-model so that it ends with its own evaluation (10 episodes, epsilon 0.05).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-$here/runs/bench-cleanrl-dqn}
results=$here/benchmarks/results/dqn_cartpole
mkdir -p "$out" "$results"
rm -f "$results/cleanrl.jsonl"
cd "$CLEANRL"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in 1 2 3 4 5; do
  PYTHONPATH=. PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 python "$here/benchmarks/timed_run.py" --log "$out/s$seed.log" \
    --curve "$results/cleanrl-s$seed.csv" -- "$PY" cleanrl/dqn.py --seed "$seed" --save-model \
    | tee -a "$results/cleanrl.jsonl"
done
