"""Anytime answers: accuracy at fractions and steps against the model run on truncated sequences one by one,
the end accuracy against the trainer's evaluation, firing rates over time, refusals, the writers, and the
per-step training loss."""
import json
import math

import pytest
import torch
from helpers import assert_close

from spikessm.anytime import AnytimeResult, check_fractions, evaluate_anytime, spiking_readouts, steps_at
from spikessm.data.base import collate
from spikessm.losses import per_step_loss, step_weights, streaming_loss
from spikessm.models import build_model
from spikessm.plots import plot_anytime
from spikessm.training import RunConfig, SettingError, evaluate

SMALL = dict(d_model=8, n_layers=2, d_state=4)
FRACTIONS = (0.1, 0.25, 0.5, 0.7, 0.9, 1.0)


def causal_model(preset="lif-s4d", **overrides):
    """A float64 causal model in eval mode whose BatchNorm has non-trivial running statistics."""
    torch.manual_seed(1)
    settings = dict(n_classes=3, vocab_size=11, bidirectional=False, dtype=torch.float64, **SMALL)
    model = build_model(preset, **{**settings, **overrides})
    model(torch.randint(1, 11, (4, 30), generator=torch.Generator().manual_seed(5)))
    return model.eval()


def examples(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(1, 11, (n,), generator=g), int(torch.randint(0, 3, (), generator=g)))
            for n in lengths]


# Three batches: the middle one shorter than the first, the last the longest, all with padding.
LENGTHS = [[17, 9, 4, 12], [6, 1, 8], [23, 5, 14, 23, 2]]


def dataset_and_batches():
    groups = [examples(lengths, seed=i) for i, lengths in enumerate(LENGTHS)]
    return [e for g in groups for e in g], [collate(g) for g in groups]


def predicts(model, x, k, label) -> bool:
    """Whether the model, run on the first k steps of x alone (no padding), answers `label`."""
    with torch.no_grad():
        return int(model(x[None, :k]).float().argmax(-1)) == label


def test_accuracy_at_fractions_and_steps_equals_truncated_runs():
    model = causal_model()
    data, batches = dataset_and_batches()
    result = evaluate_anytime(model, batches, fractions=FRACTIONS)
    assert result.examples == len(data) and result.fractions == list(FRACTIONS)
    for f, acc in zip(FRACTIONS, result.fraction_accuracy):
        # Float rounding would make ceil(0.7 * 10) 8; the fraction means 7 of 10 steps.
        ks = [max(1, math.ceil(round(f * len(x), 9))) for x, _ in data]
        expected = sum(predicts(model, x, k, y) for (x, y), k in zip(data, ks)) / len(data)
        assert acc == expected, f"fraction {f}"
    longest = max(len(x) for x, _ in data)
    assert result.max_length == longest and len(result.running) == longest
    for k in (1, 2, 5, 9, 13, 23):
        expected = sum(predicts(model, x, min(k, len(x)), y) for x, y in data) / len(data)
        assert result.accuracy_at_step(k) == expected, f"step {k}"
        assert result.running[k - 1] == sum(len(x) >= k for x, _ in data)
    assert result.accuracy_at_step(10 * longest) == result.end_accuracy
    # The answers do change as the sequences arrive, so the comparisons above are not vacuous.
    assert len(set(result.accuracy_by_step)) > 2


def test_end_accuracy_equals_the_trainers_evaluation():
    model = causal_model()
    data, batches = dataset_and_batches()
    result = evaluate_anytime(model, batches)
    reference = evaluate(model, data, batch_size=4, device=torch.device("cpu"), amp=False)
    assert result.end_accuracy == reference["accuracy"]
    assert result.fraction_accuracy[-1] == reference["accuracy"]  # fraction 1.0 is each example's end
    assert 0 < reference["accuracy"] < 1


