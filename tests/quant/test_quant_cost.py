"""spikessm.quant.cost: memory against a hand count, operation counts of the linear layers against a hand count,
spike gating, padding, energy = counts x constants, and the refusal of a layer without a cost function."""
import sys
from pathlib import Path

import pytest
import torch

from spikessm.quant import IntegerSimulator, QuantConfig
from spikessm.quant.cost import Call, Tally, energy_pj, layer_ops, memory, merge, op_counts
from spikessm.quant.layers import Context, GLULayer, IntLayer
from spikessm.stats import EnergyModel

sys.path.insert(0, str(Path(__file__).parent))
from test_quant import inputs, quantized, small  # noqa: E402


@pytest.fixture(scope="module")
def sim():
    return IntegerSimulator(quantized(small(n_layers=1)))


def test_memory_is_the_hand_count(sim):
    # d_input 3, H 6, M 4 modes, 4 classes; defaults: weights 8, coef 16, state 24, membrane 24, act 16, acc 32 bits;
    # power-of-two scales store no multiplier; every shift count 1 byte
    encoder = 6 * 3 * 1 + 6 * 4 + 1  # W, b, k
    ssm = 6 * 24 * 2 + 3 + 6 * 1 + 2 + 3 + 6 * 3  # Ar Ai Br Bi Cr Ci; fA fB fC; D; beta; kB kC kD; theta
    glu = 12 * 6 + 12 * 4 + 1 + 257 * 2  # W, b, k, the sigmoid table
    norm = 6 + 6 * 4 + 1  # G, b, k
    head = 4 * 6 + 4 * 4 + 1
    mem = memory(sim)
    assert mem["weight_bytes"] == encoder + ssm + glu + norm + head == 1070
    assert mem["per_layer"]["blocks.0.ssm"]["weight_bytes"] == ssm
    ssm_state = 2 * 6 * 4 * 3 + 6 * 3  # re, im (24 bits), the LIF membrane (24 bits)
    pool_state = 6 * 4 + 4  # the mean's running sum (32 bits), the step counter
    assert mem["state_bytes"] == ssm_state + pool_state
    real = memory(IntegerSimulator(quantized(small(n_layers=1), QuantConfig(power_of_two=False))))
    assert real["weight_bytes"] == mem["weight_bytes"] + 5 * 2  # m of encoder, GLU, norm, head and mD, 16 bits


def test_linear_layers_count_the_hand_count(sim):
    lengths = torch.tensor([10, 3, 7])
    ops = op_counts(sim, inputs(sim.qmodel.model, 3, 10), lengths)
    steps = float(lengths.double().mean())
    # encoder: 3 -> 6 on 16-bit codes: a multiply and an accumulate per weight and step, a rounding add per output
    assert ops["per_layer"]["encoder"] == {"acc": {32: pytest.approx(steps * (18 + 6))},
                                           "mul": {16: pytest.approx(steps * 18)}, "lut": {}}
    assert ops["per_layer"]["decoder"] == {"acc": {32: 24 + 4}, "mul": {16: 24}, "lut": {}}  # once per example
    assert ops["examples"] == 3
    total = sum(n for row in ops["total"].values() for n in row.values())
    assert total == pytest.approx(sum(n for layer in ops["per_layer"].values() for row in layer.values()
                                      for n in row.values()))


def test_s5_input_map_sums_all_channels_per_mode():
    s5 = IntegerSimulator(quantized(small("lif-s5", n_layers=1)))
    c, p = s5.config, s5.params["blocks.0.ssm"]
    M, H = p["Br"].shape
    ops = op_counts(s5, inputs(s5.qmodel.model, 1, 5))["per_layer"]["blocks.0.ssm"]
    s4d = IntegerSimulator(quantized(small("lif-s4d", n_layers=1)))
    q = s4d.params["blocks.0.ssm"]
    ops4 = op_counts(s4d, inputs(s4d.qmodel.model, 1, 5))["per_layer"]["blocks.0.ssm"]
    # B u on 16-bit codes: 2 products per entry of B; S5 sums H of them per mode and part, S4D rounds each one
    s5_sum = c.coef_bits + c.act_bits + (H - 1).bit_length()
    assert ops["acc"][s5_sum] == 5 * 2 * M * H
    assert ops4["acc"][c.coef_bits + c.act_bits] == 5 * 2 * q["Br"].numel()
    assert ops["mul"][max(c.coef_bits, c.act_bits)] == 5 * 2 * M * H + 5 * H  # B u, then D u per channel


