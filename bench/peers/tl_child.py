"""TransformerLens's run_with_cache on the built-in model, for `bench/bench_hooks.py --peer transformer_lens`.

    .venv-transformer_lens/bin/python bench/peers/tl_child.py <hf model folder> <batch> <seq> <rounds> [--no-parity]

Runs in TransformerLens's own virtualenv (made by bench/peers/transformer_lens.sh) and never imports mechscope.
The LAST stdout line is JSON: {"version": ..., "rows": {config: {"tokens_per_s": ..., "peak_mb": ...}}, ...}.

Model: TransformerLens 4.x removed HookedTransformer / HookedTransformerConfig; its one way to run a Hugging Face
checkpoint is TransformerBridge.boot_transformers, which accepts a local folder (no hub call; HF_HUB_OFFLINE is set
anyway). By default the bridge keeps the raw HF weights (no LayerNorm folding or weight centring, i.e. not
enable_compatibility_mode()), so it computes what the HF LlamaForCausalLM computes, with eager attention, which
TransformerLens forces so that it can hook attention scores and patterns. Unless --no-parity, the max abs logits
difference against HF's own forward on a prompt goes to stderr and into the JSON ("parity"), and above 1e-2 the run
fails. TL_MODEL=hooked instead builds the legacy HookedTransformer (TransformerLens < 4, e.g.
`TL_VERSION=3.9.0 bash bench/peers/transformer_lens.sh`) offline from a hand-made HookedTransformerConfig and TL's
convert_llama_weights, without folding or centring; its rows are labelled "<version> HookedTransformer".

Method, as in bench_hooks.py: the same random batch (torch.manual_seed(0), ids in [100, vocab-100)),
torch.set_num_threads(BENCH_THREADS, default 2), timing interleaved round-robin over <rounds> rounds under
torch.inference_mode() with the median per configuration; peak memory per configuration in a fresh subprocess of this
script: one warm-up call, then the growth of VmHWM above VmRSS after resetting the peak with /proc/self/clear_refs.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the folder is local; never ask the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from importlib.metadata import version  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

PROMPT = "The capital of France is Paris, and the capital of Germany is"


def load(model_dir: str):
    """The model as TransformerLens runs it: TL_MODEL=bridge (default) or hooked (legacy HookedTransformer, TL < 4)."""
    kind = os.environ.get("TL_MODEL", "bridge")
    if kind == "hooked":
        return load_hooked(model_dir)
    if kind != "bridge":
        raise SystemExit(f"TL_MODEL must be 'bridge' or 'hooked', not {kind!r}")
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(model_dir, device="cpu", dtype=torch.float32)
    bridge.eval()
    return bridge


def load_hooked(model_dir: str):
    """HookedTransformer (TransformerLens < 4 only) built offline: a hand-made HookedTransformerConfig for this Llama
    config, mirroring TL's own LlamaForCausalLM branch in loading_from_pretrained, and TL's convert_llama_weights;
    no LayerNorm folding or weight centring, so the math is HF's."""
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
        from transformer_lens.pretrained.weight_conversions.llama import convert_llama_weights
    except ImportError as e:
        raise SystemExit(f"TL_MODEL=hooked needs TransformerLens < 4 (HookedTransformer was removed in 4.0): {e}")
    from transformers import AutoConfig, AutoModelForCausalLM

    hc = AutoConfig.from_pretrained(model_dir)
    assert hc.architectures == ["LlamaForCausalLM"] and hc.tie_word_embeddings, hc.architectures
    rope = getattr(hc, "rope_parameters", None) or {"rope_theta": getattr(hc, "rope_theta", 10000.0)}
    assert rope.get("rope_type", "default") == "default", rope
    d_head = getattr(hc, "head_dim", None) or hc.hidden_size // hc.num_attention_heads
    cfg = HookedTransformerConfig(
        d_model=hc.hidden_size, d_head=d_head, n_heads=hc.num_attention_heads, d_mlp=hc.intermediate_size,
        n_layers=hc.num_hidden_layers, n_ctx=hc.max_position_embeddings, eps=hc.rms_norm_eps, d_vocab=hc.vocab_size,
        act_fn=hc.hidden_act, normalization_type="RMS", positional_embedding_type="rotary",
        rotary_adjacent_pairs=False, rotary_dim=d_head, rotary_base=rope["rope_theta"], final_rms=True,
        gated_mlp=True, original_architecture="LlamaForCausalLM", tokenizer_prepends_bos=False,
        n_key_value_heads=hc.num_key_value_heads if hc.num_key_value_heads != hc.num_attention_heads else None,
        dtype=torch.float32, device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = HookedTransformer(cfg, move_to_device=False)
    model.load_and_process_state_dict(convert_llama_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    del hf
    model.eval()
    return model


def batch_ids(model, batch: int, seq: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.randint(100, model.cfg.d_vocab - 100, (batch, seq))


HF_BASELINE = "plain HF forward (same process)"


def load_hf(model_dir: str):
    """HF's own model with its default attention, the baseline the peer's rows are divided by (timed interleaved
    with them, so a load change on the machine hits both alike)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def configs(model, ids: torch.Tensor, hf=None):
    n = model.cfg.n_layers
    resid = lambda name: name.endswith("hook_resid_post")  # noqa: E731
    base = {HF_BASELINE: lambda: hf(input_ids=ids, use_cache=False)} if hf is not None else {}
    return {
        **base,
        "forward (no cache)": lambda: model(ids),
        f"run_with_cache: all {n} resid_post": lambda: model.run_with_cache(ids, names_filter=resid),
        "run_with_cache: every hook point": lambda: model.run_with_cache(ids),
        "run_with_cache: blocks.5.resid_post (stop_at_layer=6)": lambda: model.run_with_cache(
            ids, names_filter="blocks.5.hook_resid_post", stop_at_layer=6),
    }


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_child(model_dir: str, name: str, batch: int, seq: int) -> None:
    if name == HF_BASELINE:
        hf = load_hf(model_dir)
        torch.manual_seed(0)
        ids = torch.randint(100, hf.config.vocab_size - 100, (batch, seq))
        fn = lambda: hf(input_ids=ids, use_cache=False)  # noqa: E731
    else:
        model = load(model_dir)
        fn = configs(model, batch_ids(model, batch, seq))[name]
    with torch.inference_mode():
        fn()  # allocator warm-up, then measure growth above the settled baseline
        base = rss_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM (peak RSS) to the current RSS
        out = fn()
        del out
    print(json.dumps({"peak_mb": (rss_kb("VmHWM") - base) / 1024}))


def parity(model, model_dir: str) -> dict[str, float]:
    """Max abs logits difference, TransformerLens vs HF LlamaForCausalLM (eager and default sdpa attention), on PROMPT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(model_dir)(PROMPT, return_tensors="pt").input_ids
    out = {}
    with torch.inference_mode():
        tl = model(ids)
        for impl in ("eager", "sdpa"):
            hf = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=impl, dtype=torch.float32).eval()
            out[f"max_abs_logit_diff_vs_hf_{impl}"] = (tl - hf(input_ids=ids, use_cache=False).logits).abs().max().item()
            del hf
    out["n_prompt_tokens"] = ids.shape[1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("batch", type=int)
    p.add_argument("seq", type=int)
    p.add_argument("rounds", type=int)
    p.add_argument("--no-parity", dest="parity", action="store_false",
                   help="skip the logits check against HF's own forward (on by default; fails above 1e-2)")
    p.add_argument("--peak", help=argparse.SUPPRESS)  # internal: peak memory of one configuration
    args = p.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    if args.peak:
        return peak_child(args.model_dir, args.peak, args.batch, args.seq)

    model = load(args.model_dir)
    hf = load_hf(args.model_dir)
    fns = configs(model, batch_ids(model, args.batch, args.seq), hf)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn()
        for _ in range(args.rounds):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    hooked = os.environ.get("TL_MODEL", "bridge") == "hooked"
    result: dict = {"version": version("transformer-lens") + (" HookedTransformer" if hooked else ""),
                    "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "model": "HookedTransformer, hand-made config + convert_llama_weights, no folding" if hooked
                    else "TransformerBridge.boot_transformers(folder), raw HF weights"}
    if args.parity:
        result["parity"] = parity(model, args.model_dir)
        print(f"logits parity vs HF: {result['parity']}", file=sys.stderr)
        if max(v for k, v in result["parity"].items() if k.startswith("max_abs")) > 1e-2:
            raise SystemExit(f"TransformerLens does not compute what HF computes: {result['parity']}")
    del model, hf, fns

    n_tokens = args.batch * args.seq
    rows = {}
    for name in times:
        mem = subprocess.run([sys.executable, __file__, args.model_dir, str(args.batch), str(args.seq), "0",
                              "--peak", name], capture_output=True, text=True)
        if mem.returncode != 0:
            raise SystemExit(f"peak-memory child for {name!r} failed:\n{mem.stderr[-3000:]}")
        rows[name] = {"tokens_per_s": n_tokens / statistics.median(times[name]),
                      "peak_mb": json.loads(mem.stdout.splitlines()[-1])["peak_mb"]}
    result["rows"] = rows
    print(json.dumps(result))


if __name__ == "__main__":
    main()