def test_unpadded_batches_and_model_mode():
    model = causal_model("binary-s4d").train()
    x = torch.randint(1, 11, (3, 10), generator=torch.Generator().manual_seed(2))
    labels = torch.tensor([0, 1, 2])
    result = evaluate_anytime(model, [{"inputs": x, "labels": labels}], fractions=(0.5, 1.0))
    assert model.training, "the model's mode is restored"
    with torch.no_grad():
        model.eval()
        every = model(x, per_step=True).float().argmax(-1)
    assert result.fraction_accuracy == [int((every[:, 4] == labels).sum()) / 3, int((every[:, 9] == labels).sum()) / 3]


@pytest.mark.parametrize("preset", ["lif-s4d", "lif-s5", "binary-s4d"])
def test_firing_rates_over_time_exclude_padding(preset):
    model = causal_model(preset, lif_threshold=0.2)
    data, batches = dataset_and_batches()
    names = list(spiking_readouts(model))
    where = "ssm.neurons" if preset.startswith("lif") else "readout"
    assert names == [f"blocks.0.{where}", f"blocks.1.{where}"]
    result = evaluate_anytime(model, batches, fractions=FRACTIONS)
    # Reference: each example alone, unpadded. An S4D layer that fuses its LIF neurons never calls them, so its
    # spikes are read as the mixing layer's input; elsewhere they are the spiking module's own output.
    spikes = {}
    hooks = []
    for i, block in enumerate(model.blocks):
        def keep(tensor, name=names[i]):
            spikes[name] = tensor[0].clone()

        if getattr(block.ssm, "fused", False):
            hooks.append(block.mixing.register_forward_pre_hook(lambda module, args, keep=keep: keep(args[0])))
        else:
            spiking = block.ssm.neurons if block.ssm.neurons is not None else block.readout
            # LIF returns (spikes, membrane) when asked for its state.
            hooks.append(spiking.register_forward_hook(
                lambda module, args, out, keep=keep: keep(out[0] if isinstance(out, tuple) else out)))
    assert any(getattr(block.ssm, "fused", False) for block in model.blocks) == (preset == "lif-s4d")
    per_example = []
    with torch.no_grad():
        for x, _ in data:
            model(x[None])
            per_example.append(dict(spikes))
    for h in hooks:
        h.remove()
    H = SMALL["d_model"]
    for name in names:
        assert all(set(s[name].unique().tolist()) <= {0.0, 1.0} for s in per_example), "readouts emit spikes"
        for k in (1, 3, 9, 17, 23):
            running = [s[name] for s, (x, _) in zip(per_example, data) if len(x) >= k]
            expected = sum(float(s[k - 1].sum()) for s in running) / (H * len(running))
            assert result.rates_by_step[name][k - 1] == pytest.approx(expected, rel=1e-12), (name, k)
        previous = [0] * len(data)
        for i, f in enumerate(FRACTIONS):
            ends = [max(1, math.ceil(round(f * len(x), 9))) for x, _ in data]
            total = sum(float(s[name][a:b].sum()) for s, a, b in zip(per_example, previous, ends))
            neurons = H * sum(b - a for a, b in zip(previous, ends))
            expected = total / neurons if neurons else None
            assert result.rates_by_fraction[name][i] == pytest.approx(expected, rel=1e-12), (name, f)
            previous = ends
    rates = [r for name in names for r in result.rates_by_step[name]]
    assert any(0 < r < 1 for r in rates), "the test model fires, but not everywhere"


def test_a_model_without_spiking_readouts_has_no_rates():
    result = evaluate_anytime(causal_model("s4d"), dataset_and_batches()[1])
    assert result.rates_by_step == {} and result.rates_by_fraction == {}


def test_bidirectional_and_pair_models_are_refused():
    bidirectional = causal_model(bidirectional=True)
    with pytest.raises(ValueError, match="evaluate_anytime: per-step answers need a causal model, but this one "
                                         "is bidirectional"):
        evaluate_anytime(bidirectional, dataset_and_batches()[1])
    with pytest.raises(ValueError, match="pairs"):
        evaluate_anytime(build_model("lif-s4d", n_classes=3, vocab_size=11, pair=True, **SMALL),
                         dataset_and_batches()[1])
    with pytest.raises(ValueError, match="inputs2"):
        evaluate_anytime(causal_model(), [{**dataset_and_batches()[1][0], "inputs2": torch.ones(4, 3)}])
    with pytest.raises(ValueError, match="no examples"):
        evaluate_anytime(causal_model(), [])


