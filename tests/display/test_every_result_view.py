"""Every public result type a user gets back has a notebook view, found by walking the package (not a hand list).

For each result class found, with an instance made by the library function that returns it wherever that is cheap
on a tiny random model (directly otherwise), the test checks:

- ``_repr_html_`` renders, and the HTML fetches nothing (no remote src/href/@import/url());
- every plot in the view is of a kind the shared scripts draw with hover values (the browser test below hovers one
  element of each such view in headless Chromium and reads the tooltip);
- the empty case gives an explicit empty view (a ``kind: empty`` spec with a reason), not an exception.

A new public result class with no example here fails :func:`test_every_result_type_is_covered`, so it cannot ship
without a view.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny import hooked

import mechscope
import mechscope as ms

from .helpers import check_self_contained, has_number, open_offline, spec_of

RESULT_NAME = re.compile(r"(Result|Report|Scores|Eval|Comparison|Study|Check|Steering|Effects|Stats|Card|Graph|"
                         r"Cache|Pattern|Interpretation|Reconstruction|Downstream)$")
"""Class names that mark a result a user gets back (data classes / named tuples in the analysis packages)."""
SURFACES = ("mechscope.server", "mechscope.cli", "mechscope.display", "mechscope.report")
"""Packages that draw results rather than return them."""
NOT_RESULTS = {"mechscope.evals.metrics.ReconstructionStats": "a streaming accumulator; .result() gives Reconstruction",
               "mechscope.features.autointerp.ExampleStats": "a Protocol, not a class a user gets back",
               "mechscope.circuits.faithfulness.GroupCheck": "a part of FaithfulnessResult, shown inside it"}
PENDING: dict[str, str] = {}
"""Result classes known to lack a view, with why. The strict xfail below turns green into a failure, so an entry is
removed as soon as the class gets its ``_repr_html_``."""
HOVER_KINDS = {"heatmap", "lines", "bars", "attention", "graph"}
"""Plot kinds: the shared scripts give each drawn value a tooltip (checked in Chromium below)."""
STATIC_KINDS = {"panel", "table", "kv", "text", "card", "empty"}
"""Non-plot kinds (tables show the full value of a number in its title attribute)."""


def discover() -> dict[str, type]:
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(mechscope.__path__, "mechscope."):
        if info.name.startswith(SURFACES):
            continue
        try:
            mod = importlib.import_module(info.name)
        except ImportError:  # an optional extra (tracking back ends, ...) not installed
            continue
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and obj.__module__ == info.name and not name.startswith("_")
                    and RESULT_NAME.search(name)
                    and (dataclasses.is_dataclass(obj) or hasattr(obj, "_fields") or hasattr(obj, "_repr_html_"))):
                found[f"{info.name}.{name}"] = obj
    return {k: v for k, v in found.items() if k not in NOT_RESULTS}


# ------------------------------------------------------------------------------------------- example instances
TEXTS = ["def f(x): return x + 1", "import os, sys", "class A:\n    pass", "print('hello world')"]


class Ctx:
    """Lazily built shared inputs (a tiny model, a tiny SAE and its statistics)."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self._cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def model(self):
        return self.get("model", lambda: hooked("llama"))

    @property
    def sae(self):
        return self.get("sae", lambda: ms.dictionaries.create("relu", d_in=32, d_sae=8,
                                                              hook_name="blocks.1.resid_post"))

    @property
    def stats(self):
        from mechscope.features import StatsConfig, feature_stats

        return self.get("stats", lambda: feature_stats(self.model, self.sae, TEXTS, StatsConfig(top_k=3),
                                                       batch_size=4))

    @property
    def graph(self):
        from circuits.helpers import random_transcoders

        from mechscope.circuits import AttributionConfig, attribute

        def make():
            tcs = random_transcoders(self.model)
            return tcs, attribute(self.model, tcs, "hello there", cfg=AttributionConfig(batch_size=64))
        return self.get("graph", make)


