"""Interop with real SAELens: dictionary files move between mechscope and SAELens with the same numbers.

Run with mechscope's venv; SAELens runs in its own (``bash bench/peers/setup_saelens.sh``) through
``bench/peers/saelens_interop_child.py``, once for all cases, talking through safetensors and JSON files only.

mechscope -> SAELens, per architecture (d_in 64, d_sae 256, transcoders d_out 48; random weights with non-trivial
biases, decoder norms, thresholds, r_mag, W_skip): a random mechscope dictionary is saved three ways:

- ``plain``: no extra buffers;
- ``extras``: with activation normalisation (per-dimension ``norm_scale_in`` / ``norm_scale_out``) and a
  ``feature_scale``, saved as is (mechscope's default): SAELens must refuse it loudly or read it correctly;
- ``extras, fold=True``: the same dictionary saved with the buffers folded into the weights.

SAELens loads each folder with ``SAE.load_from_disk`` and computes ``encode(x)``, ``sae(x)`` and ``decode(f)`` for a
fixed input ``x`` (32 rows) and fixed sparse latents ``f``; the driver compares them with the original mechscope
dictionary's ``encode(x)``, ``forward(x).reconstruction`` and ``decode(f)`` (for skip transcoders ``decode(f, 0)``:
SAELens' ``decode`` leaves out the skip path, its ``forward`` adds it).

SAELens -> mechscope: the child builds SAELens SAEs of each architecture with random weights and saves them with
SAELens' own method (``save_model``; ``save_inference_model`` for training classes, which is how SAELens' training
runner writes its final SAE, and the only way BatchTopK is saved: as a JumpReLU); mechscope loads each folder with
``mechscope.dictionaries.load`` and must reproduce SAELens' outputs of the same folder.

Prints a markdown table; exits 1 on any mismatch (max abs diff > ``--tol``, default 1e-5, float32) or on a case
that should have been read but was refused.

    .venv/bin/python bench/interop_saelens.py [--keep DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

import mechscope.dictionaries as D

HERE = Path(__file__).parent
SAELENS_PY = HERE / "peers" / ".venv-saelens" / "bin" / "python"
CHILD = HERE / "peers" / "saelens_interop_child.py"
D_IN, D_SAE, D_OUT, K, N = 64, 256, 48, 16, 32
SAE_HOOK, TC_IN, TC_OUT = "blocks.3.resid_post", "blocks.3.mlp_in", "blocks.3.mlp_out"

# mechscope side: case -> create() arguments. ``shared`` says whether SAELens 6.54 has the architecture.
MECHSCOPE_CASES: dict[str, dict[str, Any]] = {
    "standard (relu)": {"arch": "relu"},
    "topk": {"arch": "topk", "k": K},
    "batchtopk": {"arch": "batchtopk", "k": float(K)},
    "jumprelu": {"arch": "jumprelu"},
    "gated": {"arch": "gated"},
    "transcoder": {"arch": "transcoder", "activation": "relu"},
    "skip_transcoder": {"arch": "skip_transcoder", "activation": "relu"},
    "jumprelu_transcoder": {"arch": "transcoder", "activation": "jumprelu"},
    "jumprelu_skip_transcoder": {"arch": "skip_transcoder", "activation": "jumprelu"},
    "batchtopk transcoder": {"arch": "transcoder", "activation": "batchtopk", "k": float(K)},
    "topk transcoder": {"arch": "transcoder", "activation": "topk", "k": K, "shared": False},
}
VARIANTS = ("plain", "extras", "extras, fold=True")

# SAELens side: case -> child job fields (kind, save method, config overrides)
SAELENS_CASES: dict[str, dict[str, Any]] = {
    "standard": {"kind": "standard", "save": "save_model"},
    "standard (training class)": {"kind": "standard_training", "save": "save_inference_model"},
    "topk": {"kind": "topk", "save": "save_model", "k": K},
    "topk, rescale_acts_by_decoder_norm": {"kind": "topk", "save": "save_model", "k": K,
                                           "cfg": {"rescale_acts_by_decoder_norm": True}},
    "topk (training class)": {"kind": "topk_training", "save": "save_inference_model", "k": K},
    "batchtopk (training class)": {"kind": "batchtopk_training", "save": "save_inference_model", "k": float(K),
                                   "topk_threshold": 0.3},
    "jumprelu": {"kind": "jumprelu", "save": "save_model"},
    "jumprelu (training class)": {"kind": "jumprelu_training", "save": "save_inference_model"},
    "gated": {"kind": "gated", "save": "save_model"},
    "transcoder": {"kind": "transcoder", "save": "save_model"},
    "skip_transcoder": {"kind": "skip_transcoder", "save": "save_model"},
    "jumprelu_transcoder": {"kind": "jumprelu_transcoder", "save": "save_model"},
    "jumprelu_skip_transcoder": {"kind": "jumprelu_skip_transcoder", "save": "save_model"},
}
OUTPUTS = ("acts", "decode", "forward")


@dataclass
class Row:
    direction: str
    case: str
    file: str
    expect: str  # "match" | "refuse_or_match"
    read_as: str = ""
    diffs: dict[str, float] = field(default_factory=dict)
    error: str = ""
    verdict: str = ""

    @property
    def ok(self) -> bool:
        return not self.verdict.startswith("FAIL")


def slug(*parts: str) -> str:
    return "_".join("".join(c if c.isalnum() else "-" for c in p) for p in parts)


def inputs() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, D_IN, generator=g) + 0.3 * torch.randn(D_IN, generator=g)
    mask = torch.rand(N, D_SAE, generator=g) < 0.1
    f = torch.rand(N, D_SAE, generator=g) * 2 * mask
    return {f"x{D_IN}": x.contiguous(), f"f{D_SAE}": f.contiguous()}


@torch.no_grad()
def random_mechscope(spec: dict[str, Any], seed: int, extras: bool) -> D.Dictionary:
    """A mechscope dictionary with random, non-trivial weights (and normalisation / feature-scale buffers)."""
    kwargs = {k: v for k, v in spec.items() if k not in ("arch", "shared")}
    transcoder = "transcoder" in spec["arch"]
    if transcoder:
        kwargs.update(d_out=D_OUT, hook_name=TC_IN, hook_name_out=TC_OUT)
    else:
        kwargs.update(hook_name=SAE_HOOK)
    torch.manual_seed(seed)
    d = D.create(spec["arch"], d_in=D_IN, d_sae=D_SAE, model_name="gpt2", **kwargs)
    g = torch.Generator().manual_seed(seed)
    for name, p in d.named_parameters():
        if name == "W_enc":
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(D_IN))
        elif name == "W_dec":
            rows = torch.randn(p.shape, generator=g)
            p.copy_(rows / rows.norm(dim=-1, keepdim=True) * (0.5 + torch.rand(p.shape[0], 1, generator=g)))
        elif name == "log_threshold":
            p.copy_((0.05 + 0.4 * torch.rand(p.shape, generator=g)).log())
        elif name == "r_mag":
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
        elif name == "W_skip":
            p.copy_(0.5 * torch.randn(p.shape, generator=g) / math.sqrt(D_IN))
        else:  # b_enc, b_dec, b_gate, b_mag
            p.copy_(0.2 * torch.randn(p.shape, generator=g))
    if spec["arch"] == "batchtopk" or spec.get("activation") == "batchtopk":
        d.threshold.fill_(0.3)
    if extras:
        scale_in = 0.5 + 1.5 * torch.rand(D_IN, generator=g)
        scale_out = 0.5 + 1.5 * torch.rand(D_OUT, generator=g) if transcoder else None
        d.set_activation_norm(scale_in, scale_out)
        d.set_feature_scale(0.8 + 0.5 * torch.rand(D_SAE, generator=g))
    return d.eval()


@torch.no_grad()
def mechscope_outputs(d: D.Dictionary, x: torch.Tensor, f: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the SAELens child computes, the mechscope way (decode without the skip path, like SAELens' decode)."""
    d.eval()
    skip = d.cfg.skip_connection
    return {"acts": d.encode(x), "forward": d(x).reconstruction,
            "decode": d.decode(f, torch.zeros(*f.shape[:-1], d.d_in) if skip else None)}


