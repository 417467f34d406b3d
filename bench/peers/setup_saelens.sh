#!/usr/bin/env bash
# Create bench/peers/.venv-saelens with SAELens for bench/bench_training.py (kept out of git via `.venv-*/`).
# The CPU torch build is pinned first so pip does not pull a multi-GB CUDA build.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-saelens"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch==2.13.0
"$venv/bin/pip" install -q sae-lens "torch==2.13.0"
"$venv/bin/python" -c "import sae_lens, torch; print('sae_lens', sae_lens.__version__, 'torch', torch.__version__)"
