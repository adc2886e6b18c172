"""spikessm.nir and `spikessm export-nir`: what is written per layer kind, that it reads back with nir.read
unchanged, and that NIR simulators (snntorch's and spikingjelly's NIR import) give spikessm's spikes from it."""
import json
import sys
import types

import numpy as np
import pytest
import torch

from spikessm.layers import LIF
from spikessm.models import PRESETS, build_model

from spikessm.nir import to_nir, write_nir

try:
    import nir
except ImportError:
    nir = None
# nir >= 1.0.8, the version spikessm.nir takes (its LIF has v_reset); the refusals below run without it.
requires_nir = pytest.mark.skipif(nir is None or "v_reset" not in nir.LIF.__dataclass_fields__,
                                  reason="needs nir >= 1.0.8: pip install spikessm[nir]")


def small(preset, **overrides):
    torch.manual_seed(0)
    sizes = dict(n_classes=3, d_input=5, d_model=6, d_state=4, n_layers=1)
    return build_model(preset, **{**sizes, **overrides}).eval()


def statuses(export):
    """{layer: 'as <primitives>' or 'no'}"""
    return {layer["name"]: layer.get("written", "no") for layer in export.report["layers"]}


# One block, post-norm BatchNorm, feature inputs: every layer of each preset and what the export makes of it.
SSM_ONLY = {"encoder": "as Affine", "blocks.0.ssm": "no", "blocks.0.mixing": "no", "blocks.0.residual": "no",
            "blocks.0.norm": "as Affine", "pooling": "no", "decoder": "as Affine"}
EXPECTED = {
    "s4d": {**SSM_ONLY, "blocks.0.readout": "no"},  # GELU
    "s5": {**SSM_ONLY, "blocks.0.readout": "no"},
    "binary-s4d": {**SSM_ONLY, "blocks.0.readout": "as Threshold"},
    "gsu-s4d": SSM_ONLY,
    "lif-s4d": {**SSM_ONLY, "blocks.0.ssm.neurons": "no"},  # reset "subtract"
    "lif-s5": {**SSM_ONLY, "blocks.0.ssm.neurons": "no"},
    "rf-s4d": {**SSM_ONLY, "blocks.0.ssm.neurons": "no"},
    "prf": SSM_ONLY, "drf": SSM_ONLY, "s5-rf": SSM_ONLY,
}


@requires_nir
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_layer_of_each_preset_is_reported(preset):
    export = to_nir(small(preset))
    assert statuses(export) == EXPECTED[preset]
    assert list(statuses(export)) == [layer["name"] for layer in export.report["layers"]]  # the path's order
    assert not export.complete
    for layer in export.report["layers"]:
        assert ("written" in layer) != ("not_written" in layer)
        if "written" in layer:
            assert layer["name"] in export.report["graphs"][layer["graph"]]["layers"]
    kinds = {layer["name"]: layer["kind"] for layer in export.report["layers"]}
    assert kinds["blocks.0.ssm"] == {"s5": "S5", "lif-s5": "S5", "prf": "RF neurons", "drf": "RF neurons",
                                     "s5-rf": "RF neurons"}.get(preset, "S4D")
    assert kinds["blocks.0.mixing"] == ("GSU" if preset == "gsu-s4d" else "GLU")


@requires_nir
def test_reasons_and_graph_runs():
    export = to_nir(small("lif-s4d", vocab_size=7, d_input=None, norm="layer", prenorm=True, lif_reset="zero",
                          pair=True, n_layers=2))
    reasons = {layer["name"]: layer.get("not_written") for layer in export.report["layers"]}
    assert reasons["encoder"].startswith("looks integer token ids up in a table")
    assert reasons["blocks.0.norm"].startswith("divides by each step's own standard deviation")
    assert reasons["blocks.1.ssm"] == (
        "its complex modes x_t = A_bar x_{t-1} + B_bar u_t are real 2x2 rotation blocks fed the previous step's "
        "state: in NIR a cycle through nir.Delay(dt), or through an integrator (nir.LI, nir.I) whose recurrent "
        "edge's delay NIR leaves to the simulator; neither snntorch's nor spikingjelly's NIR import runs nir.Delay, "
        "nir.LI or nir.I, so such a graph cannot be checked here and none is written")
    assert reasons["blocks.0.residual"] == "adds the mixing layer's output, which is not written"
    assert reasons["blocks.0.mixing"] == "a * sigmoid(b) multiplies two signals through a sigmoid: no NIR primitive"
    assert reasons["pooling"].startswith("combines the steps of the whole sequence")
    assert reasons["decoder"].startswith("the head reads [f1, f2, f1 * f2, f1 - f2]")
    assert list(export.graphs) == ["blocks.0.ssm.neurons", "blocks.1.ssm.neurons"]
    assert export.report["graphs"]["blocks.1.ssm.neurons"] == {
        "file": "blocks.1.ssm.neurons.nir", "layers": ["blocks.1.ssm.neurons"], "input": "blocks.1.ssm",
        "output_to": "blocks.1.mixing", "size_in": 6, "size_out": 6}
    bidirectional = to_nir(small("binary-s4d"))
    assert bidirectional.report["layers"][1]["not_written"].endswith(
        "; bidirectional, it also reads the future of the sequence")
    prenorm = to_nir(small("gsu-s4d", prenorm=True))  # encoder and the first norm in a row make one graph
    assert list(prenorm.graphs) == ["encoder..blocks.0.norm", "final_norm", "decoder"]
    assert prenorm.report["graphs"]["encoder..blocks.0.norm"]["layers"] == ["encoder", "blocks.0.norm"]
    assert [e for e in prenorm.graphs["encoder..blocks.0.norm"].edges] == [
        ("input", "encoder"), ("encoder", "blocks_0_norm"), ("blocks_0_norm", "output")]


