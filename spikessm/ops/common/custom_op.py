"""How an op's implementations become custom ops: `register`, the one registration helper, and the convention
every implementation module follows.

An op (spikessm/ops/<op>/) has one implementation module per (backend, algorithm), named <backend>_<algorithm>.py
(lif/torch_sequential.py, s4d_scan/triton_chunked.py, ...). Each exports `run`, the entry its op calls, with the
same signature for all of the op's implementations. A module whose computation is a handful of differentiable
PyTorch ops (s4d_scan/torch_chunked.py, s4d_lif/torch_chunked.py) is nothing more: autograd and torch.compile
trace it. A module with a backward of its own (a Triton kernel, or an explicit adjoint) also defines

    forward(...)                   the outputs from the inputs, type-annotated as torch.library.custom_op requires
                                   (tensors, bools, ints, floats, strings; Optional tensors for absent inputs)
    forward_fake(...)              the outputs' shapes and dtypes, from forward's arguments (no computation)
    setup_context(ctx, inputs, output)
                                   saves on ctx what backward needs
    backward(...)                  the inputs' gradients from what setup_context saved and the outputs'
                                   gradients, type-annotated too; a custom op returns no None, so an absent
                                   input's gradient is an empty placeholder
    backward_fake(...)             backward's outputs' shapes and dtypes
    input_gradients(ctx, backward, *output_gradients)
                                   the autograd glue: calls `backward` (the function it is given) with what ctx
                                   holds and returns one gradient or None per forward input

and ends with ``op = register(__name__)``, which registers the custom ops spikessm::<op>_<backend>_<algorithm>_fwd
and _bwd (named from the module's path) and returns the `Op` that `run` calls, by keywords. Such a module reaches
its Triton kernels through backend.kernels("<kernel module>"), which imports them on first use.

Why custom ops: torch.compile then sees opaque nodes with known shapes instead of tracing into kernel launchers
or a loop over time. Called eagerly, a custom op goes through Python dispatch layers (its autograd wrapper, a
redispatch, a torch._dynamo guard): about 40 us per forward and 300 us per forward+backward on a 2-core CPU
(benchmarks/bench_overhead.py). That is more host time than the kernels take on a GPU at L = 1k. Eagerly, the
same functions therefore run under a plain autograd.Function; both paths call forward and backward, so they give
the same results (tests/ops/test_compile.py compares them).

Custom ops take their arguments by position. Callers in spikessm name every argument instead (``op(x=..., ...)``):
Op puts them in the order of forward's signature, so a flag can never land in another flag's place.
"""
from __future__ import annotations

import inspect
import sys

import torch


def _positional(what: str, names: tuple[str, ...], given: dict) -> tuple:
    if len(given) != len(names) or any(name not in given for name in names):
        missing = [name for name in names if name not in given]
        unexpected = [name for name in given if name not in names]
        raise TypeError(f"{what}: takes the keyword arguments {names}; missing {missing}, unexpected {unexpected}")
    return tuple(given[name] for name in names)


class Op:
    """An implementation module's forward and backward as a pair of custom ops (`forward_op`, `backward_op`) and
    as an autograd.Function (`eager`); calling it runs whichever fits (see the module docstring).

    Args:
        name: the custom ops are registered as spikessm::<name>_fwd and spikessm::<name>_bwd.
        module: the implementation module, which defines the functions the module docstring lists.
    """

    def __init__(self, name: str, module):
        self.name = name
        self.forward = module.forward
        self.input_names = tuple(inspect.signature(module.forward).parameters)
        self.forward_op = torch.library.custom_op(f"spikessm::{name}_fwd", module.forward, mutates_args=())
        self.forward_op.register_fake(module.forward_fake)
        self.backward_op = torch.library.custom_op(f"spikessm::{name}_bwd", module.backward, mutates_args=())
        self.backward_op.register_fake(module.backward_fake)
        backward_op, backward, input_gradients = self.backward_op, module.backward, module.input_gradients
        self.forward_op.register_autograd(lambda ctx, *grads: input_gradients(ctx, backward_op, *grads),
                                          setup_context=module.setup_context)
        # Built with type() so that the autograd node is named after the op (e.g. lif_torch_sequential_eagerBackward).
        self.eager = type(f"{name}_eager", (torch.autograd.Function,), {
            "forward": staticmethod(module.forward),
            "setup_context": staticmethod(module.setup_context),
            "backward": staticmethod(lambda ctx, *grads: input_gradients(ctx, backward, *grads)),
        })

    def __call__(self, **inputs):
        """The forward outputs, from keyword arguments named as forward's parameters; differentiable with respect
        to the tensor inputs."""
        args = _positional(f"spikessm::{self.name}_fwd", self.input_names, inputs)
        if torch.compiler.is_compiling():
            return self.forward_op(*args)
        if torch.is_grad_enabled() and any(isinstance(t, torch.Tensor) and t.requires_grad for t in args):
            return self.eager.apply(*args)
        return self.forward(*args)  # nothing to differentiate: no autograd node at all


def register(module_name: str) -> Op:
    """The Op of the implementation module `module_name` (pass __name__, at the end of the module): its custom
    ops are named <op>_<backend>_<algorithm> after the module's path, spikessm.ops.<op>.<backend>_<algorithm>."""
    *_, op, implementation = module_name.split(".")
    return Op(f"{op}_{implementation}", sys.modules[module_name])
