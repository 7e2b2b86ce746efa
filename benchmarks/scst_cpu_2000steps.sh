#!/usr/bin/env bash
# scst.py's full SCST budget on the CPU (docs/scst.md): the default 2,000 SCST steps with the greedy baseline
# from the 20-epoch XE model of scst_cpu_20epochs.sh (run that first, or pass XE=path/to/model_xe.pt), at the default
# learning rate 3e-4 and at Rennie et al.'s 5e-5, the two runs side by side, one core each. Seed 1, one thread per run.
# About 2.3 hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
xe=${XE:-runs/bench-scst-cpu-20epochs/xe/model_xe.pt}
out=${OUT:-runs/bench-scst-cpu-2000steps}
mkdir -p "$out"
: > "$out/results.txt"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for lr in 3e-4 5e-5; do
  python scst.py --device cpu --load "$xe" --baseline greedy --scst-lr $lr --out "$out/greedy-lr$lr" | tail -1 \
    | sed "s/^/greedy lr $lr /" >> "$out/results.txt" &
done
wait
cat "$out/results.txt"
