"""Fast feature tests on tiny random models: logit effects, de-embedding, encode sources, database, steering."""

from __future__ import annotations

import pytest
import torch

import mechscope as ms
from mechscope.features import (FeatureDB, FeatureError, FeatureSource, StatsConfig, build_database, feature_stats,
                                logit_effects, nearest_features, token_batches, top_input_tokens)
from mechscope.features.logits import mlp_in_norm
from mechscope.features.steering import feature_vector, steer
from tiny import hooked

TEXTS = ["def f(x): return x + 1", "import os, sys", "class A:\n    pass", "print('hello world')"]


@pytest.fixture(scope="module")
def llama():
    return hooked("llama")


def test_logit_effects_match_manual_computation(llama):
    sae = ms.dictionaries.create("relu", d_in=32, d_sae=16, hook_name="blocks.1.resid_post")
    eff = logit_effects(llama, sae, [3, 7], k=5)
    norm = llama.final_norm_module.weight.detach()
    manual = (sae.W_dec[3].detach() * norm) @ llama.W_U.detach()
    assert [t.token_id for t in eff[0].promoted] == manual.topk(5).indices.tolist()
    assert eff[0].promoted[0].value == pytest.approx(float(manual.max()), rel=1e-5)
    assert eff[1].suppressed[0].value == pytest.approx(
        float(((sae.W_dec[7].detach() * norm) @ llama.W_U.detach()).min()), rel=1e-5)
    with pytest.raises(FeatureError, match="out of range"):
        logit_effects(llama, sae, [16])


def test_top_input_tokens_of_a_transcoder_read_through_the_mlp_norm(llama):
    tc = ms.dictionaries.create_mlp_transcoder(1, d_model=32, d_sae=8)
    top = top_input_tokens(llama, tc, [2], k=3, vocab_chunk=100)[2]
    x = mlp_in_norm(llama, 1)(llama.W_E.detach().float())
    pre = tc.pre_acts(x)[:, 2]
    assert [t.token_id for t in top] == pre.topk(3).indices.tolist()
    assert mlp_in_norm(llama, 1).weight is llama.blocks[1].post_attention_layernorm.weight


def test_nearest_features_by_decoder_cosine():
    d = ms.dictionaries.create("relu", d_in=8, d_sae=4)
    with torch.no_grad():
        d.W_dec.copy_(torch.tensor([[1.0, 0, 0, 0, 0, 0, 0, 0], [0.9, 0.1, 0, 0, 0, 0, 0, 0],
                                    [0, 0, 1.0, 0, 0, 0, 0, 0], [-1.0, 0, 0, 0, 0, 0, 0, 0]]))
    nb = nearest_features(d, [0], k=3)[0]
    assert [o for o, _ in nb] == [1, 2, 3] and nb[-1][1] == pytest.approx(-1.0)


@pytest.mark.parametrize("kind", ["transcoder", "crosscoder", "clt"])
def test_stats_work_through_any_encode_function(llama, kind):
    if kind == "transcoder":
        d = ms.dictionaries.create_mlp_transcoder(1, d_model=32, d_sae=8)
    elif kind == "crosscoder":
        d = ms.dictionaries.create("crosscoder", d_in=32, d_sae=8, n_layers=2,
                                   hook_names=["blocks.0.resid_post", "blocks.1.resid_post"])
    else:
        d = ms.dictionaries.create("clt", d_in=32, d_sae=8, n_layers=2)
    src = FeatureSource.from_dictionary(d, llama)
    stats = feature_stats(llama, src, TEXTS, StatsConfig(top_k=2), batch_size=2)
    assert stats.d_sae == src.d_sae and stats.n_sequences == 4
    names = src.hook_names
    direct = torch.zeros(src.d_sae)
    for text in TEXTS:  # each text alone (no padding); the first position is skipped as in the stats
        _, cache = llama.run_with_cache(text, names=names)
        x = cache[names[0]] if len(names) == 1 else torch.stack([cache[n] for n in names], -2)
        direct = torch.maximum(direct, src(x)[0, 1:].max(0).values)
    assert torch.allclose(stats.max_act, direct.clamp_min(0), atol=1e-5)


def test_source_errors(llama):
    sae = ms.dictionaries.create("relu", d_in=16, d_sae=8, hook_name="blocks.1.resid_post")
    with pytest.raises(ValueError, match="width"):
        FeatureSource.from_dictionary(sae, llama)
    with pytest.raises(FeatureError, match="no tokens"):
        list(token_batches(llama, []))
    with pytest.raises(FeatureError, match="str, token-id tensors or Tokens"):
        list(token_batches(llama, [3.5]))
    good = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    with pytest.raises(FeatureError, match=r"valid indices 0\.\.7"):
        FeatureSource.from_dictionary(good, llama).check_feature(8)


def test_database_and_steering_on_a_tiny_model(llama, tmp_path):
    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    stats = feature_stats(llama, sae, TEXTS, StatsConfig(top_k=3, cooccurrence=[0, 1, 2]), batch_size=3)
    path = build_database(tmp_path / "f.db", stats, llama, sae, chunk=3)
    with FeatureDB(path) as db:
        live = db.by_density(1e-9, 1.0)
        assert live, "some feature of a random ReLU SAE is active"
        f = live[0][0]
        card = db.card(f)
        assert card.top_examples and card.promoted and card.neighbours
        assert db.search("hello OR import OR class OR def")
        assert db.con.execute("SELECT COUNT(*) FROM cooccurrence").fetchone()[0] > 0
        with pytest.raises(FeatureError, match="bad search query"):
            db.search('"unbalanced')
    zero = steer(llama, "abc", [feature_vector(sae, f, 0.0, stats=stats)], targets=[ord("d")], watch=(sae, f))
    assert zero.steered_probs == zero.baseline_probs
    big = steer(llama, "abc", [feature_vector(sae, f, 50.0, stats=stats)], watch=(sae, f))
    assert big.steered_feature_act > big.baseline_feature_act
    with pytest.raises(FeatureError, match="max_activation"):
        feature_vector(sae, f, 1.0)


