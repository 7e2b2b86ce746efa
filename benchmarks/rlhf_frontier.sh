#!/usr/bin/env bash
# Can we do better than PPO? (docs/rlhf_ppo.md) PPO, GRPO and RLOO on one frontier: per seed, one pretrained model,
# SFT policy and reward model (the defaults); from them the RL stage with each --algo at four KL coefficients
# (--beta 0.03, 0.1, 0.3, 1), 200 steps of 64 responses each (PPO: 64 prompts x 1; GRPO, RLOO: 16 prompts x 4),
# and its evaluation on the 500 held-out prompts; Dr. GRPO (--grpo-unbiased) at 0.1, 0.3 and 1. Seed 2 repeats the
# whole pipeline for the default coefficient, 0.1. Two runs at a time, one per core, each on one thread. Every
# evaluation's summary (it holds its RL stage's times) goes to benchmarks/results/rlhf_frontier/summaries.jsonl with
# the algorithm, beta and seed; each RL stage's records too.
# Offline, pass the corpus: DATA=tinyshakespeare.txt bash benchmarks/rlhf_frontier.sh   (a rerun reuses what is done)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/bench-rlhf-frontier}
data=${DATA:+--data $DATA}
mkdir -p "$out"
echo "# $(date -u +%F), $(nproc --all) cores ($(sed -n 's/^model name\t: //p' /proc/cpuinfo | head -1)), \
torch $(python -c 'import torch; print(torch.__version__)')" | tee "$out/machine.txt"
base() {  # pretraining, SFT and the reward model of one seed, stage by stage
  for stage in pretrain sft rm; do
    [ -f "$out/base-s$1/$stage.pt" ] || python rlhf_ppo.py $data --device cpu --seed "$1" --stage $stage \
      --out "$out/base-s$1" > "$out/base-s$1-$stage.log"
  done
}
rl() {  # one algorithm (drgrpo: grpo --grpo-unbiased), beta and seed: the RL stage, then its evaluation (eval.json)
  local algo=$1 beta=$2 seed=$3 run="$out/$1-beta$2-s$3"
  local flags=(--device cpu --seed "$seed" --beta "$beta" --load "$out/base-s$seed" --out "$run")
  [ "$algo" = drgrpo ] && flags+=(--algo grpo --grpo-unbiased) || flags+=(--algo "$algo")
  [ -f "$run/ppo.pt" ] || python rlhf_ppo.py $data "${flags[@]}" --stage ppo > "$run.log" || return
  [ -f "$run/eval.json" ] || python rlhf_ppo.py $data "${flags[@]}" --stage eval > "$run-eval.log"
}
export -f rl
export out data
base 1 & base 2 & wait
printf '%s\n' {ppo,grpo,rloo}" "{0.03,0.1,0.3}" 1" {ppo,grpo,rloo}" 0.1 2" {ppo,grpo,rloo}" 1 1" \
  "drgrpo "{0.1,0.3,1}" 1" |
  xargs -P 2 -L 1 bash -c 'rl "$@"' _
results=benchmarks/results/rlhf_frontier
mkdir -p "$results"
cp "$out/machine.txt" "$results/machine.txt"
python - "$out" "$results" <<'PY'
import glob, json, os, re, shutil, sys
out, results = sys.argv[1:]
with open(os.path.join(results, "summaries.jsonl"), "w") as f:
    for path in sorted(glob.glob(os.path.join(out, "*-beta*-s*/eval.json"))):
        algo, beta, seed = re.fullmatch(r"(\w+)-beta([\d.]+)-s(\d+)", os.path.basename(os.path.dirname(path))).groups()
        f.write(json.dumps({"algo": algo, "beta": float(beta), **json.load(open(path))}) + "\n")
        with open(os.path.join(results, f"{algo}-beta{beta}-s{seed}.jsonl"), "w") as records:
            records.writelines(line for line in open(os.path.join(os.path.dirname(path), "metrics.jsonl"))
                               if '"stage": "ppo"' in line)
PY
cat "$results/summaries.jsonl"
