"""Size of resume.pt and the time to write it, for each script with its default flags (alphago_mcts: 10 expert
games, so that its first checkpoint comes after one game instead of 40). Each run is started, killed once its first
resume.pt is written, and that file is saved again five times to time torch.save (median).
Usage: python benchmarks/checkpoint_sizes.py [script ...]   (DATA=tinyshakespeare.txt for rlhf_ppo offline)"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = {  # an early first checkpoint; the architecture and data stay the defaults
    "dqn": ["--checkpoint-every", "8"],
    "reinforce": ["--checkpoint-every", "1"],
    "actor_critic": ["--checkpoint-every", "256"],
    "scst": ["--checkpoint-every", "1", "--xe-epochs", "0"],
    "seqgan": [],
    "rlhf_ppo": ["--checkpoint-every", "1"] + (["--data", os.environ["DATA"]] if "DATA" in os.environ else []),
    "alphago_mcts": ["--expert-games", "10"],
}

for name in sys.argv[1:] or FLAGS:
    out = tempfile.mkdtemp()
    path, t0 = os.path.join(out, "resume.pt"), time.time()
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, f"{name}.py"), "--device", "cpu", *FLAGS[name],
                             "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and not os.path.exists(path):
        time.sleep(0.05)
    time.sleep(1.0)  # os.replace put it in place whole; the script may be writing the next one
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoint = torch.load(path, weights_only=True)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        torch.save(checkpoint, path + ".tmp")
        os.replace(path + ".tmp", path)
        times.append(time.perf_counter() - start)
    print(f"{name}: resume.pt {os.path.getsize(path) / 2**20:.1f} MiB, torch.save {statistics.median(times):.3f} s, "
          f"first checkpoint after {time.time() - t0:.0f} s", flush=True)
    shutil.rmtree(out)