def _patch(c: Ctx):
    from mechscope.interventions import logit_diff, patch_resid
    from mechscope.interventions.results import PatchResult

    return (patch_resid(c.model, "abcdef", "abcxef", logit_diff(ord("g"), ord("h")), layers=[0, 1]),
            PatchResult(torch.zeros(0, 0), [], [], "metric"))


def _lens(c: Ctx):
    from mechscope.lens import logit_lens

    full, empty = logit_lens(c.model, "abcdef"), logit_lens(c.model, "abcdef")
    empty.logits = empty.logits[:, :, :0]
    return full, empty


def _dla(c: Ctx):
    from mechscope.lens import direct_logit_attribution
    from mechscope.lens.dla import DLAResult

    return (direct_logit_attribution(c.model, "abcdef", ord("g"), ord("h")),
            DLAResult(torch.zeros(0, 1), [], torch.zeros(1), torch.zeros(1), 2, 4))


def _lens_comparison(c: Ctx):
    from mechscope.lens.tuned import LensComparison

    return (LensComparison(["L0", "final"], torch.tensor([2.5, 0.0]), torch.tensor([1.25, 0.0])),
            LensComparison([], torch.zeros(0), torch.zeros(0)))


def _head_scores(c: Ctx):
    from mechscope.heads import head_scores
    from mechscope.heads.detectors import HeadScores

    return head_scores(c.model, n=2, seq_len=6), HeadScores({})


def _probe(c: Ctx):
    from mechscope.probes.linear import ProbeResult, probe_layers

    labels = torch.full((4, 8), -1)
    labels[:, 3] = torch.tensor([0, 1, 0, 1])
    labels[:, 5] = torch.tensor([1, 0, 1, 0])
    texts = ["abcdefgh", "bcdefghi", "cdefghij", "defghijk"]
    return (probe_layers(c.model, texts, labels, layers=[0, 1]),
            ProbeResult([], torch.zeros(0), torch.zeros(0), None, 0.5, "accuracy", "resid_post"))


def _text_probe(c: Ctx):
    from mechscope.probes.linear import ProbeResult
    from mechscope.probes.texts import TextProbeResult

    full, _ = example(c, "mechscope.probes.linear.ProbeResult")
    return (TextProbeResult(full, ["blocks.0.resid_post", "blocks.1.resid_post"], {}, 4),
            TextProbeResult(ProbeResult([], torch.zeros(0), torch.zeros(0), None, 0.5, "accuracy", "resid_post"),
                            [], {}, 0))


def _cache(c: Ctx):
    from mechscope.activations import ActivationCache

    _, cache = c.model.run_with_cache(["abcdef", "abc"], names=["blocks.1.attn.pattern", "blocks.0.resid_post"])
    return cache, ActivationCache({}, c.model, cache.tokens)


def _attention(c: Ctx):
    from mechscope.models.attention_pattern import AttentionPattern

    _, cache = c.model.run_with_cache("abcdef", names=["blocks.1.attn.pattern"])
    return cache.attention(1), AttentionPattern(torch.zeros(0, 0, 0), [], 1)


def _card(c: Ctx):
    from mechscope.features import FeatureDB, build_database

    with FeatureDB(build_database(c.tmp / "cards.db", c.stats, c.model, c.sae)) as db:
        f = db.by_density(1e-9, 1.0)[0][0]
        return db.card(f), None  # a card always describes a feature (a dead one says frequency 0)


def _feature_stats(c: Ctx):
    return c.stats, None  # statistics over no tokens raise FeatureError before a FeatureStats exists


def _logit_effects(c: Ctx):
    from mechscope.features.logits import LogitEffects, logit_effects

    return logit_effects(c.model, c.sae, [0])[0], LogitEffects(0, [], [])


def _steering(c: Ctx):
    from mechscope.features.steering import SteeringResult, feature_vector, steer

    out = steer(c.model, "abc", [feature_vector(c.sae, 0, 10.0, stats=c.stats)], targets=[ord("d")],
                watch=(c.sae, 0), max_new_tokens=3)
    return out, SteeringResult("abc", [])


