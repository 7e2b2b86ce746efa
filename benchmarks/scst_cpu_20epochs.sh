#!/usr/bin/env bash
# scst.py's default model, data and XE budget on the CPU (docs/scst.md): 20 XE epochs (the cosine over 20),
# scored greedy and with beam search; then, from that XE checkpoint, 600 SCST steps (of the default 2,000) with each
# baseline, the two runs side by side, one core each. Seed 1, one thread per run. About 2 hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-scst-cpu-20epochs}
mkdir -p "$out"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
python scst.py --device cpu --scst-steps 0 --out "$out/xe" | tail -1 | sed "s/^/xe /" | tee "$out/results.txt"
for baseline in greedy mean; do
  python scst.py --device cpu --load "$out/xe/model_xe.pt" --baseline $baseline --scst-steps 600 --eval-every 100 \
    --log-every 100 --out "$out/$baseline" | tail -1 | sed "s/^/$baseline /" >> "$out/results.txt" &
done
wait
cat "$out/results.txt"
