"""Training choices that decide dictionary quality: AuxK in the units of the reconstruction loss, and transcoder
input centring folded exactly into the saved weights."""

from __future__ import annotations

import torch

from mechscope.activations import ActivationStore, StoreConfig
from mechscope.dictionaries import create
from mechscope.training import (DeadLatentConfig, DictionarySpec, LoopConfig, OptimConfig, SparsityConfig,
                                TrainConfig, train)
from mechscope.training.trainer import auto_dead_after, fold_input_shift_

from .helpers import sparse_data


def _handicapped_topk_run(auxk: float) -> tuple[float, float]:
    """Train a TopK SAE on 64 sparse directions with half its latents pushed out of the top-k after step 1.

    Returns ``(dead fraction on the data, final fvu)``. Without AuxK those latents never win a top-k slot again,
    so they get no gradient and stay dead; AuxK gives the best of them the residual error to explain.
    """
    x = sparse_data(16384, 64, 16)

    def handicap(step: int, run) -> None:  # type: ignore[no-untyped-def]
        if step == 1:
            d = next(iter(run.trainers.values())).dictionary
            with torch.no_grad():
                d.b_enc[:32] -= 3.0

    store = ActivationStore.from_tensors({"toy": x}, StoreConfig(batch_size=512, buffer_rows=4096))
    cfg = TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=10), sparsity=SparsityConfig(auxk_coefficient=auxk),
                      dead=DeadLatentConfig(dead_after_tokens=2048), loop=LoopConfig(steps=400, log_every=50))
    result = train(store, DictionarySpec("topk", hook="toy", d_sae=64, k=4, name="t"), cfg, callbacks=[handicap])
    acts = result.dictionaries["t"].encode(x)
    return float(((acts > 0).sum(0) == 0).float().mean()), result.metrics["t"]["fvu"]


def test_auxk_revives_dead_latents():
    dead_without, _ = _handicapped_topk_run(0.0)
    dead_with, _ = _handicapped_topk_run(1 / 32)
    assert dead_without > 0.2, "the handicap should leave a quarter of the latents dead without AuxK"
    assert dead_with < dead_without / 2


def test_auxk_is_in_mse_units():
    """At Gao et al.'s 1/32 the AuxK term is comparable to mse, not hundreds of times smaller."""
    torch.manual_seed(0)
    d = create("topk", d_in=16, d_sae=64, k=4)
    x = torch.randn(256, 16) * 5
    dead = torch.zeros(64, dtype=torch.bool)
    dead[32:] = True
    terms = d.loss_terms(x, dead_mask=dead)
    out = d(x)
    err = x - out.reconstruction
    pre = out.pre_acts.masked_fill(~dead, float("-inf"))
    values, idx = pre.topk(8, dim=-1)
    e_hat = torch.zeros_like(out.pre_acts).scatter(-1, idx, values) @ d.W_dec  # raw pre-activations (SAELens)
    expected = (e_hat - err).pow(2).sum(-1).mean()  # k_aux = d_in // 2 = 8 of 32 dead: scale 1
    torch.testing.assert_close(terms["auxk"], expected, rtol=1e-5, atol=1e-5)


def test_dead_window_follows_run_length():
    assert auto_dead_after(400 * 512) == 20_480
    assert auto_dead_after(10**12) == 10_000_000


def test_fold_input_shift_is_exact():
    torch.manual_seed(1)
    for arch in ("transcoder", "skip_transcoder"):
        d = create(arch, d_in=12, d_sae=40, d_out=10, activation="topk", k=5)
        with torch.no_grad():
            for p in d.parameters():
                p.normal_()
        shift = torch.randn(12)
        x = torch.randn(30, 12)
        want = d(x - shift)
        fold_input_shift_(d, shift)
        got = d(x)
        torch.testing.assert_close(got.reconstruction, want.reconstruction, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got.feature_acts, want.feature_acts, rtol=1e-4, atol=1e-4)


def test_transcoder_trains_centred_and_saves_a_plain_equivalent(tmp_path):
    """The in-training function (normalised, centred inputs) equals the exported one on raw inputs."""
    g = torch.Generator().manual_seed(4)
    x = sparse_data(4096, 64, 16) * 3 + torch.randn(16, generator=g) * 4  # far from the origin, like mlp_in
    y = x @ torch.randn(16, 12, generator=g)
    store = ActivationStore.from_tensors({"in": x, "out": y}, StoreConfig(batch_size=512, buffer_rows=2048))
    cfg = TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=5), loop=LoopConfig(steps=40, log_every=10))
    spec = DictionarySpec("skip_transcoder", hook="in", hook_out="out", activation="topk", k=4, d_sae=48, name="tc")
    result = train(store, spec, cfg, out=tmp_path / "run")
    from mechscope.training.loop import Run

    run = Run(store, [spec], cfg)
    run.fit()
    trainer = run.trainers["tc"]
    assert trainer.shift_in is not None and float(trainer.shift_in.norm()) > 1.0
    xn, _ = trainer.normalised(x[:64], y[:64])
    in_training = trainer.dictionary(xn).reconstruction / trainer.scale_out
    exported = result.dictionaries["tc"](x[:64]).reconstruction
    torch.testing.assert_close(exported, in_training.detach(), rtol=1e-4, atol=1e-4)
    from mechscope.dictionaries import load

    saved = load(tmp_path / "run" / "tc")
    torch.testing.assert_close(saved(x[:64]).reconstruction, exported, rtol=1e-4, atol=1e-4)