def _monitor(c: Ctx):
    from mechscope.features.monitor import FeatureMonitor, MonitorResult

    return FeatureMonitor(c.model, c.sae, {0: 1e-3, 1: 1e6}).scan(TEXTS[:1])[0], MonitorResult("text", ["t"])


def _scorer(c: Ctx):
    from mechscope.features.autointerp import ScorerResult

    return ScorerResult("detection", [True, False, True], [0.9, 0.2, None]), ScorerResult("detection", [], [])


def _interpretation(c: Ctx):
    from mechscope.features.autointerp import Interpretation

    full, _ = example(c, "mechscope.features.autointerp.ScorerResult")
    return (Interpretation(3, "the letter e", detection=full, scores={"detection": full.as_dict()}),
            Interpretation(3, None, status="no_explanation"))


def _reconstruction(c: Ctx):
    from mechscope.evals.metrics import Reconstruction

    full = Reconstruction(rows=100, l0=12.5, mse=0.5, fvu=0.125, cosine=0.9, shrinkage=0.95, dead_fraction=0.25,
                          dense_fraction=0.0, density_histogram={"bin_edges_log10": [-3.0, -2.0, -1.0],
                                                                 "counts": [3, 5], "never_fired": [2]})
    return full, dataclasses.replace(full, rows=0, density_histogram={})


def _downstream(c: Ctx):
    from mechscope.evals.downstream import Downstream

    full = Downstream(tokens=10, ce_clean=2.0, ce_spliced=2.5, ce_zero=6.0, ce_recovered=0.875, kl=0.3)
    return full, dataclasses.replace(full, tokens=0)


def _dictionary_eval(c: Ctx):
    from mechscope.evals.report import DictionaryEval

    (rec, empty_rec), (down, _) = (example(c, "mechscope.evals.metrics.Reconstruction"),
                                   example(c, "mechscope.evals.downstream.Downstream"))
    return DictionaryEval(rec, down), DictionaryEval(empty_rec)


def _eval_report(c: Ctx):
    from mechscope.evals.report import EvalReport

    report = EvalReport(model="tiny")
    report.add("sae", ms.dictionaries.create("topk", d_in=8, d_sae=16, k=2, hook_name="blocks.0.resid_post"),
               example(c, "mechscope.evals.report.DictionaryEval")[0])
    return report, EvalReport()


def _replacement_eval(c: Ctx):
    from mechscope.evals.replacement import ReplacementEval

    full = ReplacementEval(tokens=64, layers=2, ce_clean=2.0, ce_replacement=3.25, kl=0.75, top1_agreement=0.5)
    return full, dataclasses.replace(full, tokens=0)


def _attribution(c: Ctx):
    from mechscope.interventions import logit_diff
    from mechscope.interventions.attribution import AttributionResult, attribution_patch

    full = attribution_patch(c.model, "abcdef", "abcxef", logit_diff(ord("g"), ord("h")))
    return full, AttributionResult({}, "logit_diff", 0.0, [], 3)


def _attribution_check(c: Ctx):
    from mechscope.interventions import logit_diff
    from mechscope.interventions.attribution import AttributionCheck, attribution_check
    from mechscope.interventions.results import PatchResult

    full = attribution_check(c.model, "abcdef", "abcxef", logit_diff(ord("g"), ord("h")))
    none = PatchResult(torch.zeros(0, 0), [], [], "metric")
    return full, AttributionCheck(float("nan"), none, none)


def _graph(c: Ctx):
    from mechscope.circuits.graph import AttributionGraph

    _, graph = c.graph
    assert isinstance(graph, AttributionGraph)
    return graph, None  # a graph always holds its prompt's token nodes; graph_view's no-node case is in test_views


def _prune(c: Ctx):
    from mechscope.circuits.graph import PruneResult

    _, graph = c.graph
    z = torch.zeros(0)
    return graph.prune(), PruneResult(z.bool(), torch.zeros(0, 0).bool(), z, z)


