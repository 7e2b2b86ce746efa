"""Run a DQN training command and time it from launch: the whole run, and the moment the mean of the last 10
training-episode returns first reaches a threshold (475 on CartPole-v1). Works on our dqn.py (episodes read from
its metrics.jsonl, which stamps each with time.time()) and on CleanRL's dqn.py (episodes read from its stdout
lines `global_step=..., episodic_return=...`, stamped here as they arrive; run it with PYTHONUNBUFFERED=1).

  python benchmarks/timed_run.py --metrics runs/s1/metrics.jsonl -- python dqn.py --seed 1 --out runs/s1
  python benchmarks/timed_run.py --log cleanrl-s1.log -- python cleanrl/dqn.py --seed 1

Prints one JSON line: wall_s, solved_s, solved_step, episodes, last10_final, and the command's own summary line."""
import argparse
import json
import re
import subprocess
import sys
import time

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--metrics", help="our metrics.jsonl; without it, episodes are parsed from the command's stdout")
p.add_argument("--log", help="write the command's stdout here, each line prefixed with its arrival time")
p.add_argument("--threshold", type=float, default=475.0)
p.add_argument("cmd", nargs=argparse.REMAINDER)
args = p.parse_args()
cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd

launch = time.time()
proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
lines = [(time.time(), line.rstrip("\n")) for line in proc.stdout]
proc.wait()
wall = time.time() - launch
if args.log:
    with open(args.log, "w") as f:
        f.writelines(f"{t:.3f} {line}\n" for t, line in lines)
if proc.returncode:
    sys.exit(f"command failed with exit {proc.returncode}")

if args.metrics:  # ours: (step, return, time) per finished training episode
    records = [json.loads(line) for line in open(args.metrics)]
    episodes = [(r["step"], r["episode_return"], r["time"]) for r in records if "episode_return" in r]
else:  # CleanRL: global_step=1234, episodic_return=[56.]
    pattern = re.compile(r"global_step=(\d+), episodic_return=\[?([-\d.e+]+)")
    episodes = [(int(m[1]), float(m[2]), t) for t, line in lines if (m := pattern.search(line))]

solved = next((episodes[i] for i in range(9, len(episodes))
               if sum(e[1] for e in episodes[i - 9:i + 1]) / 10 >= args.threshold), None)
summary = next((json.loads(line) for _, line in reversed(lines) if line.startswith("{")), None)
print(json.dumps({"wall_s": round(wall, 2), "solved_s": solved and round(solved[2] - launch, 2),
                  "solved_step": solved and solved[0], "episodes": len(episodes),
                  "last10_final": round(sum(e[1] for e in episodes[-10:]) / 10, 1) if episodes else None,
                  "summary": summary}))