def test_rf_layer_costs_the_hand_count():
    rf = IntegerSimulator(quantized(small("prf", n_layers=1, rf_reset="subtract")))
    p = rf.params["blocks.0.ssm"]
    # Ar, Ai (6 at 16 bits); fA, kU (a byte each); the threshold in the state's 24 bits; re, im of 6 neurons
    assert memory(rf)["per_layer"]["blocks.0.ssm"] == {"weight_bytes": 2 * 12 + 1 + 1 + 3, "state_bytes": 2 * 6 * 3}
    codes = rf.quantize_inputs(inputs(rf.qmodel.model, 1, 5))
    outputs = {}
    rf.graph.run(codes, rf.input_frac, lambda layer, f: rf.params[layer.name],
                 Context(probe=lambda layer, ins, params, out: outputs.setdefault(layer.name, out)))
    spikes = int(outputs["blocks.0.ssm"][0].sum())
    assert spikes > 0
    ops = op_counts(rf, inputs(rf.qmodel.model, 1, 5))["per_layer"]["blocks.0.ssm"]
    # per step and neuron: lam z, 4 products and 4 adds (2 sums, 2 roundings); the input's shift to the state's
    # format (left here: free), its add and the comparison at state_bits; one subtraction per spike
    assert int(p["kU"]) < 0
    assert ops == {"mul": {24: 5 * 4 * 6}, "acc": {24: 5 * 2 * 6 + spikes, 40: 5 * 4 * 6}, "lut": {}}


def test_drf_layer_costs_the_hand_count():
    drf = IntegerSimulator(quantized(small("drf", n_layers=1)))
    p = drf.params["blocks.0.ssm"]
    # Ar, Ai (6 x 4 at 16 bits); the soma's weights (6 x 4 at 16 bits); fA, fW, kU, fS (a byte each); adapt_decay,
    # adapt_scale (16 bits); theta in 24 bits; re, im of 6 x 4 branches and the trace of 6 neurons at 24 bits
    assert sorted(p) == ["Ai", "Ar", "adapt_decay", "adapt_scale", "fA", "fS", "fW", "kU", "soma_weight", "theta_state"]
    assert memory(drf)["per_layer"]["blocks.0.ssm"] == {"weight_bytes": 3 * 48 + 4 + 2 * 2 + 3,
                                                        "state_bytes": 2 * 24 * 3 + 6 * 3}
    assert int(p["kU"]) < 0
    ops = op_counts(drf, inputs(drf.qmodel.model, 1, 5))["per_layer"]["blocks.0.ssm"]
    # per step: lam z per branch (4 products, 4 adds at 40 bits), the input's add per branch; the soma's 4
    # products, 3 adds and a rounding at 42 bits; the threshold's and trace's 2 products and roundings, + theta
    # and + s; the comparison
    assert ops == {"mul": {24: 5 * 6 * (4 * 4 + 4 + 2)},
                   "acc": {24: 5 * 6 * (4 + 2 + 1), 40: 5 * 6 * (4 * 4 + 2), 42: 5 * 6 * (3 + 1)}, "lut": {}}


@pytest.mark.parametrize("preset,tokens,overrides", [
    ("lif-s4d", False, dict(n_layers=1)), ("gsu-s4d", False, dict(n_layers=1)), ("binary-s4d", True, dict(n_layers=1)),
    ("lif-s4d", True, dict(n_layers=1, norm="layer", prenorm=True, pooling="last")),
    ("lif-s4d", False, dict(n_layers=1, mixing="gsu")),  # a GSU reading spikes
    ("lif-s5", False, dict(n_layers=1)),
    ("prf", False, dict(n_layers=1, rf_reset="subtract")), ("prf", True, dict(n_layers=1)),
    ("drf", False, dict(n_layers=1)), ("rf-s4d", False, dict(n_layers=1)),
])
def test_padding_is_not_counted(preset, tokens, overrides):
    sim = IntegerSimulator(quantized(small(preset, tokens, **overrides)))
    model, lengths = sim.qmodel.model, [10, 3, 7]
    x = inputs(model, 3, 10)
    padded = op_counts(sim, x, torch.tensor(lengths))
    alone = merge([op_counts(sim, x[i:i + 1, :n]) for i, n in enumerate(lengths)])
    assert alone["examples"] == 3
    for name, counts in padded["per_layer"].items():
        for kind, row in counts.items():
            assert row == pytest.approx(alone["per_layer"][name][kind]), (name, kind)
    assert padded["total"]["acc"] and energy_pj(padded["total"]) > 0


