"""The training tests' tiny ListOps folder."""
import pytest

from spikessm.data.listops import write_listops


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """A tiny-listops data folder with 96 / 16 / 24 examples (the task reads what is there, generating nothing)."""
    out = tmp_path_factory.mktemp("tiny-listops-data")
    write_listops(out, 96, 16, 24, max_depth=3, max_args=4, min_length=4, max_length=30, seed=0)
    return out
