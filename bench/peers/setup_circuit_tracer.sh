#!/usr/bin/env bash
# Create bench/peers/.venv-circuit-tracer (git-ignored via `.venv-*/`) with circuit-tracer for
# bench/compare_circuit_tracer.py, which runs bench/peers/circuit_tracer_child.py in it.
# The CPU torch build (on this machine's disk) is installed FIRST and pinned again alongside
# circuit-tracer, so pip never swaps in a multi-GB CUDA build. circuit-tracer's TransformerLens
# backend subclasses HookedTransformer (removed in TransformerLens 4.0) and circuit-tracer 0.5.0 caps
# transformers at <=4.57.3, while TransformerLens >=3.3 needs transformers >=5 (3.9.0 needs >=5.9.0):
# 3.2.1 is the newest TransformerLens that satisfies both, so it is pinned. Idempotent: when the venv already holds the pinned versions it only checks them.
#
#   bash bench/peers/setup_circuit_tracer.sh
#   CT_VERSION=... TL_VERSION=... TORCH_VERSION=... override the pins.
set -euo pipefail
CT_VERSION="${CT_VERSION:-0.5.0}"
TL_VERSION="${TL_VERSION:-3.2.1}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-circuit-tracer"
py="$venv/bin/python"

check() {
    "$py" - "$CT_VERSION" "$TL_VERSION" "$TORCH_VERSION" <<'PY'
import sys
from importlib.metadata import version
import torch, transformer_lens, circuit_tracer  # noqa: F401
ct, tl = version("circuit-tracer"), version("transformer-lens")
ok = (ct, tl, torch.__version__.split("+")[0]) == tuple(sys.argv[1:4])
print(f"{sys.prefix}: circuit_tracer {ct}, transformer_lens {tl}, transformers {version('transformers')}, "
      f"torch {torch.__version__}" + ("" if ok else " (not the pinned versions)"))
sys.exit(0 if ok else 1)
PY
}

pip_install() {  # quiet, minus the warnings about this machine's absent local index folders
    "$py" -m pip install -q "$@" 2>&1 | { grep -v "is neither a file nor a directory" || true; }
}

if [ -x "$py" ] && check 2>/dev/null; then
    exit 0
fi
[ -x "$py" ] || python3 -m venv "$venv"
pip_install --upgrade pip
pip_install "torch==$TORCH_VERSION"
pip_install "circuit-tracer==$CT_VERSION" "transformer-lens==$TL_VERSION" "torch==$TORCH_VERSION"
check