@requires_nir
@pytest.mark.parametrize("reset, beta, written", [
    ("zero", 0.8, "as LIF"), ("none", 0.8, "as LI -> Threshold"), ("zero", 1.0, "as IF"),
    ("none", 1.0, "as I -> Threshold"), ("subtract", 0.125, None), ("subtract_after_decay", 0.125, None)])
def test_lif_mapping(reset, beta, written):
    model = small("lif-s4d", lif_reset=reset, lif_beta=beta, learn_threshold=False, lif_threshold=0.75)
    layer = to_nir(model, dt=0.01).report["layers"][2]
    assert layer["name"] == "blocks.0.ssm.neurons" and layer["kind"] == f"LIF (reset {reset!r})"
    if written is None:
        assert layer["not_written"] == (f"reset {reset!r}: NIR's LIF and IF set v to v_reset on a spike, and "
                                            "no NIR primitive subtracts the threshold")
        return
    assert layer["written"] == written
    nodes = to_nir(model, dt=0.01).graphs["blocks.0.ssm.neurons"].nodes
    neuron = nodes["blocks_0_ssm_neurons" if reset == "zero" else "blocks_0_ssm_neurons_membrane"]
    if beta < 1:  # forward Euler at dt: v + dt / tau (-v + r x) = beta v + x
        np.testing.assert_allclose(1 - 0.01 / neuron.tau, beta, rtol=1e-12)
        np.testing.assert_allclose(0.01 * neuron.r / neuron.tau, 1, rtol=1e-12)
    else:
        np.testing.assert_allclose(0.01 * neuron.r, 1, rtol=1e-12)
    threshold = neuron.v_threshold if reset == "zero" else nodes["blocks_0_ssm_neurons_spike"].threshold
    assert np.array_equal(threshold, np.full(6, 0.75))
    if reset == "zero":
        assert np.array_equal(neuron.v_reset, np.zeros(6))


@requires_nir
def test_fire_on_tie():
    layer = to_nir(small("lif-s4d", lif_reset="zero", lif_fire_on_tie=True)).report["layers"][2]
    assert layer["not_written"] == "fire_on_tie spikes at v = threshold; NIR's neurons fire on v > v_thr only"


def test_bad_arguments():  # refused before nir is imported
    with pytest.raises(ValueError, match=r"^to_nir: the model is in training mode .* call model.eval\(\) first$"):
        to_nir(small("s4d").train())
    for dt in (0, -1.0, float("nan"), True, "1"):
        with pytest.raises(ValueError, match=r"^to_nir: dt must be a positive finite number, got "):
            to_nir(small("s4d"), dt=dt)
    with pytest.raises(TypeError, match="^to_nir: model must be a spikessm SequenceClassifier, got LIF$"):
        to_nir(LIF(3, beta=0.5))


def test_missing_or_old_nir_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "nir", None)
    with pytest.raises(ImportError, match=r"^NIR export needs the nir package: pip install spikessm\[nir\]$"):
        to_nir(small("s4d"))
    old = types.ModuleType("nir")
    old.__version__ = "1.0.0"
    old.LIF = type("LIF", (), {"__dataclass_fields__": {"tau": None, "r": None, "v_leak": None,
                                                        "v_threshold": None}})
    monkeypatch.setitem(sys.modules, "nir", old)
    with pytest.raises(ImportError, match=r"^NIR export needs nir >= 1.0.8 \(a LIF with a reset potential v_reset\), "
                                          r"found nir 1.0.0: pip install spikessm\[nir\]$"):
        to_nir(small("s4d"))


def node_fields(node):
    return {k: v for k, v in vars(node).items() if k not in ("input_type", "output_type")}


