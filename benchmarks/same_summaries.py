"""Does a change keep behaviour? Runs every script's tiniest configuration (gpu_check.py's) on the CPU, once from
this working tree and once from a git revision (default HEAD), with the same seed, and compares the summary lines
apart from times and speeds. Prints one line per script: "same", or each key whose value differs.
Usage: python benchmarks/same_summaries.py [REV] [--only dqn,scst]      exit status 1 when a summary differs"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpu_check import HEADLINE, ROOT, tiny, write_tiny_data  # noqa: E402


def timeless(summary: dict) -> dict:
    """The summary without what depends on the machine's speed: wall times and throughputs."""
    return {k: v for k, v in summary.items() if not (k.endswith("_s") or k == "sps" or k.startswith("time"))}


def summary_of(tree: str, script: str, flags: str) -> dict:
    out = tempfile.mkdtemp()
    command = [sys.executable, os.path.join(tree, f"{script}.py"), "--device", "cpu", *flags.split(), "--out", out]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=tree)
    if proc.returncode:
        return {"failed": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"}
    return timeless(json.loads(proc.stdout.strip().splitlines()[-1]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev", nargs="?", default="HEAD", help="the git revision to compare with")
    parser.add_argument("--only", default=",".join(HEADLINE), help="comma-separated scripts")
    opts = parser.parse_args()
    data, corpus = write_tiny_data(tempfile.mkdtemp())
    flags = tiny(data, corpus)
    before = os.path.join(tempfile.mkdtemp(), "tree")
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "--quiet", before, opts.rev], check=True)
    differ = 0
    try:
        for script in opts.only.split(","):
            old, new = summary_of(before, script, flags[script]), summary_of(ROOT, script, flags[script])
            keys = [k for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]
            said = "; ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in keys)
            print(f"{script:13s} {said or 'same'}", flush=True)
            differ += bool(keys)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before], check=True)
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
