"""mechscope's attribution graphs side by side with circuit-tracer's, same model, transcoders, prompt and settings.

circuit-tracer runs in its own virtualenv (``bash bench/peers/setup_circuit_tracer.sh``) through
``bench/peers/circuit_tracer_child.py``; the two exchange JSON requests and safetensors graphs, never pickle.

    python bench/compare_circuit_tracer.py --model tiny          # random Llama-family model built here
    python bench/compare_circuit_tracer.py --model smollm2-135m  # the built-in, with bench transcoders

``--model tiny`` builds a 4-layer random Llama (d_model 64, GQA, byte tokenizer) and random ReLU transcoders at
every layer whose biases are set so roughly ``--density`` of the features fire per position. ``--model
smollm2-135m`` uses the cached built-in weights and the transcoders fitted by bench/fit_circuit_transcoders.py at
every 4th layer; the other layers get inert transcoders (no feature ever fires: the whole MLP is an error node,
which is what mechscope does for a layer without a transcoder; circuit-tracer needs one per layer).

Nodes are matched by key, not by index: features by (layer, pos, index), errors by (layer, pos), tokens by pos,
logits by token id; then every adjacency entry of the matched square is compared, and the replacement and
completeness scores of both graphs (``compare_scores``). Timings alternate between the
two libraries (one circuit-tracer process with ``--warmup`` untimed runs then a timed one, then one mechscope run,
``--rounds`` times, after ``--warmup`` untimed mechscope runs), each
timed inside its process around the attribution call alone, at the same thread count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent
PEER_PY = ROOT / "peers" / ".venv-circuit-tracer" / "bin" / "python"
CHILD = ROOT / "peers" / "circuit_tracer_child.py"
log = logging.getLogger("compare_circuit_tracer")


# ---------------------------------------------------------------------------------------------- inputs
def byte_tokenizer():
    """256 byte tokens then <bos> <eos> <pad> <unk> (as tests/tiny.py)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    for t in ("<bos>", "<eos>", "<pad>", "<unk>"):
        vocab[t] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>")


