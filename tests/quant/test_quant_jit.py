"""The IntegerSimulator's compiled loops (spikessm.quant.jit, backend "numba") against its torch loops and the
fake-quant model: the same integers and the same saturation counts, on every deployable preset, across the
layers' pieces of TIME_CHUNK steps, streaming, and at widths that saturate."""
import pytest
import torch

from spikessm.quant import IntegerSimulator, QuantConfig, jit
from spikessm.quant.fixed import bounds
from spikessm.quant.layers import TIME_CHUNK, Context, complex_recurrence

from test_quant import inputs, quantized, small

pytest.importorskip("numba")

NARROW = QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, membrane_bits=12, act_bits=6)


def assert_backends_agree(q, x, lengths=None):
    fake, _, _ = q.integer_logits(x, lengths)
    compiled, loops = IntegerSimulator(q, backend="numba"), IntegerSimulator(q, backend="torch")
    assert (compiled.backend, loops.backend) == ("numba", "torch")
    a, b = compiled.logits(x, lengths), loops.logits(x, lengths)
    assert torch.equal(a, b)
    assert torch.equal(a, fake.detach().to(torch.int64))
    assert compiled.saturations == loops.saturations == q.saturations
    return compiled


@pytest.mark.parametrize("preset,overrides,config", [
    ("lif-s4d", {}, QuantConfig()),
    ("lif-s4d", dict(lif_reset="zero"), QuantConfig(per_channel=True)),
    ("lif-s4d", dict(lif_reset="none", learn_beta=True), QuantConfig(power_of_two=False)),
    ("lif-s4d", dict(lif_fire_on_tie=True, prenorm=True, pooling="last"), NARROW),
    ("lif-s5", {}, QuantConfig()),
    ("lif-s5", dict(conj_sym=False, lif_reset="zero"), QuantConfig(per_channel=True)),
    ("lif-s5", dict(s5_blocks=2, lif_fire_on_tie=True), NARROW),
    ("binary-s4d", {}, QuantConfig()),
    ("gsu-s4d", {}, QuantConfig()),
    ("gsu-s4d", dict(ssm="s5", pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("gsu-s4d", dict(d_model=5, prenorm=True, norm="layer"), NARROW),
    ("prf", dict(mixing="gsu"), QuantConfig(per_channel=True)),
    ("rf-s4d", {}, QuantConfig()),
    ("rf-s4d", dict(rf_reset="zero"), QuantConfig(per_channel=True)),
    ("rf-s4d", dict(rf_reset="subtract"), NARROW),
    ("rf-s4d", dict(ssm="s5", rf_reset="none"), QuantConfig()),
    ("prf", {}, QuantConfig()),
    ("drf", {}, QuantConfig()),
])
def test_compiled_loops_equal_torch_loops_and_fake_quant(preset, overrides, config):
    model = small(preset, **overrides)
    q = quantized(model, config)
    for batch, length in ((1, 1), (3, 9), (2, TIME_CHUNK + 5)):
        assert_backends_agree(q, inputs(model, batch, length))
    assert_backends_agree(q, inputs(model, 3, 10), lengths=torch.tensor([10, 3, 7]))


@pytest.mark.parametrize("preset", ["lif-s4d", "lif-s5", "gsu-s4d", "rf-s4d"])
def test_compiled_saturations_are_counted_like_the_torch_loops(preset):
    model = small(preset)
    q = quantized(model, QuantConfig(state_bits=8, membrane_bits=8, act_bits=8))
    for block in q.graph.blocks:  # formats with 4 bits too few: the state, y, membrane (and the GSU's) clip
        for layer in (block.ssm, block.mixing):
            layer.fracs = {point: frac + 4 for point, frac in layer.fracs.items()}
    sim = assert_backends_agree(q, 4 * inputs(model, 3, 9))
    gsu = preset == "gsu-s4d"
    points = ("ssm.state", "ssm.y") + (("mixing.a", "mixing.g", "mixing.norm") if gsu else ("ssm.membrane",))
    assert all(sim.saturations[f"blocks.{i}.{point}"] > 0 for i in (0, 1) for point in points), sim.saturations


@pytest.mark.parametrize("preset,tokens", [("lif-s4d", False), ("lif-s5", True), ("gsu-s4d", False),
                                           ("rf-s4d", False)])
def test_compiled_streaming_equals_one_pass_and_leaves_the_given_state(preset, tokens):
    model = small(preset, tokens=tokens)
    sim = IntegerSimulator(quantized(model), backend="numba")
    x = inputs(model, 2, TIME_CHUNK + 9)
    whole = sim.logits(x)
    state = None
    for start, stop in ((0, 1), (1, 7), (7, TIME_CHUNK + 2), (TIME_CHUNK + 2, TIME_CHUNK + 9)):
        before = state
        copies = None if before is None else [[t.clone() for t in s] for s in before.blocks]
        logits, state = sim.stream(x[:, start:stop], state)
        if before is not None:  # the kernels write into copies: a state handed in can be streamed again
            for kept, given in zip(copies, before.blocks):
                assert all(torch.equal(a, b) for a, b in zip(kept, given))
    assert torch.equal(logits, whole)


def test_complex_recurrence_kernel_equals_torch_steps_with_every_shift_and_saturation():
    g = torch.Generator().manual_seed(0)
    B, L, H, M, bits = 3, 17, 4, 5, 12
    low, high = bounds(bits)
    Ar = torch.randint(-300, 300, (H, M), generator=g)
    Ai = torch.randint(-300, 300, (H, M), generator=g)
    fA = torch.tensor([[-1], [0], [1], [9]])  # per row: a left shift, none, and rounding right shifts
    bu_r = torch.randint(-3000, 3000, (B, L, H, M), generator=g)
    bu_i = torch.randint(-3000, 3000, (B, L, H, M), generator=g)
    xr = torch.randint(low, high, (B, H, M), generator=g)
    xi = torch.randint(low, high, (B, H, M), generator=g)
    given = (xr.clone(), xi.clone())
    torch_ctx, numba_ctx = Context(), Context(backend="numba")
    expected = complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits, torch_ctx, "s")
    got = complex_recurrence(xr, xi, Ar, Ai, fA, bu_r, bu_i, bits, numba_ctx, "s")
    for e, a in zip(expected, got):
        assert a.dtype == torch.int64 and torch.equal(e, a)
    assert torch.equal(xr, given[0]) and torch.equal(xi, given[1])
    assert torch_ctx.sat.report() == numba_ctx.sat.report() and torch_ctx.sat.report()["s"] > 0


def test_backend_is_checked(monkeypatch):
    q = quantized(small())
    assert IntegerSimulator(q).backend == "numba"  # auto, with numba installed and the model on the CPU
    with pytest.raises(ValueError, match="^IntegerSimulator: backend must be 'auto', 'numba' or 'torch', got 'c'$"):
        IntegerSimulator(q, backend="c")
    monkeypatch.setattr(jit, "numba", None)
    assert IntegerSimulator(q).backend == "torch"
    with pytest.raises(ImportError, match=r"^IntegerSimulator: backend 'numba' needs numba: pip install "
                                          r"'spikessm\[deploy\]'$"):
        IntegerSimulator(q, backend="numba")
