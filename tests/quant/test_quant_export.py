"""spikessm.quant.export: the numpy runner (in a subprocess, without torch or spikessm) reproduces the simulator
bit for bit; tampered or truncated files are named; an existing folder is refused."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from spikessm.quant import IntegerSimulator, QuantConfig, export

from test_quant import inputs, quantized, small


def run_py(folder, codes, out):
    np.save(folder.parent / "in.npy", codes)
    return subprocess.run([sys.executable, str(folder / "run.py"), str(folder.parent / "in.npy"), str(out)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module", params=[
    ("lif-s4d", False, dict(), QuantConfig()),
    ("lif-s4d", True, dict(lif_reset="zero", prenorm=True, pooling="last"), QuantConfig(per_channel=True)),
    ("binary-s4d", False, dict(), QuantConfig(power_of_two=False)),
    ("lif-s4d", True, dict(lif_fire_on_tie=True), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, act_bits=6)),
    ("gsu-s4d", False, dict(), QuantConfig()),
    ("gsu-s4d", True, dict(d_model=5, prenorm=True, pooling="last"), QuantConfig(power_of_two=False, per_channel=True)),
    ("gsu-s4d", False, dict(), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, membrane_bits=12, act_bits=6)),
    ("lif-s4d", False, dict(norm="layer", prenorm=True), QuantConfig(power_of_two=False)),
    ("lif-s5", False, dict(), QuantConfig()),
    ("lif-s5", True, dict(conj_sym=False, lif_reset="zero", prenorm=True, pooling="last"),
     QuantConfig(power_of_two=False, per_channel=True)),
    ("gsu-s4d", False, dict(ssm="s5"), QuantConfig(weight_bits=4, coef_bits=8, state_bits=12, membrane_bits=12,
                                                    act_bits=6)),
    ("prf", False, dict(), QuantConfig()),
    ("prf", True, dict(rf_reset="subtract", learn_threshold=True, prenorm=True, pooling="last"),
     QuantConfig(per_channel=True)),
    ("prf", False, dict(rf_reset="zero"), QuantConfig(power_of_two=False, weight_bits=4, coef_bits=8, state_bits=12,
                                                      act_bits=6)),
    ("rf-s4d", False, dict(), QuantConfig()),
    ("rf-s4d", True, dict(ssm="s5", rf_reset="zero", prenorm=True, pooling="last"),
     QuantConfig(power_of_two=False, per_channel=True)),
    ("drf", False, dict(), QuantConfig()),
    ("drf", True, dict(rf_reset="zero", learn_threshold=True), QuantConfig(per_channel=True, power_of_two=False)),
    ("prf", False, dict(rf_adaptive=True, rf_reset="subtract"), QuantConfig(weight_bits=4, coef_bits=8,
                                                                             state_bits=12, act_bits=6)),
], ids=["lif-s4d", "tokens-prenorm", "binary-real-scales", "fire-on-tie", "gsu-s4d", "gsu-tokens-real-scales",
        "gsu-low-bits", "layer-norm", "lif-s5", "s5-tokens-real-scales", "gsu-s5-low-bits", "prf",
        "prf-tokens-subtract", "prf-zero-low-bits", "rf-s4d", "rf-s5-tokens-zero", "drf", "drf-tokens-zero",
        "prf-adaptive-low-bits"])
def exported(request, tmp_path_factory):
    preset, tokens, overrides, config = request.param
    model = small(preset, tokens, **overrides)
    sim = IntegerSimulator(quantized(model, config))
    folder = export(sim, tmp_path_factory.mktemp("e") / "export", inputs(model, 2, 7))
    return sim, model, folder


def test_numpy_runner_equals_simulator(exported):
    sim, model, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["graph.json", "model.safetensors", "run.py",
                                                       "sample_inputs.npy", "sample_logits.npy"]
    source = (folder / "run.py").read_text()
    assert "import torch" not in source and "spikessm" not in source.split('"""')[2]
    result = run_py(folder, np.load(folder / "sample_inputs.npy"), folder.parent / "out.npy")
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(folder.parent / "out.npy"), np.load(folder / "sample_logits.npy"))
    codes = sim.quantize_inputs(inputs(model, 3, 11, seed=9))
    result = run_py(folder, codes.numpy(), folder.parent / "out2.npy")
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(folder.parent / "out2.npy"), sim.logits_from_codes(codes)[0].numpy())


def test_existing_folder_is_refused(exported, tmp_path):
    sim, model, folder = exported
    with pytest.raises(FileExistsError, match=r"^export: .* already exists; choose another folder or remove it$"):
        export(sim, folder, inputs(model, 1, 3))
    assert not list(folder.parent.glob(".*partial"))