def _graph_scores(c: Ctx):
    _, graph = c.graph
    return graph.scores(), None


def _ablation(c: Ctx):
    from mechscope.circuits.interventions import AblationStudy, ablation_study

    tcs, graph = c.graph
    z = torch.zeros(0)
    return ablation_study(c.model, tcs, "hello there", graph, k=4), AblationStudy([], [], z, z, z, z)


def _faithfulness(c: Ctx):
    from mechscope.circuits.faithfulness import FaithfulnessConfig, FaithfulnessResult, GroupCheck, faithfulness

    tcs, graph = c.graph
    full = faithfulness(c.model, tcs, "hello there", int(graph.logit_tokens[0]), graph=graph,
                        cfg=FaithfulnessConfig(n_features=4, settings=("graph", "real")))
    return full, FaithfulnessResult("hello there", 0, "x", 0.0, 0, None, None, {}, [], GroupCheck([], 0.0),
                                    GroupCheck([], 0.0), {}, {}, {})


def _concept_steering(c: Ctx):
    from mechscope.features.concepts import ConceptSteering

    sweep = [{"strength": x, "success": y, "mentions": m, "fluent": f, "concept_prob": q}
             for x, y, m, f, q in ((2.0, 0.25, 0.25, 1.0, 0.01), (4.0, 0.5, 0.75, 0.75, 0.2),
                                   (8.0, 0.0, 1.0, 0.0, 0.9))]
    full = ConceptSteering("music", 3, 0.9, 4.0, ["I think that", "She said"], 0.5, 0.0, 0.0, 0.2, 0.001, 0.002,
                           mentions=0.75, control_mentions=0.0, baseline_mentions=0.0, fluent=0.75, max_nll=3.0,
                           sweep=sweep, control_features=[1],
                           examples=[{"prompt": "I think that", "baseline": " it is", "steered": " music is"}])
    nan = float("nan")
    return full, ConceptSteering("music", 3, nan, 4.0, [], nan, nan, nan, nan, nan, nan)


def _acdc(c: Ctx):
    from mechscope.circuits.acdc import AcdcResult

    # acdc() itself is slow on a loaded CPU (tests/circuits/test_acdc.py runs it); the view only reads the fields
    edges = [("embed", "0.1"), ("0.1", "1.2"), ("1.2", "logits"), ("embed", "logits")]
    full = AcdcResult(edges[:3], edges, loss_full=0.5, loss_circuit=0.75, loss_empty=2.5,
                      scores={edges[0]: 0.125, edges[1]: 0.5, edges[2]: -0.25, edges[3]: 0.001})
    return full, AcdcResult([], [], 0.0, 0.0, 0.0)


def _train(c: Ctx):
    from mechscope.activations.store import ActivationStore, StoreConfig
    from mechscope.training import DictionarySpec, LoopConfig, TrainConfig, train
    from mechscope.training.loop import TrainResult

    torch.manual_seed(0)
    store = ActivationStore.from_tensors({"blocks.0.resid_post": torch.randn(2048, 16)},
                                         StoreConfig(batch_size=256, buffer_rows=1024))
    full = train(store, DictionarySpec("topk", hook="blocks.0.resid_post", expansion=2, k=4),
                 TrainConfig(loop=LoopConfig(steps=4, log_every=2)), out=c.tmp / "run")
    return full, TrainResult({}, 0, 0)


