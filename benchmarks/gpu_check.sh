#!/usr/bin/env bash
# Every script on this machine's GPU (tiny and short real settings, --compile), one table; CPU: tiny settings only.
set -euo pipefail
cd "$(dirname "$0")/.."
python benchmarks/gpu_check.py "$@"
