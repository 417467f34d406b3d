"""The example notebooks (``examples/*.ipynb``): committed without outputs, and each one executes top to bottom
on the built-in model, offline (nbclient, a fresh kernel per notebook, in a temporary working folder).

A cell that raises (every notebook asserts what it shows) fails the test, so a broken notebook fails `make test`.
Run only these with ``pytest -m notebook``; they take a few minutes in total on two CPU cores (README).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
CELL_TIMEOUT_S = 900


def test_there_are_notebooks_for_each_topic():
    names = [p.stem for p in NOTEBOOKS]
    for topic in ("quickstart", "ioi", "sae", "steering", "attribution_graph"):
        assert any(topic in n for n in names), f"no example notebook about {topic}: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nbformat = pytest.importorskip("nbformat")
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    dirty = [i for i, c in enumerate(book.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs; strip them before committing "
                       f"(e.g. jupyter nbconvert --clear-output --inplace {path.name})")


@pytest.mark.notebook
@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient", reason="pip install -e '.[notebooks]' (nbclient, ipykernel)")
    pytest.importorskip("ipykernel")
    book = nbformat.read(path, as_version=4)
    # measure the kernel's own CPU time too: on a shared machine wall time says little about the notebook's cost
    book.cells.append(nbformat.v4.new_code_cell(
        "import resource as _r\n_u = _r.getrusage(_r.RUSAGE_SELF)\nprint(f'__cpu_seconds__ {_u.ru_utime + _u.ru_stime:.1f}')"))
    # a kernel spec of this interpreter (a system-wide "python3" spec could point at another Python)
    spec = tmp_path / "jupyter" / "kernels" / "mechscope-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "mechscope test", "language": "python"}))
    work = tmp_path / "work"
    work.mkdir()
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "JUPYTER_PATH")}
    os.environ["HF_HUB_OFFLINE"] = "1"  # the kernel inherits it: nothing is fetched from a hub
    os.environ["JUPYTER_PATH"] = str(tmp_path / "jupyter")
    try:
        client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT_S, kernel_name="mechscope-test",
                                         resources={"metadata": {"path": str(work)}})
        start = time.perf_counter()
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - start
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    html = [o for c in book.cells if c.cell_type == "code" for o in c.outputs
            if o.output_type in ("execute_result", "display_data") and "text/html" in o.get("data", {})]
    assert html, f"{path.name} displays no rich view"
    cpu = next((o.get("text", "").split()[-1] for o in book.cells[-1].outputs if "__cpu_seconds__" in o.get("text", "")),
               "?")
    print(f"{path.name}: {seconds:.0f} s wall, kernel CPU {cpu} s", file=sys.stderr)
