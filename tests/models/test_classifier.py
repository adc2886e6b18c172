"""Models: every preset builds, trains a step and streams; step == forward, chunks == whole, per-step answers,
padding-aware pooling, the pair mode, the fused S4D + LIF path and configuration errors."""
import pytest
import torch
from conftest import TRITON_DEVICE, requires_triton
from helpers import assert_close

from spikessm.layers import LIF, RF, S4D, S5
from spikessm.models import PRESETS, ModelConfig, SequenceClassifier, build_model
from spikessm.models.block import SSMBlock

SMALL = dict(d_model=8, n_layers=2, d_state=4)


def tokens(B, L, vocab=11, seed=0):
    return torch.randint(1, vocab, (B, L), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("task", ["tokens", "features"])
def test_every_preset_trains_one_step(preset, task):
    torch.manual_seed(0)
    sizes = dict(vocab_size=11) if task == "tokens" else dict(d_input=3)
    model = build_model(preset, n_classes=4, dropout=0.1, **sizes, **SMALL)
    x = tokens(3, 21) if task == "tokens" else torch.randn(3, 21, 3)
    labels = torch.tensor([0, 3, 1])
    logits = model(x)
    assert logits.shape == (3, 4) and logits.dtype == torch.float32
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def trained_causal(preset, norm="batch", prenorm=False, pooling="mean"):
    """A float64 causal model whose BatchNorm has non-trivial running statistics, in eval mode."""
    torch.manual_seed(1)
    model = build_model(preset, n_classes=3, vocab_size=11, bidirectional=False, norm=norm, prenorm=prenorm,
                        pooling=pooling, dtype=torch.float64, **SMALL)
    model(tokens(4, 30, seed=5))  # one training-mode pass updates the running statistics
    return model.eval()


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("norm, prenorm, pooling", [("batch", False, "mean"), ("layer", True, "last")])
def test_step_and_chunks_equal_forward(preset, norm, prenorm, pooling):
    model = trained_causal(preset, norm, prenorm, pooling)
    x = tokens(2, 25, seed=3)
    with torch.no_grad():
        every = model(x, per_step=True)
        assert_close(model(x), every[:, -1], 1e-12, "forward == last per-step answer")
        state, answers = model.init_state(2), []
        for t in range(25):
            logits, state = model.step(x[:, t], state)
            answers.append(logits)
        assert_close(torch.stack(answers, 1), every, 1e-10, "step == forward")
        first, s = model(x[:, :11], return_state=True)
        second, s = model(x[:, 11:], state=s, return_state=True)
        assert_close(first, every[:, 10], 1e-10, "first chunk")
        assert_close(second, every[:, -1], 1e-10, "chunked == whole")
        assert_close(model(x[:, :7]), every[:, 6], 1e-10, "per-step answer at t == forward on x[:, :t+1]")


def test_mean_pooling_ignores_padding():
    model = trained_causal("lif-s4d")
    x = tokens(3, 20, seed=7)
    lengths = torch.tensor([20, 12, 5])
    padded = x.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = 0
    with torch.no_grad():
        logits = model(padded, lengths)
        for b, n in enumerate(lengths):
            assert_close(logits[b], model(x[b:b + 1, :n])[0], 1e-10, f"example {b}")
    with pytest.raises(ValueError, match="lengths"):
        model(padded, torch.tensor([20, 0, 5]))


def test_last_pooling_takes_the_last_true_step():
    model = trained_causal("binary-s4d", pooling="last")
    x = tokens(2, 9)
    with torch.no_grad():
        logits = model(x, torch.tensor([9, 4]))
        assert_close(logits[1], model(x[1:, :4])[0], 1e-10, "last step")


def test_pair_mode():
    """Retrieval's head: each sequence mean-pooled over its own length, then [e1, e2, e1 * e2, e1 - e2]."""
    torch.manual_seed(0)
    model = build_model("gsu-s4d", n_classes=2, vocab_size=11, pair=True, dtype=torch.float64, **SMALL).eval()
    x1, x2 = tokens(3, 13), tokens(3, 17, seed=1)
    l1, l2 = torch.tensor([13, 10, 4]), torch.tensor([17, 3, 9])
    with torch.no_grad():
        logits = model(x1, l1, x2, l2)
        assert logits.shape == (3, 2)
        assert model.decoder.in_features == 4 * SMALL["d_model"]
        e1, e2 = (torch.stack([f[i, :n].mean(0) for i, n in enumerate(lengths.tolist())])
                  for f, lengths in ((model.features(x1)[0], l1), (model.features(x2)[0], l2)))
        assert_close(logits, model.decoder(torch.cat([e1, e2, e1 * e2, e1 - e2], -1)), 1e-12, "pair head")
        # the second sequence matters: change one of its valid tokens in example 1 only
        x2_changed = x2.clone()
        x2_changed[1, 0] = x2[1, 0] % 10 + 1
        changed = model(x1, l1, x2_changed, l2)
        assert_close(changed[[0, 2]], logits[[0, 2]], 1e-12, "the other examples")
        assert (changed[1] - logits[1]).abs().max() > 1e-6
    with pytest.raises(ValueError, match="inputs2 is required"):
        model(x1)


@pytest.mark.parametrize("preset", ["s4d", "s5", "binary-s4d", "gsu-s4d"])
def test_bidirectional_models_refuse_streaming(preset):
    model = build_model(preset, n_classes=2, vocab_size=5, **SMALL)
    assert not model.causal
    with pytest.raises(RuntimeError, match="bidirectional"):
        model.init_state(1)
    with pytest.raises(RuntimeError, match="bidirectional"):
        model(tokens(1, 4, vocab=5), return_state=True)
    with pytest.raises(RuntimeError, match="bidirectional"):
        model.blocks[0].step(torch.zeros(1, 8), (None, None))


def test_batchnorm_step_needs_eval_mode():
    model = build_model("lif-s4d", n_classes=2, vocab_size=5, **SMALL)
    with pytest.raises(RuntimeError, match="eval"):
        model.step(torch.tensor([1]), model.init_state(1))


def test_ssm_parameters_are_the_blocks_a_b_dt():
    model = build_model("lif-s5", n_classes=2, d_input=1, **SMALL)
    ssm = model.ssm_parameters()
    assert len(ssm) == 4 * SMALL["n_layers"]
    names = {n for n, p in model.named_parameters() if any(p is q for q in ssm)}
    assert names == {f"blocks.{i}.ssm.{k}" for i in range(2) for k in ("Lambda_re", "Lambda_im", "B", "log_step")}


def test_rf_presets_put_rf_neurons_in_the_papers_place():
    """prf, drf, s5-rf: RF neurons are each block's SSM layer (their frequencies and steps are its SSM parameters);
    rf-s4d: they read out a causal S4D, after it (no fused op)."""
    for preset, branches, adaptive in (("prf", 1, False), ("drf", 4, True), ("s5-rf", 1, False)):
        model = build_model(preset, n_classes=2, vocab_size=5, **SMALL)
        assert all(isinstance(b.ssm, RF) and b.ssm.branches == branches and b.ssm.adaptive == adaptive
                   and b.causal for b in model.blocks)
        names = {n for n, p in model.named_parameters() if any(p is q for q in model.ssm_parameters())}
        assert names == {f"blocks.{i}.ssm.{k}" for i in range(2) for k in ("omega", "log_dt")}
    model = build_model("rf-s4d", n_classes=2, vocab_size=5, **SMALL)
    assert all(isinstance(b.ssm, S4D) and isinstance(b.ssm.neurons, RF) and not b.ssm.fused for b in model.blocks)
    assert {n.rsplit(".", 1)[-1] for n, p in model.named_parameters()
            if any(p is q for q in model.ssm_parameters())} == {"log_dt", "log_neg_A_real", "A_imag", "B", "omega"}


def test_lif_after_causal_s4d_is_fused():
    model = build_model("lif-s4d", n_classes=2, vocab_size=5, **SMALL)
    assert all(block.ssm.fused for block in model.blocks)
    # S5 has no fused op: its neurons run after it
    assert all(isinstance(b.ssm, S5) and isinstance(b.ssm.neurons, LIF)
               for b in build_model("lif-s5", n_classes=2, vocab_size=5, **SMALL).blocks)
    assert not any(b.ssm.fused for b in build_model("lif-s4d", n_classes=2, vocab_size=5, bidirectional=True,
                                                     **SMALL).blocks)


def test_lif_fire_on_tie_reaches_the_neurons():
    config = ModelConfig(n_classes=2, d_input=1, readout="lif", lif_fire_on_tie=True, **SMALL)
    block = SSMBlock(config, dtype=torch.float64)
    assert block.ssm.neurons.fire_on_tie and block.ssm.neurons.neuron_args()["fire_on_tie"]
    assert ModelConfig(**config.to_dict()).lif_fire_on_tie
    assert not SSMBlock(ModelConfig(n_classes=2, d_input=1, readout="lif", **SMALL)).ssm.neurons.fire_on_tie


def test_lif_reset_reaches_the_neurons():
    """lif_reset, the new "subtract_after_decay" included, reaches the block's LIF neurons (fused into S4D too) and
    survives the config's round trip; RF neurons take only the resets they implement."""
    config = ModelConfig(n_classes=2, d_input=1, readout="lif", lif_reset="subtract_after_decay", **SMALL)
    block = SSMBlock(config, dtype=torch.float64)
    assert block.ssm.fused and block.ssm.neurons.neuron_args()["reset"] == "subtract_after_decay"
    assert ModelConfig(**config.to_dict()).lif_reset == "subtract_after_decay"
    with pytest.raises(ValueError, match="ModelConfig: lif_reset must be one of .*'subtract_after_decay'.*got 'soft'"):
        ModelConfig(n_classes=2, vocab_size=5, lif_reset="soft")
    with pytest.raises(ValueError, match=r"ModelConfig: reset must be one of \('subtract', 'zero', 'none'\)"):
        ModelConfig(n_classes=2, vocab_size=5, rf_reset="subtract_after_decay")


def test_fused_block_equals_ssm_then_lif():
    torch.manual_seed(4)
    config = ModelConfig(n_classes=2, d_input=1, readout="lif", lif_beta=0.6, lif_threshold=0.3, learn_beta=True,
                         learn_threshold=True, **SMALL)
    block = SSMBlock(config, dtype=torch.float64)
    assert block.ssm.fused
    # The same S4D without neurons, then the block's neurons on its output: the unfused path.
    twin = S4D(8, 4, dtype=torch.float64)
    twin.load_state_dict({k: v for k, v in block.ssm.state_dict().items() if not k.startswith("neurons.")})
    x = torch.randn(2, 17, 8, dtype=torch.float64, requires_grad=True)
    out = block(x)
    ref = block.norm(x + block.mixing(block.readout(block.ssm.neurons(twin(x)))))
    assert_close(out, ref, 1e-12, "fused == unfused")
    g = torch.randn_like(out)
    names = [n for n, _ in block.named_parameters()]
    params = [block.get_parameter(n) for n in names]
    ref_params = [twin.get_parameter(n[4:]) if n.startswith("ssm.") and not n.startswith("ssm.neurons.")
                  else block.get_parameter(n) for n in names]
    grads = torch.autograd.grad(out, [x, *params], g)
    ref_grads = torch.autograd.grad(ref, [x, *ref_params], g)
    for name, a, b in zip(["x", *names], grads, ref_grads):
        assert_close(a, b, 1e-10, f"gradient {name}")


@requires_triton
@pytest.mark.interpreter
@pytest.mark.parametrize("preset,bidirectional,algorithm", [
    ("lif-s4d", True, "auto"), ("binary-s4d", True, "auto"), ("lif-s5", False, "auto"),
    ("lif-s4d", False, "chunked"),  # causal: the fused s4d_lif on the chunked kernel
    ("drf", False, "auto"),  # RF neurons with branches and an adaptive threshold as the SSM layer
])
def test_triton_and_torch_models_agree(preset, bidirectional, algorithm):
    torch.manual_seed(5)
    kwargs = dict(n_classes=3, vocab_size=11, bidirectional=bidirectional, device=TRITON_DEVICE,
                  dtype=torch.float64, **SMALL)
    ref = build_model(preset, backend="torch", **kwargs).eval()
    model = build_model(preset, backend="triton", s4d_algorithm=algorithm, **kwargs).eval()
    model.load_state_dict(ref.state_dict())
    x = tokens(2, 19).to(TRITON_DEVICE)
    logits, ref_logits = model(x), ref(x)
    assert_close(logits, ref_logits, 1e-9, "logits")
    # and the parameters' gradients (eval mode: no dropout, so both see the same function)
    weights = torch.randn(ref_logits.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    grads = torch.autograd.grad((logits * weights.to(TRITON_DEVICE)).sum(), list(model.parameters()))
    ref_grads = torch.autograd.grad((ref_logits * weights.to(TRITON_DEVICE)).sum(), list(ref.parameters()))
    for (name, _), g, r in zip(model.named_parameters(), grads, ref_grads):
        assert_close(g, r, 1e-8, f"grad {name}")


@pytest.mark.parametrize("call, error, match", [
    (lambda: build_model("spiking-transformer", n_classes=2, vocab_size=5), ValueError, "unknown model preset"),
    (lambda: build_model("s4d", n_classes=2, vocab_size=5, widht=3), ValueError, "unknown model setting"),
    (lambda: build_model("s4d", n_classes=2, vocab_size=5, init="hippo"), ValueError, "init must be one of"),
    (lambda: build_model("s4d", n_classes=2, vocab_size=5, d_state=0), ValueError, "d_state must be a positive"),
    (lambda: build_model("s4d", n_classes=2), ValueError, "exactly one of vocab_size"),
    (lambda: build_model("s4d", n_classes=2, vocab_size=5, d_input=3), ValueError, "exactly one of vocab_size"),
    (lambda: build_model("gsu-s4d", n_classes=2, vocab_size=5, surrogate="leaky"), ValueError, "leaky"),
    (lambda: build_model("s5", n_classes=0, vocab_size=5), ValueError, "n_classes must be a positive"),
    (lambda: build_model("s5", n_classes=2, vocab_size=5, d_state=6, s5_blocks=4), ValueError, "multiple"),
    (lambda: build_model("prf", n_classes=2, vocab_size=5, readout="lif"), ValueError, "ssm='rf' makes RF neurons"),
    (lambda: build_model("prf", n_classes=2, vocab_size=5, bidirectional=True), ValueError, "ssm='rf' makes"),
    (lambda: build_model("drf", n_classes=2, vocab_size=5, rf_reset="subtract"), ValueError,
     "ModelConfig: reset 'subtract' needs one branch"),
    (lambda: build_model("prf", n_classes=2, vocab_size=5, surrogate="leaky"), ValueError, "leaky"),
])
def test_bad_configurations(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_bad_inputs():
    model = build_model("lif-s4d", n_classes=2, vocab_size=5, **SMALL)
    with pytest.raises(ValueError, match="token ids outside"):
        model(torch.tensor([[1, 2, 7]]))
    with pytest.raises(ValueError, match=r"\(batch, length\) int64"):
        model(torch.randn(1, 3, 1))
    feature_model = build_model("lif-s5", n_classes=2, d_input=2, **SMALL)
    with pytest.raises(ValueError, match=r"\(batch, length, 2\)"):
        feature_model(torch.randn(1, 3, 3))


def test_config_round_trip():
    model = build_model("gsu-s4d", n_classes=2, vocab_size=5, **SMALL)
    clone = SequenceClassifier(ModelConfig(**model.config.to_dict()))
    assert clone.config == model.config


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_empty_batch_gives_empty_outputs(preset):
    for sizes, x in ((dict(vocab_size=11), tokens(0, 6)), (dict(d_input=3), torch.randn(0, 6, 3))):
        torch.manual_seed(0)
        model = build_model(preset, n_classes=4, **sizes, **SMALL)
        logits = model(x, torch.zeros(0, dtype=torch.int64))  # training mode: BatchNorm sees no values
        assert logits.shape == (0, 4)
        logits.sum().backward()
        model.eval()
        assert model(x).shape == (0, 4) and model(x, per_step=True).shape == (0, 6, 4)
        if model.causal:
            logits, state = model(x, return_state=True)
            assert logits.shape == (0, 4)
            logits, state = model.step(x[:, 0], state)
            assert logits.shape == (0, 4)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_compile_fullgraph(preset):
    """torch.compile(model, fullgraph=True) traces the token and the feature model of every preset in one graph
    (the "aot_eager" backend: the full Dynamo and AOTAutograd tracing without inductor's slow C++ builds on
    the CPU), and computes what the model computes."""
    for sizes, x in ((dict(vocab_size=11), tokens(2, 7)), (dict(d_input=3), torch.randn(2, 7, 3))):
        torch.manual_seed(0)
        model = build_model(preset, n_classes=4, **sizes, d_model=8, n_layers=1, d_state=4).eval()
        torch._dynamo.reset()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
        lengths = torch.tensor([7, 3])
        assert_close(compiled(x, lengths), model(x, lengths), 1e-6, f"{preset} {sizes}")
    with pytest.raises(RuntimeError, match=r"lengths for inputs must be in \[1, 7\]"):
        compiled(x, torch.tensor([7, 0]))


def test_compiled_token_checks_still_refuse_bad_ids():
    model = build_model("lif-s4d", n_classes=2, vocab_size=5, d_model=8, n_layers=1, d_state=4).eval()
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    with pytest.raises(RuntimeError, match=r"token ids outside \[0, 5\)"):
        compiled(torch.tensor([[1, 2, 7]]))


@pytest.mark.parametrize("field, value, error, match", [
    ("bidirectional", "maybe", TypeError, "ModelConfig: bidirectional must be True or False, got 'maybe'"),
    ("prenorm", 1, TypeError, "ModelConfig: prenorm must be True or False, got 1"),
    ("pair", "yes", TypeError, "ModelConfig: pair must be True or False, got 'yes'"),
    ("learn_threshold", None, TypeError, "ModelConfig: learn_threshold must be True or False, got None"),
    ("lif_fire_on_tie", 1, TypeError, "ModelConfig: lif_fire_on_tie must be True or False, got 1"),
    ("lif_threshold", float("nan"), ValueError, "ModelConfig: lif_threshold must be a finite number, got nan"),
    ("lif_beta", 1.5, ValueError, r"ModelConfig: lif_beta must be in \[0, 1\], got 1.5"),
    ("surrogate_alpha", float("inf"), ValueError,
     "ModelConfig: surrogate_alpha must be a positive finite number, got inf"),
    ("dt_min", float("nan"), ValueError, "ModelConfig: need 0 < dt_min <= dt_max"),
    ("rf_branches", 0, ValueError, "ModelConfig: branches must be a positive integer"),
    ("rf_threshold", float("inf"), ValueError, "ModelConfig: threshold must be a finite number"),
    ("rf_frequency_init", "random", ValueError, "ModelConfig: frequency_init must be one of"),
    ("rf_input_scale", "zoh", ValueError, "ModelConfig: input_scale must be one of"),
    ("rf_dt_max", 0.0, ValueError, "ModelConfig: need 0 < dt_min <= dt_max"),
    ("rf_adaptive", "yes", TypeError, "ModelConfig: rf_adaptive must be True or False"),
])
def test_config_checks_types_and_neuron_parameters(field, value, error, match):
    with pytest.raises(error, match=match):
        ModelConfig(n_classes=2, vocab_size=5, **{field: value})


def test_forward_options_take_booleans():
    model = build_model("lif-s4d", n_classes=2, vocab_size=5, **SMALL)
    with pytest.raises(TypeError, match="SequenceClassifier: per_step must be True or False, got 'no'"):
        model(tokens(1, 3, vocab=5), per_step="no")
