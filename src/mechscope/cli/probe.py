"""``mechscope probe``: fit a linear probe on labelled texts at a hook point (or a sweep of layers).

    mechscope probe --data texts.jsonl --hook blocks.6.resid_post --layers 0 3 6 9 12 --out runs/probe

DATA is a JSONL file with one object per line, e.g. ``{"text": "I loved it", "label": "positive"}`` (the field
names are --text-field / --label-field; labels are strings, numbers or booleans, or numbers with --task
regression). Each text gives one activation (its last token, or the mean over its tokens); the probe's held-out
score is reported next to a control task (shuffled labels by default): a property is linearly decodable where the
probe beats the control by a margin (selectivity).

Writes OUT/probe.json (scores per layer), OUT/probe.safetensors (per hook point ``<hook>.weight`` / ``.bias`` /
``.mean`` / ``.std``, fitted on every example; scores = ((x - mean) / std) @ weight + bias) and OUT/probe.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .options import add_dataclass_options, dataclass_from_args


@dataclass
class ProbeCliConfig:
    """Probing labelled texts from the command line (fitting options come from ProbeConfig)."""

    data: str
    """JSONL file of labelled texts, one object per line such as {"text": "...", "label": "..."}."""
    hook: str
    """Hook point whose activations are probed, e.g. blocks.6.resid_post (with --layers: its kind at each of those
    layers)."""
    layers: list[int] | None = None
    """Sweep these layers with the --hook kind (e.g. 0 3 6 9); default: the --hook layer only."""
    model: str = "smollm2-135m"
    """Built-in name, local folder, .gguf file or hub id."""
    text_field: str = "text"
    """JSON field holding each example's text."""
    label_field: str = "label"
    """JSON field holding each example's label."""
    pooling: Literal["last", "mean"] = "mean"
    """One activation per text: the mean over its tokens (BOS left out) or its last token."""
    batch_size: int = 16
    """Texts per forward pass."""
    out: str = "runs/probe"
    """Output folder: probe.json, probe.safetensors (probe weights) and probe.png."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.layers is not None and len(self.layers) == 0:
            raise ValueError("--layers needs at least one layer")


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..probes import ProbeConfig

    p = sub.add_parser("probe", help="linear probe on labelled texts (accuracy per layer vs a control task)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_options(p, ProbeCliConfig)
    add_dataclass_options(p.add_argument_group("fitting (ProbeConfig)"), ProbeConfig)
    p.set_defaults(run=run)


def read_labelled(path: str | Path, text_field: str = "text", label_field: str = "label"
                  ) -> tuple[list[str], list[Any], list[int]]:
    """Texts, raw labels and line numbers of a JSONL file; a bad line raises ValueError naming its number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path} (give a JSONL file with one "
                                f'{{"{text_field}": ..., "{label_field}": ...}} object per line)')
    texts, labels, numbers = [], [], []
    with path.open(encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path} line {i}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON ({e.msg} at column {e.colno}); each line must be one "
                                 f'object like {{"{text_field}": "...", "{label_field}": ...}}') from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            for name, flag in ((text_field, "--text-field"), (label_field, "--label-field")):
                if name not in obj:
                    raise ValueError(f"{where}: no {name!r} field (the line has: {', '.join(obj) or 'no fields'}); "
                                     f"name the field with {flag}")
            text, label = obj[text_field], obj[label_field]
            if not isinstance(text, str) or not text:
                raise ValueError(f"{where}: {text_field!r} must be a non-empty string, got {text!r}")
            if not isinstance(label, (str, int, float, bool)):
                raise ValueError(f"{where}: {label_field!r} must be a string, number or boolean, got {label!r}")
            texts.append(text)
            labels.append(label)
            numbers.append(i)
    if not texts:
        raise ValueError(f"{path} holds no examples (one JSON object per line expected)")
    return texts, labels, numbers


def encode_labels(raw: list[Any], task: str, source: str, lines: list[int] | None = None
                  ) -> tuple[list[float] | list[int], list[Any] | None]:
    """Class ids and the class values (classification, classes sorted), or float targets (regression)."""
    if task == "regression":
        bad = next((i for i, v in enumerate(raw) if isinstance(v, bool) or not isinstance(v, (int, float))), None)
        if bad is not None:
            raise ValueError(f"{source} line {lines[bad] if lines else bad + 1}: --task regression needs numeric "
                             f"labels, got {raw[bad]!r}")
        return [float(v) for v in raw], None
    unique = {json.dumps(v): v for v in raw}
    classes = sorted(unique.values(), key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0,
                                                     str(v)))
    if len(classes) < 2:
        raise ValueError(f"{source}: every example has the label {classes[0]!r}; a probe needs at least two "
                         f"classes")
    index = {json.dumps(v): i for i, v in enumerate(classes)}
    return [index[json.dumps(v)] for v in raw], classes