def max_diffs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    out = {}
    for k in OUTPUTS:
        if a[k].shape != b[k].shape:
            out[k] = math.inf
        else:
            out[k] = float((a[k].double() - b[k].double()).abs().max())
    return out


def judge(row: Row, tol: float) -> None:
    if row.error:
        row.verdict = "refused, as expected" if row.expect == "refuse_or_match" else "FAIL: refused"
    elif max(row.diffs.values()) <= tol:
        row.verdict = "match"
    else:
        row.verdict = "FAIL: numbers differ"


def run(work: Path, tol: float, saelens_py: Path) -> tuple[list[Row], dict[str, Any]]:
    torch.set_num_threads(1)
    tensors = inputs()
    save_file(tensors, str(work / "inputs.safetensors"))
    x, f = tensors[f"x{D_IN}"], tensors[f"f{D_SAE}"]

    # ---- mechscope saves
    rows: list[Row] = []
    expected: dict[str, dict[str, torch.Tensor]] = {}
    load_jobs = []
    for i, (case, spec) in enumerate(MECHSCOPE_CASES.items()):
        for variant in VARIANTS:
            d = random_mechscope(spec, seed=100 + i, extras=variant != "plain")
            name = slug("ms", case, variant)
            folder = work / "from_mechscope" / name
            d.save(folder, fold=variant.endswith("fold=True"))
            expected[name] = mechscope_outputs(d, x, f)
            load_jobs.append({"name": name, "folder": str(folder)})
            shared = spec.get("shared", True)
            rows.append(Row("mechscope → SAELens", case, variant,
                            "match" if shared and variant != "extras" else "refuse_or_match"))
    # ---- SAELens saves
    create_jobs = []
    for i, (case, job) in enumerate(SAELENS_CASES.items()):
        name = slug("sl", case)
        tc = "transcoder" in job["kind"]
        create_jobs.append({**job, "name": name, "folder": str(work / "from_saelens" / name), "seed": 200 + i,
                            "d_in": D_IN, "d_sae": D_SAE, "d_out": D_OUT,
                            "hook_name": "blocks.3.ln2.hook_normalized" if tc else "blocks.3.hook_resid_post",
                            "hook_name_out": "blocks.3.hook_mlp_out"})
        rows.append(Row("SAELens → mechscope", case, job["save"], "match"))

    jobs = {"inputs": str(work / "inputs.safetensors"), "out": str(work / "saelens_out"), "load": load_jobs,
            "create": create_jobs}
    (work / "jobs.json").write_text(json.dumps(jobs, indent=1))
    proc = subprocess.run([str(saelens_py), str(CHILD), str(work / "jobs.json")], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"SAELens child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    results = json.loads((work / "saelens_out" / "results.json").read_text())

    for row, job in zip(rows, load_jobs + create_jobs):
        res = results[job["name"]]
        if not res["ok"]:
            row.error = res["error"]
            judge(row, tol)
            continue
        theirs = load_file(str(work / "saelens_out" / f"{job['name']}.safetensors"))
        if row.direction.startswith("mechscope"):
            row.read_as = f"SAELens {res['class']}"
            row.diffs = max_diffs(expected[job["name"]], theirs)
        else:
            try:
                d = D.load(job["folder"])
            except Exception as e:  # a refusal is a result: judged below
                row.error = f"{type(e).__name__}: {e}"[:400]
                judge(row, tol)
                continue
            row.read_as = f"mechscope {type(d).__name__}"
            row.diffs = max_diffs(mechscope_outputs(d, x, f), theirs)
        judge(row, tol)
    return rows, results["_env"]


def fmt(v: float) -> str:
    return "0" if v == 0 else f"{v:.1e}"


def tables(rows: list[Row]) -> str:
    """Two markdown tables (one per direction) plus numbered refusal messages."""
    notes: dict[str, int] = {}

    def cell(r: Row) -> str:
        if r.error:
            message = re.sub(r"state_dict for \w+:", "state_dict for <class>:", " ".join(r.error.split()))[:200]
            text = f"refused [{notes.setdefault(message, len(notes) + 1)}]"
        else:
            text = " / ".join(fmt(r.diffs[k]) for k in OUTPUTS)
        return f"**{r.verdict}** {text}" if not r.ok else text

    out = ["mechscope → SAELens (`SAE.load_from_disk`); max abs diff encode / decode / forward against the mechscope "
           "dictionary that was saved:", "",
           "| architecture | SAELens reads it as | plain | with extras (default save) | with extras, `fold=True` |",
           "|---|---|---|---|---|"]
    cases: dict[str, list[Row]] = {}
    for r in rows:
        if r.direction.startswith("mechscope"):
            cases.setdefault(r.case, []).append(r)
    for case, group in cases.items():
        read_as = next((r.read_as.removeprefix("SAELens ") for r in group if r.read_as), "—")
        by_file = {r.file: r for r in group}
        out.append(f"| {case} | {read_as} | " + " | ".join(cell(by_file[v]) for v in VARIANTS) + " |")
    out += ["", "SAELens → mechscope (`mechscope.dictionaries.load`); max abs diff against SAELens' outputs for the "
            "same folder:", "",
            "| SAELens SAE | saved with | mechscope reads it as | encode / decode / forward | result |",
            "|---|---|---|---|---|"]
    for r in rows:
        if r.direction.startswith("SAELens"):
            result = "match" if r.ok and not r.error else r.verdict
            out.append(f"| {r.case} | `{r.file}` | {r.read_as.removeprefix('mechscope ') or '—'} | {cell(r)} | "
                       f"{result} |")
    if notes:
        out += [""] + [f"[{i}] `{text}`" for text, i in notes.items()]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tol", type=float, default=1e-5, help="largest allowed max abs diff (float32)")
    p.add_argument("--keep", type=Path, help="keep the saved folders and outputs here instead of a temp folder")
    p.add_argument("--json", type=Path, help="also write the rows as JSON")
    p.add_argument("--saelens-python", type=Path, default=SAELENS_PY)
    args = p.parse_args()
    if not args.saelens_python.exists():
        sys.exit(f"SAELens virtualenv missing ({args.saelens_python}): run bash bench/peers/setup_saelens.sh")
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows, env = run(args.keep, args.tol, args.saelens_python)
    else:
        with tempfile.TemporaryDirectory(prefix="interop_saelens_") as tmp:
            rows, env = run(Path(tmp), args.tol, args.saelens_python)
    print(f"SAELens {env['sae_lens_version']} (torch {env['torch_version']}); inference architectures: "
          f"{', '.join(env['inference_architectures'])}; training-only: "
          f"{', '.join(sorted(set(env['training_architectures']) - set(env['inference_architectures'])))}\n")
    print(tables(rows))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=1))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} cases pass (tolerance {args.tol:g})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
