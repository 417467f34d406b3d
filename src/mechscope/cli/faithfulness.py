"""``mechscope faithfulness``: check an attribution graph's predictions for feature interventions against the model.

Builds the graph of PROMPT for TARGET (or reads one written by ``mechscope attribute``), ablates and steers its top
features one at a time, ablates them together next to a random control, and writes OUT/faithfulness.json
(:class:`mechscope.circuits.faithfulness.FaithfulnessResult`) and OUT/graph.json.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class FaithfulnessCommand:
    prompt: str
    """The prompt text."""
    target: str
    """Target token (must be one token, e.g. " Paris"); the graph's logit node for it is checked."""
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    transcoders: str = ""
    """Folder with the transcoders: a circuit-tracer transcoder set (config.yaml), one CLT / transcoder folder
    (cfg.json), or a folder of per-layer transcoder folders. Default: the model's cached full transcoder set."""
    out: str = "runs/faithfulness"
    """Output folder: faithfulness.json and graph.json (the graph that was checked)."""
    graph: str = ""
    """A full graph folder saved by `mechscope attribute` (OUT/graph) to check instead of building one."""
    max_feature_nodes: int = 1024
    """Most feature nodes of the graph built here (0 or less: every active feature)."""
    attribution_batch_size: int = 32
    """Targets per backward pass while building the graph."""
    live_norms: bool = False
    """Build a graph that differentiates through the norm scales instead of freezing them (first-order edges; not
    circuit-tracer's definition; AttributionConfig.live_norms)."""
    live_attention: bool = False
    """Build a graph that differentiates through the attention patterns instead of freezing them."""



def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..circuits.faithfulness import FaithfulnessConfig

    p = sub.add_parser("faithfulness", help="check a graph's intervention predictions against the model",
                       description="Ablate and steer the top features of PROMPT's attribution graph for TARGET one "
                                   "at a time (and together, next to a random control) in each measurement setting; "
                                   "compare with the graph's predictions; write OUT/faithfulness.json.")
    add_dataclass_options(p, FaithfulnessCommand)
    add_dataclass_options(p, FaithfulnessConfig)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import mechscope as ms

    from ..circuits import AttributionConfig, AttributionGraph, ReplacementModel, attribute
    from ..circuits.faithfulness import FaithfulnessConfig, faithfulness
    from .attribute import transcoders_or_cached_set

    cmd = dataclass_from_args(FaithfulnessCommand, args)
    cfg = dataclass_from_args(FaithfulnessConfig, args)
    model = ms.load_model(cmd.model)
    tcs = transcoders_or_cached_set(model, cmd.transcoders)
    token = model.to_single_token(cmd.target)
    rm = ReplacementModel(model, tcs)
    out = Path(cmd.out)
    if cmd.graph:
        graph = AttributionGraph.load(cmd.graph)
    else:
        limit = cmd.max_feature_nodes if cmd.max_feature_nodes > 0 else None
        acfg = AttributionConfig(max_feature_nodes=limit, batch_size=cmd.attribution_batch_size,
                                 live_norms=cmd.live_norms, live_attention=cmd.live_attention)
        graph = attribute(model, tcs, cmd.prompt, target_tokens=[token], cfg=acfg, replacement=rm)
        graph.write_json(out / "graph.json", slug="faithfulness", prompt=cmd.prompt, scan=cmd.model)
    result = faithfulness(model, tcs, cmd.prompt, token, cfg=cfg, graph=graph, replacement=rm)
    path = result.write_json(out / "faithfulness.json")
    print(result.summary())
    print(f"faithfulness: {path.resolve()}")
    return 0
