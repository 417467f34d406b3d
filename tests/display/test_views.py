"""The display primitives: every view renders, is self-contained, carries its numbers; empty input -> empty view."""

from __future__ import annotations

import json

import pytest
import torch

from mechscope import display
from mechscope.display import assets

from .helpers import check_self_contained, has_number, spec_of


def test_heatmap_carries_values_labels_and_a_static_summary():
    v = torch.tensor([[0.5, -1.25], [2.0, 0.125]])
    view = display.heatmap(v, ["L0", "L1"], ["a", "b"], title="patch", value_name="logit diff")
    html = view._repr_html_()
    check_self_contained(html)
    spec = spec_of(html)
    assert spec["kind"] == "heatmap" and spec["values"] == [[0.5, -1.25], [2.0, 0.125]]
    assert spec["row_labels"] == ["L0", "L1"] and spec["col_labels"] == ["a", "b"]
    static = view.static_html()
    assert "2" in static and "L1 × a" in static and "-1.25" in static  # max, where, min, without scripts


def test_every_builder_renders_self_contained_html():
    views = [
        display.heatmap(torch.eye(3), list("abc"), list("xyz")),
        display.line_plot({"train": [0.1, 0.2], "test": [0.3, None]}, ["L0", "L1"], y_label="acc"),
        display.bar_chart(["h1", "h2"], [1.5, -0.5]),
        display.table(["k", "v"], [["a", 0.123456789], ["b", 2]]),
        display.text("hello <b>world</b>"),
        display.key_values([("x", 1.0)]),
        display.attention(torch.softmax(torch.randn(2, 3, 3), -1), ["a", "b", "c"]),
        display.feature_card({"feature": 3, "frequency": 0.5, "max_act": 2.5, "promoted": [], "suppressed": []}),
        display.graph_view({"metadata": {"prompt": "x"}, "nodes": [{"node_id": "E_1_0"}], "links": []}),
        display.empty("nothing", "because"),
    ]
    for v in views:
        html = display.panel("p", [v]).html()
        check_self_contained(html)
        assert spec_of(html)["children"][0]["kind"] == v.spec["kind"]
    assert has_number(views[3].spec, 0.123457) and has_number(views[2].spec, -0.5)
    assert "hello <b>world</b>" not in views[4].html()  # text is data, never markup


def test_empty_inputs_give_explicit_empty_views():
    empties = [display.heatmap(torch.zeros(0, 0), [], []), display.line_plot({}, []), display.bar_chart([], []),
               display.table(["a"], []), display.attention(torch.zeros(0, 0, 0), []),
               display.graph_view({"nodes": [], "links": []}), display.key_values([])]
    for v in empties:
        assert v.empty, v.spec
        html = v.html()
        assert spec_of(html)["kind"] == "empty" and v.spec["reason"] in html


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="do not match"):
        display.heatmap(torch.zeros(2, 3), ["a"], ["x", "y", "z"])
    with pytest.raises(ValueError, match="2-D"):
        display.heatmap(torch.zeros(3), ["a"], ["x"])
    with pytest.raises(ValueError, match="x labels"):
        display.line_plot({"s": [1, 2]}, ["only one"])
    with pytest.raises(ValueError, match="slice it first"):
        display.heatmap(torch.zeros(600, 600), list(range(600)), list(range(600)))


def test_non_finite_values_become_null_and_script_breakouts_are_escaped():
    view = display.table(["name", "v"], [["</script><script>alert(1)</script>", float("nan")]])
    html = view.html()
    assert "</script><script>alert(1)" not in html
    assert spec_of(html)["rows"] == [["</script><script>alert(1)</script>", None]]


def test_the_bundle_is_the_web_uis_own_files_and_defined_once_per_page():
    name, script = assets.bundle()
    for f in assets.SCRIPTS:
        src = (assets.STATIC_DIR / f).read_text()
        first = next(line for line in src.splitlines() if line.startswith("function"))
        assert first in script, f"{f} is not inlined"
    assert f"if (!window.{name})" in script
    index = (assets.STATIC_DIR / "index.html").read_text()
    for f in ("util.js", "heatmap.js", "graph.js", "card.js", "plots.js", "style.css"):
        assert f"/static/{f}" in index, f"the web UI does not load {f}: the views would not look like it"


def test_save_writes_a_standalone_page(tmp_path):
    path = display.bar_chart(["a"], [1.0], title="t").save(tmp_path / "v.html")
    text = path.read_text()
    assert text.startswith("<!doctype html>") and json.dumps("a") in text