def test_fractions_are_exact_decimals():
    assert steps_at(0.7, torch.tensor([10, 1, 3, 20])).tolist() == [7, 1, 3, 14]
    assert steps_at(0.1, torch.tensor([1, 9, 10, 11])).tolist() == [1, 1, 1, 2]
    assert steps_at(1.0, torch.tensor([1, 17])).tolist() == [1, 17]
    assert check_fractions([1.0, 0.5, 0.5, 1]) == [0.5, 1.0]
    for bad in ([0.0], [1.5], [-0.1], [], [True], ["0.5"]):
        with pytest.raises(ValueError, match="fractions"):
            check_fractions(bad)


def test_writers(tmp_path):
    model = causal_model(lif_threshold=0.2)
    result = evaluate_anytime(model, dataset_and_batches()[1], fractions=FRACTIONS)
    png_path = plot_anytime(result, tmp_path / "anytime.png", majority_accuracy=0.4, title="lif-s4d test")
    assert png_path == tmp_path / "anytime.png"
    saved = json.loads(json.dumps(result.to_dict(), allow_nan=False))  # what `spikessm eval --per-step` writes
    assert saved["fraction_accuracy"] == result.fraction_accuracy
    assert saved["accuracy_by_step"] == result.accuracy_by_step
    assert saved["end_accuracy"] == result.end_accuracy
    assert saved["steps"] == [1, 2, 4, 8, 16, 23]
    assert saved["step_accuracy"] == [result.accuracy_at_step(k) for k in saved["steps"]]
    assert saved["step_running"] == [result.running[k - 1] for k in saved["steps"]]
    assert saved["rates_by_fraction"] == result.rates_by_fraction
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp")), "no temporary files left"
    table = result.table(steps=[1, 5, 100])
    assert "fraction seen" in table and "rate blocks.0.ssm.neurons" in table
    rows = table.splitlines()
    assert f"{0.7:>13.2f}  {result.fraction_accuracy[3]:>8.4f}" in rows[6]
    assert rows[-1].split() == ["100", f"{result.end_accuracy:.4f}", "0"]


def test_default_steps():
    def result(length):
        return AnytimeResult([1.0], [1.0], 1.0, 1, [1.0] * length, [1] * length)

    assert result(1).default_steps() == [1]
    assert result(2).default_steps() == [1, 2]
    assert result(8).default_steps() == [1, 2, 4, 8]
    assert result(9).default_steps() == [1, 2, 4, 8, 9]


# The per-step training loss.

def padded_batch():
    data = examples([9, 4, 6], seed=3)
    return collate(data)


def test_streaming_loss_with_weight_zero_is_the_ordinary_loss():
    model = causal_model()
    batch = padded_batch()
    ordinary = torch.nn.functional.cross_entropy(model(batch["inputs"], batch["lengths"]), batch["labels"])
    steps = model(batch["inputs"], batch["lengths"], per_step=True)
    loss = streaming_loss(steps, batch["lengths"], batch["labels"], weight=0.0)
    assert_close(loss, ordinary, 1e-12, "weight 0")
    mixed = streaming_loss(steps, batch["lengths"], batch["labels"], weight=0.25, weighting="uniform")
    expected = 0.75 * ordinary + 0.25 * per_step_loss(steps, batch["lengths"], batch["labels"], weighting="uniform")
    assert_close(mixed, expected, 1e-12, "weight 0.25")


