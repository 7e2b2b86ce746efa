"""Run a training command and time it from launch: the whole run, and the moment a "solved" criterion on the
training-episode returns is first met (default: the mean of the last 10 returns reaches 475, CartPole-v1;
--criterion ema: pytorch/examples' running reward, r <- 0.05 * return + 0.95 * r from r = 10, exceeds 475).
Episodes come from our scripts' metrics.jsonl (each stamped with time.time()), from CleanRL's stdout lines
`global_step=..., episodic_return=...`, or from pytorch/examples' `Episode N ... Last reward: R` lines (every 10th
episode only: there the criterion is their own `Solved!` line), stamped as they arrive (run with PYTHONUNBUFFERED=1).

  python benchmarks/timed_run.py --metrics runs/s1/metrics.jsonl -- python dqn.py --seed 1 --out runs/s1
  python benchmarks/timed_run.py --log cleanrl-s1.log -- python cleanrl/dqn.py --seed 1
  python benchmarks/timed_run.py --criterion ema -- python examples/reinforcement_learning/reinforce.py --seed 1

Prints one JSON line: wall_s, solved_s, solved_step, solved_episode, episodes, last10_final, and the command's own
summary line."""
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
p.add_argument("--criterion", choices=["last10", "ema"], default="last10")
p.add_argument("--curve", help="also write the criterion's statistic after each training episode as CSV (seconds "
               "from launch, env step, episode, value), at most 200 rows, for benchmarks/plot.py")
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


def solved_index():
    """Index of the first episode at which the criterion holds, or None."""
    running = 10.0
    for i, (_, ret, _) in enumerate(episodes):
        running = 0.05 * ret + 0.95 * running
        if args.criterion == "ema" and running > args.threshold:
            return i
        if args.criterion == "last10" and i >= 9 and sum(e[1] for e in episodes[i - 9:i + 1]) / 10 >= args.threshold:
            return i
    return None


examples = [(int(m[1]), t) for t, line in lines if (m := re.match(r"Episode (\d+)\s", line))]
solved_line = next((t for t, line in lines if line.startswith("Solved!")), None)
if not args.metrics and not episodes and solved_line:  # pytorch/examples: their own Solved! line is the criterion
    solved, solved_episode = (None, None, solved_line), examples[-1][0] if examples else None
else:
    i = solved_index()
    solved, solved_episode = (episodes[i], i + 1) if i is not None else (None, None)
summary = next((json.loads(line) for _, line in reversed(lines) if line.startswith("{")), None)
if args.curve:
    rows, running = [], 10.0
    for i, (step, ret, t) in enumerate(episodes):
        running = 0.05 * ret + 0.95 * running
        last10 = [e[1] for e in episodes[max(0, i - 9):i + 1]]
        value = running if args.criterion == "ema" else sum(last10) / len(last10)
        rows.append((t - launch, step, i + 1, value))
    pattern = re.compile(r"Episode (\d+)\s+Last reward: [-\d.]+\s+Average reward: ([-\d.]+)")  # pytorch/examples
    rows += [(t - launch, "", int(m[1]), float(m[2])) for t, line in lines if (m := pattern.match(line))]
    every = max(1, len(rows) // 200)
    with open(args.curve, "w") as f:
        f.write("seconds,step,episode,value\n")
        f.writelines(f"{t:.2f},{step},{episode},{value:.1f}\n" for t, step, episode, value in
                     rows[::every] + ([rows[-1]] if rows and (len(rows) - 1) % every else []))
print(json.dumps({"wall_s": round(wall, 2), "solved_s": solved and round(solved[2] - launch, 2),
                  "solved_step": solved and solved[0], "solved_episode": solved_episode, "episodes": len(episodes),
                  "last10_final": round(sum(e[1] for e in episodes[-10:]) / 10, 1) if episodes else None,
                  "summary": summary}))
