"""Tokens per second of rlhf_ppo.py's PPO stage (rollout and update) and of scst.py's two stages (cross-entropy
tokens, SCST words), the scripts of this folder against other copies of them (--other, a folder holding its own
rlhf_ppo.py and scst.py: a change under review, a fork), on one short configuration at the default model sizes. The
two take turns, round after round; the medians and the ratio this/other of each round are printed, and the lines go
to --results when given.

    head -c 250000 tinyshakespeare.txt > ts.txt
    python benchmarks/decode_speed.py --data ts.txt --other DIR [--rounds 3] [--scripts rlhf_ppo,scst]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
RLHF = ("--pretrain-iters 20 --sft-epochs 1 --rm-prompts 100 --ppo-steps 8 --log-every 4 --eval-prompts 64 "
        "--checkpoint-every 100000")
SCST = ("--max-train 4000 --test-words 300 --dev-words 200 --xe-epochs 1 --scst-steps 30 --log-every 10 "
        "--eval-every 1000 --beam-size 2")
SPEEDS = {"rlhf_ppo": ("tokens_per_s",), "scst": ("tokens_per_s", "words_per_s")}  # summary keys, per script


def summary(script_dir: str, script: str, flags: str, out: str) -> dict:
    cmd = [sys.executable, os.path.join(script_dir, f"{script}.py"), *flags.split(), "--out", out]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="text for rlhf_ppo.py (e.g. tinyshakespeare.txt)")
    parser.add_argument("--other", required=True, help="a folder with the other rlhf_ppo.py and scst.py")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scripts", default="rlhf_ppo,scst", help="which of the two to time")
    parser.add_argument("--results", help="also write the table here")
    flags = parser.parse_args()
    scripts = {script: SPEEDS[script] for script in flags.scripts.split(",")}
    work = tempfile.mkdtemp()
    config = {"rlhf_ppo": f"{RLHF} --data {os.path.abspath(flags.data)}", "scst": SCST}
    speeds = {}  # (script, key, version) -> one figure per round
    for round_ in range(flags.rounds):
        for script in scripts:
            for version, script_dir in (("other", os.path.abspath(flags.other)), ("this", ROOT)):
                out = os.path.join(work, f"{script}-{version}-{round_}")
                line = summary(script_dir, script, f"{config[script]} --device {flags.device}", out)
                for key in scripts[script]:
                    speeds.setdefault((script, key, version), []).append(line[key])
                print(f"round {round_ + 1} {script} {version}: " +
                      ", ".join(f"{key} {line[key]}" for key in scripts[script]), flush=True)
    lines = [f"device {flags.device}, one thread, median of {flags.rounds} rounds, other = {flags.other}, rlhf_ppo "
             f"on {os.path.getsize(flags.data):,} bytes of {os.path.basename(flags.data)}",
             "| script | speed | other | this | this / other (each round) |", "|---|---|---:|---:|---|"]
    for script, keys in scripts.items():
        for key in keys:
            other, this = speeds[script, key, "other"], speeds[script, key, "this"]
            ratios = " ".join(f"{n / b:.2f}" for b, n in zip(other, this))
            lines.append(f"| {script} | {key} | {statistics.median(other):.0f} | {statistics.median(this):.0f} | "
                         f"{ratios} |")
    print("\n".join(lines))
    if flags.results:
        with open(flags.results, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
