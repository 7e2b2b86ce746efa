"""Shared test helper: run a script of the repo as a user would, on the CPU, and read its summary line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def run_script(tmp_path):
    """run_script("dqn.py", "--total-steps", 500) -> (summary dict, or None without one; CompletedProcess).
    Runs in a fresh folder with --out inside it; asserts the exit code (0 unless `returncode` says)."""

    def run(script: str, *flags, returncode: int = 0, timeout: float = 300):
        proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, flags)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == returncode, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        summary = json.loads(last) if last.startswith("{") else None
        return summary, proc

    return run
