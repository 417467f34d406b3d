"""``mechscope attribute``: build an attribution graph for a prompt and write DIR/graph.json (viewer layout)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class AttributeConfig:
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    transcoders: str = ""
    """Folder with the transcoders: a circuit-tracer transcoder set (config.yaml), one CLT / transcoder folder
    (cfg.json), or a folder of per-layer transcoder folders. Default: the model's cached full transcoder set
    (``mechscope dictionaries build``)."""
    out: str = "runs/attribute"
    """Output folder: graph.json (pruned, viewer layout) and graph/ (the full graph, safetensors)."""
    target_tokens: list[str] = field(default_factory=list)
    """Target tokens (each must be one token); default: the top predictions."""
    max_n_logits: int = 10
    """Most logit targets when no target tokens are given."""
    desired_logit_prob: float = 0.95
    """Take top predictions until their probabilities sum to this."""
    max_feature_nodes: int = 1024
    """Most feature nodes (chosen by influence); 0 or less means no limit."""
    batch_size: int = 32
    """Targets per backward pass (memory grows with it)."""
    node_threshold: float = 0.8
    """Cumulative node influence kept when pruning."""
    edge_threshold: float = 0.98
    """Cumulative edge influence kept when pruning."""
    slug: str = "graph"
    """Graph name written into the metadata."""
    live_norms: bool = False
    """Differentiate through the norm scales instead of freezing them (first-order edges; not circuit-tracer's
    definition; AttributionConfig.live_norms)."""
    live_attention: bool = False
    """Differentiate through the attention patterns instead of freezing them (as --live-norms)."""



def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attribute", help="attribution graph of a prompt through transcoders",
                       description="Build the attribution graph of PROMPT (replacement model with the given "
                                   "transcoders, frozen attention and norms) and write OUT/graph.json.")
    p.add_argument("prompt", help="the prompt text")
    add_dataclass_options(p, AttributeConfig)
    p.set_defaults(run=run)


def transcoders_or_cached_set(model, folder: str):
    """The transcoders in ``folder``, or (``folder`` empty) the model's cached full set; a clear error otherwise."""
    from ..circuits.transcoders import load_transcoders
    from ..sets import find_transcoder_set

    if folder:
        return load_transcoders(folder)
    found = find_transcoder_set(model)
    if found is None:
        raise ValueError(f"no transcoders given and no cached transcoder set for {model.cfg.name}: pass "
                         "--transcoders DIR or build the set with `mechscope dictionaries build`")
    print(f"transcoders: the cached set at {found.folder}")
    return found.transcoders()


def run(args: argparse.Namespace) -> int:
    import mechscope as ms

    from ..circuits import AttributionConfig, attribute, feature_supernodes
    cfg = dataclass_from_args(AttributeConfig, args)
    model = ms.load_model(cfg.model)
    tcs = transcoders_or_cached_set(model, cfg.transcoders)
    targets = [model.to_single_token(t) for t in cfg.target_tokens] if cfg.target_tokens else None
    limit = cfg.max_feature_nodes if cfg.max_feature_nodes > 0 else None
    acfg = AttributionConfig(max_n_logits=cfg.max_n_logits, desired_logit_prob=cfg.desired_logit_prob,
                             max_feature_nodes=limit, batch_size=cfg.batch_size, live_norms=cfg.live_norms,
                             live_attention=cfg.live_attention)
    graph = attribute(model, tcs, args.prompt, target_tokens=targets, cfg=acfg)
    out = Path(cfg.out)
    pr = graph.prune(cfg.node_threshold, cfg.edge_threshold)
    path = graph.write_json(out / "graph.json", slug=cfg.slug, node_threshold=cfg.node_threshold,
                            edge_threshold=cfg.edge_threshold, prompt=args.prompt, scan=cfg.model,
                            supernodes=feature_supernodes(graph, pr.node_mask))
    graph.save(out / "graph")
    n = json.loads(path.read_text())
    print(f"graph: {path.resolve()} ({len(n['nodes'])} nodes, {len(n['links'])} links; "
          f"{graph.n_features} features attributed)")
    return 0
