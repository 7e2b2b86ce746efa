"""One command that runs every script on this machine's accelerator and prints one table: whether it finished, its
throughput, peak memory, wall time and headline metric. On a CUDA machine each script runs twice, at its tiniest
settings and at a short real setting, with --compile; elsewhere (CI) only the tiniest settings run, on the CPU, so
that this command is never broken. The short settings are sized for minutes on one GPU (not yet run on one);
a run over its time limit (--timeout) is stopped and reported.
Usage: python benchmarks/gpu_check.py [--tiny] [--only dqn,scst] [--timeout 120]   (offline: DATA=... for rlhf_ppo)"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THROUGHPUT = ("sps", "tokens_per_s", "sims_per_s", "adv_epoch_s")  # the first one a summary has is its speed
HEADLINE = {"dqn": "eval_return_mean", "reinforce": "eval_return_mean", "actor_critic": "eval_return_mean",
            "scst": "test_per", "seqgan": "nll_oracle", "rlhf_ppo": "gold_ppo", "alphago_mcts": "winrate_vs_random"}


def tiny(data: str, corpus: str) -> dict:
    """Each script's smallest run: seconds on a CPU."""
    return {
        "dqn": "--total-steps 2000 --learning-starts 500 --eval-every 1000 --eval-episodes 4 --log-every 1000",
        "reinforce": "--total-steps 4000 --eval-every 2000 --eval-episodes 4 --log-every 2000",
        "actor_critic": "--total-steps 4096 --eval-every 2048 --eval-episodes 4 --log-every 2048",
        "scst": f"--data {data} --test-words 100 --dev-words 50 --hidden 16 --layers 1 --batch-size 32 "
                "--xe-epochs 1 --scst-steps 4 --eval-every 2 --log-every 2 --beam-size 2",
        "seqgan": "--num-train 256 --vocab-size 50 --mle-epochs 1 --d-pretrain 1 --adv-epochs 1 --rollouts 2 "
                  "--eval-samples 128 --d-filter-scale 0.05 --eval-every 1 --log-every 1 --no-controls",
        "rlhf_ppo": f"--data {corpus} --vocab-size 300 --n-layer 1 --n-head 2 --n-embd 32 --block-size 80 "
                    "--prompt-len 24 --response-len 48 --pretrain-iters 5 --batch-size 8 --sft-epochs 1 "
                    "--rm-prompts 16 --k 3 --ppo-steps 2 --rollout-batch 8 --minibatch 4 --eval-prompts 8",
        "alphago_mcts": "--board-size 5 --expert-games 4 --expert-sims 16 --sl-epochs 1 --width 8 --layers 2 "
                        "--rl-iters 2 --rl-games 4 --value-games 16 --value-epochs 1 --sims 8 --leaf-batch 4 "
                        "--games 2 --opponents random,policy",
    }


def short(corpus: str) -> dict:
    """A short run of each script's real configuration (default sizes, a cut budget), for an accelerator."""
    return {
        "dqn": "",
        "reinforce": "",
        "actor_critic": "",
        "scst": "--xe-epochs 1 --scst-steps 100",
        "seqgan": "--mle-epochs 5 --d-pretrain 1 --adv-epochs 1 --eval-samples 2000 --no-controls",
        "rlhf_ppo": f"--data {corpus} --pretrain-iters 200 --rm-prompts 500 --ppo-steps 20" if corpus else
                    "--pretrain-iters 200 --rm-prompts 500 --ppo-steps 20",
        "alphago_mcts": "--board-size 7 --expert-games 40 --rl-iters 10 --value-games 256 --games 4 "
                        "--opponents random,policy",
    }


def write_tiny_data(folder: str) -> tuple:
    """A reversal 'dictionary' for scst and a small verse-like corpus for rlhf_ppo: nothing to download."""
    import random
    rng = random.Random(0)
    words = sorted({"".join(rng.choice("abcdefgh") for _ in range(rng.randint(2, 6))) for _ in range(1500)})
    data = os.path.join(folder, "rev.dict")
    with open(data, "w") as f:
        f.writelines(w.upper() + "  " + " ".join(c.upper() + "H" for c in reversed(w)) + "\n" for w in words)
    corpus = os.path.join(folder, "text.txt")
    happy, grim, plain = "love joy sweet good".split(), "death grief woe foul".split(), "the of my lord and to".split()
    with open(corpus, "w") as f:
        for i in range(400):
            line = rng.choices(plain, k=rng.randint(3, 6)) + rng.choices(happy if i % 3 else grim, k=2)
            f.write(" ".join(line).capitalize() + ".\n")
    return data, corpus


def gpu_memory_mib() -> int:
    """Memory in use on GPU 0 by every process, from nvidia-smi; 0 where there is none."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=5).stdout
        return int(out.strip().splitlines()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return 0


def run(script: str, flags: str, device: str, timeout: float) -> dict:
    """One run of a script; its summary line with the wall time, peak memory and whether it finished."""
    out = tempfile.mkdtemp()
    command = [sys.executable, os.path.join(ROOT, f"{script}.py"), "--device", device, *flags.split(), "--out", out]
    peak, done = [0], threading.Event()

    def watch():  # the GPU's memory in use, every 0.2 s, while the run lasts
        while not done.wait(0.2):
            peak[0] = max(peak[0], gpu_memory_mib())

    if device == "cuda":
        threading.Thread(target=watch, daemon=True).start()
    start = time.time()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        lines = proc.stdout.strip().splitlines()
        summary = json.loads(lines[-1]) if proc.returncode == 0 and lines else {}
        finished = "yes" if summary else f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    except subprocess.TimeoutExpired:
        summary, finished = {}, f"stopped after {timeout:.0f} s"
    done.set()
    return {**summary, "finished": finished, "wall": time.time() - start, "gpu_mib": peak[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="only the tiniest settings (the default without CUDA)")
    parser.add_argument("--only", default=",".join(HEADLINE), help="comma-separated scripts")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a run may take")
    opts = parser.parse_args()
    import torch
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    data, corpus = write_tiny_data(tempfile.mkdtemp())
    configs = [("tiny", tiny(data, corpus))]
    if cuda and not opts.tiny:
        configs.append(("short", {k: v + " --compile" for k, v in short(os.environ.get("DATA", "")).items()}))
    gpu = torch.cuda.get_device_name(0) if cuda else "none"
    print(f"device {device} ({gpu}), torch {torch.__version__}", flush=True)
    print("| script | setting | finished | throughput | peak GPU MiB | wall s | headline |")
    print("|---|---|---|---|---|---|---|")
    failed = 0
    for setting, flags in configs:
        for script in opts.only.split(","):
            r = run(script, flags[script], device, opts.timeout)
            speed = next((f"{r[k]} {k}" for k in THROUGHPUT if k in r), "")
            headline = f"{HEADLINE[script]} {r[HEADLINE[script]]}" if HEADLINE[script] in r else ""
            print(f"| {script} | {setting} | {r['finished']} | {speed} | {r['gpu_mib'] or ''} | {r['wall']:.1f} | "
                  f"{headline} |", flush=True)
            failed += r["finished"] != "yes"
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
