#!/usr/bin/env bash
# Create /work/main/.venv-transformer_lens (git-ignored via `.venv-*/`) with TransformerLens for
# `bench/bench_hooks.py --peer transformer_lens`, which runs bench/peers/tl_child.py in it.
# The CPU torch build (on this machine's disk) is installed FIRST and pinned again alongside
# transformer-lens, so pip never swaps in a multi-GB CUDA build. Idempotent: when the venv already
# holds the pinned versions it only checks them.
#
#   bash bench/peers/transformer_lens.sh                  # TransformerLens 4.3.0 (TransformerBridge)
#   TL_MODEL=hooked bash bench/peers/transformer_lens.sh  # 3.9.0, the last line with HookedTransformer
#   TL_VERSION=... TORCH_VERSION=... override the pins.
set -euo pipefail
if [ "${TL_MODEL:-bridge}" = hooked ]; then
    TL_VERSION="${TL_VERSION:-3.9.0}"  # HookedTransformer was removed in 4.0
else
    TL_VERSION="${TL_VERSION:-4.3.0}"
fi
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.venv-transformer_lens"
py="$venv/bin/python"

check() {
    "$py" - "$TL_VERSION" "$TORCH_VERSION" <<'EOF'
import sys
from importlib.metadata import version
import torch, transformer_lens  # noqa: F401
tl, want_tl, want_torch = version("transformer-lens"), sys.argv[1], sys.argv[2]
ok = tl == want_tl and torch.__version__.split("+")[0] == want_torch
print(f"{sys.prefix}: transformer_lens {tl}, torch {torch.__version__}" + ("" if ok else " (not the pinned versions)"))
sys.exit(0 if ok else 1)
EOF
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
pip_install "transformer-lens==$TL_VERSION" "torch==$TORCH_VERSION"
check
