"""Feature statistics on a toy model whose true features are known by construction."""

import pytest
import torch

import mechscope as ms
from mechscope.features import FeatureError, StatsAccumulator, StatsConfig

N_TRUE, D, T, N_SEQ = 12, 24, 16, 60


def toy_data(seed: int = 0):
    """Sequences of activations: each true feature is on at one position of a few sequences."""
    g = torch.Generator().manual_seed(seed)
    dirs = torch.linalg.qr(torch.randn(D, D, generator=g))[0][:, :N_TRUE].T  # (F, D) orthonormal
    on = torch.zeros(N_SEQ, T, N_TRUE)
    for f in range(N_TRUE):
        seqs = torch.randperm(N_SEQ, generator=g)[:3 + f % 3]
        pos = torch.randint(0, T, (len(seqs),), generator=g)
        on[seqs, pos, f] = 0.5 + torch.rand(len(seqs), generator=g)
    return dirs, on, on @ dirs  # (S, T, D)


def train_sae(dirs: torch.Tensor) -> ms.dictionaries.Dictionary:
    """A ReLU SAE trained on samples of the toy's activations (each true feature on with probability 0.1)."""
    torch.manual_seed(0)
    sae = ms.dictionaries.create("relu", d_in=D, d_sae=2 * N_TRUE)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    rows = ((torch.rand(2048, N_TRUE) < 0.1) * (0.5 + torch.rand(2048, N_TRUE))) @ dirs  # (N, D)
    for _ in range(300):
        out = sae(rows)
        loss = (out.reconstruction - rows).pow(2).sum(-1).mean() + 5e-2 * out.feature_acts.abs().sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            sae.W_dec /= sae.W_dec.norm(dim=-1, keepdim=True)
    return sae.eval()


def test_top_examples_are_exactly_where_true_feature_is_on():
    dirs, on, x = toy_data()
    sae = train_sae(dirs)
    cos = torch.nn.functional.normalize(sae.W_dec.detach(), dim=-1) @ dirs.T  # (latents, true)
    tokens = torch.arange(N_SEQ * T).reshape(N_SEQ, T)
    acc = StatsAccumulator(sae.d_sae, StatsConfig(top_k=10, context_left=2, context_right=1, min_activation=0.05))
    for chunk in range(0, N_SEQ, 7):  # several batches: the heap merge is exercised
        with torch.no_grad():
            acc.update(tokens[chunk:chunk + 7], sae.encode(x[chunk:chunk + 7]))
    stats = acc.finish()
    recovered = 0
    for f in range(N_TRUE):
        latent = int(cos[:, f].argmax())
        if cos[latent, f] < 0.95:
            continue
        recovered += 1
        truth = set(on[:, :, f].amax(1).nonzero().flatten().tolist())
        top = stats.top_examples(latent)
        assert {e.sequence for e in top} == truth
        # the example's peak is the token where the true feature is on
        for e in top:
            t = tokens[e.sequence].tolist().index(e.tokens[e.position])
            assert on[e.sequence, t, f] > 0
        assert stats.active_count[latent] == len(truth)
        assert top == sorted(top, key=lambda e: -e.activation)
    assert recovered >= N_TRUE - 2


def test_streaming_equals_one_batch_and_counts():
    torch.manual_seed(0)
    feats = torch.relu(torch.randn(9, 11, 7) - 1.0)
    tokens = torch.randint(0, 50, (9, 11))
    mask = torch.rand(9, 11) > 0.2
    cfg = StatsConfig(top_k=4, reservoir=6, cooccurrence=[0, 3, 5])
    one, many = StatsAccumulator(7, cfg), StatsAccumulator(7, cfg)
    one.update(tokens, feats, mask)
    for i in range(0, 9, 2):
        many.update(tokens[i:i + 2], feats[i:i + 2], mask[i:i + 2])
    a, b = one.finish(), many.finish()
    masked = feats * mask[..., None]
    assert a.n_tokens == b.n_tokens == int(mask.sum())
    assert torch.equal(a.active_count, (masked > 0).sum((0, 1)))
    assert torch.equal(a.active_count, b.active_count) and torch.equal(a.hist, b.hist)
    assert torch.allclose(a.max_act, masked.amax((0, 1)))
    assert torch.allclose(a.top_val, b.top_val)
    assert torch.allclose(a.mean_act, masked.mean((0, 1)) * masked[..., 0].numel() / mask.sum())
    assert int(a.hist.sum()) == int((masked > 0).sum())
    act = (masked > 0).float().reshape(-1, 7)[:, [0, 3, 5]]
    assert torch.equal(a.cooc_counts, (act.T @ act).long())
    feats_, jac = a.cooccurrence()
    assert feats_ == [0, 3, 5] and torch.allclose(jac.diagonal(), torch.ones(3))
    # per-token activations in the window match the tensor
    for f in range(7):
        for e in a.top_examples(f):
            assert e.acts[e.position] == pytest.approx(e.activation)
            assert e.activation == pytest.approx(float(masked[e.sequence, :, f].max()))
        for group in a.quantile_examples(f):
            for e in group:
                assert e.activation > 0


def test_errors():
    with pytest.raises(FeatureError, match="positive integer"):
        StatsConfig(top_k=0)
    acc = StatsAccumulator(4)
    with pytest.raises(FeatureError, match="width 5"):
        acc.update(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, 5))
    with pytest.raises(FeatureError, match="no tokens"):
        acc.finish()
    acc.update(torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, 4))
    with pytest.raises(FeatureError, match="out of range"):
        acc.finish().top_examples(4)
