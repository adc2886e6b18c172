"""Spike, operation and energy accounting against counts worked out by hand on tiny models."""
import pytest
import torch

from spikessm.models import build_model
from spikessm.stats import EnergyModel, OpCounter

TINY = dict(n_classes=3, d_input=2, d_model=4, n_layers=1, d_state=2, bidirectional=False)


def run(model, x, energy=None):
    with OpCounter(model, **({"energy": energy} if energy else {})) as counter:
        out = model(x)
    return counter, out


def test_binary_s4d_counts_by_hand():
    torch.manual_seed(0)
    model = build_model("binary-s4d", **TINY).eval()
    x = torch.randn(2, 5, 2)  # 10 tokens
    counter, out = run(model, x)
    block = model.blocks[0]
    with torch.no_grad():
        spikes = block.readout(block.ssm(model.encoder(x)))
    n = int(spikes.sum())
    assert 0 < n < 40
    L = counter.layers
    assert (L["encoder"].macs, L["encoder"].acs) == (10 * 2 * 4, 0)            # float input: tokens x in x out
    assert L["blocks.0.ssm"].macs == 10 * 4 * (8 * 1 + 1)                     # M = 1 mode: 8M + 1 per channel
    assert (L["blocks.0.readout"].neurons, L["blocks.0.readout"].spikes) == (40, n)
    assert L["blocks.0.readout"].firing_rate == n / 40
    assert (L["blocks.0.mixing.linear"].acs, L["blocks.0.mixing.linear"].macs) == (8 * n, 0)  # spikes x fan-out 2H
    assert L["blocks.0.mixing.linear"].dense_macs == 10 * 4 * 8
    assert L["blocks.0.mixing"].macs == 10 * 4                                 # the gate product
    assert L["decoder"].macs == 2 * 4 * 3                                      # pooled features, one per example
    totals = counter.totals()
    macs = 80 + 360 + 40 + 24
    assert totals["macs"] == macs and totals["acs"] == 8 * n
    assert totals["energy_pj"] == pytest.approx(4.6 * macs + 0.9 * 8 * n)
    assert totals["dense_energy_pj"] == pytest.approx(4.6 * (macs + 320))
    assert totals["energy_ratio"] == pytest.approx(totals["dense_energy_pj"] / totals["energy_pj"])
    assert torch.equal(out, model(x)), "counting must not change the outputs"
    table = counter.table()
    assert "blocks.0.readout" in table and "non-spiking equivalent" in table
    assert table.index("encoder") < table.index("blocks.0.ssm") < table.index("blocks.0.readout") < table.index(
        "decoder")


def test_bidirectional_s4d_and_s5_and_lif_counts():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 2)
    counter, _ = run(build_model("s4d", **{**TINY, "bidirectional": True}).eval(), x)
    assert counter.layers["blocks.0.ssm"].macs == 10 * 4 * (2 * 8 + 1)
    assert counter.layers["blocks.0.mixing.linear"].macs == 10 * 4 * 8   # GELU readout: not events
    assert "blocks.0.readout" not in counter.layers
    counter, _ = run(build_model("lif-s5", **{**TINY, "d_state": 4}).eval(), x)
    M, H = 2, 4
    assert counter.layers["blocks.0.ssm"].macs == 10 * (2 * M * H + 4 * M + 2 * M * H + H)
    assert counter.layers["blocks.0.ssm.neurons"].macs == 10 * H             # beta v + x per neuron and step
    assert counter.layers["blocks.0.ssm.neurons"].neurons == 10 * H


def test_fused_lif_s4d_spikes_are_counted():
    torch.manual_seed(3)
    model = build_model("lif-s4d", **{**TINY, "lif_threshold": 0.2}).eval()
    assert model.blocks[0].ssm.fused
    x = torch.randn(2, 5, 2) * 3
    counter, _ = run(model, x)
    block = model.blocks[0]
    with torch.no_grad():
        spikes = block.ssm(model.encoder(x))  # the S4D layer's LIF neurons' spikes
    assert counter.layers["blocks.0.ssm.neurons"].spikes == int(spikes.sum()) > 0
    assert counter.layers["blocks.0.ssm.neurons"].kind == "LIF"
    assert counter.layers["blocks.0.mixing.linear"].acs == 8 * int(spikes.sum())


def test_gsu_counts_by_hand():
    torch.manual_seed(0)
    model = build_model("gsu-s4d", **TINY).eval()
    x = torch.randn(2, 5, 2)
    counter, _ = run(model, x)
    gsu = model.blocks[0].mixing
    with torch.no_grad():
        y = model.blocks[0].ssm(model.encoder(x))
        ternary = gsu.ternary_input(y)
        weight_nnz = int((gsu.ternary_weight() != 0).sum())
    events = int((ternary != 0).sum())
    stats = counter.layers["blocks.0.mixing"]
    assert (stats.neurons, stats.spikes) == (40, events)
    assert stats.acs == events * 4 + 10 * weight_nnz
    assert stats.macs == 10 * 4
    assert stats.dense_macs == 10 * (2 * 16 + 4)


def test_counts_add_up_reset_and_hooks_go_away():
    torch.manual_seed(0)
    model = build_model("binary-s4d", **TINY).eval()
    x = torch.randn(2, 5, 2)
    with OpCounter(model, EnergyModel(mac_pj=1.0, ac_pj=0.0)) as counter:
        model(x)
        once = counter.totals()
        model(x)
        twice = counter.totals()
        assert twice["macs"] == 2 * once["macs"]
        assert twice["energy_pj"] == pytest.approx(twice["macs"])  # the energy model is used
        counter.reset()
        assert counter.totals()["macs"] == 0
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert counter.totals()["macs"] == 0
