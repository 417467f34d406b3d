"""Model work behind the API: steering, logit lens and activation patching, as jobs for :class:`ModelWorker`.

Each ``*_job`` returns a function ``job(worker)`` that runs on the model thread and uses the public functions of
:mod:`mechscope.features` (steering), :mod:`mechscope.lens` (logit lens) and :mod:`mechscope.interventions`
(patching); this module only validates sizes and shapes results for JSON.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .config import MAX_PATCH_TOKENS
from .runs import RunError
from .schemas import LensRequest, PatchRequest, SteerRequest

log = logging.getLogger(__name__)
Job = Callable[[Any], dict]


class TooLarge(ValueError):
    """A prompt longer than the server accepts (answered with 413)."""


def _check_tokens(model: Any, text: str, limit: int, what: str = "prompt") -> int:
    n = len(model.to_str_tokens(text))
    if n > limit:
        raise TooLarge(f"{what} has {n} tokens; this server accepts at most {limit}")
    return n


def _max_activation(db_path: Path | None, feature: int) -> float | None:
    """The feature's max activation from the run's feature database (sets the steering scale), if there is one."""
    if db_path is None:
        return None
    from . import featurestore

    try:
        value = featurestore.card(featurestore.open_db(db_path), feature).get("max_act")
    except RunError:
        return None
    return float(value) if value else None


def _steer(model: Any, d: Any, req: SteerRequest, max_act: float) -> dict:
    """Both generations and the watched feature, through :func:`mechscope.features.steering.steer`."""
    try:
        from ..features.steering import feature_vector, steer
    except ImportError:  # older installs: the same formula by hand, without the watched activation
        from ..features.logits import decoder_directions

        hook = getattr(d, "hook_name_out", None) or d.cfg.hook_name
        vec = decoder_directions(d)[req.feature] * (req.strength * max_act)
        fn = (lambda act, hook_: act + vec.to(act.dtype))  # noqa: E731
        return {"hook_name": hook, "baseline": model.generate(req.prompt, req.max_new_tokens),
                "steered": model.generate(req.prompt, req.max_new_tokens, fwd_hooks=[(hook, fn)])}
    vector = feature_vector(d, req.feature, req.strength, max_activation=max_act)
    res = steer(model, req.prompt, [vector], watch=(d, req.feature), max_new_tokens=req.max_new_tokens)
    return {"hook_name": vector.hook_name, "baseline": res.baseline_text, "steered": res.steered_text,
            "baseline_feature_act": _num(res.baseline_feature_act),
            "steered_feature_act": _num(res.steered_feature_act)}


def steer_job(req: SteerRequest, dict_folder: Path, db_path: Path | None, max_tokens: int) -> Job:
    """Generate from ``req.prompt`` with and without ``strength * max_activation * W_dec[feature]`` added at the
    dictionary's output hook point (greedy, so the two are comparable)."""
    def job(worker: Any) -> dict:
        from .. import dictionaries

        model = worker.model
        _check_tokens(model, req.prompt, max_tokens)
        key = f"{dict_folder}:{dict_folder.stat().st_mtime_ns}"
        try:
            d = worker.dictionary(key, lambda: dictionaries.load(dict_folder, model=model))
        except dictionaries.DictionaryError as e:
            raise RunError(f"cannot use dictionary {req.dictionary!r} with this model: {e}", 409) from None
        if not req.feature < d.cfg.d_sae:
            raise RunError(f"feature {req.feature} is out of range: dictionary {req.dictionary!r} has "
                           f"{d.cfg.d_sae} features (valid 0..{d.cfg.d_sae - 1})")
        max_act = _max_activation(db_path, req.feature)
        t0 = time.perf_counter()
        out = _steer(model, d, req, max_act or 1.0)
        return {"prompt": req.prompt, "feature": req.feature, "strength": req.strength,
                "max_activation": max_act, **out, "seconds": round(time.perf_counter() - t0, 3)}
    return job


def lens_job(req: LensRequest, max_tokens: int) -> Job:
    """Logit lens of the prompt: per layer × position, the top token and its probability."""
    def job(worker: Any) -> dict:
        from ..lens.logit_lens import logit_lens

        model = worker.model
        _check_tokens(model, req.prompt, max_tokens)
        res = logit_lens(model, req.prompt)
        probs = res.logits[:, 0].float().softmax(-1)  # (L+1, T, V)
        vals, ids = probs.topk(req.top_k, -1)  # (L+1, T, k)
        cols = [f"{i}:{s}" for i, s in enumerate(model.to_str_tokens(res.tokens.input_ids[0]))]
        text = [[" | ".join(model.to_string([int(t)]) for t in cell) for cell in row] for row in ids.tolist()]
        kl = res.kl_to_final()[:, 0]  # (L+1, T)
        return {"title": "logit lens: top token per layer and position", "row_labels": res.layer_labels,
                "col_labels": cols, "values": _rows(vals[..., 0]), "cell_text": text,
                "value_name": "probability of the top token",
                "meta": {"kl_to_final": _rows(kl), "final_top": text[-1]}}
    return job


def patch_job(req: PatchRequest, max_tokens: int) -> Job:
    """Denoising activation patching of ``blocks.L.<kind>`` (layers × positions), metric: logit difference."""
    def job(worker: Any) -> dict:
        from ..interventions import logit_diff, patch_sweep

        model = worker.model
        limit = min(max_tokens, MAX_PATCH_TOKENS)
        n_clean = _check_tokens(model, req.clean, limit, "clean prompt")
        n_corr = _check_tokens(model, req.corrupted, limit, "corrupted prompt")
        if n_clean != n_corr:
            raise RunError(f"clean prompt has {n_clean} tokens but corrupted prompt {n_corr}; patching needs the "
                           f"same number of tokens", 422)
        if model.to_str_tokens(req.clean) == model.to_str_tokens(req.corrupted):
            raise RunError("clean and corrupted prompts are the same tokens: patching one into the other changes "
                           "nothing; change the corrupted prompt", 422)
        ids = []
        for label, text in (("answer", req.answer), ("wrong", req.wrong)):
            try:
                ids.append(model.to_single_token(text))
            except (ValueError, KeyError) as e:
                raise RunError(f"{label}: {e}", 422) from None
        if ids[0] == ids[1]:
            raise RunError(f"answer and wrong are the same token ({req.answer!r}): their logit difference is always "
                           f"0", 422)
        layers = list(range(0, model.cfg.n_layers, req.layer_step))
        res = patch_sweep(model, req.clean, req.corrupted, logit_diff(ids[0], ids[1]), kind=req.kind, axis="pos",
                          layers=layers)
        try:
            values, name = res.normalized(), f"{res.metric_name} (normalised: 1 = clean restored)"
        except (ValueError, ZeroDivisionError):
            values, name = res.values, res.metric_name
        return {"title": res.title, "row_labels": res.row_labels, "col_labels": res.col_labels,
                "values": _rows(values), "cell_text": None, "value_name": name,
                "meta": {"clean": _num(res.clean), "corrupted": _num(res.corrupted), "argmax": list(res.argmax())}}
    return job


def _num(x: Any) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 5)


def _rows(t: torch.Tensor) -> list[list[float | None]]:
    return [[_num(v) for v in row] for row in t.float().tolist()]
