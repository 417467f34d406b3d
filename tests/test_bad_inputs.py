"""Bad-input sweep: the API, the CLI and the server each answer bad or damaged input with a clear error.

Every case names the exception type (or exit code / HTTP status) it must give and words its message must contain
(the argument or file at fault). Runs on a tiny random model (about a minute on 2 idle cores):

    .venv/bin/python -m pytest -q tests/test_bad_inputs.py        # as tests
    .venv/bin/python tests/test_bad_inputs.py                      # as a sweep: one line per case, exit 1 on a miss

A case passes only if the error comes at once with the expected type and message; a traceback from deep inside a
library, a 500, a silent success or an exit code 0 all count as misses.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@dataclass
class Case:
    id: str
    surface: str  # api | cli | server
    run: Callable[["Env"], object]
    expect: object  # exception class (api), exit code (cli), HTTP status (server)
    words: str  # regex the message must match


class Env:
    """Files the cases use, built once in a temporary folder: a tiny model folder, a dictionary, damaged files."""

    def __init__(self, root: Path):
        import torch
        from safetensors.torch import save_file

        import mechscope as ms
        from tiny import hooked, save_model_dir

        self.root = root
        self.model = hooked("llama")
        self.model_dir = save_model_dir(root / "model")
        self.sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post",
                                          model_name=str(self.model_dir))
        self.sae.save(root / "sae")  # for the CLI, which loads the model from model_dir
        self.api_sae = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post",
                                              model_name="tiny-llama")  # for the in-memory model
        self.foreign = ms.dictionaries.create("relu", d_in=32, d_sae=8, hook_name="blocks.1.resid_post",
                                              model_name="gpt2")
        ms.dictionaries.create("topk", d_in=32, d_sae=8, k=2, hook_name="blocks.1.resid_post").save(root / "no_k")
        cfg = json.loads((root / "no_k" / "cfg.json").read_text())
        del cfg["mechscope"]["options"]["k"]
        (root / "no_k" / "cfg.json").write_text(json.dumps(cfg))
        self.sae.save(root / "conflict")
        cfg = json.loads((root / "conflict" / "cfg.json").read_text())
        cfg["d_sae"], cfg["architecture"] = 16, "topk"
        (root / "conflict" / "cfg.json").write_text(json.dumps(cfg))
        (root / "empty.db").write_bytes(b"")
        (root / "text.db").write_text("not a database")
        (root / "lens_bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"weight\": ")
        (root / "empty.gguf").write_bytes(b"")
        (root / "absurd.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**60).to_bytes(8, "little")
                                           + (2**60).to_bytes(8, "little"))
        (root / "truncated.gguf").write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little"))
        broken = save_model_dir(root / "broken_model")
        data = (broken / "model.safetensors").read_bytes()
        (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
        save_file({"x": torch.zeros(1)}, str(root / "not_lens.safetensors"))
        runs = root / "runs"
        (runs / "bad").mkdir(parents=True)
        (runs / "bad" / "eval.json").write_text("[" * 5000 + "]" * 5000)
        (runs / "bad" / "graph.json").write_text("{" * 3000)
        (runs / "bad" / "features.db").write_text("garbage")
        self.runs = runs
        self._clients: dict[str, object] = {}

    # -------------------------------------------------------------------------------------------- helpers
    def cli(self, *argv: str) -> tuple[int, str]:
        """``mechscope ARGV`` in this process: (exit code, stderr)."""
        from mechscope.cli.main import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(list(argv))
            except SystemExit as e:  # argparse refuses while parsing
                code = int(e.code or 0)
        return code, err.getvalue()

    def client(self, remote: bool = False):
        from fastapi.testclient import TestClient

        from mechscope.server import ServeConfig, create_app

        key = "remote" if remote else "local"
        if key not in self._clients:
            cfg = ServeConfig(runs=str(self.runs), host="0.0.0.0" if remote else "127.0.0.1", allow_remote=remote)
            c = TestClient(create_app(cfg, load_model=lambda: self.model), raise_server_exceptions=False)
            c.__enter__()
            self._clients[key] = c
        return self._clients[key]

    def http(self, method: str, path: str, body: object = None, raw: str | None = None, remote: bool = False):
        c = self.client(remote)
        if raw is not None:
            return c.request(method, path, content=raw, headers={"content-type": "application/json"})
        return c.request(method, path, json=body)

    def close(self) -> None:
        for c in self._clients.values():
            c.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------------- API
def _train(env: Env, out: str, **kw):
    from mechscope.activations import ActivationStore, StoreConfig
    import torch

    from mechscope.training import DictionarySpec, LoopConfig, OptimConfig, TrainConfig, train

    cfg = TrainConfig(optim=OptimConfig(lr=kw.pop("lr", 1e-3), warmup_steps=1),
                      loop=LoopConfig(steps=2, checkpoint_every=1, log_every=1))
    spec = DictionarySpec("topk", hook="x", d_sae=32, k=kw.pop("k", 4), name="t")
    rows = torch.randn(1024, 16, generator=torch.Generator().manual_seed(0))
    store = ActivationStore.from_tensors({"x": rows}, StoreConfig(batch_size=64, buffer_rows=128))
    return train(store, spec, cfg, out=env.root / out, **kw)


def _resume_changed_k(env: Env):
    _train(env, "run_k")
    return _train(env, "run_k", k=8, resume=True)


def _resume_all_corrupt(env: Env):
    _train(env, "run_bad")
    for p in (env.root / "run_bad" / "checkpoints").glob("step_*/state.safetensors"):
        p.write_bytes(p.read_bytes()[:50])
    return _train(env, "run_bad", resume=True)


def _steer(env: Env, strength=1.0, max_activation=1.0, **kw):
    from mechscope.features import feature_vector, steer

    return steer(env.model, "abc", [feature_vector(env.api_sae, 1, strength, max_activation=max_activation)], **kw)


def _monitor(env: Env, threshold):
    from mechscope.features import FeatureMonitor

    return FeatureMonitor(env.model, env.api_sae, {1: threshold})


def _lens_top_k(env: Env, k):
    from mechscope.lens import logit_lens

    return logit_lens(env.model, "abc").top_k(k)


def _feature_db(env: Env, name):
    from mechscope.features import FeatureDB

    return FeatureDB(env.root / name)


def _tuned(env: Env, name):
    from mechscope.lens import TunedLens

    return TunedLens.load(env.root / name)


def _load_dict(env: Env, name, **kw):
    import mechscope as ms

    return ms.dictionaries.load(env.root / name, **kw)


def _splice_foreign(env: Env):
    with env.model.spliced(env.foreign):
        return env.model("abc")


def _gguf(env: Env, name):
    from mechscope.model_files import check_gguf

    return check_gguf(env.root / name)


def _load_model(env: Env, name):
    import mechscope as ms

    return ms.load_model(name if name in (None, "") else env.root / name)


def _interpret_empty_reply(env: Env):
    from mechscope.features.autointerp import AutointerpConfig, interpret
    from mechscope.features.stats import Example

    class Client:
        def chat(self, *a, **k):
            return "  "

        def yes_probability(self, *a, **k):
            return 0.9

    class Source:
        d_sae = 3

        def top_examples(self, f):
            return [Example(f, 1.0, [1, 2], [0.0, 1.0], 1, 10 * f + i, ["a", "b"]) for i in range(8)]

        def sampled_examples(self, f):
            return []

    res = interpret(Client(), Source(), 1, AutointerpConfig(n_explain=2, n_score=2, n_negative=1))
    if res.explanation is not None or res.status != "no_explanation" or res.scores:
        raise AssertionError(f"an empty reply was kept as {res.explanation!r} with scores {res.scores}")
    raise ValueError(f"status {res.status}")  # the right result, reported as this sweep's 'error'


def _create(arch: str, **kw):
    import mechscope as ms

    return ms.dictionaries.create(arch, d_in=4, d_sae=8, **kw)


def _config(path: str, **kw):
    import importlib

    module, name = path.split(":")
    return getattr(importlib.import_module(f"mechscope.{module}"), name)(**kw)


def _api_cases() -> list[Case]:
    from mechscope.dictionaries import DictionaryFormatError, DictionaryModelError, DictionaryShapeError
    from mechscope.features import FeatureDBError, FeatureError
    from mechscope.lens import TunedLensFileError
    from mechscope.model_files import ModelFileError
    from mechscope.training import CheckpointError, RunFolderError

    inf, nan = float("inf"), float("nan")
    return [
        Case("train lr=inf", "api", lambda e: _train(e, "inf", lr=inf), ValueError, r"(optim|OptimConfig)\.lr must be a finite"),
        Case("train lr=nan", "api", lambda e: _train(e, "nan", lr=nan), ValueError, r"lr must be a number|finite"),
        Case("train into a run folder", "api", lambda e: (_train(e, "twice"), _train(e, "twice")), RunFolderError,
             r"not empty.*--resume.*--overwrite"),
        Case("resume with another k", "api", _resume_changed_k, RunFolderError, r"specs\[0\]\.k: 4 .* 8 now"),
        Case("resume, every checkpoint corrupt", "api", _resume_all_corrupt, CheckpointError,
             r"run_bad/checkpoints/step_0000000[12]/state.safetensors"),
        Case("train resume+overwrite", "api", lambda e: _train(e, "ro", resume=True, overwrite=True),
             RunFolderError, "exclude each other"),
        Case("steer strength=nan", "api", lambda e: _steer(e, strength=nan), FeatureError, "strength"),
        Case("steer strength=inf", "api", lambda e: _steer(e, strength=inf), FeatureError, "strength"),
        Case("steer max_activation=inf", "api", lambda e: _steer(e, max_activation=inf), FeatureError,
             "max_activation"),
        Case("steer max_activation=0", "api", lambda e: _steer(e, max_activation=0.0), FeatureError, "never fired"),
        Case("steer max_new_tokens=-1", "api", lambda e: _steer(e, max_new_tokens=-1), FeatureError,
             "max_new_tokens"),
        Case("monitor threshold=nan", "api", lambda e: _monitor(e, nan), FeatureError, "threshold of feature 1"),
        Case("monitor threshold=inf", "api", lambda e: _monitor(e, inf), FeatureError, "threshold of feature 1"),
        Case("monitor threshold=0", "api", lambda e: _monitor(e, 0.0), FeatureError, "threshold of feature 1"),
        Case("lens top_k=100000", "api", lambda e: _lens_top_k(e, 100000), ValueError, r"1\.\.260"),
        Case("lens top_k=0", "api", lambda e: _lens_top_k(e, 0), ValueError, r"1\.\.260"),
        Case("features.db empty", "api", lambda e: _feature_db(e, "empty.db"), FeatureDBError, r"empty\.db"),
        Case("features.db not sqlite", "api", lambda e: _feature_db(e, "text.db"), FeatureDBError, r"text\.db"),
        Case("tuned lens corrupt", "api", lambda e: _tuned(e, "lens_bad.safetensors"), TunedLensFileError,
             r"lens_bad\.safetensors"),
        Case("tuned lens other file", "api", lambda e: _tuned(e, "not_lens.safetensors"), TunedLensFileError,
             r"not_lens\.safetensors"),
        Case("dictionary cfg without k", "api", lambda e: _load_dict(e, "no_k"), DictionaryFormatError,
             r"no_k/cfg\.json.*'k'"),
        Case("dictionary conflicting fields", "api", lambda e: _load_dict(e, "conflict"), DictionaryFormatError,
             r"conflict/cfg\.json: conflicting fields.*architecture.*d_sae"),
        Case("dictionary for another model (splice)", "api", _splice_foreign, DictionaryModelError, "gpt2"),
        Case("dictionary for another model (load)", "api",
             lambda e: (e.foreign.save(e.root / "foreign"), _load_dict(e, "foreign", model=e.model)),
             DictionaryModelError, "gpt2"),
        Case("gguf empty", "api", lambda e: _gguf(e, "empty.gguf"), ModelFileError, r"empty\.gguf"),
        Case("gguf absurd counts", "api", lambda e: _gguf(e, "absurd.gguf"), ModelFileError, r"absurd\.gguf"),
        Case("gguf truncated", "api", lambda e: _gguf(e, "truncated.gguf"), ModelFileError, r"truncated\.gguf"),
        Case("load_model gguf empty", "api", lambda e: _load_model(e, "empty.gguf"), ModelFileError,
             r"empty\.gguf"),
        Case("load_model truncated safetensors", "api", lambda e: _load_model(e, "broken_model"), ModelFileError,
             r"broken_model/model\.safetensors"),
        Case("load_model(None)", "api", lambda e: _load_model(e, None), ValueError, "load_model needs a model"),
        Case("load_model('')", "api", lambda e: _load_model(e, ""), ValueError, "load_model needs a model"),
        Case("autointerp empty reply", "api", _interpret_empty_reply, ValueError, "status no_explanation"),
        Case("encode wrong width", "api", lambda e: e.api_sae.encode(__import__("torch").randn(3, 31)),
             DictionaryShapeError, r"inputs of shape \(\.\.\., 32\) \(d_in=32\), got \(3, 31\)"),
        Case("encode integer tensor", "api", lambda e: e.api_sae.encode(__import__("torch").ones(3, 32).long()),
             DictionaryShapeError, "floating-point"),
        Case("encode None", "api", lambda e: e.api_sae.encode(None), DictionaryShapeError, "got NoneType"),
        # every config dataclass refuses NaN / inf where it is built
        Case("JumpReLU bandwidth=inf", "api", lambda e: _create("jumprelu", bandwidth=inf), ValueError,
             r"JumpReLUOptions\.bandwidth must be a finite number"),
        Case("BatchTopK k=inf", "api", lambda e: _create("batchtopk", k=inf), ValueError,
             r"BatchTopKOptions\.k must be a finite number"),
        Case("AutointerpConfig threshold=nan", "api", lambda e: _config("features.autointerp:AutointerpConfig",
                                                                         threshold=nan), ValueError, "threshold"),
        Case("StatsConfig min_activation=inf", "api", lambda e: _config("features.stats:StatsConfig",
                                                                         min_activation=inf), ValueError,
             r"StatsConfig\.min_activation must be a finite number"),
        Case("TunedLensConfig lr=inf", "api", lambda e: _config("lens.tuned:TunedLensConfig", lr=inf), ValueError,
             r"TunedLensConfig\.lr must be a finite number"),
        Case("ToyConfig lr=inf", "api", lambda e: _config("toy.superposition:ToyConfig", lr=inf), ValueError,
             r"ToyConfig\.lr must be a finite number"),
    ]


def _cli_cases() -> list[Case]:
    def steer(e: Env, *extra: str):
        return e.cli("steer", "--dictionary", str(e.root / "sae"), "--prompt", "abc", "--features", "1",
                     "--model", str(e.model_dir), *extra)

    def monitor(e: Env, *extra: str):
        return e.cli("monitor", "--dictionary", str(e.root / "sae"), "--features", "1", "--model",
                     str(e.model_dir), *extra)

    def lens(e: Env, *extra: str):
        return e.cli("lens", "abc", "--model", str(e.model_dir), "--out", str(e.root / "lens_out"), *extra)

    def train(e: Env, *extra: str):
        return e.cli("train", "--model", str(e.model_dir), "--hook", "blocks.1.resid_post", *extra)

    return [
        Case("train --lr inf", "cli", lambda e: train(e, "--lr", "inf", "--out", str(e.root / "c1")), 2,
             r"argument --lr: 'inf' is not a finite number"),
        Case("train --lr nan", "cli", lambda e: train(e, "--lr", "nan", "--out", str(e.root / "c1")), 2,
             r"argument --lr"),
        Case("train --sparsity-coefficient=-inf", "cli",
             lambda e: train(e, "--sparsity-coefficient=-inf", "--out", str(e.root / "c1")), 2,
             r"argument --sparsity-coefficient"),
        Case("train into a non-empty --out", "cli", lambda e: train(e, "--out", str(e.root / "sae")), 2,
             r"not empty.*--resume.*--overwrite"),
        Case("steer --strength nan", "cli", lambda e: steer(e, "--strength", "nan", "--max-activation", "1"), 2,
             r"argument --strength"),
        Case("steer --max-activation inf", "cli", lambda e: steer(e, "--max-activation", "inf"), 2,
             r"argument --max-activation"),
        Case("steer --max-new-tokens 0", "cli", lambda e: steer(e, "--max-activation", "1", "--max-new-tokens", "0"),
             2, r"--max-new-tokens must be at least 1"),
        Case("steer --db damaged", "cli", lambda e: steer(e, "--db", str(e.root / "text.db")), 2, r"text\.db"),
        Case("monitor --thresholds nan", "cli", lambda e: monitor(e, "--thresholds", "nan", "--texts", "a"), 2,
             r"argument --thresholds"),
        Case("monitor --thresholds 0", "cli", lambda e: monitor(e, "--thresholds", "0", "--texts", "a"), 2,
             r"--thresholds must be positive"),
        Case("monitor --max-new-tokens 0", "cli",
             lambda e: monitor(e, "--thresholds", "1", "--generate", "ab", "--max-new-tokens", "0"), 2,
             r"--max-new-tokens must be at least 1"),
        Case("lens --top-k 100000", "cli", lambda e: lens(e, "--top-k", "100000"), 2, r"--top-k must be in 1\.\.260"),
        Case("lens --top-k 0", "cli", lambda e: lens(e, "--top-k", "0"), 2, r"--top-k"),
        Case("lens --tuned damaged", "cli", lambda e: lens(e, "--tuned", str(e.root / "lens_bad.safetensors")), 2,
             r"lens_bad\.safetensors"),
        Case("serve --token too short", "cli",
             lambda e: e.cli("serve", "--runs", str(e.runs), "--host", "0.0.0.0", "--allow-remote", "--token", "x"),
             2, r"--token must be at least 16"),
    ]


def _server_cases() -> list[Case]:
    patch = {"clean": "abc", "corrupted": "abc", "answer": "d", "wrong": "e", "layer_step": 1}
    steer = '{"run": "bad", "dictionary": "x", "feature": 0, "prompt": "a", "strength": %s}'
    return [
        Case("/api/patch clean == corrupted", "server", lambda e: e.http("POST", "/api/patch", patch), 422,
             "same tokens"),
        Case("/api/patch answer == wrong", "server",
             lambda e: e.http("POST", "/api/patch", {**patch, "corrupted": "abd", "wrong": "d"}), 422, "same token"),
        Case("graph.json nested deeply", "server", lambda e: e.http("GET", "/api/runs/bad/graphs/graph.json"), 422,
             r"graph\.json is (nested too deeply|not valid JSON)"),
        Case("features.db damaged (search)", "server", lambda e: e.http("GET", "/api/runs/bad/features"), 409,
             r"features\.db"),
        Case("features.db damaged (card)", "server", lambda e: e.http("GET", "/api/runs/bad/features/1"), 409,
             r"features\.db"),
        Case("steer strength NaN", "server", lambda e: e.http("POST", "/api/steer", raw=steer % "NaN"), 422,
             "strength.*finite"),
        Case("steer strength Infinity", "server", lambda e: e.http("POST", "/api/steer", raw=steer % "Infinity"),
             422, "strength.*finite"),
        Case("lens top_k 100000", "server", lambda e: e.http("POST", "/api/lens", {"prompt": "a", "top_k": 100000}),
             422, "top_k"),
        Case("remote server without token", "server", lambda e: e.http("GET", "/api/runs", remote=True), 401,
             "requires an API token"),
        Case("remote server, wrong token", "server",
             lambda e: e.client(True).get("/api/runs", headers={"Authorization": "Bearer wrong-0123456789abcdef"}),
             401, "invalid API token"),
    ]


def all_cases() -> list[Case]:
    return _api_cases() + _cli_cases() + _server_cases()


def check(case: Case, env: Env) -> str | None:
    """None when ``case`` gives the expected clear error, else what went wrong."""
    if case.surface == "api":
        try:
            case.run(env)
        except case.expect as e:  # type: ignore[misc]
            msg = str(e)
            return None if re.search(case.words, msg, re.S) else f"{type(e).__name__}: {msg!r} lacks /{case.words}/"
        except Exception as e:  # noqa: BLE001 - any other exception is a miss, reported
            return f"wrong exception {type(e).__name__}: {str(e)[:300]}"
        return "no error"
    if case.surface == "cli":
        code, err = case.run(env)  # type: ignore[misc]
        if code != case.expect:
            return f"exit code {code}, stderr {err[-300:]!r}"
        if "Traceback" in err:
            return "traceback on stderr"
        return None if re.search(case.words, err, re.S) else f"stderr {err[-300:]!r} lacks /{case.words}/"
    r = case.run(env)
    try:
        body = r.json()  # type: ignore[attr-defined]
    except ValueError:
        return f"HTTP {r.status_code} without a JSON body"  # type: ignore[attr-defined]
    if r.status_code != case.expect:  # type: ignore[attr-defined]
        return f"HTTP {r.status_code}: {str(body)[:300]}"  # type: ignore[attr-defined]
    msg = str(body.get("error", "")) if isinstance(body, dict) else ""
    return None if re.search(case.words, msg, re.S) else f"error {msg!r} lacks /{case.words}/"


# ---------------------------------------------------------------------------------------------------- pytest
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pytest.importorskip("fastapi")
    e = Env(tmp_path_factory.mktemp("bad-inputs"))
    yield e
    e.close()


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: f"{c.surface}: {c.id}")
def test_bad_input_gives_a_clear_error(case: Case, env: Env) -> None:
    problem = check(case, env)
    assert problem is None, problem


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        env = Env(Path(tmp))
        misses = 0
        try:
            for case in all_cases():
                problem = check(case, env)
                misses += problem is not None
                print(f"{'ok  ' if problem is None else 'MISS'} {case.surface:6s} {case.id}"
                      + ("" if problem is None else f"\n       {problem}"))
        finally:
            env.close()
    total = len(all_cases())
    print(f"{total - misses}/{total} bad inputs gave a clear error")
    return 1 if misses else 0


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    sys.exit(main())
