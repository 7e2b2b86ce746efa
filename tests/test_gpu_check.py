"""benchmarks/gpu_check.py, the one command that measures every script on a GPU, runs here at its tiniest settings
on the CPU, so that it is never broken when a GPU is at hand."""
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow
def test_gpu_check_runs_every_script_and_prints_its_table():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--tiny"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    rows = [line.split(" | ") for line in proc.stdout.splitlines() if line.startswith("| ") and "tiny" in line]
    assert [r[0].strip("| ") for r in rows] == ["dqn", "reinforce", "actor_critic", "scst", "seqgan", "rlhf_ppo",
                                                "alphago_mcts"]
    assert all(r[2] == "yes" for r in rows)
