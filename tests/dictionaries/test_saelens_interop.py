"""Dictionary files move between mechscope and a real SAELens install with the same numbers, both directions.

Runs ``bench/interop_saelens.py`` (SAELens in its own virtualenv, ``bash bench/peers/setup_saelens.sh``); skipped
when that virtualenv is missing. The fast tests in test_io.py pin the file layout without SAELens.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "bench" / "interop_saelens.py"
SAELENS_PY = ROOT / "bench" / "peers" / ".venv-saelens" / "bin" / "python"


@pytest.mark.slow
@pytest.mark.skipif(not SAELENS_PY.exists(),
                    reason=f"SAELens virtualenv {SAELENS_PY.relative_to(ROOT)} missing: "
                           "run bash bench/peers/setup_saelens.sh to check interop against real SAELens")
def test_files_round_trip_through_real_sae_lens(tmp_path):
    rows_json = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(DRIVER), "--keep", str(tmp_path / "work"), "--json", str(rows_json)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    rows = json.loads(rows_json.read_text())
    assert rows and not any(r["verdict"].startswith("FAIL") for r in rows)
    matched = {(r["direction"].split()[0], r["case"], r["file"]) for r in rows if r["verdict"] == "match"}
    # every architecture both libraries have was read by the other library with the same numbers, not just refused
    for arch in ("topk", "jumprelu", "gated", "transcoder", "skip_transcoder", "jumprelu_transcoder",
                 "jumprelu_skip_transcoder"):
        assert ("mechscope", arch, "plain") in matched
        assert ("mechscope", arch, "extras, fold=True") in matched
        assert ("SAELens", arch, "save_model") in matched
    assert ("mechscope", "standard (relu)", "plain") in matched
    assert ("mechscope", "batchtopk", "plain") in matched
    assert ("SAELens", "standard", "save_model") in matched
    assert ("SAELens", "batchtopk (training class)", "save_inference_model") in matched
    assert ("SAELens", "topk (training class)", "save_inference_model") in matched
    # mechscope's unfolded extras are refused loudly by SAELens (or read correctly), never misread
    for r in rows:
        if r["file"] == "extras":
            assert r["verdict"] in ("match", "refused, as expected"), r
