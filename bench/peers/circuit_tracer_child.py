"""circuit-tracer side of bench/compare_circuit_tracer.py; runs in bench/peers/.venv-circuit-tracer.

Loads a Llama-family HF model folder (config.json + model.safetensors + tokenizer.json) into circuit-tracer's
TransformerLens backend *offline*: the HookedTransformerConfig is built here from config.json (TransformerLens'
own loader wants the hub for the config), the weights are read from the folder into a transformers
LlamaForCausalLM and converted with TransformerLens' ``convert_llama_weights``, with no weight processing
(circuit-tracer's ``from_pretrained`` also passes fold_ln / center_writing_weights / center_unembed = False).
Transcoders come from a circuit-tracer transcoder-set folder (config.yaml + layer_i.safetensors), read with
circuit-tracer's own ``load_transcoder_set``.

    python circuit_tracer_child.py REQUEST.json

The request names the model folder, transcoder folder, prompt token ids, attribution settings, how many timed runs
and an output folder; the graph goes to OUT/graph.safetensors and the timings/metadata to OUT/meta.json
(no pickle either way).
"""

from __future__ import annotations

import json
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file


def hooked_config(cfg: dict, n_ctx: int):
    from transformer_lens import HookedTransformerConfig

    rope = cfg.get("rope_parameters") or {}
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    if rope.get("rope_type", "default") != "default" or cfg.get("rope_scaling"):
        raise SystemExit("only plain RoPE (rope_type default) is mapped here")
    n_heads = cfg["num_attention_heads"]
    d_head = cfg.get("head_dim") or cfg["hidden_size"] // n_heads
    n_kv = cfg.get("num_key_value_heads", n_heads)
    return HookedTransformerConfig(
        d_model=cfg["hidden_size"], d_head=d_head, n_heads=n_heads, d_mlp=cfg["intermediate_size"],
        n_layers=cfg["num_hidden_layers"], n_ctx=n_ctx, eps=cfg["rms_norm_eps"], d_vocab=cfg["vocab_size"],
        act_fn=cfg["hidden_act"], n_key_value_heads=n_kv if n_kv != n_heads else None,
        normalization_type="RMS", positional_embedding_type="rotary", rotary_adjacent_pairs=False,
        rotary_dim=d_head, rotary_base=theta, final_rms=True, gated_mlp=True,
        original_architecture="LlamaForCausalLM", model_name=cfg.get("_name_or_path") or "llama-local",
        default_prepend_bos=False, dtype=torch.float32, device="cpu")