@requires_nir
def test_written_graphs_read_back_unchanged(tmp_path):
    model = small("binary-s4d", prenorm=True, lif_reset="zero")
    with torch.no_grad():  # BatchNorm with statistics of its own, so its affine map is not the identity
        model.blocks[0].norm.running_mean.normal_()
        model.blocks[0].norm.running_var.uniform_(0.5, 2)
        model.blocks[0].norm.weight.normal_()
    export = write_nir(model, tmp_path / "out", dt=0.002)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([g["file"] for g in export.report["graphs"].values()] + ["nir_report.json"])
    assert json.loads((tmp_path / "out" / "nir_report.json").read_text()) == export.report
    for name, graph in export.graphs.items():
        back = nir.read(tmp_path / "out" / f"{name}.nir")
        assert sorted(back.edges) == sorted(graph.edges)
        assert back.metadata["dt"] == 0.002 and back.metadata["source"] == "spikessm"
        assert back.metadata["layers"].split() == export.report["graphs"][name]["layers"]
        assert set(back.nodes) == set(graph.nodes)
        for key, node in graph.nodes.items():
            assert type(back.nodes[key]) is type(node)
            for field, value in node_fields(node).items():
                if isinstance(value, np.ndarray):
                    assert np.array_equal(back.nodes[key].__dict__[field], value), (name, key, field)
    # The Affine maps are the layers they stand for.
    x = torch.randn(4, 1, 5)
    nodes = export.graphs["encoder..blocks.0.norm"].nodes
    with torch.no_grad():
        want = model.blocks[0].norm(model.encoder(x))[:, 0].double().numpy()
    got = x[:, 0].double().numpy() @ nodes["encoder"].weight.T + nodes["encoder"].bias
    got = got @ nodes["blocks_0_norm"].weight.T + nodes["blocks_0_norm"].bias
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.array_equal(export.graphs["blocks.0.readout"].nodes["blocks_0_readout"].threshold, np.zeros(6))


def ssm_output_and_spikes(model, u):
    """The block's SSM output y (the neurons' input), and the spikes and the final membrane (B, H) the model's
    layer gives for u."""
    ssm = model.blocks[0].ssm
    neurons = ssm.neurons
    with torch.no_grad():
        spikes, (_, membrane) = ssm(u, return_state=True)
        ssm.neurons = None
        try:
            y = ssm(u)
        finally:
            ssm.neurons = neurons
    return y, spikes, membrane


def drive(model, batch, length, dtype=torch.float32):
    torch.manual_seed(batch)
    return 3 * torch.randn(batch, length, model.config.d_model, dtype=dtype) + 1


@requires_nir
@pytest.mark.parametrize("batch", [1, 3])
def test_snntorch_runs_the_lif_graph_to_the_same_spikes(tmp_path, batch):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    import snntorch.utils
    from snntorch.import_nir import import_from_nir

    model = small("lif-s4d", lif_reset="zero", learn_threshold=False, lif_beta=0.8, backend="torch")
    write_nir(model, tmp_path)  # dt 1e-4: snntorch's import step
    net = import_from_nir(nir.read(tmp_path / "blocks.0.ssm.neurons.nir"))
    y, spikes, membrane = ssm_output_and_spikes(model, drive(model, batch, 37))
    assert 0.05 < spikes.mean() < 0.95  # resets happen, so they are checked too
    snntorch.utils.reset(net)
    with torch.no_grad():
        out = torch.stack([net(y[:, t])[0] for t in range(y.shape[1])], 1)
    assert torch.equal(out, spikes)
    # float32 both, but snntorch's beta is 1 - dt / tau: equal to spikessm's to rounding
    torch.testing.assert_close(net.blocks_0_ssm_neurons.mem, membrane, rtol=1e-5, atol=1e-5)


@requires_nir
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("beta", [0.8, 1.0])
def test_spikingjelly_runs_the_graphs_to_the_same_spikes(tmp_path, batch, beta):
    pytest.importorskip("spikingjelly")
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    model = small("lif-s4d", lif_reset="zero", learn_threshold=False, lif_beta=beta, lif_threshold=0.5,
                  backend="torch", dtype=torch.float64)
    write_nir(model, tmp_path)
    net = import_from_nir(tmp_path / "blocks.0.ssm.neurons.nir", dtype=torch.float64)
    y, spikes, membrane = ssm_output_and_spikes(model, drive(model, batch, 37, torch.float64))
    assert 0.05 < spikes.mean() < 0.95  # resets happen, so they are checked too
    state, out = None, []
    with torch.no_grad():
        for t in range(y.shape[1]):
            s, state = net(y[:, t], state)
            out.append(s)
    assert torch.equal(torch.stack(out, 1), spikes)
    # float64 both; spikingjelly's beta is 1 - dt / tau: equal to spikessm's to rounding
    torch.testing.assert_close(state["blocks_0_ssm_neurons"][0], membrane, rtol=1e-12, atol=1e-12)
    encoder = import_from_nir(tmp_path / "encoder.nir", dtype=torch.float64)
    x = torch.randn(batch, 5, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(encoder(x, None)[0], model.encoder(x), rtol=1e-12, atol=1e-12)


def test_spikessm_imports_nir_only_to_export():
    import subprocess

    code = "import sys, spikessm.nir, spikessm.__main__; assert 'nir' not in sys.modules, 'nir imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
