"""Logit lens and direct logit attribution on tiny random models of every family."""

import pytest
import torch

from mechscope.lens import direct_logit_attribution, logit_lens


def test_logit_lens_last_layer_is_the_models_logits(tiny, tokens):
    lens = logit_lens(tiny, tokens)
    n = tiny.cfg.n_layers
    assert lens.logits.shape == (n + 1, 2, 12, tiny.cfg.d_vocab)
    with torch.no_grad():
        want = tiny(tokens)
    torch.testing.assert_close(lens.logits[-1].float(), want.float(), atol=1e-4, rtol=1e-4)
    kl = lens.kl_to_final()
    assert kl.shape == (n + 1, 2, 12) and float(kl[-1].abs().max()) < 1e-5
    if float(want.float().std(-1).mean()) > 0.1:  # (Granite's tiny config divides logits to near-uniform)
        assert float(kl[0].mean()) > 1e-3  # the embeddings alone do not predict like the whole model
    ranks = lens.rank(int(want[0, -1].argmax()))
    assert int(ranks[-1]) == 0
    top = lens.top_k(3)
    assert len(top) == n + 1 and len(top[-1]) == 3 and top[-1][0][1] >= top[-1][1][1]


def test_lens_plots(tmp_path):
    from tiny import hooked

    model = hooked("llama")
    lens = logit_lens(model, "hello there")
    lens.plot_kl(tmp_path / "kl.png")
    lens.plot_probs(104, tmp_path / "p.png")
    assert (tmp_path / "kl.png").stat().st_size > 1000 and (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.parametrize("split_heads", [True, False])
def test_dla_sums_to_the_logit(tiny, tokens, split_heads):
    n = tiny.cfg.n_layers
    dla = direct_logit_attribution(tiny, tokens, answer=[5, 6], wrong=[9, 10], pos=-2, split_heads=split_heads)
    recon = dla.values.sum(0) + dla.bias
    torch.testing.assert_close(recon, dla.total, atol=1e-4, rtol=1e-5)
    # total is the model's own logit difference (pre soft-cap for Gemma: compare where there is none)
    if getattr(tiny.hf.config, "final_logit_softcapping", None) is None:
        with torch.no_grad():
            lg = tiny(tokens)[:, -2]
        torch.testing.assert_close(dla.total, lg[[0, 1], [5, 6]] - lg[[0, 1], [9, 10]], atol=1e-4, rtol=1e-4)
    n_comp = 1 + (tiny.pos_embed_module is not None) + n * ((tiny.cfg.n_heads + 1) if split_heads else 1) + n
    assert dla.values.shape == (n_comp, 2)
    if split_heads:
        assert dla.heads().values.shape == (n, tiny.cfg.n_heads)
    single = direct_logit_attribution(tiny, tokens, answer=5, pos=-2, split_heads=split_heads)
    torch.testing.assert_close(single.values.sum(0) + single.bias, single.total, atol=1e-4, rtol=1e-5)


def test_dla_errors():
    from tiny import hooked

    model = hooked("llama")
    with pytest.raises(ValueError, match="2 prompts"):
        direct_logit_attribution(model, ["ab", "cd"], answer=[1, 2, 3])
    with pytest.raises(ValueError, match="not a single token"):
        direct_logit_attribution(model, "ab", answer="xyz")
    with pytest.raises(ValueError, match=r"0\.\.259"):
        direct_logit_attribution(model, "ab", answer=999)