def test_skip_transcoder_starts_at_the_least_squares_map():
    """On a linear input -> output relation the skip path alone explains the output from the first step."""
    from mechscope.training import DictionaryTrainer, DistInfo, build_dictionary

    g = torch.Generator().manual_seed(5)
    x = torch.randn(1024, 16, generator=g) + 2.0
    y = x @ torch.randn(16, 12, generator=g)
    spec = DictionarySpec("skip_transcoder", hook="in", hook_out="out", activation="topk", k=4, d_sae=48)
    cfg = TrainConfig()
    trainer = DictionaryTrainer(spec, build_dictionary(spec, {"in": 16, "out": 12}), cfg, DistInfo())
    trainer.initialise({"in": x, "out": y})
    xn, yn = trainer.normalised(x, y)
    linear = (xn @ trainer.dictionary.W_skip.T + trainer.dictionary.b_dec).detach()
    assert float((linear - yn).pow(2).sum() / (yn - yn.mean(0)).pow(2).sum()) < 1e-4
    plain = DictionaryTrainer(spec, build_dictionary(spec, {"in": 16, "out": 12}),
                              TrainConfig(loop=LoopConfig(init_skip_lstsq=False)), DistInfo())
    plain.initialise({"in": x, "out": y})
    assert float(plain.dictionary.W_skip.detach().abs().max()) == 0.0


def test_capped_row_weights_count_massive_rows_like_rows_at_the_cap():
    from mechscope.training.trainer import capped_row_weights

    y = torch.ones(10, 4)  # norm 2 each: median 2
    assert capped_row_weights(y, 8.0) is None  # nothing above the cap: plain mean, bit for bit
    y[3] *= 32.0  # norm 64 = 32 x median; cap 8 -> limit 16: weight (16 / 64)^2
    w = capped_row_weights(y, 8.0)
    assert w is not None
    torch.testing.assert_close(w, torch.tensor([1, 1, 1, 1 / 16, 1, 1, 1, 1, 1, 1.0]))
    assert capped_row_weights(y, None) is None


def _outlier_run(cap: float | None) -> float:
    """A TopK SAE on sparse data where 1 row in 200 is massive (400x, around one direction with large spread, like
    the rows an MLP writes at attention-sink positions); returns the FVU on the ordinary rows."""
    x = sparse_data(16384, 64, 16).clone()
    g = torch.Generator().manual_seed(11)
    sink = torch.randn(16, generator=g)
    massive = torch.arange(len(x)) % 200 == 0
    x[massive] = 400.0 * (sink + torch.randn(int(massive.sum()), 16, generator=g))
    store = ActivationStore.from_tensors({"toy": x}, StoreConfig(batch_size=512, buffer_rows=4096))
    cfg = TrainConfig(optim=OptimConfig(lr=3e-3, warmup_steps=10), loop=LoopConfig(steps=300, row_norm_cap=cap))
    d = train(store, DictionarySpec("topk", hook="toy", d_sae=64, k=4, name="t"), cfg).dictionaries["t"]
    ordinary = x[~massive]
    with torch.no_grad():
        err = (d(ordinary).reconstruction - ordinary).pow(2).sum()
    return float(err / (ordinary - ordinary.mean(0)).pow(2).sum())


def test_row_norm_cap_keeps_massive_rows_from_swamping_the_rest():
    """Uncapped, the 0.5% massive rows are most of every batch's squared error and the ordinary rows are fit
    poorly; capped at 8x the median norm they weigh like ordinary-but-large rows and the rest is learned."""
    fvu_uncapped, fvu_capped = _outlier_run(None), _outlier_run(8.0)
    assert fvu_capped < 0.75 * fvu_uncapped, (fvu_capped, fvu_uncapped)  # measured 0.25 vs 0.41


def test_auxk_reaches_latents_whose_pre_activation_is_negative_everywhere():
    """The common way to be dead: a ReLU inside AuxK would give such latents no gradient at all (the term then equals
    mse and does nothing, as the first full transcoder set's deep layers showed); raw pre-activations do."""
    torch.manual_seed(0)
    d = create("topk", d_in=16, d_sae=64, k=4)
    with torch.no_grad():
        d.b_enc[32:] = -100.0  # latents 32.. never fire
    x = torch.randn(256, 16)
    dead = torch.zeros(64, dtype=torch.bool)
    dead[32:] = True
    from mechscope.training.sparse_topk import topk_loss_terms

    for terms in (d.loss_terms(x, dead_mask=dead), topk_loss_terms(d, x, x, dead)[0]):
        d.zero_grad()
        terms["auxk"].backward()
        assert float(d.W_enc.grad[:, 32:].abs().sum()) > 0
        assert float(d.b_enc.grad[32:].abs().sum()) > 0
