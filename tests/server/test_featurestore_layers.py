"""Graph nodes get the card of the transcoder that produced them, not of another dictionary at the same layer."""

from types import SimpleNamespace

from mechscope.server import featurestore
from mechscope.server.runs import RunInfo


def test_db_for_layer_prefers_the_transcoder_reading_mlp_in(monkeypatch):
    metas = {"sae/features.db": {"hook_names": ["blocks.6.resid_post"]},
             "tc/features.db": {"hook_names": ["blocks.6.mlp_in"]},
             "tc4/features.db": {"hook_names": "blocks.4.hook_mlp_in"}}
    monkeypatch.setattr(featurestore, "open_db", lambda path: SimpleNamespace(meta=metas[path]))
    registry = SimpleNamespace(resolve=lambda run, rel: rel)
    info = RunInfo(name="tour", feature_dbs=list(metas))
    assert featurestore.db_for_layer(registry, "tour", info, 6) == "tc/features.db"
    assert featurestore.db_for_layer(registry, "tour", info, 4) == "tc4/features.db"
    only_sae = RunInfo(name="sae", feature_dbs=["sae/features.db"])
    assert featurestore.db_for_layer(registry, "sae", only_sae, 6) == "sae/features.db"  # the fallback
    assert featurestore.db_for_layer(registry, "tour", info, 7) is None