def test_per_step_loss_by_hand():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, dtype=torch.float64)
    lengths, labels = torch.tensor([5, 2, 3]), torch.tensor([1, 0, 3])
    ce = torch.nn.functional.cross_entropy
    for weighting in ("linear", "uniform"):
        expected = 0
        for b, n in enumerate(lengths.tolist()):
            w = [t / (n * (n + 1) / 2) if weighting == "linear" else 1 / n for t in range(1, n + 1)]
            expected += sum(w[t] * ce(logits[b, t], labels[b]) for t in range(n))
        assert_close(per_step_loss(logits, lengths, labels, weighting=weighting), expected / 3, 1e-12, weighting)
    weights = step_weights(lengths, 5, "linear", torch.float64)
    assert_close(weights.sum(1), torch.ones(3, dtype=torch.float64), 1e-12, "weights sum to one")
    assert (weights[0].diff() > 0).all() and (weights[1, 2:] == 0).all()
    with pytest.raises(ValueError, match="weighting"):
        per_step_loss(logits, lengths, labels, weighting="exponential")
    with pytest.raises(ValueError, match="lengths must be in"):
        per_step_loss(logits, torch.tensor([5, 0, 3]), labels)
    with pytest.raises(ValueError, match="streaming_loss: the per-step loss weight must be"):
        streaming_loss(logits, lengths, labels, weight=1.5)


def test_per_step_training_checks():
    """A run's settings refuse a per-step loss for a bidirectional model and bad weights (before anything runs);
    the loss itself refuses bad weights and weightings."""
    RunConfig(model="lif-s4d", per_step_loss=0.5)
    RunConfig(model="gsu-s4d", per_step_loss=0.0)  # off: nothing per-step is asked of the model
    with pytest.raises(SettingError, match="--per-step-loss: per-step answers need a causal model"):
        RunConfig(model="gsu-s4d", per_step_loss=0.5)
    logits = torch.randn(2, 4, 3, dtype=torch.float64)
    lengths, labels = torch.tensor([4, 2]), torch.tensor([0, 2])
    for weight in (-0.1, 1.1, True, "0.5", math.nan):
        with pytest.raises(SettingError, match=r"--per-step-loss must be a number in \[0, 1\]"):
            RunConfig(model="lif-s4d", per_step_loss=weight)
        with pytest.raises(ValueError, match="streaming_loss: the per-step loss weight must be"):
            streaming_loss(logits, lengths, labels, weight=weight)
    with pytest.raises(SettingError, match="--per-step-weighting must be one of linear, uniform"):
        RunConfig(model="lif-s4d", per_step_loss=0.5, per_step_weighting="exponential")
    with pytest.raises(ValueError, match="weighting must be one of"):
        streaming_loss(logits, lengths, labels, weight=0.5, weighting="exponential")


def test_per_step_loss_gradients_flow_and_padding_adds_nothing():
    model = causal_model()
    batch = padded_batch()
    lengths, labels = batch["lengths"], batch["labels"]

    def loss_and_grads(inputs):
        model.zero_grad()
        loss = streaming_loss(model(inputs, lengths, per_step=True), lengths, labels, weight=0.5)
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads(batch["inputs"])
    assert set(grads) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if ".ssm." in n), "the SSM parameters get gradients"
    other = batch["inputs"].clone()
    padding = torch.arange(other.shape[1])[None, :] >= lengths[:, None]
    other[padding] = 7  # different padding tokens change the answers on padding steps only
    with torch.no_grad():
        assert not torch.equal(model(other, lengths, per_step=True), model(batch["inputs"], lengths, per_step=True))
    loss2, grads2 = loss_and_grads(other)
    assert loss2 == loss
    for name in grads:
        assert torch.equal(grads2[name], grads[name]), name
    # Even non-finite logits on padding steps leave the loss and its gradient finite.
    steps = torch.randn(3, 9, 3, dtype=torch.float64, requires_grad=True)
    nan_padding = torch.where(padding[..., None], torch.full_like(steps, math.nan), steps)
    loss = per_step_loss(nan_padding, lengths, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(steps.grad).all()
    assert (steps.grad[padding] == 0).all() and (steps.grad[~padding] != 0).any()
