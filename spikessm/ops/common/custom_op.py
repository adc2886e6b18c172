"""How an op's forward and backward implementations are called: custom ops for torch.compile, a plain
autograd.Function eagerly.

Every op is a pair of torch.library custom ops (``spikessm::<name>_fwd`` and ``spikessm::<name>_bwd``, with fake
implementations), so that torch.compile sees opaque nodes with known shapes instead of tracing into kernel
launchers. Called eagerly, a custom op goes through Python dispatch layers (its autograd wrapper, a redispatch, a
torch._dynamo guard): about 40 us per forward and 300 us per forward+backward on a 2-core CPU
(benchmarks/bench_overhead.py). That is more host time than the kernels take on a GPU at L = 1k. Eagerly, the
same implementations therefore run under an autograd.Function; both paths call the same two functions, so they
give the same results (tests/ops/test_compile.py compares them).

Custom ops take their arguments by position. Callers in spikessm name every argument instead (``op(x=..., ...)``,
``op.backward(...)`` with keywords): Op puts them in the order of the implementation's signature, so a flag can
never land in another flag's place.
"""
from __future__ import annotations

import inspect
from typing import Callable

import torch


def _positional(what: str, names: tuple[str, ...], given: dict) -> tuple:
    if len(given) != len(names) or any(name not in given for name in names):
        missing = [name for name in names if name not in given]
        unexpected = [name for name in given if name not in names]
        raise TypeError(f"{what}: takes the keyword arguments {names}; missing {missing}, unexpected {unexpected}")
    return tuple(given[name] for name in names)


class Op:
    """An op made of a forward and a backward implementation.

    Args:
        name: the custom ops are registered as spikessm::<name>_fwd and spikessm::<name>_bwd.
        forward, backward_impl: the implementations, type-annotated as torch.library.custom_op requires.
        forward_fake, backward_fake: their fake (meta) implementations.
        setup_context: setup_context(ctx, inputs, outputs) saves what the backward needs.
        backward: backward(ctx, backward_impl, *output_grads) returns one gradient (or None) per forward input,
            computing them with the backward_impl it is given (the custom op when compiling, the plain function
            otherwise).
    """

    def __init__(self, name: str, forward: Callable, forward_fake: Callable, backward_impl: Callable,
                 backward_fake: Callable, setup_context: Callable, backward: Callable):
        self.name = name
        self.forward_op = torch.library.custom_op(f"spikessm::{name}_fwd", forward, mutates_args=())
        self.forward_op.register_fake(forward_fake)
        self.backward_op = torch.library.custom_op(f"spikessm::{name}_bwd", backward_impl, mutates_args=())
        self.backward_op.register_fake(backward_fake)
        backward_op = self.backward_op
        self.forward_op.register_autograd(lambda ctx, *grads: backward(ctx, backward_op, *grads),
                                          setup_context=setup_context)

        def eager_backward(ctx, *grads):
            return backward(ctx, backward_impl, *grads)

        # Built with type() so that the autograd node is named after the op (e.g. lif_eagerBackward).
        self.eager = type(f"{name}_eager", (torch.autograd.Function,), {
            "forward": staticmethod(forward),
            "setup_context": staticmethod(setup_context),
            "backward": staticmethod(eager_backward),
        })
        self.forward = forward
        self.backward_impl = backward_impl
        self.input_names = tuple(inspect.signature(forward).parameters)
        self.backward_names = tuple(inspect.signature(backward_impl).parameters)

    def __call__(self, **inputs):
        """The forward outputs, from keyword arguments named as the forward's parameters; differentiable with
        respect to the tensor inputs."""
        args = _positional(f"spikessm::{self.name}_fwd", self.input_names, inputs)
        if torch.compiler.is_compiling():
            return self.forward_op(*args)
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in args):
            return self.eager.apply(*args)
        return self.forward(*args)  # nothing to differentiate: no autograd node at all

    def backward(self, **arguments):
        """The backward implementation called directly, with keyword arguments named as its parameters (for an
        op whose backward is built from another op's)."""
        return self.backward_impl(*_positional(f"spikessm::{self.name}_bwd", self.backward_names, arguments))
