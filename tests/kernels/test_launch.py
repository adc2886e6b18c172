"""The launchers' host-side helpers: integer arithmetic that agrees with Triton's own, the checks of launch
settings, and the codes they give the ops' surrogate and reset names."""
import pytest
from conftest import requires_triton


@requires_triton
def test_integer_helpers_match_triton():
    import triton

    from spikessm.kernels.common.launch import cdiv, next_power_of_2

    for n in range(1, 2100):
        assert next_power_of_2(n) == triton.next_power_of_2(n), n
        for d in (1, 2, 3, 16, 17, 64, 1000):
            assert cdiv(n, d) == triton.cdiv(n, d), (n, d)


@requires_triton
def test_chunk_size_check():
    from spikessm.kernels.common.launch import check_chunk_size

    assert check_chunk_size("op", None, 32) == 32 and check_chunk_size("op", 8, 32) == 8
    for bad in (0, 1, 12):
        with pytest.raises(ValueError, match="op: chunk_size must be a power of two"):
            check_chunk_size("op", bad, 32)


@requires_triton
def test_stages_check():
    from spikessm.kernels.common.launch import MAX_STAGES, check_stages

    assert check_stages("op", 1) == 1 and check_stages("op", MAX_STAGES) == MAX_STAGES
    for bad in (0, MAX_STAGES + 1, 2.0, None):
        with pytest.raises(ValueError, match="op: stages must be an int from 1"):
            check_stages("op", bad)


@requires_triton
def test_kernel_codes_cover_the_ops_names():
    """The launchers turn every surrogate and reset name the ops take into a code, each its own."""
    from spikessm.kernels.common.neuron import RESET_CODES, SURROGATE_CODES
    from spikessm.ops.common.reset import LIF_RESETS as RESETS
    from spikessm.ops.common.surrogate import SURROGATES

    assert set(SURROGATE_CODES) == set(SURROGATES) and set(RESET_CODES) == set(RESETS)
    for codes in (SURROGATE_CODES, RESET_CODES):
        assert len(set(codes.values())) == len(codes)
