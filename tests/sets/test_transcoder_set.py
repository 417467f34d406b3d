"""The transcoder-set builder on a tiny model: every layer, both layouts, evaluation, manifest, checks, resume."""

from __future__ import annotations

import json

import pytest
import torch

from mechscope.dictionaries import load_transcoder_set
from mechscope.sets import SetConfig, TranscoderSetError, build_transcoder_set, find_transcoder_set
from mechscope.sets.store import MANIFEST

from tiny import hooked

CFG = dict(model="tiny-llama", source="code", tokens=2048, expansion=2, k=4, batch_size=256, buffer_rows=512,
           context_size=32, checkpoint_every=2, eval_contexts=4)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    model = hooked("llama")
    folder = tmp_path_factory.mktemp("set") / "transcoders"
    build_transcoder_set(SetConfig(**CFG), folder=folder, model=model)
    return model, folder


def test_builds_every_layer_in_both_layouts(built):
    model, folder = built
    found = find_transcoder_set("tiny-llama", folder)
    assert found is not None and found.n_layers == model.cfg.n_layers
    tcs = found.transcoders()
    ct = load_transcoder_set(found.circuit_tracer_dir)
    x = torch.randn(5, model.cfg.d_model)
    for layer, (a, b) in enumerate(zip(tcs, ct)):
        assert a.cfg.hook_name == f"blocks.{layer}.mlp_in" and a.hook_name_out == f"blocks.{layer}.mlp_out"
        torch.testing.assert_close(a(x).reconstruction, b(x).reconstruction, rtol=1e-5, atol=1e-5)
    ev = found.eval()
    assert [row["layer"] for row in ev["layers"]] == list(range(model.cfg.n_layers))
    rep = ev["replacement"]
    assert rep["layers"] == model.cfg.n_layers and 0.0 <= rep["top1_agreement"] <= 1.0 and rep["kl"] >= 0.0
    assert not (folder / "run" / "checkpoints").exists()


def test_replacement_eval_is_exact_for_exact_transcoders(built):
    """A transcoder that returns the true MLP output makes the replacement model the real one: KL 0, agreement 1."""
    from mechscope.evals.replacement import evaluate_replacement

    model, folder = built
    tcs = find_transcoder_set("tiny-llama", folder).transcoders()

    class Exact(torch.nn.Module):
        def __init__(self, tc, layer):
            super().__init__()
            self.cfg, self.hook_name_out, self.W_enc, self.layer = tc.cfg, tc.hook_name_out, tc.W_enc, layer
            self.architecture = tc.architecture

        def forward(self, x):
            mlp = model.hf.model.layers[self.layer].mlp  # weights only: calling the module would fire its hooks
            lin = torch.nn.functional.linear
            out = lin(torch.nn.functional.silu(lin(x, mlp.gate_proj.weight)) * lin(x, mlp.up_proj.weight),
                      mlp.down_proj.weight)
            return type("Out", (), {"reconstruction": out})()

    ids = [torch.randint(0, 256, (16,)) for _ in range(3)]
    res = evaluate_replacement(model, [Exact(tc, i) for i, tc in enumerate(tcs)], ids)
    assert res.kl < 1e-8 and res.top1_agreement == 1.0 and abs(res.ce_replacement - res.ce_clean) < 1e-5
    bad = evaluate_replacement(model, tcs, ids)
    assert bad.kl > 1e-4


def test_foreign_or_corrupt_sets_are_refused_by_name(built, tmp_path):
    model, folder = built
    with pytest.raises(TranscoderSetError, match="tiny-llama"):
        find_transcoder_set("another-model", folder)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    victim = sorted((copy / "saelens").rglob("*.safetensors"))[0]
    victim.write_bytes(victim.read_bytes()[:-7])
    with pytest.raises(TranscoderSetError, match=victim.name):
        find_transcoder_set(model, copy)
    (copy / MANIFEST).write_text("{not json")
    with pytest.raises(TranscoderSetError, match=MANIFEST):
        find_transcoder_set(model, copy)
    assert find_transcoder_set(model, tmp_path / "absent") is None


def test_interrupted_build_resumes_and_refuses_other_settings(tmp_path):
    model = hooked("llama")
    folder = tmp_path / "set"
    stop = RuntimeError("killed")

    def die(step, run):  # an interruption after the first checkpoint
        if step == 3:
            raise stop

    from mechscope import sets

    original = sets.build.train
    sets.build.train = lambda *a, **kw: original(*a, callbacks=[die], **kw)
    try:
        with pytest.raises(RuntimeError, match="killed"):
            build_transcoder_set(SetConfig(**CFG), folder=folder, model=model)
    finally:
        sets.build.train = original
    assert find_transcoder_set(model, folder) is None  # unfinished: not used
    with pytest.raises(ValueError, match="other settings"):
        build_transcoder_set(SetConfig(**{**CFG, "k": 3}), folder=folder, model=model)
    build_transcoder_set(SetConfig(**CFG), folder=folder, model=model)
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["steps"] == SetConfig(**CFG).steps
