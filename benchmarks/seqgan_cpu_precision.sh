#!/usr/bin/env bash
# The reduced SeqGAN run of seqgan_cpu_reduced.sh, one after another on one CPU thread: seqgan.py with --no-bf16
# and with --bf16, and first, with OTHER=path/to/seqgan.py, another seqgan.py (a change under review, a fork) in
# fp32. Wall time, seconds per adversarial epoch and the NLL-oracle of each go to
# benchmarks/results/seqgan_cpu_precision.txt (docs/seqgan.md).
# ORACLE=path/to/seqgan_oracle_params.npz (the paper's oracle; without it the script draws its own).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-seqgan-cpu-precision}
mkdir -p "$out"
: > "$out/results.txt"
flags="--device cpu ${ORACLE:+--oracle $ORACLE} --mle-epochs 30 --log-every 5 --d-filter-scale 0.125 --d-pretrain 5
  --d-epochs 1 --adv-epochs 30 --d-steps 1 --rollouts 8 --eval-every 5 --eval-samples 2000 --seed 1"
if [ -n "${OTHER:-}" ]; then
  python "$OTHER" $flags --out "$out/other" | tail -1 | sed "s/^/other fp32 /" | tee -a "$out/results.txt"
fi
python seqgan.py $flags --no-bf16 --out "$out/fp32" | tail -1 | sed "s/^/fp32 /" | tee -a "$out/results.txt"
python seqgan.py $flags --bf16 --out "$out/bf16" | tail -1 | sed "s/^/bf16 /" | tee -a "$out/results.txt"
torch_version=$(python -c 'import torch; print(torch.__version__)')
{ echo "# bash benchmarks/seqgan_cpu_precision.sh, $(date +%F), one CPU thread, torch $torch_version"
  cat "$out/results.txt"; } > benchmarks/results/seqgan_cpu_precision.txt