@pytest.mark.parametrize("arch,kwargs", [("relu", {}), ("transcoder", {"d_out": 32, "activation": "relu"}),
                                         ("crosscoder", {"n_layers": 3})])
def test_decoder_directions_are_what_decode_writes_per_unit_activation(arch, kwargs):
    """Normalisation and feature scale are applied: a direction is decode(e_f) - decode(0) in model space."""
    from mechscope.features.logits import decoder_directions

    torch.manual_seed(0)
    d = ms.dictionaries.create(arch, d_in=32, d_sae=16, **kwargs)
    out_shape = d.output_shape()
    scale_out = torch.rand(out_shape) + 0.5 if d.cfg.transcoder else None
    d.set_activation_norm(torch.rand(d.input_shape()) + 0.5, scale_out)
    d.set_feature_scale(torch.rand(d.latent_shape()) + 0.5)
    with torch.no_grad():
        d.b_dec.normal_()
        eye = torch.eye(16)
        written = d.decode(eye) - d.decode(torch.zeros(1, 16))  # (16, *out_shape)
    if arch == "crosscoder":
        written = written[:, -1, :]
    dirs = decoder_directions(d)
    assert dirs.shape == (16, 32)
    torch.testing.assert_close(dirs, written.float(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(dirs, d.W_dec.detach().float().reshape(16, -1, 32)[:, -1], atol=1e-2)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_steering_and_monitors_refuse_non_finite_numbers(llama, bad):
    from mechscope.features import FeatureMonitor
    from mechscope.features.steering import SteeringVector, clamped, contrastive_vector

    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    with pytest.raises(FeatureError, match=r"strength must be a finite number"):
        feature_vector(sae, 1, bad, max_activation=2.0)
    with pytest.raises(FeatureError, match=r"max_activation must be a finite number"):
        feature_vector(sae, 1, 2.0, max_activation=bad)
    with pytest.raises(FeatureError, match=r"strength must be a finite number"):
        contrastive_vector(llama, "blocks.1.resid_post", ["ab"], ["cd"], strength=bad)
    nan_vec = SteeringVector("blocks.1.resid_post", torch.full((32,), bad), "broken")
    with pytest.raises(FeatureError, match="'broken' holds NaN or inf"):
        steer(llama, "abc", [nan_vec])
    with pytest.raises(FeatureError, match="clamp value of feature 2 must be a finite number"):
        steer(llama, "abc", clamp=(sae, {2: bad}))
    with pytest.raises(FeatureError, match="clamp value of feature 2"):
        with clamped(llama, sae, {2: bad}):
            pass
    with pytest.raises(FeatureError, match="threshold of feature 3 must be a finite positive activation"):
        FeatureMonitor(llama, sae, {3: bad})


def test_steering_and_monitors_refuse_empty_or_meaningless_arguments(llama):
    from mechscope.features import FeatureMonitor

    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    vec = feature_vector(sae, 1, 2.0, max_activation=1.5)
    for kwargs, match in [({"prompt": ""}, "prompt must be a non-empty string"),
                          ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
                          ({"max_new_tokens": 1.5}, "max_new_tokens must be an integer")]:
        with pytest.raises(FeatureError, match=match):
            steer(llama, **{"prompt": "abc", "vectors": [vec], **kwargs})
    with pytest.raises(FeatureError, match="never fired"):
        feature_vector(sae, 1, 2.0, max_activation=0.0)
    for watches, match in [({}, "at least one"), ({1: 0.0}, "finite positive"), ({1: -1}, "finite positive"),
                           ({99: 1.0}, "out of range")]:
        with pytest.raises(FeatureError, match=match):
            FeatureMonitor(llama, sae, watches)
    mon = FeatureMonitor(llama, sae, {1: 1.0})
    with pytest.raises(FeatureError, match="max_new_tokens must be an integer >= 1"):
        mon.generate("abc", 0)
    with pytest.raises(FeatureError, match="non-empty"):
        mon.scan([""])


def test_damaged_feature_databases_name_the_file(llama, tmp_path):
    import sqlite3

    from mechscope.features import FeatureDBError

    sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post")
    stats = feature_stats(llama, sae, TEXTS, StatsConfig(top_k=3), batch_size=3)
    good = build_database(tmp_path / "good.db", stats, llama, sae, chunk=3).read_bytes()
    page = int.from_bytes(good[16:18], "big")
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t(x)")
    con.commit()
    con.close()
    cases = {"empty.db": b"", "text.db": b"just some text, no database here\n" * 10,
             "half.db": good[: len(good) // 2], "short.db": good[:60], "odd.db": good[: len(good) - 7]}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    for name, match in [("empty.db", "empty"), ("text.db", "not an SQLite file"), ("half.db", "truncated"),
                        ("short.db", "truncated"), ("odd.db", "truncated"), ("other.db", "not a mechscope feature")]:
        with pytest.raises(FeatureDBError, match=match) as err:
            FeatureDB(tmp_path / name)
        assert str(tmp_path / name) in str(err.value), name
    garbled = bytearray(good)  # whole size, every page after the schema overwritten: fails at the first query
    garbled[2 * page:] = b"\xa5" * (len(good) - 2 * page)
    (tmp_path / "garbled.db").write_bytes(bytes(garbled))
    with pytest.raises(FeatureDBError, match="garbled.db"):
        with FeatureDB(tmp_path / "garbled.db") as db:
            for f in range(db.d_sae):
                db.card(f)