def hf_llama(folder: Path, cfg: dict):
    """A transformers-4.x LlamaForCausalLM with the folder's weights (config mapped explicitly: the folder may
    have been written by transformers 5, whose rope_parameters 4.x does not read)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = cfg.get("rope_parameters") or {}
    hc = LlamaConfig(hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
                     num_hidden_layers=cfg["num_hidden_layers"], num_attention_heads=cfg["num_attention_heads"],
                     num_key_value_heads=cfg.get("num_key_value_heads"), head_dim=cfg.get("head_dim"),
                     vocab_size=cfg["vocab_size"], max_position_embeddings=cfg["max_position_embeddings"],
                     rms_norm_eps=cfg["rms_norm_eps"], rope_theta=rope.get("rope_theta", cfg.get("rope_theta", 1e4)),
                     tie_word_embeddings=cfg.get("tie_word_embeddings", False), hidden_act=cfg["hidden_act"],
                     attention_bias=cfg.get("attention_bias", False), mlp_bias=cfg.get("mlp_bias", False))
    model = LlamaForCausalLM(hc)
    sd = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and hc.tie_word_embeddings)]
    if missing or unexpected:
        raise SystemExit(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    if hc.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


def reset_peak_rss() -> bool:
    """Reset this process's peak resident set (Linux: writing 5 to /proc/self/clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb(field: str = "VmHWM") -> float | None:
    """VmHWM, the peak resident set since the last reset (or VmRSS, the current one), in MiB (None off Linux)."""
    try:
        m = re.search(field + r":\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def main() -> None:
    req = json.loads(Path(sys.argv[1]).read_text())
    torch.set_num_threads(req.get("threads", torch.get_num_threads()))
    from transformer_lens.pretrained.weight_conversions import convert_llama_weights
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from circuit_tracer import attribute
    from circuit_tracer.graph import compute_graph_scores
    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import load_transcoder_set

    t0 = time.perf_counter()
    folder = Path(req["model_dir"])
    cfg = json.loads((folder / "config.json").read_text())
    # TransformerLens re-opens the tokenizer by name_or_path (for a BOS-adding copy), and a tokenizer_config.json
    # written by transformers 5 names a class 4.x lacks: re-save tokenizer.json as a 4.x folder and open that.
    tok_dir = Path(req["out"]) / "tokenizer-4x"
    PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                            **req["special_tokens"]).save_pretrained(str(tok_dir))
    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    hc = hooked_config(cfg, n_ctx=req.get("n_ctx", 256))
    hf = hf_llama(folder, cfg)
    model = TransformerLensReplacementModel(hc, tokenizer=tok)
    model.load_and_process_state_dict(convert_llama_weights(hf, hc), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False, refactor_factored_attn_matrices=False)
    tc_dir = Path(req["transcoders"])
    tc_cfg = yaml.safe_load((tc_dir / "config.yaml").read_text())
    n_tc = len(list(tc_dir.glob("layer_*.safetensors")))
    transcoders = load_transcoder_set({i: str(tc_dir / f"layer_{i}.safetensors") for i in range(n_tc)},
                                      scan="local", feature_input_hook=tc_cfg["feature_input_hook"],
                                      feature_output_hook=tc_cfg["feature_output_hook"], device=torch.device("cpu"),
                                      dtype=torch.float32)
    model._configure_replacement_model(transcoders)
    load_s = time.perf_counter() - t0

    tokens = torch.tensor(req["tokens"], dtype=torch.long)
    with torch.no_grad():
        hf_logits = hf(tokens[None]).logits[0, -1]
        tl_logits = model(tokens[None])[0, -1]
    kw = dict(max_n_logits=req["max_n_logits"], desired_logit_prob=req["desired_logit_prob"],
              batch_size=req["batch_size"], max_feature_nodes=req.get("max_feature_nodes"))
    times, peaks, before = [], [], []
    graph = None
    for _ in range(req.get("warmup", 0) + req.get("runs", 1)):
        graph = None  # the previous graph's memory is not this run's
        reset = reset_peak_rss()
        before.append(peak_rss_mb("VmRSS"))
        t = time.perf_counter()
        graph = attribute(tokens, model, **kw)
        times.append(time.perf_counter() - t)
        peaks.append(peak_rss_mb() if reset else None)
    times = times[req.get("warmup", 0):]
    assert graph is not None
    out = Path(req["out"])
    out.mkdir(parents=True, exist_ok=True)
    sel = graph.selected_features
    save_file({
        "adjacency": graph.adjacency_matrix.float().contiguous(),
        "active_features": graph.active_features.long().contiguous(),  # (n_active, 3): layer, pos, index
        "activation_values": graph.activation_values.float().contiguous(),
        "selected_features": sel.long().contiguous(),
        "logit_tokens": torch.tensor([t.vocab_idx for t in graph.logit_targets], dtype=torch.long),
        "logit_probs": graph.logit_probabilities.float().contiguous(),
        "input_tokens": graph.input_tokens.long().contiguous(),
        "tl_logits_last": tl_logits.float().contiguous(),
        "hf_logits_last": hf_logits.float().contiguous(),
    }, str(out / "graph.safetensors"))
    (out / "meta.json").write_text(json.dumps({
        "versions": {p: version(p) for p in ("circuit-tracer", "transformer-lens", "transformers", "torch")},
        "load_s": load_s, "attribute_s": times, "threads": torch.get_num_threads(),
        "peak_rss_mb": peaks[req.get("warmup", 0):], "rss_before_mb": before[req.get("warmup", 0):],
        "n_active": int(graph.active_features.shape[0]), "n_selected": int(sel.shape[0]),
        "graph_scores": list(compute_graph_scores(graph)),  # (replacement, completeness) of the unpruned graph
    }, indent=1))


if __name__ == "__main__":
    main()
