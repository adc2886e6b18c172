"""spikessm.quant: the rounding rule, the config's checks, fake-quant == simulator bit for bit, streaming,
saturation counts, refusals, and QAT training."""
import math

import pytest
import torch

from spikessm.models import build_model
from spikessm.quant import IntegerSimulator, QuantConfig, UnsupportedModel, calibrate, prepare_qat
from spikessm.quant.layers import Context
from spikessm.quant.rounding import div_round, round_half_up, shift_round, sqrt_round
from spikessm.quant.simulate import freeze


def small(preset="lif-s4d", tokens=False, **overrides):
    torch.manual_seed(0)
    sizes = dict(vocab_size=11) if tokens else dict(d_input=3)
    kw = dict(n_classes=4, d_model=6, n_layers=2, d_state=8, backend="torch")
    if preset in ("binary-s4d", "gsu-s4d"):
        kw["bidirectional"] = False
    model = build_model(preset, **sizes, **{**kw, **overrides})
    return model.eval()


def inputs(model, batch=3, length=9, seed=1):
    g = torch.Generator().manual_seed(seed)
    if model.config.vocab_size is not None:
        return torch.randint(0, model.config.vocab_size, (batch, length), generator=g)
    return torch.randn(batch, length, model.config.d_input, generator=g)


def quantized(model, config=None, length=9):
    q = prepare_qat(model, config or QuantConfig())
    return calibrate(q, [inputs(model, 4, length, seed=s) for s in (5, 6)])


def assert_bit_exact(q, x, lengths=None):
    fake, _, _ = q.integer_logits(x, lengths)
    sim = IntegerSimulator(q)
    ints = sim.logits(x, lengths)
    assert ints.dtype == torch.int64
    assert torch.equal(fake.detach(), fake.detach().round())
    assert torch.equal(fake.detach().to(torch.int64), ints)
    assert q.saturations == sim.saturations
    return ints


def test_rounding_rule_is_round_half_up_in_both_arithmetics():
    n = torch.tensor([-5, -4, -3, -2, -1, 0, 1, 2, 3, 5, 6])
    expected = torch.tensor([-1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 2])  # n / 4 rounded half up: -1.5 -> -1, 1.5 -> 2
    assert torch.equal(shift_round(n, 2), expected)
    assert torch.equal(shift_round(n.double(), 2), expected.double())
    assert torch.equal(shift_round(torch.tensor([-3, 3]), 1), torch.tensor([-1, 2]))
    assert torch.equal(shift_round(n, -2), n * 4)
    shifts = torch.tensor([2, 0, -1, 1, 2, 3, 1, 0, 2, 1, 3])
    assert torch.equal(shift_round(n, shifts), shift_round(n.double(), shifts).long())
    assert torch.equal(div_round(n, 3), torch.tensor([-2, -1, -1, -1, 0, 0, 0, 1, 1, 2, 2]))
    assert torch.equal(div_round(n.double(), 3).long(), div_round(n, 3))
    assert torch.equal(round_half_up(torch.tensor([-2.5, -0.5, 0.5, 2.5])), torch.tensor([-2.0, 0.0, 1.0, 3.0]))


def test_sqrt_round_is_the_nearest_integer_in_both_arithmetics():
    small_n = torch.arange(1, 2000)
    big = torch.tensor([(1 << 25) - 1, 1 << 25, (1 << 25) + 1], dtype=torch.int64)
    big = torch.cat([big ** 2 + d for d in (-1, 0, 1)] + [big * big + big + d for d in (0, 1)])
    for n in (small_n, big):
        # floor(sqrt(n) + 1/2) = floor((floor(2 sqrt(n)) + 1) / 2), and floor(2 sqrt(n)) = isqrt(4 n)
        expected = (torch.tensor([math.isqrt(4 * v) for v in n.tolist()]) + 1) // 2
        assert torch.equal(sqrt_round(n), expected)
        assert torch.equal(sqrt_round(n.double()).long(), expected)
    x = torch.tensor([2.0, 9.0], dtype=torch.float64, requires_grad=True)
    sqrt_round(x).sum().backward()
    assert torch.allclose(x.grad, 0.5 / x.detach().sqrt())


