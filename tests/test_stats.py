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


def per_example_alone(model, examples, **kwargs):
    """The counter's per-example figures for each example run alone, unpadded, stacked."""
    rows = []
    for x in examples:
        with OpCounter(model) as counter:
            model(x[None], **kwargs)
        rows.append(counter.per_example())
    return {k: torch.cat([r[k] for r in rows]) for k in rows[0]}


def assert_same_counts(got, want):
    for k in ("neurons", "spikes", "acs", "macs", "dense_macs"):
        assert torch.equal(got[k], want[k]), k
    for k in ("energy_pj", "dense_energy_pj"):
        assert torch.allclose(got[k], want[k], rtol=1e-12), k


@pytest.mark.parametrize("preset", ["binary-s4d", "gsu-s4d", "lif-s4d", "lif-s5"])
def test_a_padded_batch_counts_each_example_as_if_alone(preset):
    """Causal models (their outputs at the true positions do not depend on the padding), token inputs."""
    torch.manual_seed(2)
    model = build_model(preset, n_classes=3, vocab_size=7, d_model=4, n_layers=2, d_state=4,
                        bidirectional=False, lif_threshold=0.2).eval()
    lengths = torch.tensor([9, 4, 1, 6])
    examples = [torch.randint(1, 7, (n,), generator=torch.Generator().manual_seed(n)) for n in lengths.tolist()]
    alone = per_example_alone(model, examples)
    assert alone["spikes"].sum() > 0 and (alone["macs"] > 0).all()
    for pad in (0, 5):  # padded to the longest example, and further
        batch = torch.zeros(4, 9 + pad, dtype=torch.int64)
        for b, x in enumerate(examples):
            batch[b, :len(x)] = x
        with OpCounter(model) as counter:
            model(batch, lengths)
        assert_same_counts(counter.per_example(), alone)
        totals = counter.totals()
        assert totals["examples"] == 4
        assert totals["macs"] == int(alone["macs"].sum()) and totals["spikes"] == int(alone["spikes"].sum())
        assert totals["energy_pj_per_example"] == pytest.approx(float(alone["energy_pj"].mean()))
        assert totals["dense_energy_pj_per_example"] == pytest.approx(float(alone["dense_energy_pj"].mean()))
        assert totals["energy_pj"] == pytest.approx(float(alone["energy_pj"].sum()))


def test_pair_inputs_and_events_are_judged_per_example():
    """Pair models count each sequence over its own length; an encoder input made of events is counted as
    accumulates for that example only."""
    torch.manual_seed(3)
    model = build_model("gsu-s4d", n_classes=2, d_input=2, pair=True, d_model=4, n_layers=1, d_state=2,
                        bidirectional=False).eval()
    first = [torch.randint(0, 2, (5, 2)).float(), torch.randn(3, 2)]  # example 0: events, example 1: not
    second = [torch.randn(2, 2), torch.randint(0, 2, (6, 2)).float()]
    rows = []
    for a, b in zip(first, second):
        with OpCounter(model) as counter:
            model(a[None], None, b[None])
        rows.append(counter.per_example())
    alone = {k: torch.cat([r[k] for r in rows]) for k in rows[0]}

    def pad(xs, L):
        return torch.stack([torch.cat([x, torch.full((L - len(x), 2), 0.5)]) for x in xs])

    with OpCounter(model) as counter:
        model(pad(first, 7), torch.tensor([5, 3]), pad(second, 7), torch.tensor([2, 6]))
    assert_same_counts(counter.per_example(), alone)
    encoder = counter.layers["encoder"]
    # 5 event positions of example 0 (nonzero inputs x 4 outputs as ACs); 3 + 2 + 6 float positions as MACs
    assert encoder.acs == 4 * int(torch.count_nonzero(first[0])) + 4 * int(torch.count_nonzero(second[1]))
    assert encoder.macs == (3 + 2) * 2 * 4


def test_per_example_figures_across_batches():
    torch.manual_seed(0)
    model = build_model("binary-s4d", **TINY).eval()
    x = torch.randn(3, 5, 2)
    with OpCounter(model) as counter:
        model(x[:2])
        model(x[2:])
        per_example = counter.per_example()
        totals = counter.totals()
    assert per_example["macs"].shape == (3,) and totals["examples"] == 3
    for k in ("neurons", "spikes", "acs", "macs", "dense_macs"):
        assert int(per_example[k].sum()) == totals[k]
    assert totals["macs_per_example"] == pytest.approx(totals["macs"] / 3)
    assert "per example (3 examples)" in counter.table()
    counter.reset()
    assert counter.totals()["examples"] == 0 and counter.totals()["energy_pj_per_example"] is None


def test_layers_report_their_own_counts():
    """OpCounter keeps no table of layer types: a layer's op_counts is what it sums."""
    from spikessm.layers import OpCounts

    class Doubler(torch.nn.Module):
        def forward(self, x):
            return 2 * x

        def op_counts(self, x, out):
            return {"": OpCounts(macs=x.shape[-1], spikes=torch.count_nonzero(out, dim=-1), neurons=x.shape[-1])}

    model = torch.nn.Sequential(Doubler())
    x = torch.tensor([[[1.0, 0.0, 2.0], [0.0, 0.0, 0.0]]])
    with OpCounter(model) as counter:
        model(x)
    row = counter.layers["0"]
    assert (row.kind, row.macs, row.spikes, row.neurons) == ("Doubler", 6, 2, 6)


@pytest.mark.parametrize("preset", ["binary-s4d", "gsu-s4d", "lif-s4d", "lif-s5"])
def test_a_stream_fed_step_by_step_counts_as_one_forward(preset):
    """Every layer's step() is its forward on one step: the blocks count the same; the head answers every step."""
    torch.manual_seed(4)
    model = build_model(preset, **{**TINY, "lif_threshold": 0.2}, dtype=torch.float64).eval()
    x = 3 * torch.randn(2, 6, 2, dtype=torch.float64)
    with OpCounter(model) as whole:
        model(x)
    with OpCounter(model) as stream:
        state = model.init_state(2)
        for t in range(6):
            _, state = model.step(x[:, t], state)
    assert whole.totals()["spikes"] > 0
    assert set(stream.layers) == set(whole.layers)
    for name, row in whole.layers.items():
        if name != "decoder":
            assert stream.layers[name] == row, name
    assert stream.layers["decoder"].macs == 6 * whole.layers["decoder"].macs
    assert stream.totals()["examples"] == 2


@pytest.mark.parametrize("bidirectional", [False, True])
def test_neurons_are_counted_once_fused_or_not(bidirectional):
    """A causal S4D reports the neurons it runs fused; a bidirectional one runs their forward, which reports."""
    torch.manual_seed(0)
    model = build_model("lif-s4d", **{**TINY, "bidirectional": bidirectional}).eval()
    assert model.blocks[0].ssm.fused != bidirectional
    counter, _ = run(model, torch.randn(2, 5, 2))
    row = counter.layers["blocks.0.ssm.neurons"]
    assert (row.kind, row.neurons, row.macs) == ("LIF", 10 * 4, 10 * 4)
    assert counter.layers["blocks.0.ssm"].macs == 10 * 4 * (8 * (2 if bidirectional else 1) + 1)
