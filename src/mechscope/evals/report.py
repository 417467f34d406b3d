"""``eval.json``: the one documented schema for dictionary evaluations, and its plot.

Schema (``"schema": "mechscope-eval/1"``)::

    {
      "schema": "mechscope-eval/1",
      "model": "smollm2-135m" | null,        # model the activations come from
      "source": "stdlib" | null,             # corpus of the evaluation contexts
      "dictionaries": {
        "<name>": {                          # folder name inside the run
          "arch": "topk", "hook": "blocks.6.resid_post", "hook_out": null | "blocks.6.mlp_out",
          "d_in": 576, "d_sae": 9216,
          "rows": 65536,                     # activation rows evaluated
          "l0": 32.0, "mse": 1.9, "fvu": 0.11, "cosine": 0.94, "shrinkage": 0.97,
          "dead_fraction": 0.01, "dense_fraction": 0.0,
          "density_histogram": {"bin_edges_log10": [-8, ..., 0], "counts": [...], "never_fired": [n]},
          "downstream": null | {             # with a model: next-token loss in nats per token
            "tokens": 8192, "ce_clean": 2.1, "ce_spliced": 2.3, "ce_zero": 6.0,
            "ce_recovered": 0.95, "kl": 0.2
          }
        }
      }
    }

Field meanings are the docstrings of :class:`~mechscope.evals.metrics.Reconstruction` and
:class:`~mechscope.evals.downstream.Downstream`. :func:`plot_eval` draws each dictionary's density histogram with
its headline numbers (matplotlib, Agg backend).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..dictionaries import Dictionary
from ..files import atomic_write_json
from .downstream import Downstream
from .metrics import Reconstruction

SCHEMA = "mechscope-eval/1"


@dataclass
class DictionaryEval:
    """Evaluation of one dictionary."""

    reconstruction: Reconstruction
    """Reconstruction metrics on activations."""
    downstream: Downstream | None = None
    """Spliced-model metrics, when a model was given."""

    def view(self, title: str = "dictionary evaluation"):
        """Interactive view (:mod:`mechscope.display`): reconstruction headline numbers and density histogram,
        and the downstream losses when computed."""
        from .. import display

        if self.reconstruction.rows == 0:
            return display.empty(title, "no activation rows were evaluated")
        summary: list[tuple[str, Any]] = list(self.reconstruction.headline())
        children = [self.reconstruction.density_view()]
        if self.downstream is not None:
            summary += [("CE recovered", self.downstream.ce_recovered), ("KL", self.downstream.kl)]
            children.append(self.downstream.view())
        return display.panel(title, children, summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()


@dataclass
class EvalReport:
    """Everything written to ``eval.json``."""

    dictionaries: dict[str, DictionaryEval] = field(default_factory=dict)
    """Name -> evaluation."""
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Name -> arch, hooks and widths."""
    model: str | None = None
    """Model name."""
    source: str | None = None
    """Corpus of the evaluation contexts."""

    def add(self, name: str, d: Dictionary, result: DictionaryEval) -> None:
        self.dictionaries[name] = result
        self.meta[name] = {"arch": d.architecture, "hook": d.cfg.hook_name,
                           "hook_out": d.cfg.hook_name_out if d.cfg.transcoder else None,
                           "d_in": d.cfg.d_in, "d_sae": d.cfg.d_sae}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema": SCHEMA, "model": self.model, "source": self.source, "dictionaries": {}}
        for name, ev in self.dictionaries.items():
            rec = dataclasses.asdict(ev.reconstruction)
            rec.pop("frequencies")
            out["dictionaries"][name] = {**self.meta.get(name, {}), **rec,
                                         "downstream": dataclasses.asdict(ev.downstream) if ev.downstream else None}
        return out

    def view(self):
        """Interactive views (:mod:`mechscope.display`): the headline numbers of every dictionary in one table, and
        each dictionary's feature-density histogram."""
        from .. import display

        if not self.dictionaries:
            return display.empty("dictionary evaluation", "no dictionary was evaluated")
        data = self.to_json()["dictionaries"]
        cols = ["dictionary", "arch", "hook", "d_sae", "L0", "FVU", "cosine", "dead", "CE recovered", "KL"]
        rows = [[name, d.get("arch"), d.get("hook"), d.get("d_sae"), d["l0"], d["fvu"], d["cosine"],
                 d["dead_fraction"], (d["downstream"] or {}).get("ce_recovered"), (d["downstream"] or {}).get("kl")]
                for name, d in data.items()]
        hists = [ev.reconstruction.density_view(f"{name}: latents by log10 firing frequency")
                 for name, ev in self.dictionaries.items()]
        summary = [(f"{r[0]}: FVU / L0 / CE recovered", " / ".join(
            "–" if v is None else f"{v:.4g}" for v in (r[5], r[4], r[8]))) for r in rows]
        return display.panel(f"dictionary evaluation ({self.model or 'no model'})",
                             [display.table(cols, rows, title="headline numbers"), *hists], summary=summary)

    def _repr_html_(self) -> str:
        return self.view().html()

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``eval.json`` atomically."""
        return atomic_write_json(path, self.to_json(), indent=1)


def read_eval(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an ``eval.json``, checking its schema tag."""
    data = json.loads(Path(path).read_text())
    if data.get("schema") != SCHEMA:
        raise ValueError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data


def plot_eval(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """One panel per dictionary: feature-density histogram, titled with L0, FVU and CE recovered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(report.dictionaries))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 3.6), squeeze=False)
    for ax, (name, ev) in zip(axes[0], report.dictionaries.items()):
        h = ev.reconstruction.density_histogram
        edges, counts = h["bin_edges_log10"], h["counts"]
        ax.bar(edges[:-1], counts, width=[b - a for a, b in zip(edges, edges[1:])], align="edge",
               color="tab:blue", edgecolor="white")
        ax.bar([edges[0] - 1], h["never_fired"], width=0.9, align="edge", color="tab:red", label="never fired")
        ax.set_xlabel("log10 firing frequency")
        ax.set_ylabel("latents")
        r = ev.reconstruction
        title = f"{name}\nL0 {r.l0:.1f}  FVU {r.fvu:.3f}"
        if ev.downstream is not None:
            title += f"  CE rec. {ev.downstream.ce_recovered:.3f}"
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