@pytest.mark.parametrize("field,value,message", [
    ("weight_bits", 1, "QuantConfig: weight_bits must be an integer in [2, 16], got 1"),
    ("coef_bits", 8.0, "QuantConfig: coef_bits must be an integer in [4, 24], got 8.0"),
    ("state_bits", 40, "QuantConfig: state_bits must be an integer in [8, 32], got 40"),
    ("act_bits", True, "QuantConfig: act_bits must be an integer in [4, 24], got True"),
    ("per_channel", 1, "QuantConfig: per_channel must be True or False, got 1"),
])
def test_config_names_the_bad_field(field, value, message):
    with pytest.raises(ValueError) as err:
        QuantConfig(**{field: value})
    assert str(err.value) == message


def test_config_refuses_multiplier_that_overflows_float64():
    with pytest.raises(ValueError, match="QuantConfig: mult_bits must be at most 6 with acc_bits=48"):
        QuantConfig(power_of_two=False, acc_bits=48, mult_bits=16)


@pytest.mark.parametrize("overrides,config", [
    (dict(), QuantConfig()),
    (dict(lif_reset="zero"), QuantConfig(per_channel=True)),
    (dict(lif_reset="none", learn_beta=True), QuantConfig(power_of_two=False)),
    (dict(prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    (dict(detach_reset=True), QuantConfig(weight_bits=4, coef_bits=10, state_bits=16, act_bits=8)),
    (dict(lif_fire_on_tie=True), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, act_bits=6)),
    (dict(norm="layer"), QuantConfig()),
    (dict(norm="layer", prenorm=True), QuantConfig(power_of_two=False, per_channel=True)),
])
def test_simulator_equals_fake_quant_lif_s4d(overrides, config):
    model = small(**overrides)
    q = quantized(model, config)
    for batch, length in ((3, 9), (1, 1), (2, 13)):
        assert_bit_exact(q, inputs(model, batch, length))


@pytest.mark.parametrize("preset,overrides,config", [
    ("gsu-s4d", dict(), QuantConfig()),
    ("gsu-s4d", dict(prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("gsu-s4d", dict(d_model=5, pooling="last"), QuantConfig(per_channel=True)),
    ("gsu-s4d", dict(), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, membrane_bits=12, act_bits=6)),
    ("lif-s5", dict(), QuantConfig()),
    ("lif-s5", dict(conj_sym=False, lif_reset="zero"), QuantConfig(per_channel=True)),
    ("lif-s5", dict(s5_blocks=2, prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("lif-s5", dict(clip_eigs=True, discretization="bilinear", lif_fire_on_tie=True),
     QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, act_bits=6)),
    ("lif-s5", dict(norm="layer", d_model=5), QuantConfig(power_of_two=False)),
    ("prf", dict(), QuantConfig()),
    ("prf", dict(rf_reset="subtract", learn_threshold=True), QuantConfig(per_channel=True)),
    ("prf", dict(rf_reset="zero", prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("prf", dict(mixing="gsu", norm="layer"), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, act_bits=6)),
    ("s5-rf", dict(detach_reset=True, rf_reset="subtract"), QuantConfig()),
    ("rf-s4d", dict(), QuantConfig()),
    ("rf-s4d", dict(rf_reset="zero", prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("rf-s4d", dict(ssm="s5", learn_threshold=False, rf_reset="none"), QuantConfig(weight_bits=4, coef_bits=8,
                                                                               state_bits=12, act_bits=6)),
    ("drf", dict(), QuantConfig()),
    ("drf", dict(rf_reset="zero", learn_threshold=True), QuantConfig(per_channel=True)),
    ("drf", dict(rf_branches=3, rf_adaptive=False), QuantConfig(power_of_two=False)),
    ("prf", dict(rf_adaptive=True, rf_reset="subtract"), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12,
                                                                      act_bits=6)),
])
def test_simulator_equals_fake_quant_gsu_s4d_lif_s5_and_rf(preset, overrides, config):
    model = small(preset, **overrides)
    q = quantized(model, config)
    for batch, length in ((3, 9), (1, 1), (2, 13)):
        assert_bit_exact(q, inputs(model, batch, length))
    assert_bit_exact(q, inputs(model, 3, 10), lengths=torch.tensor([10, 3, 7]))


def test_s5_layer_is_the_integer_recurrence_of_its_coefficients():
    """One S5 layer (no readout: y itself comes out) against its equations written out, on its own integers:
    x_t = (Lambda x_{t-1}) >> fA + (B u_t) >> kB (B u summed over the channels before its one rounding),
    y_t = (sum over the modes of Cr xr - Ci xi) >> kC + ((D u_t) mD) >> kD."""
    from spikessm.quant.layers import Context
    model = small("gsu-s4d", ssm="s5")
    sim = IntegerSimulator(quantized(model))
    layer = sim.graph.blocks[0].ssm
    p = sim.params[layer.name]
    M, H = model.blocks[0].ssm.n_modes, model.config.d_model
    assert layer.readout == "identity" and layer.ssm_type == "s5"
    assert p["Ar"].shape == (M,) and p["Br"].shape == (M, H) and p["Cr"].shape == (H, M)
    u = torch.randint(-3000, 3000, (2, 5, H), generator=torch.Generator().manual_seed(4))
    ctx = Context()
    y, _, (sr, si, _) = layer.forward(u, 7, p, ctx)
    assert not any(ctx.sat.report().values())
    xr = xi = torch.zeros(2, M, dtype=torch.int64)
    for t in range(u.shape[1]):
        ut = u[:, t]
        bu_r = torch.stack([sum(int(p["Br"][m, h]) * ut[:, h] for h in range(H)) for m in range(M)], -1)
        bu_i = torch.stack([sum(int(p["Bi"][m, h]) * ut[:, h] for h in range(H)) for m in range(M)], -1)
        xr, xi = (shift_round(p["Ar"] * xr - p["Ai"] * xi, p["fA"]) + shift_round(bu_r, p["kB"]),
                  shift_round(p["Ar"] * xi + p["Ai"] * xr, p["fA"]) + shift_round(bu_i, p["kB"]))
        cx = torch.stack([sum(int(p["Cr"][h, m]) * xr[:, m] - int(p["Ci"][h, m]) * xi[:, m] for m in range(M))
                          for h in range(H)], -1)
        expected = shift_round(cx, p["kC"]) + shift_round(p["D"] * ut * p["mD"], p["kD"])
        assert torch.equal(y[:, t], expected), t
    assert torch.equal(sr, xr) and torch.equal(si, xi)


def test_rf_layer_is_the_integer_recurrence_of_its_neurons():
    """One RF layer (subtract reset, learned per-channel threshold) against its equations written out per neuron
    in Python integers: z = (lam z) >> fA + u << (f_state - f_u) (u on the real axis), s = [Re z > theta],
    Re z -= theta where s."""
    model = small("prf", rf_reset="subtract", learn_threshold=True)
    with torch.no_grad():
        model.blocks[0].ssm.log_threshold.copy_(torch.linspace(-1.0, 0.5, model.config.d_model))
    sim = IntegerSimulator(quantized(model, QuantConfig(per_channel=True)))
    layer = sim.graph.blocks[0].ssm
    f_u, H = 10, model.config.d_model
    p = freeze(layer.params(f_u))
    assert layer.ssm_type == "rf" and layer.readout == "subtract"
    assert p["Ar"].shape == (H, 1) and p["fA"].shape == (H, 1) and p["theta_state"].shape == (H,)
    assert sorted(p) == ["Ai", "Ar", "fA", "kU", "theta_state"]
    u = torch.randint(-1000, 1000, (2, 30, H), generator=torch.Generator().manual_seed(4))
    fs = layer.fracs["state"]
    assert int(p["kU"]) == f_u - fs
    ctx = Context()
    spikes, f_out, (sr, si) = layer.forward(u, f_u, p, ctx)
    assert f_out == 0 and not any(ctx.sat.report().values())
    assert 0 < int(spikes.sum()) < spikes.numel()

    def rnd(n, k):  # n / 2^k rounded half up, in Python integers
        return (n + (1 << (k - 1))) >> k if k > 0 else n << -k

    for b in range(2):
        for h in range(H):
            ar, ai, fa, theta = int(p["Ar"][h, 0]), int(p["Ai"][h, 0]), int(p["fA"][h, 0]), int(p["theta_state"][h])
            zr = zi = 0
            for t in range(u.shape[1]):
                zr, zi = rnd(ar * zr - ai * zi, fa) + rnd(int(u[b, t, h]), f_u - fs), rnd(ar * zi + ai * zr, fa)
                s = int(zr > theta)
                zr -= s * theta
                assert int(spikes[b, t, h]) == s, (b, h, t)
            assert (int(sr[b, h, 0]), int(si[b, h, 0])) == (zr, zi)


def test_drf_layer_is_the_integer_recurrence_of_its_branches_and_trace():
    """One RF layer of 4 branches with the adaptive threshold (drf, zero reset) against its equations written out
    per neuron in Python integers: per branch z = (lam z) >> fA + u << (f_state - f_u) on re; the soma
    m = (sum_k W_k Re z_k) >> fW; th = theta + (S a) >> fS; s = [m > th]; a = (d a) >> (coef_bits - 1) + s 2^fs;
    z = 0 where s."""
    model = small("drf", rf_reset="zero")
    sim = IntegerSimulator(quantized(model))
    layer, f_u, H, K = sim.graph.blocks[0].ssm, 10, model.config.d_model, 4
    p, fs, cb = freeze(layer.params(f_u)), layer.fracs["state"], sim.config.coef_bits
    assert p["Ar"].shape == (H, K) and p["soma_weight"].shape == (H, K)
    u = torch.randint(-2000, 2000, (2, 30, H), generator=torch.Generator().manual_seed(5))
    ctx = Context()
    spikes, _, (sr, si, trace) = layer.forward(u, f_u, p, ctx)
    assert not any(ctx.sat.report().values())
    assert 0 < int(spikes.sum()) < spikes.numel()

    def rnd(n, k):
        return (n + (1 << (k - 1))) >> k if k > 0 else n << -k

    theta, S, fS, d, fA, fW = (int(p[k]) for k in ("theta_state", "adapt_scale", "fS", "adapt_decay", "fA", "fW"))
    for b in range(2):
        for h in range(H):
            zr, zi, a = [0] * K, [0] * K, 0
            for t in range(u.shape[1]):
                for k in range(K):
                    ar, ai = int(p["Ar"][h, k]), int(p["Ai"][h, k])
                    zr[k], zi[k] = rnd(ar * zr[k] - ai * zi[k], fA) + rnd(int(u[b, t, h]), f_u - fs), \
                        rnd(ar * zi[k] + ai * zr[k], fA)
                m = rnd(sum(int(p["soma_weight"][h, k]) * zr[k] for k in range(K)), fW)
                s = int(m > theta + rnd(S * a, fS))
                a = rnd(d * a, cb - 1) + (s << fs)
                if s:
                    zr, zi = [0] * K, [0] * K
                assert int(spikes[b, t, h]) == s, (b, h, t)
            assert [int(v) for v in sr[b, h]] == zr and [int(v) for v in si[b, h]] == zi and int(trace[b, h]) == a


def test_rf_readout_is_the_integer_recurrence_of_its_membrane():
    """An S4D layer's RF readout (rf-s4d, subtract reset, learned threshold) against its equations written out per
    channel in Python integers, on the layer's own y (the same layer read out with no neurons): v = (lam v) >> fL
    + y on re, s = [Re v > theta], Re v -= theta where s."""
    model = small("rf-s4d")
    sim = IntegerSimulator(quantized(model))
    layer, f_u, H = sim.graph.blocks[0].ssm, 10, model.config.d_model
    p = freeze(layer.params(f_u))
    assert layer.resonant and layer.readout == "subtract" and p["Lr"].shape == (H,)
    u = torch.randint(-1000, 1000, (2, 30, H), generator=torch.Generator().manual_seed(6))
    ctx = Context()
    spikes, _, (_, _, v) = layer.forward(u, f_u, p, ctx)
    neurons, layer.neurons = layer.neurons, None
    try:
        y, _, _ = layer.forward(u, f_u, p, Context())
    finally:
        layer.neurons = neurons
    assert not any(ctx.sat.report().values())
    assert 0 < int(spikes.sum()) < spikes.numel()

    def rnd(n, k):
        return (n + (1 << (k - 1))) >> k if k > 0 else n << -k

    fL = int(p["fL"])
    for b in range(2):
        for h in range(H):
            lr, li, theta = int(p["Lr"][h]), int(p["Li"][h]), int(p["theta"][h])
            vr = vi = 0
            for t in range(u.shape[1]):
                vr, vi = rnd(lr * vr - li * vi, fL) + int(y[b, t, h]), rnd(lr * vi + li * vr, fL)
                s = int(vr > theta)
                vr -= s * theta
                assert int(spikes[b, t, h]) == s, (b, h, t)
            assert (int(v[b, h, 0]), int(v[b, h, 1])) == (vr, vi)


@pytest.mark.parametrize("preset,reset,amplitude", [("prf", "none", 3), ("prf", "subtract", 3), ("prf", "zero", 3),
                                                    ("drf", "none", 3), ("drf", "zero", 3), ("rf-s4d", "subtract", 1),
                                                    ("rf-s4d", "zero", 1), ("rf-s4d", "none", 1)])
def test_rf_spikes_agree_with_the_float_neurons(preset, reset, amplitude):
    """The integer RF layer (or S4D with its RF readout) at default widths against the float layer on the same
    (dequantised) input, within the calibrated range (amplitude): the spikes agree at all but a few steps near
    the threshold."""
    model = small(preset, rf_reset=reset)
    sim = IntegerSimulator(quantized(model))
    layer, f_u = sim.graph.blocks[0].ssm, 12
    u = torch.randint(-amplitude << f_u, amplitude << f_u, (4, 60, model.config.d_model),
                      generator=torch.Generator().manual_seed(3))
    spikes, _, _ = layer.forward(u, f_u, freeze(layer.params(f_u)), Context())
    with torch.no_grad():
        expected = model.blocks[0].ssm(u.float() * 2.0 ** -f_u)
    assert 0.02 < float(expected.mean()) < 0.95
    assert float((spikes == expected.long()).double().mean()) > 0.98


@pytest.mark.parametrize("preset,tokens,overrides", [("binary-s4d", False, {}), ("lif-s4d", True, {}),
                                                     ("binary-s4d", True, {}), ("gsu-s4d", True, {}),
                                                     ("lif-s5", True, {}), ("lif-s5", False, dict(readout="binary")),
                                                     ("gsu-s4d", False, dict(ssm="s5")), ("prf", True, {})])
def test_simulator_equals_fake_quant_other_models(preset, tokens, overrides):
    model = small(preset, tokens, **overrides)
    q = quantized(model)
    assert_bit_exact(q, inputs(model, 2, 11))
    assert_bit_exact(q, inputs(model, 3, 10), lengths=torch.tensor([10, 3, 7]))


@pytest.mark.parametrize("preset,overrides", [("lif-s4d", {}), ("gsu-s4d", {}), ("lif-s4d", dict(norm="layer")),
                                              ("lif-s5", {}), ("prf", {}), ("drf", {}),
                                              ("rf-s4d", {})])
def test_fake_quant_is_close_to_float_at_defaults(preset, overrides):
    model = small(preset, **overrides)
    q = quantized(model)
    x = inputs(model, 8, 12)
    with torch.no_grad():
        err = (q(x) - model(x).double()).abs().max() / model(x).abs().max()
    assert err < 0.2, err


@pytest.mark.parametrize("preset", ["lif-s4d", "gsu-s4d", "lif-s5", "prf", "drf", "rf-s4d"])
def test_simulator_equals_fake_quant_after_training(preset):
    model = small(preset)
    q = quantized(model)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-2)
    x, labels = inputs(model, 8, 9), torch.arange(8) % 4
    for _ in range(3):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(q(x), labels).backward()
        optimizer.step()
    assert_bit_exact(q, inputs(model, 3, 9))


@pytest.mark.parametrize("preset,tokens", [("lif-s4d", False), ("lif-s4d", True), ("gsu-s4d", False),
                                           ("lif-s5", False), ("prf", False), ("prf", True), ("drf", False),
                                           ("rf-s4d", True)])
def test_streaming_in_pieces_equals_one_pass(preset, tokens):
    model = small(preset, tokens=tokens)
    q = quantized(model)
    sim = IntegerSimulator(q)
    x = inputs(model, 2, 11)
    whole = sim.logits(x)
    state, pieces = None, (0, 1, 5, 6, 11)
    for start, stop in zip(pieces, pieces[1:]):
        logits, state = sim.stream(x[:, start:stop], state)
    assert torch.equal(logits, whole)
    state = None
    for t in range(x.shape[1]):
        logits, state = sim.step(x[:, t], state)
    assert torch.equal(logits, whole)


def test_saturation_is_counted_never_wrapped():
    model = small()
    q = quantized(model, QuantConfig(state_bits=8, membrane_bits=8, act_bits=8))
    x = 20 * inputs(model, 3, 9)  # far beyond the calibration data's range
    ints = assert_bit_exact(q, x)
    assert q.saturations["inputs.in"] > 0
    assert sum(q.saturations.values()) > q.saturations["inputs.in"]
    assert ints.abs().max() <= 127
    calm = inputs(model, 3, 9, seed=5)  # a calibration batch: nothing saturates
    assert_bit_exact(q, calm[:, :4])
    assert q.saturations["inputs.in"] == 0


def test_embedding_format_comes_from_its_table_not_the_calibration_tokens():
    model = small("gsu-s4d", tokens=True)
    with torch.no_grad():
        model.encoder.weight[7:] *= 50  # tokens 7.. carry the largest rows and never occur in calibration
    q = prepare_qat(model, QuantConfig())
    g = torch.Generator().manual_seed(2)
    calibrate(q, [torch.randint(0, 7, (4, 9), generator=g) for _ in range(2)])
    x = torch.arange(11).repeat(2, 1)
    assert_bit_exact(q, x)
    assert q.saturations["encoder.out"] == 0  # with formats from the calibration tokens, 7.. would saturate


@pytest.mark.parametrize("preset,overrides,message", [
    ("lif-s4d", dict(bidirectional=True), "spikessm.quant: blocks.0.ssm: S4D is bidirectional: its output at step "
     "t depends on later inputs, so it cannot run one step at a time; build the model with bidirectional=False"),
    ("binary-s4d", dict(), "spikessm.quant: blocks.0.ssm: S4D is bidirectional"),
    ("lif-s5", dict(bidirectional=True), "spikessm.quant: blocks.0.ssm: S5 is bidirectional: its output at step t "
     "depends on later inputs, so it cannot run one step at a time; build the model with bidirectional=False"),
    ("s5", dict(), "spikessm.quant: blocks.0.ssm: S5 is bidirectional"),
    ("prf", dict(rf_input_scale="dt"), "spikessm.quant: blocks.0.ssm: RF with input_scale 'dt' has no integer form "
     "yet (input_scale 'none' has)"),
    ("rf-s4d", dict(rf_branches=2, rf_reset="zero"), "spikessm.quant: blocks.0.ssm.neurons: RF neurons as an SSM's "
     "readout have an integer form with one branch and a fixed threshold only"),
    ("rf-s4d", dict(rf_input_scale="dt"), "spikessm.quant: blocks.0.ssm.neurons: RF with input_scale 'dt' has no "
     "integer form yet"),
    ("gsu-s4d", dict(), "spikessm.quant: blocks.0.ssm: S4D is bidirectional"),
    ("binary-s4d", dict(readout="none", bidirectional=False), "spikessm.quant: blocks.0.readout: Identity has no "
     "integer form yet (the readouts with one are 'lif', 'binary', and 'none' before a GSU)"),
    ("s4d", dict(bidirectional=False), "spikessm.quant: blocks.0.readout: GELU has no integer form yet"),
    ("lif-s4d", dict(pair=True), "spikessm.quant: model: pair models"),
    ("lif-s4d", dict(surrogate="leaky"), "spikessm.quant: model: the 'leaky' surrogate"),
    ("lif-s4d", dict(bidirectional=False, lif_reset="subtract_after_decay"),
     "spikessm.quant: blocks.0.ssm.neurons: reset 'subtract_after_decay' has no integer form yet (the integer LIF "
     "implements 'subtract', 'zero', 'none')"),
])
def test_unsupported_models_are_refused_naming_the_layer(preset, overrides, message):
    torch.manual_seed(0)
    model = build_model(preset, n_classes=2, d_input=1, d_model=4, n_layers=1, d_state=4, backend="torch",
                        **overrides)
    with pytest.raises(UnsupportedModel) as err:
        prepare_qat(model)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_uncalibrated_and_empty_calibration_are_refused():
    model = small()
    q = prepare_qat(model)
    with pytest.raises(RuntimeError, match=r"^spikessm.quant: inputs.in has no scale yet; call "):
        q(inputs(model))
    with pytest.raises(RuntimeError, match="IntegerSimulator: the model is not calibrated"):
        IntegerSimulator(q)
    with pytest.raises(ValueError, match=r"^calibrate: the calibration data is empty \(no batches\)$"):
        calibrate(q, [])


def test_layer_too_wide_for_float64_is_refused():
    model = small(d_state=64)
    with pytest.raises(ValueError, match=r"^spikessm.quant: blocks.0.ssm: the readout sum C x can reach 2\^"):
        prepare_qat(model, QuantConfig(coef_bits=24, state_bits=32))


def test_qat_trains_and_closes_the_ptq_gap():
    """A tiny task (the sign of the mean feature): QAT from PTQ at low widths lowers the loss of the quantised
    model."""
    torch.manual_seed(0)
    model = small(d_model=8)
    x = torch.randn(32, 10, 3)
    labels = (x.mean((1, 2)) > 0).long() + 2 * (x[:, :, 0].mean(1) > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), labels).backward()
        optimizer.step()
    model.eval()
    q = calibrate(prepare_qat(model, QuantConfig(weight_bits=3, coef_bits=8, act_bits=6)), [x])
    with torch.no_grad():
        ptq_loss = torch.nn.functional.cross_entropy(q(x), labels).item()
    optimizer = torch.optim.Adam(q.parameters(), lr=5e-3)
    for _ in range(15):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(q(x), labels).backward()
        optimizer.step()
    with torch.no_grad():
        qat_loss = torch.nn.functional.cross_entropy(q(x), labels).item()
    assert qat_loss < ptq_loss, (ptq_loss, qat_loss)
    assert_bit_exact(q, x[:4])


def test_gsu_ternarises_each_token_at_its_fixed_point_threshold():
    """delta = (max |x| q) >> 15 with q = round(0.15 2^15) = 4915 at coef_bits 16: for max 10, delta = 1 (1.4999
    rounds down), so 1 and -1 are 0 and 2 is +1; for max 100, delta = 15, and 15 itself is 0 (x > delta)."""
    q = prepare_qat(small("gsu-s4d"))
    gsu = q.graph.blocks[0].mixing
    x = torch.tensor([[[10, -2, 1, -10, 2, 0], [100, -15, 16, -16, 15, 0]]])
    p = {"q": torch.tensor(4915)}
    expected = torch.tensor([[[1, -1, 0, -1, 1, 0], [1, 0, 1, -1, 0, 0]]])
    assert torch.equal(gsu.ternary(x, 3, p), expected)
    assert torch.equal(gsu.ternary(x.double(), 3, {"q": p["q"].double()}), expected.double())


def test_integer_layer_norm_and_gelu_are_close_to_float():
    """The GSU's LayerNorm (integer mean, variance, square root, one division) and its GELU table, on one
    token batch, against torch's float64 LayerNorm and GELU (16-bit gains, so that the statistics' rounding shows)."""
    from spikessm.quant.layers import Context, LayerNormMap
    from spikessm.quant.fixed import lookup_normal_cdf, normal_cdf_table
    config = QuantConfig(weight_bits=16)
    torch.manual_seed(3)
    norm = torch.nn.LayerNorm(16).double()
    torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
    torch.nn.init.uniform_(norm.bias, -0.5, 0.5)
    x = torch.randn(4, 5, 16, dtype=torch.float64)
    f_in, f_out = 12, 12
    codes = torch.floor(x * 2 ** f_in + 0.5)
    p = LayerNormMap.quantize(norm, f_in, f_out, config, "norm")
    ctx = Context()
    acc = LayerNormMap.normalize(codes.long(), {k: v.long() if k != "acc_scale" else v for k, v in p.items()}, ctx,
                                 "norm", config)
    out = torch.floor(acc * p["m"] * 2.0 ** -p["k"] + 0.5) * 2.0 ** -f_out
    with torch.no_grad():
        err = (out - norm(codes * 2.0 ** -f_in)).abs().max()
    assert err < 2 * 2.0 ** -f_out  # within two steps of the output format
    assert sum(ctx.sat.report().values()) == 0
    z = torch.linspace(-10, 10, 401, dtype=torch.float64)
    zc = torch.floor(z * 2 ** 11 + 0.5)
    gelu = zc * lookup_normal_cdf(zc, 11, normal_cdf_table(config), config) * 2.0 ** -(11 + config.act_bits - 1)
    # the index's rounding: at most max |x| phi(x) (phi(1) = 0.242) times half a step of 1/16, 0.0076
    assert (gelu - torch.nn.functional.gelu(z)).abs().max() < 0.0078
    assert torch.equal(gelu[z >= 8.5], zc[z >= 8.5] * 2.0 ** -11)  # GELU(x) = x exactly past the table