def hook_points(model, hook: str, layers: list[int] | None) -> list[str]:
    """Canonical names: ``hook`` alone, or its kind at each of ``layers``."""
    from ..models.hook_points import block_name

    point = model.resolve(hook)
    if layers is None:
        return [point.name]
    if point.layer is None:
        raise ValueError(f"--layers sweeps a block hook point such as blocks.0.resid_post, but {hook!r} has no "
                         f"layer; drop --layers or give a block hook")
    return list(dict.fromkeys(model.resolve(block_name(layer, point.kind)).name for layer in layers))


def run(args: argparse.Namespace) -> int:
    import torch
    from safetensors.torch import save_file

    import mechscope as ms

    from ..probes import ProbeConfig, probe_texts
    from .outputs import _atomic, write_json, write_png  # _atomic: temporary file, then rename

    cfg = dataclass_from_args(ProbeCliConfig, args)
    pcfg = dataclass_from_args(ProbeConfig, args)
    texts, raw, lines = read_labelled(cfg.data, cfg.text_field, cfg.label_field)
    y, classes = encode_labels(raw, pcfg.task, cfg.data, lines)
    model = ms.load_model(cfg.model)
    hooks = hook_points(model, cfg.hook, cfg.layers)
    res = probe_texts(model, texts, y, hooks, pooling=cfg.pooling, config=pcfg, batch_size=cfg.batch_size)
    r = res.result
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    tensors = {}
    for name, probe in res.probes.items():
        for part in ("weight", "bias", "mean", "std"):
            tensors[f"{name}.{part}"] = getattr(probe, part).detach().float().cpu().contiguous()
    meta = {"format": "mechscope-probe/1", "task": pcfg.task, "pooling": cfg.pooling, "model": cfg.model,
            "hooks": json.dumps(res.hooks), "classes": json.dumps(classes)}
    weights = _atomic(out / "probe.safetensors", lambda tmp: save_file(tensors, tmp, metadata=meta))

    best = int(r.test.argmax())
    rows = []
    for i, name in enumerate(res.hooks):
        test, ctrl = float(r.test[i]), None if r.control is None else float(r.control[i])
        rows.append({"hook": name, "label": r.layer_labels[i], "train": round(float(r.train[i]), 6),
                     "test": round(test, 6), "control": None if ctrl is None else round(ctrl, 6),
                     "selectivity": None if ctrl is None else round(test - ctrl, 6)})
    counts = None if classes is None else {str(c): int(n) for c, n in zip(classes, torch.bincount(
        torch.tensor(y), minlength=len(classes)).tolist())}
    data = {"schema": "mechscope-probe/1", "command": "probe", "model": cfg.model,
            "data": str(Path(cfg.data).resolve()), "text_field": cfg.text_field, "label_field": cfg.label_field,
            "n_examples": res.n_examples, "classes": classes, "class_counts": counts, "pooling": cfg.pooling,
            "config": dataclasses.asdict(pcfg), "metric": r.metric, "baseline": round(r.baseline, 6),
            "control_note": {"shuffle": "control: the same probe fitted on shuffled labels",
                             "random_token": "control: a random label per last-token type (Hewitt & Liang)",
                             "none": "no control"}[pcfg.control],
            "layers": rows, "best": {"hook": res.hooks[best], "test": rows[best]["test"]},
            "weights": {"file": weights.name, "fitted_on": "all examples",
                        "keys": [f"{h}.{{weight,bias,mean,std}}" for h in res.hooks]}}
    path = write_json(out / "probe.json", data)
    fig = r.plot()
    ax = fig.axes[0]
    if pcfg.task == "classification":
        ax.axhline(r.baseline, color="grey", linestyle="--", linewidth=1, label="majority class")
        ax.legend()
    ax.set_title(f"linear probe on {r.hook_kind} ({cfg.pooling} pooling, {res.n_examples} texts)")
    png = write_png(out / "probe.png", fig)

    print(r.to_markdown())
    print(f"best: {res.hooks[best]} test {r.metric} {float(r.test[best]):.3f}"
          + ("" if r.control is None else f", control {float(r.control[best]):.3f}"))
    for p in (path, weights, png):
        print(p.resolve())
    return 0