EXAMPLES: dict[str, Callable[[Ctx], tuple[Any, Any]]] = {
    "mechscope.interventions.results.PatchResult": _patch,
    "mechscope.interventions.attribution.AttributionResult": _attribution,
    "mechscope.interventions.attribution.AttributionCheck": _attribution_check,
    "mechscope.lens.logit_lens.LensResult": _lens,
    "mechscope.lens.dla.DLAResult": _dla,
    "mechscope.lens.tuned.LensComparison": _lens_comparison,
    "mechscope.heads.detectors.HeadScores": _head_scores,
    "mechscope.probes.linear.ProbeResult": _probe,
    "mechscope.probes.texts.TextProbeResult": _text_probe,
    "mechscope.models.cache.ActivationCache": _cache,
    "mechscope.models.attention_pattern.AttentionPattern": _attention,
    "mechscope.features.db.FeatureCard": _card,
    "mechscope.features.stats.FeatureStats": _feature_stats,
    "mechscope.features.logits.LogitEffects": _logit_effects,
    "mechscope.features.steering.SteeringResult": _steering,
    "mechscope.features.monitor.MonitorResult": _monitor,
    "mechscope.features.autointerp.ScorerResult": _scorer,
    "mechscope.features.autointerp.Interpretation": _interpretation,
    "mechscope.evals.metrics.Reconstruction": _reconstruction,
    "mechscope.evals.downstream.Downstream": _downstream,
    "mechscope.evals.report.DictionaryEval": _dictionary_eval,
    "mechscope.evals.report.EvalReport": _eval_report,
    "mechscope.evals.replacement.ReplacementEval": _replacement_eval,
    "mechscope.circuits.graph.AttributionGraph": _graph,
    "mechscope.circuits.graph.PruneResult": _prune,
    "mechscope.circuits.scores.GraphScores": _graph_scores,
    "mechscope.circuits.interventions.AblationStudy": _ablation,
    "mechscope.circuits.acdc.AcdcResult": _acdc,
    "mechscope.circuits.faithfulness.FaithfulnessResult": _faithfulness,
    "mechscope.features.concepts.ConceptSteering": _concept_steering,
    "mechscope.training.loop.TrainResult": _train,
}
"""Qualified class name -> ``(instance with content, empty instance or None when the type cannot be empty)``."""


def example(c: Ctx, name: str) -> tuple[Any, Any]:
    """``EXAMPLES[name]``, built once per module."""
    return c.get(name, lambda: EXAMPLES[name](c))


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("views"))


def kinds_of(spec: dict) -> list[str]:
    out = [spec["kind"]]
    for c in spec.get("children", []):
        out += kinds_of(c)
    return out


def test_every_result_type_is_covered():
    found = discover()
    assert len(found) >= 25, sorted(found)  # the walk itself works
    missing = sorted(set(found) - set(EXAMPLES) - set(PENDING))
    assert not missing, f"result types with no example view here (add one to EXAMPLES): {missing}"
    stale = sorted(set(EXAMPLES) - set(found))
    assert not stale, f"EXAMPLES names classes the walk no longer finds (renamed or moved?): {stale}"


@pytest.mark.parametrize("name", sorted(EXAMPLES), ids=lambda n: n.rsplit(".", 1)[1])
def test_result_view_is_self_contained_hoverable_and_has_an_empty_case(name, ctx):
    full, empty = example(ctx, name)
    cls = discover()[name]
    assert isinstance(full, cls) and callable(getattr(full, "_repr_html_", None))
    html = full._repr_html_()
    check_self_contained(html)
    spec = spec_of(html)
    kinds = kinds_of(spec)
    assert set(kinds) <= HOVER_KINDS | STATIC_KINDS, kinds
    assert "empty" not in kinds[:1], f"{name}: the full example rendered as empty: {spec}"
    if empty is not None:
        html = empty._repr_html_()
        check_self_contained(html)
        e = spec_of(html)
        assert "empty" in kinds_of(e) and not set(kinds_of(e)) & HOVER_KINDS, e
        assert all(s.get("reason") for s in _walk(e) if s["kind"] == "empty")


def _walk(spec: dict) -> list[dict]:
    return [spec] + [s for c in spec.get("children", []) for s in _walk(c)]


