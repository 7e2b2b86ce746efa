#!/usr/bin/env bash
# seqgan.py on real text on the CPU (docs/seqgan.md): the lines of tinyshakespeare without its
# speaker tags ("ANTONIO:" lines, which BLEU against all held-out lines would reward a collapsed generator for),
# BPE of 2,000 ranks, 20 tokens a line; the reduced schedule of seqgan_cpu_reduced.sh; BLEU-4 and distinct-4 on
# 1,000 samples. Seeds 1, 2 and 3 one after another (SEEDS=2 runs one; two such commands, each with its own OUT,
# can share two cores; SEEDS= none); each seed's summary and curves in benchmarks/results/seqgan_cpu_real_s<seed>.txt.
# Then, where seed 1's run is in OUT, the noise of sampling alone: its MLE and SeqGAN generators each scored on six
# fresh sets of samples (--eval-only, seeds 11-16), in benchmarks/results/seqgan_cpu_real_sampling.txt.
# DATA=path/to/tinyshakespeare.txt (nanoGPT's input.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-seqgan-cpu-real}
mkdir -p "$out"
grep -v -e ':$' -e '^$' "$DATA" > "$out/lines.txt"
for seed in ${SEEDS-1 2 3}; do
  python seqgan.py --device cpu --data "$out/lines.txt" --bpe-vocab 2000 --mle-epochs 30 --log-every 5 \
    --d-filter-scale 0.125 --d-pretrain 5 --d-epochs 1 --adv-epochs 30 --d-steps 1 --rollouts 8 --eval-every 5 \
    --eval-samples 1000 --seed "$seed" --out "$out/s$seed" | tee "$out/s$seed.log" | tail -1
  { echo "# DATA=.../tinyshakespeare.txt SEEDS=$seed bash benchmarks/seqgan_cpu_real.sh, $(date +%F), one thread" \
      "of a $(nproc)-core $(lscpu | sed -n 's/^Model name: *//p')"
    echo "# summary:"; tail -1 "$out/s$seed.log"
    echo "# five samples of the final generator:"; grep '^sample:' "$out/s$seed.log"
    echo "# BLEU-4 by stage and epoch (metrics.jsonl):"; cat "$out/s$seed/metrics.jsonl"
  } > "benchmarks/results/seqgan_cpu_real_s$seed.txt"
done
if [ -f "$out/s1/model.pt" ]; then
  { echo "# DATA=.../tinyshakespeare.txt bash benchmarks/seqgan_cpu_real.sh, $(date +%F): seed 1's generators after" \
      "MLE (model_mle.pt) and after SeqGAN (model.pt), each evaluated with --eval-only --seed 11..16"
    for model in model_mle model; do
      for seed in 11 12 13 14 15 16; do
        echo "$model seed $seed: $(python seqgan.py --device cpu --data "$out/lines.txt" --bpe-vocab 2000 --eval-only \
          --load "$out/s1/$model.pt" --eval-samples 1000 --seed "$seed" --out "$out/eval-$model-$seed" | tail -1)"
      done
    done
  } > benchmarks/results/seqgan_cpu_real_sampling.txt
fi
# With WITH_TAGS=1, also seed 1 on the whole file, speaker tags included (docs/seqgan.md says why they are cut).
if [ -n "${WITH_TAGS:-}" ]; then
  python seqgan.py --device cpu --data "$DATA" --bpe-vocab 2000 --mle-epochs 30 --log-every 5 --d-filter-scale 0.125 \
    --d-pretrain 5 --d-epochs 1 --adv-epochs 30 --d-steps 1 --rollouts 8 --eval-every 5 --eval-samples 1000 --seed 1 \
    --out "$out/with-tags" | tee "$out/with-tags.log" | tail -1
fi
