#!/usr/bin/env bash
# Every script on this machine's GPU (tiny and short real settings, --compile), one table; CPU: tiny settings only.
# On a GPU machine that reaches no package index: WHEELS=folder of the wheels its Python lacks (made elsewhere by
# benchmarks/gpu_wheels.sh), installed first, and DATA=tinyshakespeare.txt for rlhf_ppo's short run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/gpu_check_site "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/gpu_check_site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 benchmarks/gpu_check.py "$@"
