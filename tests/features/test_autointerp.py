"""Autointerp end to end against a real OpenAI-compatible server running the built-in SmolLM2 instruct model."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from mechscope.features.autointerp import AutointerpConfig, ScorerResult, interpret
from mechscope.features.llm import LLMError, OpenAIClient

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def server():
    """``python -m mechscope.features.llm_server`` on a free 127.0.0.1 port; stopped after the module."""
    cmd = [sys.executable, "-m", "mechscope.features.llm_server", "--port", "0", "--idle-timeout", "300",
           "--threads", "1"]  # one thread: far faster than two when other jobs keep the cores busy
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # printed once the server accepts requests
        assert "listening on" in line, f"server did not start (exit code {proc.poll()})"
        url = line.split()[-1]
        with urllib.request.urlopen(f"{url}/health", timeout=60) as r:
            assert r.status == 200
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_scorer_metrics_by_hand():
    r = ScorerResult("x", [True, True, False, False], [0.9, 0.4, 0.6, 0.1])
    assert (r.precision, r.recall, r.accuracy, r.auroc) == (0.5, 0.5, 0.5, 0.75)
    assert math.isnan(ScorerResult("x", [True], [0.3]).auroc)


def test_unreachable_server_is_a_clear_error():
    with pytest.raises(LLMError, match="cannot reach"):
        OpenAIClient("http://127.0.0.1:9", timeout=5).chat([{"role": "user", "content": "hi"}])


def test_autointerp_end_to_end(server, smol_sae):
    client = OpenAIClient(server)
    stats = smol_sae.stats
    cfg = AutointerpConfig(n_explain=5, n_score=3, n_negative=3)
    freq = stats.frequency
    live = [f for f in torch.argsort(stats.max_act, descending=True).tolist() if 0.002 < freq[f] < 0.05]
    a, b = live[0], live[1]
    res_a = interpret(client, stats, a, cfg)
    assert res_a.explanation and len(res_a.explanation) > 3 and res_a.status in ("ok", "partly_unscored")
    for result, n_pos, n_neg in ((res_a.detection, 3, 3), (res_a.fuzzing, 3, 3)):
        # held out as configured: n_score activating examples, and as many negatives / wrongly marked copies
        assert sum(result.labels) == n_pos and len(result.labels) - sum(result.labels) == n_neg, result.name
        s = res_a.scores[result.name]
        scored = [(p > cfg.threshold, y) for p, y in zip(result.p_yes, result.labels) if p is not None]
        assert s["n"] == len(scored) and s["n"] + s["n_unparsed"] == len(result.labels)
        tp = sum(pred and y for pred, y in scored)
        predicted, positives = sum(pred for pred, _ in scored), sum(y for _, y in scored)
        assert s["recall"] == pytest.approx(tp / positives)  # the stored numbers are the verdicts' numbers
        if predicted:
            assert s["precision"] == pytest.approx(tp / predicted)
        else:
            assert math.isnan(s["precision"])
    res_b = interpret(client, stats, b, cfg)
    assert res_b.explanation
    # sanity check: feature b's explanation, scored on feature a's held-out examples, scores lower
    wrong = interpret(client, stats, a, cfg, explanation=res_b.explanation)
    right_score = res_a.detection.auroc + res_a.fuzzing.auroc
    wrong_score = wrong.detection.auroc + wrong.fuzzing.auroc
    assert wrong_score < right_score, (res_a.explanation, res_b.explanation, res_a.scores, wrong.scores)