def build_tiny(folder: Path, seed: int) -> Path:
    import transformers

    if (folder / "model.safetensors").is_file():
        return folder
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
                                   num_key_value_heads=2, vocab_size=260, max_position_embeddings=128,
                                   tie_word_embeddings=False, bos_token_id=256, eos_token_id=257, pad_token_id=258)
    model = transformers.LlamaForCausalLM(cfg)
    with torch.no_grad():  # random init leaves norms at 1 and is near-uniform; perturb everything
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        model.lm_head.weight.mul_(6)  # a peakier next-token distribution, so logit selection is non-trivial
    model.save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def mlp_inputs(model, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    names = [f"blocks.{l}.{k}" for l in range(model.cfg.n_layers) for k in ("mlp_in", "mlp_out")]
    _, cache = model.run_with_cache(tokens, names=names)
    return {l: (cache[f"blocks.{l}.mlp_in"][0], cache[f"blocks.{l}.mlp_out"][0]) for l in range(model.cfg.n_layers)}


def random_transcoders(model, tokens: torch.Tensor, d_sae: int, density: float, seed: int):
    """ReLU transcoders with random unit encoder rows; each feature's bias puts its threshold at the
    (1 - density) quantile of its pre-activations over the prompt's positions 1.. (position 0 is BOS)."""
    from mechscope.dictionaries import create_mlp_transcoder

    g = torch.Generator().manual_seed(seed)
    acts = mlp_inputs(model, tokens)
    D = model.cfg.d_model
    out = []
    for l in range(model.cfg.n_layers):
        x, y = acts[l]
        tc = create_mlp_transcoder(l, d_model=D, d_sae=d_sae)
        with torch.no_grad():
            W = torch.randn(D, d_sae, generator=g)
            W /= W.norm(dim=0, keepdim=True)
            W *= 1.0 / x[1:].norm(dim=-1).mean()
            pre = x[1:] @ W
            tc.W_enc.copy_(W)
            tc.b_enc.copy_(-torch.quantile(pre, 1 - density, dim=0) + 1e-4)
            tc.W_dec.copy_(torch.randn(d_sae, D, generator=g) * y.norm(dim=-1).mean() / (D ** 0.5 * 4))
            tc.b_dec.copy_(y[1:].mean(0))
        out.append(tc)
    return out


def smollm_transcoders(model):
    """The bench's fitted transcoders at every 4th layer, inert ones elsewhere (b_enc -1e4, zero decoder)."""
    from mechscope.dictionaries import create_mlp_transcoder, load

    fitted_dir = Path("~/.cache/mechscope/bench/smollm2-tc").expanduser()
    fitted = {int(p.name.split("_")[1]): load(str(p)) for p in sorted(fitted_dir.glob("layer_*"))}
    if not fitted:
        raise SystemExit(f"no fitted transcoders in {fitted_dir}: run bench/fit_circuit_transcoders.py first")
    d_sae = next(iter(fitted.values())).d_sae
    out = []
    for l in range(model.cfg.n_layers):
        if l in fitted:
            out.append(fitted[l])
            continue
        tc = create_mlp_transcoder(l, d_model=model.cfg.d_model, d_sae=d_sae)
        with torch.no_grad():
            tc.W_enc.zero_(); tc.b_enc.fill_(-1e4); tc.W_dec.zero_(); tc.b_dec.zero_()
        out.append(tc)
    return out


# ---------------------------------------------------------------------------------------------- the two runs
def run_mechscope(model, transcoders, tokens: torch.Tensor, settings: dict):
    from mechscope.circuits import AttributionConfig, attribute
    from mechscope.circuits.replacement import ReplacementModel

    cfg = AttributionConfig(max_n_logits=settings["max_n_logits"], desired_logit_prob=settings["desired_logit_prob"],
                            max_feature_nodes=settings["max_feature_nodes"], batch_size=settings["batch_size"])
    t = time.perf_counter()
    rm = ReplacementModel(model, transcoders)  # built per call, as attribute() does by default
    graph = attribute(model, transcoders, tokens, cfg=cfg, replacement=rm)
    return graph, time.perf_counter() - t


def run_circuit_tracer(req: dict, out: Path, warmup: int, runs: int) -> tuple[dict, dict]:
    out.mkdir(parents=True, exist_ok=True)
    req = dict(req, out=str(out), warmup=warmup, runs=runs)
    (out / "request.json").write_text(json.dumps(req, indent=1))
    env = dict(os.environ, PYTHONPATH="", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1")
    p = subprocess.run([str(PEER_PY), str(CHILD), str(out / "request.json")], capture_output=True, text=True,
                       env=env)
    if p.returncode != 0:
        raise SystemExit(f"circuit-tracer child failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return load_file(str(out / "graph.safetensors")), json.loads((out / "meta.json").read_text())


# ---------------------------------------------------------------------------------------------- comparison
def node_keys_ms(g) -> list[tuple]:
    T, L = len(g.prompt_tokens), g.n_layers
    keys = [("f", *map(int, r)) for r in g.features.tolist()]
    keys += [("e", l, p) for l in range(L) for p in range(T)]
    keys += [("t", p) for p in range(T)]
    keys += [("l", int(t)) for t in g.logit_tokens]
    return keys


def node_keys_ct(ct: dict, L: int) -> list[tuple]:
    T = len(ct["input_tokens"])
    feats = ct["active_features"][ct["selected_features"]]
    keys = [("f", *map(int, r)) for r in feats.tolist()]
    keys += [("e", l, p) for l in range(L) for p in range(T)]
    keys += [("t", p) for p in range(T)]
    keys += [("l", int(t)) for t in ct["logit_tokens"]]
    return keys


def stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    if a.numel() == 0:
        return {"n": 0}
    d = (a - b).abs()
    scale = torch.maximum(a.abs(), b.abs()).max()
    return {"n": a.numel(), "nonzero_mechscope": int((a != 0).sum()), "nonzero_circuit_tracer": int((b != 0).sum()),
            "max_abs_mechscope": float(a.abs().max()), "max_abs_circuit_tracer": float(b.abs().max()),
            "max_abs_diff": float(d.max()), "max_diff_over_max_abs": float(d.max() / scale.clamp_min(1e-30)),
            "rel_fro": float((a - b).norm() / b.norm().clamp_min(1e-30))}


def compare(g, ct: dict) -> dict:
    L = g.n_layers
    T = len(g.prompt_tokens)
    ks, kc = node_keys_ms(g), node_keys_ct(ct, L)
    ims, ict = {k: i for i, k in enumerate(ks)}, {k: i for i, k in enumerate(kc)}
    fm = {k for k in ks if k[0] == "f"}
    fc = {k for k in kc if k[0] == "f"}
    res: dict = {
        "tokens_equal": bool(torch.equal(g.prompt_tokens.long(), ct["input_tokens"])),
        "n_features_mechscope": len(fm), "n_features_circuit_tracer": len(fc),
        "features_only_mechscope": sorted(fm - fc)[:10], "features_only_circuit_tracer": sorted(fc - fm)[:10],
        "logit_tokens_mechscope": g.logit_tokens.tolist(), "logit_tokens_circuit_tracer": ct["logit_tokens"].tolist(),
        "logit_probs_max_abs_diff": (float((g.logit_probs - ct["logit_probs"]).abs().max())
                                     if len(g.logit_probs) == len(ct["logit_probs"]) else None),
    }
    common = [k for k in ks if k in ict]
    a_ms = g.adjacency[[ims[k] for k in common]][:, [ims[k] for k in common]]
    a_ct = ct["adjacency"][[ict[k] for k in common]][:, [ict[k] for k in common]]
    # activations of common features
    act_ct = ct["activation_values"][ct["selected_features"]]
    cf = [k for k in common if k[0] == "f"]
    res["activation"] = stats(torch.stack([g.activations[ims[k]] for k in cf]) if cf else torch.zeros(0),
                              torch.stack([act_ct[ict[k]] for k in cf]) if cf else torch.zeros(0))
    kind = [k[0] for k in common]
    bos_err = torch.tensor([k[0] == "e" and k[2] == 0 for k in common])
    rows = {"feature": torch.tensor([k == "f" for k in kind]), "logit": torch.tensor([k == "l" for k in kind])}
    cols = {"feature": torch.tensor([k == "f" for k in kind]),
            "error (pos>0)": torch.tensor([k == "e" for k in kind]) & ~bos_err,
            "error (pos 0, BOS)": bos_err, "token": torch.tensor([k == "t" for k in kind])}
    res["blocks"] = {f"{r} <- {c}": stats(a_ms[rm][:, cm], a_ct[rm][:, cm])
                     for r, rm in rows.items() for c, cm in cols.items()}
    keep = ~bos_err
    res["all_but_bos_error_columns"] = stats(a_ms[:, keep], a_ct[:, keep])
    res["all"] = stats(a_ms, a_ct)
    res["n_common_nodes"] = len(common)
    res["n_nodes"] = {"mechscope": len(ks), "circuit_tracer": len(kc)}
    res["n_pos"], res["n_layers"] = T, L
    return res


def compare_scores(g, ct: dict, ct_meta: dict) -> dict:
    """Replacement / completeness scores (circuit-tracer's ``compute_graph_scores``) side by side:

    - ``mechscope`` on its own graph and ``circuit_tracer`` on its own graph (``compute_graph_scores`` in its venv);
    - ``mechscope_formula_on_circuit_tracer_adjacency``: mechscope's ``graph_scores`` applied to circuit-tracer's
      adjacency, a check of the definitions alone (same matrix, so only float rounding may differ);
    - ``mechscope_bos_errors_zeroed``: mechscope's graph with circuit-tracer's BOS convention (its position-0 error
      columns zeroed, as circuit-tracer zeroes those error vectors), the end-to-end comparison.
    """
    import dataclasses

    from mechscope.circuits.scores import graph_scores

    L, T = g.n_layers, len(g.prompt_tokens)
    F_ct, n_ct = len(ct["selected_features"]), ct["adjacency"].shape[0]
    w = torch.zeros(n_ct)
    w[n_ct - len(ct["logit_probs"]):] = ct["logit_probs"]
    on_ct = graph_scores(ct["adjacency"], w, slice(F_ct, F_ct + L * T), slice(F_ct + L * T, F_ct + L * T + T))
    adj = g.adjacency.clone()
    adj[:, [g.error_index(l, 0) for l in range(L)]] = 0
    bos = dataclasses.replace(g, adjacency=adj, replacement_score=None, completeness_score=None)
    ct_scores = tuple(ct_meta["graph_scores"])
    rows = {"mechscope": (g.replacement_score, g.completeness_score), "circuit_tracer": ct_scores,
            "mechscope_formula_on_circuit_tracer_adjacency": tuple(on_ct),
            "mechscope_bos_errors_zeroed": (bos.replacement_score, bos.completeness_score)}
    out: dict = {k: {"replacement_score": v[0], "completeness_score": v[1]} for k, v in rows.items()}
    for k in ("mechscope", "mechscope_formula_on_circuit_tracer_adjacency", "mechscope_bos_errors_zeroed"):
        out[k]["abs_diff_vs_circuit_tracer"] = [abs(a - b) for a, b in zip(rows[k], ct_scores)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", choices=["tiny", "smollm2-135m"])
    ap.add_argument("--prompt", default=None)
    ap.add_argument("--d-sae", type=int, default=256)
    ap.add_argument("--density", type=float, default=0.05)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-n-logits", type=int, default=10)
    ap.add_argument("--desired-logit-prob", type=float, default=0.95)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before timing (each library)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "out" / "circuit_tracer"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    if not PEER_PY.is_file():
        raise SystemExit(f"{PEER_PY} missing: run bash bench/peers/setup_circuit_tracer.sh")

    import mechscope as ms
    from mechscope.dictionaries import save_transcoder_set

    out = Path(args.out) / args.model
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "tiny":
        folder = build_tiny(out / "model", args.seed)
        prompt = args.prompt or "The quick brown fox"
    else:
        from mechscope.models import builtin
        folder = builtin.fetch("smollm2-135m")
        prompt = args.prompt or "The capital of France is"
    model = ms.load_model(str(folder))
    tok = model.tokenizer
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    tokens = torch.tensor([[tok.bos_token_id] + ids])  # BOS first: both libraries then leave position 0 out
    if args.model == "tiny":
        transcoders = random_transcoders(model, tokens, args.d_sae, args.density, args.seed)
    else:
        transcoders = smollm_transcoders(model)
    tc_dir = save_transcoder_set(transcoders, out / "transcoders", model_name=str(folder))
    from mechscope.circuits.transcoders import load_transcoders
    transcoders = load_transcoders(str(tc_dir))  # both libraries read the same files

    settings = dict(max_n_logits=args.max_n_logits, desired_logit_prob=args.desired_logit_prob,
                    max_feature_nodes=None, batch_size=args.batch_size)
    special = {k: getattr(tok, k) for k in ("bos_token", "eos_token", "pad_token", "unk_token")
               if getattr(tok, k, None) is not None}
    req = dict(settings, model_dir=str(folder), transcoders=str(tc_dir), tokens=tokens[0].tolist(),
               special_tokens=special, threads=args.threads, n_ctx=max(64, tokens.shape[1]))

    ms_times, ct_times, ct_meta = [], [], None
    for _ in range(args.warmup):
        run_mechscope(model, transcoders, tokens, settings)
    graph = ct = None
    for r in range(args.rounds):
        ct, ct_meta = run_circuit_tracer(req, out / "ct", warmup=args.warmup, runs=1)
        ct_times += ct_meta["attribute_s"]
        graph, s = run_mechscope(model, transcoders, tokens, settings)
        ms_times.append(s)
        log.info("round %d: circuit-tracer %.2fs, mechscope %.2fs", r, ct_times[-1], s)
    assert graph is not None and ct is not None and ct_meta is not None

    res = compare(graph, ct)
    res["graph_scores"] = compare_scores(graph, ct, ct_meta)
    with torch.no_grad():
        ms_logits = model(tokens)[0, -1].float()
    res["model_logits_max_abs_diff"] = {
        "mechscope_vs_transformer_lens": float((ms_logits - ct["tl_logits_last"]).abs().max()),
        "mechscope_vs_hf_4x": float((ms_logits - ct["hf_logits_last"]).abs().max()),
        "max_abs_logit": float(ms_logits.abs().max())}
    res["timing_s"] = {"mechscope": ms_times, "circuit_tracer": ct_times,
                       "median_mechscope": statistics.median(ms_times), "median_circuit_tracer": statistics.median(ct_times),
                       "ratio_mechscope_over_circuit_tracer": statistics.median(ms_times) / statistics.median(ct_times),
                       "threads": args.threads}
    res["settings"] = settings
    res["prompt"], res["tokens"] = prompt, tokens[0].tolist()
    res["circuit_tracer"] = ct_meta
    res["model"], res["model_dir"] = args.model, str(folder)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=str))
    print(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
