#!/usr/bin/env bash
# Gather the wheels the GPU image lacks into .whl/; benchmarks/gpu/wheelhouse.py holds the logic and the options.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
command -v "$python" >/dev/null || python=python3
exec "$python" "$repo/benchmarks/gpu/wheelhouse.py" "$@"
