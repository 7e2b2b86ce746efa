#!/usr/bin/env bash
# The reduced SeqGAN run of seqgan_cpu_reduced.sh three ways, one after another on one CPU thread: seqgan.py at an
# earlier git revision (BEFORE, default 17f110f: PyTorch's default Adam, the discriminator's convolutions one by
# one), and seqgan.py as it is with --no-bf16 and with --bf16. Wall time, seconds per adversarial epoch and the
# NLL-oracle of each go to benchmarks/results/seqgan_cpu_precision.txt (docs/seqgan.md). Needs the git history.
# ORACLE=path/to/seqgan_oracle_params.npz (the paper's oracle; without it the script draws its own).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-seqgan-cpu-precision}
before=${BEFORE:-17f110f}
mkdir -p "$out"
git show "$before:seqgan.py" > "$out/seqgan_before.py"
flags="--device cpu ${ORACLE:+--oracle $ORACLE} --mle-epochs 30 --log-every 5 --d-filter-scale 0.125 --d-pretrain 5
  --d-epochs 1 --adv-epochs 30 --d-steps 1 --rollouts 8 --eval-every 5 --eval-samples 2000 --seed 1"
python "$out/seqgan_before.py" $flags --out "$out/before" | tail -1 | sed "s/^/$before fp32 /" | tee "$out/results.txt"
python seqgan.py $flags --no-bf16 --out "$out/fp32" | tail -1 | sed "s/^/now fp32 /" | tee -a "$out/results.txt"
python seqgan.py $flags --bf16 --out "$out/bf16" | tail -1 | sed "s/^/now bf16 /" | tee -a "$out/results.txt"
torch_version=$(python -c 'import torch; print(torch.__version__)')
{ echo "# bash benchmarks/seqgan_cpu_precision.sh, $(date +%F), one CPU thread, torch $torch_version"
  cat "$out/results.txt"; } > benchmarks/results/seqgan_cpu_precision.txt