def test_unknown_parameter_and_state_are_refused(sim, monkeypatch):
    class Novel(IntLayer):
        stateful = True

    monkeypatch.setitem(sim.params, "encoder", {**sim.params["encoder"], "Z": torch.zeros(3)})
    with pytest.raises(NotImplementedError, match="no storage width for parameter 'Z' of encoder"):
        memory(sim)
    monkeypatch.undo()
    monkeypatch.setattr(sim.graph, "layers", lambda: [Novel("x", QuantConfig())])
    with pytest.raises(NotImplementedError, match=r"no state size for Novel \(x\)"):
        memory(sim)


def test_spike_inputs_are_gated_by_activity(sim):
    glu = next(layer for layer in sim.graph.layers() if isinstance(layer, GLULayer))
    params, c = sim.params[glu.name], sim.config
    B, L, H = 2, 5, 6
    valid = torch.ones(B, L, dtype=torch.bool)
    counts = {}
    for value in (0, 1):
        tally = Tally(B)
        spikes = torch.full((B, L, H), value, dtype=torch.int64)
        layer_ops(glu, Call((spikes,), 1, params, None, valid, valid.sum(1)), tally, c)
        counts[value] = {kind: {bits: float(n[0]) for bits, n in row.items()} for kind, row in tally.counts.items()}
    rescale_adds = L * 2 * H + L * H  # a and g from the accumulator, the gate a sigmoid(g) (2 x 16 bits)
    assert counts[0]["acc"][c.acc_bits] == rescale_adds  # silent: no synaptic operation, the rescales only
    assert counts[1]["acc"][c.acc_bits] == rescale_adds + L * H * 2 * H  # every spike x fan-out 2H
    assert counts[0]["mul"] == counts[1]["mul"] == {c.act_bits: L * H}  # spikes never multiply: the gate only
    tally = Tally(B)
    layer_ops(glu, Call((torch.ones(B, L, H, dtype=torch.int64),), c.act_bits, params, None, valid, valid.sum(1)),
              tally, c)
    assert float(tally.counts["mul"][max(c.weight_bits, c.act_bits)][0]) == L * H * 2 * H + L * H  # dense, gate


def test_energy_is_counts_times_constants(sim):
    e = EnergyModel()
    counts = {"acc": {8: 2, 20: 3, 40: 1}, "mul": {16: 5, 32: 1}, "lut": {16: 2}}
    expected = 2 * 0.03 + 3 * 0.1 + 1 * 0.2 + 5 * 0.78 + 3.1 + 2 * 10.0 * 16 / 64
    assert energy_pj(counts, e) == pytest.approx(expected)
    assert energy_pj(counts, EnergyModel(int_mul_32_pj=4.1)) == pytest.approx(expected + 1)
    ops = op_counts(sim, inputs(sim.qmodel.model, 2, 6))
    assert energy_pj(ops["total"]) == pytest.approx(sum(energy_pj(c) for c in ops["per_layer"].values()))
    assert energy_pj(ops["total"]) > 0
    with pytest.raises(ValueError, match="no integer energy for a 65-bit operation"):
        e.integer_pj("acc", 65)


def test_a_layer_without_a_cost_function_is_refused():
    class Novel(IntLayer):
        pass

    call = Call((torch.zeros(1, 1, 1),), 16, {}, None, torch.ones(1, 1, dtype=torch.bool), torch.ones(1))
    with pytest.raises(NotImplementedError, match=r"no operation count for Novel \(blocks.9.novel\)"):
        layer_ops(Novel("blocks.9.novel", QuantConfig()), call, Tally(1), QuantConfig())
