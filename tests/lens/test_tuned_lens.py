"""Tuned lens: training lowers KL below the logit lens, checkpoints resume exactly, save/load round trips."""

import inspect
import json

import pytest
import torch

from mechscope.lens.tuned import TunedLens, TunedLensConfig, compare_lenses, pack_corpus, train_tuned_lens


@pytest.fixture(scope="module")
def corpus():
    return [inspect.getsource(json.decoder), inspect.getsource(json.encoder)]


@pytest.fixture(scope="module")
def model():
    from tiny import hooked

    return hooked("llama")


CFG = dict(batch_size=4, seq_len=32, lr=3e-3, checkpoint_every=3)


def test_training_beats_the_logit_lens(model, corpus):
    lens = train_tuned_lens(model, corpus, TunedLensConfig(steps=30, **CFG), progress=False)
    seqs = pack_corpus(model, corpus, 32)[:8]  # what it was fitted on: the optimiser must have reduced the KL
    cmp = compare_lenses(model, lens, seqs)
    assert cmp.logit_lens_kl.shape == (model.cfg.n_layers + 1,)
    # The final row is the model itself for both; every translated layer gets closer to it.
    assert float(cmp.tuned_lens_kl[-1]) < 1e-6 and float(cmp.logit_lens_kl[-1]) < 1e-6
    assert (cmp.tuned_lens_kl[:-1] < 0.8 * cmp.logit_lens_kl[:-1]).all(), cmp.to_markdown()
    assert "tuned lens KL" in cmp.to_markdown()


def test_resume_equals_uninterrupted(model, corpus, tmp_path):
    straight = train_tuned_lens(model, corpus, TunedLensConfig(steps=6, **CFG), progress=False)
    ckpt = tmp_path / "lens.safetensors"
    train_tuned_lens(model, corpus, TunedLensConfig(steps=3, **CFG), checkpoint=ckpt, progress=False)
    assert ckpt.is_file() and not (tmp_path / "lens.safetensors.tmp").exists()
    resumed = train_tuned_lens(model, corpus, TunedLensConfig(steps=6, **CFG), checkpoint=ckpt, progress=False)
    torch.testing.assert_close(resumed.weight, straight.weight, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(resumed.bias, straight.bias, atol=1e-6, rtol=1e-5)
    # resume=False ignores the checkpoint and starts over.
    fresh = train_tuned_lens(model, corpus, TunedLensConfig(steps=6, **CFG), checkpoint=ckpt, resume=False,
                             progress=False)
    torch.testing.assert_close(fresh.weight, straight.weight, atol=1e-6, rtol=1e-5)


def test_save_load_round_trip(model, corpus, tmp_path):
    lens = train_tuned_lens(model, corpus, TunedLensConfig(steps=2, **CFG), progress=False)
    lens.save(tmp_path / "l.safetensors")
    again = TunedLens.load(tmp_path / "l.safetensors")
    a, b = lens(model, "abc def"), again(model, "abc def")
    torch.testing.assert_close(a.logits, b.logits)
    assert again.model_name == model.cfg.name
    with pytest.raises(FileNotFoundError):
        TunedLens.load(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="3 layers of width 32"):
        TunedLens(4, 32)(model, "abc")


def test_config_validation():
    with pytest.raises(ValueError, match="steps"):
        TunedLensConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        TunedLensConfig(lr=0)


def test_damaged_tuned_lens_files_name_the_file(model, tmp_path):
    from safetensors.torch import save_file

    from mechscope.lens import TunedLensFileError

    good = tmp_path / "good.safetensors"
    TunedLens.for_model(model).save(good)
    data = good.read_bytes()
    cases = {"empty": b"", "text": b"not a safetensors file at all", "half": data[: len(data) // 2],
             "header_only": data[:8]}
    for name, blob in cases.items():
        (tmp_path / f"{name}.safetensors").write_bytes(blob)
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    save_file({"weight": torch.zeros(3, 4), "bias": torch.zeros(3, 4)}, str(tmp_path / "shape.safetensors"))
    save_file({"weight": torch.full((3, 4, 4), float("nan")), "bias": torch.zeros(3, 4)},
              str(tmp_path / "nan.safetensors"))
    for name, match in [("empty", "truncated or corrupt"), ("text", "truncated or corrupt"),
                        ("half", "truncated or corrupt"), ("header_only", "truncated or corrupt"),
                        ("other", "not a tuned lens file"), ("shape", "not a tuned lens's"), ("nan", "NaN")]:
        path = tmp_path / f"{name}.safetensors"
        with pytest.raises(TunedLensFileError, match=match) as err:
            TunedLens.load(path)
        assert str(path) in str(err.value), name
    with pytest.raises(TunedLensFileError, match="half.safetensors"):  # a damaged training checkpoint too
        train_tuned_lens(model, ["x" * 200], TunedLensConfig(steps=1, **CFG), checkpoint=tmp_path / "half.safetensors",
                         progress=False)
    with pytest.raises(ValueError, match=r"TunedLensConfig\.lr must be a finite number"):
        TunedLensConfig(lr=float("inf"))
