"""Shared test helpers: run a script of the repo as a user would, on the CPU, and read its summary line; check that
bad input stops it with a usage error."""
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_script(tmp_path):
    """run_script("dqn.py", "--total-steps", 500) -> (summary dict, or None without one; CompletedProcess).
    Runs in a fresh folder with --out inside it; asserts the exit code (0 unless `returncode` says). `launcher`:
    what runs the script (python, or torchrun)."""

    def run(script: str, *flags, returncode: int = 0, timeout: float = 300, launcher=(sys.executable,)):
        proc = subprocess.run([*launcher, str(ROOT / script), *map(str, flags)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == returncode, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        summary = json.loads(last) if last.startswith("{") else None
        return summary, proc

    return run


@pytest.fixture
def usage_error(tmp_path, monkeypatch, capsys):
    """usage_error("dqn.py", *flags) -> what it wrote on stderr. Runs the script's main(flags) in this process (a new
    interpreter would spend seconds importing torch), in tmp_path, and asserts that it stopped with argparse's exit
    status 2: an exception instead, a traceback on the command line, fails the test."""

    def run(script: str, *flags) -> str:
        monkeypatch.chdir(tmp_path)
        capsys.readouterr()
        with pytest.raises(SystemExit) as stop:
            importlib.import_module(script.removesuffix(".py")).main([str(f) for f in flags])
        assert stop.value.code == 2, stop.value.code
        return capsys.readouterr().err

    return run


@pytest.fixture
def resumes_exactly(tmp_path, run_script):
    """resumes_exactly("dqn.py", *flags, kills=4): runs the script once to the end (tmp_path/whole), and once killed
    `kills` times, each SIGKILL a random moment after it has written a new resume checkpoint, then rerun to the end
    (tmp_path/killed). Asserts that some rerun resumed and that both end with the same summary and metrics.jsonl,
    times and speeds aside."""

    def run(script: str, *flags, kills: int, seed: int = 0, timeout: float = 300, launcher=(sys.executable,)):
        whole, _ = run_script(script, *flags, "--out", tmp_path / "whole", launcher=launcher)
        rng, resumed, out = random.Random(seed), 0, tmp_path / "killed"
        command = [*launcher, str(ROOT / script), *map(str, flags), "--out", str(out)]
        for _ in range(kills):
            checkpoint = out / "resume.pt"
            before = checkpoint.stat().st_mtime_ns if checkpoint.exists() else 0
            proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            deadline = time.time() + timeout
            while proc.poll() is None and time.time() < deadline and \
                    (not checkpoint.exists() or checkpoint.stat().st_mtime_ns == before):
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            kill_with_children(proc)
            resumed += "resumed at" in proc.communicate()[0]
        proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stderr[-3000:]
        killed = json.loads(proc.stdout.strip().splitlines()[-1])
        assert resumed + ("resumed at" in proc.stdout) >= 1 and timeless(killed) == timeless(whole)
        assert records(out / "metrics.jsonl") == records(tmp_path / "whole" / "metrics.jsonl")

    return run


def kill_with_children(proc: subprocess.Popen):
    """SIGKILL a process and its children first: torchrun's workers, which it starts outside its process group."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # ended meanwhile
            continue
        if parent == proc.pid:
            os.kill(int(pid), signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)


def records(path: Path) -> list:
    """The records of a metrics.jsonl, times and speeds aside."""
    timeless = lambda k: k in ("time", "sps", "s") or k.endswith("_per_s") or k.endswith("_s")
    return [{k: v for k, v in json.loads(line).items() if not timeless(k)} for line in open(path)]


def timeless(summary: dict) -> dict:
    """A summary line without its times and speeds, which no two runs share."""
    return {k: v for k, v in summary.items() if not (k.endswith("_s") or k in ("sps", "tokens_per_s", "words_per_s"))}
