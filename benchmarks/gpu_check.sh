#!/usr/bin/env bash
# GPU readiness check: benchmarks/gpu_check.sh [--official PATH] [--out FILE.json] [--dry-run]
# Writes one JSON (see benchmarks/gpu_check.py for the steps). --dry-run: CPU, tiny sizes, no CUDA needed.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${PYTHON:-python}" "$here/gpu_check.py" "$@"