def copy(folder, tmp_path):
    import shutil
    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_truncated_weights_are_named(exported, tmp_path):
    sim, model, folder = exported
    target = copy(folder, tmp_path)
    data = (target / "model.safetensors").read_bytes()
    (target / "model.safetensors").write_bytes(data[:len(data) // 2])
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("run.py: model.safetensors: ")
    assert "truncated" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_tampered_graph_is_named(exported, tmp_path):
    sim, model, folder = exported
    target = copy(folder, tmp_path)
    graph = json.loads((target / "graph.json").read_text())
    point = next(iter(graph["blocks"][0]["mixing"]["fracs"]))  # "ab" of a GLU, "a" of a GSU
    del graph["blocks"][0]["mixing"]["fracs"][point]
    (target / "graph.json").write_text(json.dumps(graph))
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.returncode == 1
    assert result.stderr.strip() == f"run.py: graph.json: missing field blocks.0.mixing.fracs.{point}"
    (target / "graph.json").write_text("{not json")
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.stderr.strip() == "run.py: graph.json: not valid JSON"


def test_missing_tensor_is_named(exported, tmp_path):
    from safetensors.numpy import load_file, save_file
    sim, model, folder = exported
    target = copy(folder, tmp_path)
    tensors = load_file(target / "model.safetensors")
    del tensors["blocks.0.ssm/Ar"]
    save_file(tensors, target / "model.safetensors")
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.stderr.strip() == "run.py: model.safetensors: missing tensor blocks.0.ssm/Ar"


def test_s4d_graph_without_type_still_runs(exported, tmp_path):
    """type is optional for S4D: a graph without it runs as S4D."""
    sim, model, folder = exported
    if model.config.ssm != "s4d":
        pytest.skip("an S5 graph needs its type")
    target = copy(folder, tmp_path)
    graph = json.loads((target / "graph.json").read_text())
    for block in graph["blocks"]:
        del block["ssm"]["type"]
    (target / "graph.json").write_text(json.dumps(graph))
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "o.npy"), np.load(folder / "sample_logits.npy"))


def test_logits_match_after_reload_of_sample(exported):
    sim, model, folder = exported
    assert torch.equal(torch.from_numpy(np.load(folder / "sample_logits.npy")),
                       sim.logits_from_codes(torch.from_numpy(np.load(folder / "sample_inputs.npy")))[0])


def test_graph_names_each_mixing_and_readout(exported, tmp_path):
    sim, model, folder = exported
    graph = json.loads((folder / "graph.json").read_text())
    block = graph["blocks"][0]
    gsu = model.config.mixing == "gsu"
    assert block["ssm"]["type"] == model.config.ssm
    assert block["mixing"]["kind"] == ("gsu" if gsu else "glu")
    assert block["ssm"]["readout"] == ("identity" if gsu else "heaviside" if model.config.readout == "binary"
                                       else model.config.rf_reset if "rf" in (model.config.ssm, model.config.readout)
                                       else model.config.lif_reset)
    if model.config.readout in ("lif", "rf"):
        assert block["ssm"]["neurons"] == model.config.readout
    if model.config.ssm == "rf":
        assert (block["ssm"]["branches"], block["ssm"]["adaptive"]) == (model.config.rf_branches,
                                                                       model.config.rf_adaptive)
        assert set(block["ssm"]["fracs"]) == {"state"}
    if gsu:
        assert set(block["mixing"]["fracs"]) == {"a", "g", "prod", "norm", "out"}
        assert isinstance(block["mixing"]["norm_extra_bits"], int) and isinstance(block["mixing"]["norm_frac"], int)
    target = copy(folder, tmp_path)
    block["mixing"]["kind"] = "mlp"
    (target / "graph.json").write_text(json.dumps(graph))
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.returncode == 1
    assert result.stderr.strip() == "run.py: graph.json: field blocks.0.mixing.kind must be glu or gsu, got 'mlp'"
    block["mixing"]["kind"] = "gsu" if gsu else "glu"
    block["ssm"]["type"] = "s6"
    (target / "graph.json").write_text(json.dumps(graph))
    result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
    assert result.returncode == 1
    assert result.stderr.strip() == "run.py: graph.json: field blocks.0.ssm.type must be s4d, s5 or rf, got 's6'"
    if model.config.ssm == "rf":
        block["ssm"]["type"], block["ssm"]["readout"] = "rf", "heaviside"
        (target / "graph.json").write_text(json.dumps(graph))
        result = run_py(target, np.load(target / "sample_inputs.npy"), tmp_path / "o.npy")
        assert result.stderr.strip() == ("run.py: graph.json: field blocks.0.ssm.readout of an rf layer must be "
                                         "subtract, zero or none, got 'heaviside'")