def test_new_views_carry_the_numbers_they_show(ctx):
    acdc, _ = example(ctx, "mechscope.circuits.acdc.AcdcResult")
    spec = spec_of(acdc._repr_html_())
    assert has_number(spec, acdc.recovered) and acdc.recovered == 0.875
    bars = spec["children"][0]  # kept edges only, largest |loss increase| first
    assert bars["labels"] == ["0.1 -> 1.2", "1.2 -> logits", "embed -> 0.1"] and bars["values"] == [0.5, -0.25, 0.125]
    abl, _ = example(ctx, "mechscope.circuits.interventions.AblationStudy")
    spec = spec_of(abl._repr_html_())
    lines = spec["children"][0]
    assert lines["x_labels"] == abl.node_ids and has_number(lines, float(abl.actual_real[0]), rel=1e-4)
    att, _ = example(ctx, "mechscope.interventions.attribution.AttributionResult")
    spec = spec_of(att._repr_html_())
    hm = next(c for c in spec["children"] if c["title"] == "resid_pre")
    assert hm["values"] == [[pytest.approx(float(v), rel=1e-5, abs=1e-6) for v in r]
                            for r in att.sweep("resid_pre").values]
    stats, _ = example(ctx, "mechscope.features.stats.FeatureStats")
    spec = spec_of(stats._repr_html_())
    hist = spec["children"][0]
    assert sum(hist["values"]) == stats.d_sae and hist["values"][0] == int((stats.active_count == 0).sum())
    run, _ = example(ctx, "mechscope.training.loop.TrainResult")
    spec = spec_of(run._repr_html_())
    row = spec["children"][0]["rows"][0]
    name = next(iter(run.dictionaries))
    assert row[0] == name and any(has_number({"v": row}, v, rel=1e-4) for v in run.metrics[name].values())


@pytest.mark.parametrize("name", sorted(PENDING), ids=lambda n: n.rsplit(".", 1)[1])
def test_pending_result_types_still_lack_a_view(name):
    """Strict xfail: when the class gains ``_repr_html_`` this passes, which fails the run until the entry moves
    from PENDING to EXAMPLES."""
    cls = discover().get(name)
    assert cls is not None, f"{name} is no longer found; drop it from PENDING"
    if hasattr(cls, "_repr_html_"):
        pytest.fail(f"{name} now has _repr_html_: move it from PENDING to EXAMPLES with an example")
    pytest.xfail(PENDING[name])


HOVER_TARGET = {"heatmap": "div.heatmap td", "lines": "circle.pt", "bars": "rect.bar",
                "attention": "div.attn-main svg.attn rect", "graph": "svg.graph .node"}
"""An element of each plot kind that shows a value in the shared tooltip when hovered."""


@pytest.mark.browser
def test_every_result_view_draws_offline_with_hover_values_in_chromium(ctx, browser, tmp_path):
    """All the example views on one page, as in a notebook: no script error, no request leaves the page, and
    hovering one element of every plot shows a tooltip holding a number."""
    views = {name: example(ctx, name)[0] for name in sorted(EXAMPLES)}
    specs = {name: spec_of(v._repr_html_()) for name, v in views.items()}
    html = "<html><body>" + "".join(v._repr_html_() for v in views.values()) + "</body></html>"
    page = open_offline(browser, html, tmp_path / "page.html", wait_ms=500, viewport={"width": 1200, "height": 900})
    hosts = page.locator("div.mechscope-view")
    assert hosts.count() == len(views)
    tip = page.locator("#tooltip")
    hovered = 0
    for i, name in enumerate(views):
        host = hosts.nth(i)
        assert host.locator(".ms-root").count() == 1, f"{name} did not mount"
        assert "unknown view kind" not in host.inner_text() and "view failed" not in host.inner_text()
        for kind in sorted(set(kinds_of(specs[name])) & HOVER_KINDS):
            target = host.locator(HOVER_TARGET[kind]).first
            target.scroll_into_view_if_needed()
            page.mouse.move(0, 0)
            page.evaluate("document.getElementById('tooltip').textContent = ''")
            box = target.bounding_box()  # move the mouse there: dense graphs stack nodes on one another,
            assert box, f"{name} {kind}: nothing drawn"  # so whichever element is on top gets the hover
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            text = tip.inner_text()
            assert tip.is_visible() and re.search(r"\d", text), f"{name} {kind}: tooltip {text!r}"
            hovered += 1
    assert hovered >= 20
