import pytest


@pytest.fixture(scope="session")
def induction_model():
    """The trained attention-only induction toy (trained once per machine, then cached)."""
    from mechscope.toy.induction import InductionConfig, load_induction_model

    return load_induction_model(InductionConfig())
