"""Compile every Triton kernel variant the ops launch for a GPU target, without a GPU, and report resources.

Triton lowers a kernel to PTX for an explicit target and its bundled ptxas assembles it, so a CPU-only machine
can prove that the kernels compile for an H100/H200 (sm_90) and see their register use and spills. This is
not a timing of the kernels; it catches code-generation failures and register spills before a GPU session.
Local-memory instructions (STL/LDL) mean spills. The last column is each variant's compile time, what a first
call with those flags waits (from an empty Triton cache, as here; compiles run in parallel, so under --jobs > 1
they share the CPUs).

    python benchmarks/kernel_resources.py            # table: kernel, variant, registers, local/shared bytes
    python benchmarks/kernel_resources.py --arch 80  # another compute capability
    python benchmarks/kernel_resources.py --fail-on-spill   # exit 1 if any variant spills (used by the tests)
    python benchmarks/kernel_resources.py --only diag_scan  # only the kernels whose names start so
    python benchmarks/kernel_resources.py --jobs 1          # one compile at a time (default: one per CPU)
"""
from __future__ import annotations

import argparse
import functools
import itertools
import multiprocessing
import os
import warnings
import re
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from spikessm.kernels import diag_scan, lif, rf
from spikessm.kernels.s4d_scan import chunked as s4d_chunked
from spikessm.kernels.s4d_scan import sequential as s4d_scan
from spikessm.kernels.common.neuron import RESET_CODES, SURROGATE_CODES


def _signature(fn, pointers: list[str], ints: list[str], dtype: str) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in pointers:
            sig[name] = f"*{dtype}"
        elif name in ints:
            sig[name] = "i32"
        else:
            sig[name] = "constexpr"
    return sig


def variants():
    """(kernel, label, jit function, pointer names, int names, constexprs, num_warps) as the launchers use them."""
    fwd, bwd = diag_scan.diag_scan_fwd_kernel, diag_scan.diag_scan_bwd_kernel
    seen = set()
    # Two shapes whose launch configurations differ: the benchmark's (small channel blocks) and a large batch.
    for (B, P), tv, cplx, rev in itertools.product([(8, 1536), (64, 1024)], *[[False, True]] * 3):
        dtype = torch.complex64 if cplx else torch.float32
        for name, fn, backward in (("diag_scan_fwd", fwd, False), ("diag_scan_bwd", bwd, True)):
            block_t, block_p, warps = diag_scan.launch_config(B, P, dtype, tv, backward)
            flags = dict(A_TIME_VARYING=tv, COMPLEX=cplx, REVERSE=rev, BLOCK_T=block_t, BLOCK_P=block_p,
                         STAGES=diag_scan.STAGES)
            key = (name, tuple(flags.items()), warps)
            if key in seen:
                continue
            seen.add(key)
            label = f"tv={int(tv)} complex={int(cplx)} reverse={int(rev)} BT={block_t} BP={block_p}"
            if backward:
                yield (name, label, fn, ["a_ptr", "x_ptr", "h0_ptr", "gx_ptr", "gT_ptr", "da_ptr", "db_ptr", "dh0_ptr"],
                       ["L", "P"], dict(flags, HAS_H0=True, HAS_GT=True), warps)
            else:
                yield (name, label, fn, ["a_ptr", "b_ptr", "h0_ptr", "x_ptr", "hT_ptr"], ["L", "P"],
                       dict(flags, HAS_H0=True), warps)


S4D_FWD_POINTERS = ["u_ptr", "P_ptr", "D_ptr", "h0_ptr", "v0_ptr", "beta_ptr", "th_ptr", "out_ptr", "m_ptr", "hT_ptr",
                    "vT_ptr"]
S4D_BWD_POINTERS = ["u_ptr", "P_ptr", "D_ptr", "h0_ptr", "g_ptr", "gT_ptr", "m_ptr", "sigma_ptr", "v0_ptr", "beta_ptr",
                    "th_ptr", "gvT_ptr", "du_ptr", "dP_ptr", "dD_ptr", "dh0_ptr", "dv0_ptr", "dbeta_ptr", "dth_ptr",
                    "alpha_ptr"]


def s4d_variants():
    """The S4D kernels without (s4d_scan) and with (s4d_lif) the LIF readout, at N = 4, 16, 64 and 128, the
    backward with and without a final-state gradient (its largest register set)."""
    off = dict(HAS_V0=False, RESET=0, STORE_M=False)
    # Reverse only changes index arithmetic: compiled once, at N = 64.
    for (N, rev), has_gt in itertools.product([(4, False), (16, False), (64, False), (64, True), (128, False)],
                                              [False, True]):
        fwd_h, block_n, fwd_w = s4d_scan.launch_config(32, 256, N)
        bwd_h, _, bwd_w = s4d_scan.launch_config(32, 256, N, s4d_scan.backward_states_per_thread(has_gt, False))
        label = f"N={N} reverse={int(rev)} gT={int(has_gt)}"
        common = dict(HAS_D=True, HAS_H0=True, REVERSE=rev, BLOCK_N=block_n, T=s4d_scan.T)
        if not has_gt:
            yield ("s4d_scan_fwd", f"{label} BH={fwd_h}", s4d_scan.s4d_fwd_kernel, S4D_FWD_POINTERS,
                   ["L", "H", "N"], dict(common, LIF=False, BLOCK_H=fwd_h, **off), fwd_w)
        yield ("s4d_scan_bwd", f"{label} BH={bwd_h}", s4d_scan.s4d_bwd_kernel, S4D_BWD_POINTERS, ["L", "H", "N"],
               dict(common, HAS_GT=has_gt, LIF=False, HAS_V0=False, HAS_GVT=False, RESET=0, SURROGATE=0,
                    DETACH_RESET=False, BLOCK_H=bwd_h), bwd_w)
    # Training's forward: no initial state, so the walk runs on x / B and no step is masked.
    fwd_h, block_n, fwd_w = s4d_scan.launch_config(32, 256, 64)
    yield ("s4d_scan_fwd", f"N=64 h0=0 BH={fwd_h}", s4d_scan.s4d_fwd_kernel, S4D_FWD_POINTERS, ["L", "H", "N"],
           dict(HAS_D=True, HAS_H0=False, REVERSE=False, BLOCK_N=block_n, T=s4d_scan.T, LIF=False, BLOCK_H=fwd_h,
                **off), fwd_w)
    yield ("s4d_lif_fwd", f"N=64 reset=subtract h0=0 v0=0 BH={fwd_h}", s4d_scan.s4d_fwd_kernel, S4D_FWD_POINTERS,
           ["L", "H", "N"], dict(HAS_D=True, HAS_H0=False, REVERSE=False, BLOCK_N=block_n, T=s4d_scan.T, LIF=True,
                                 BLOCK_H=fwd_h, HAS_V0=False, RESET=0, STORE_M=True), fwd_w)
    # A small grid (B=1, H=128): fewer states per thread.
    fwd_h, block_n, fwd_w = s4d_scan.launch_config(1, 128, 64)
    bwd_h, _, bwd_w = s4d_scan.launch_config(1, 128, 64, s4d_scan.backward_states_per_thread(False, False))
    common = dict(HAS_D=True, HAS_H0=True, REVERSE=False, BLOCK_N=block_n, T=s4d_scan.T)
    yield ("s4d_scan_fwd", f"N=64 B=1 H=128 BH={fwd_h}", s4d_scan.s4d_fwd_kernel, S4D_FWD_POINTERS, ["L", "H", "N"],
           dict(common, LIF=False, BLOCK_H=fwd_h, **off), fwd_w)
    yield ("s4d_scan_bwd", f"N=64 B=1 H=128 BH={bwd_h}", s4d_scan.s4d_bwd_kernel, S4D_BWD_POINTERS, ["L", "H", "N"],
           dict(common, HAS_GT=False, LIF=False, HAS_V0=False, HAS_GVT=False, RESET=0, SURROGATE=0,
                DETACH_RESET=False, BLOCK_H=bwd_h), bwd_w)
    fwd_h, block_n, fwd_w = s4d_scan.launch_config(32, 256, 64)
    for (reset, rev, surrogate), has_gt in itertools.product(
            (("subtract", False, "atan"), ("zero", True, "leaky"), ("none", False, "atan"),
             ("subtract_after_decay", True, "atan")), (False, True)):
        bwd_h, _, bwd_w = s4d_scan.launch_config(32, 256, 64, s4d_scan.backward_states_per_thread(has_gt, True))
        label = f"N=64 reset={reset} reverse={int(rev)} {surrogate} gT={int(has_gt)}"
        common = dict(HAS_D=True, HAS_H0=True, LIF=True, HAS_V0=True, RESET=RESET_CODES[reset], REVERSE=rev,
                      BLOCK_N=block_n, T=s4d_scan.T)
        if not has_gt:
            yield ("s4d_lif_fwd", f"{label} BH={fwd_h}", s4d_scan.s4d_fwd_kernel, S4D_FWD_POINTERS,
                   ["L", "H", "N"], dict(common, STORE_M=True, BLOCK_H=fwd_h), fwd_w)
        yield ("s4d_lif_bwd", f"{label} BH={bwd_h}", s4d_scan.s4d_bwd_kernel, S4D_BWD_POINTERS, ["L", "H", "N"],
               dict(common, HAS_GT=has_gt, HAS_GVT=has_gt, SURROGATE=SURROGATE_CODES[surrogate],
                    DETACH_RESET=False, BLOCK_H=bwd_h), bwd_w)


def s4d_chunked_variants():
    """The chunked S4D kernels (the forward without and with the LIF readout, the backward) at N = 64 for B = 32
    (the benchmark's) and B = 1 (the smallest sequence block)."""
    T = s4d_chunked.CHUNK
    operators = ["conv_ptr", "in_ptr", "out_ptr", "at_ptr", "in_last_ptr", "at_last_ptr", "D_ptr"]
    for B, N in ((32, 64), (1, 64)):
        block_n, block_b = s4d_chunked.launch_config(B, N)
        common = dict(HAS_D=True, REVERSE=False, T=T, BLOCK_N=block_n, BLOCK_B=block_b, PRECISION="tf32x3")
        label = f"N={N} B={B} T={T} BN={block_n} BB={block_b}"
        fwd_pointers = ["u_ptr", *operators, "z0_ptr", "v0_ptr", "beta_ptr", "th_ptr", "y_ptr", "zT_ptr", "Z_ptr",
                        "m_ptr", "vT_ptr", "scratch_ptr"]
        for store in (False, True) if B > 1 else (True,):
            yield ("s4d_chunked_fwd", f"{label} store={int(store)}", s4d_chunked.chunked_fwd_kernel,
                   fwd_pointers, ["Bsz", "L", "H", "N"],
                   dict(common, HAS_Z0=True, STORE_Z=store, LIF=False, HAS_V0=False, STORE_M=False, RESET=0),
                   s4d_chunked.NUM_WARPS)
            # each reset once (they differ by a select or two)
            reset = "zero" if B == 1 else "subtract" if store else "none"
            yield ("s4d_lif_chunked_fwd", f"{label} store={int(store)} reset={reset}",
                   s4d_chunked.chunked_fwd_kernel, fwd_pointers, ["Bsz", "L", "H", "N"],
                   dict(common, HAS_Z0=True, STORE_Z=store, LIF=True, HAS_V0=True, STORE_M=store,
                        RESET=RESET_CODES[reset]), s4d_chunked.NUM_WARPS)
            if B > 1 and store:  # the reset whose state has leaked already: the step itself differs
                yield ("s4d_lif_chunked_fwd", f"{label} store=1 reset=subtract_after_decay",
                       s4d_chunked.chunked_fwd_kernel, fwd_pointers, ["Bsz", "L", "H", "N"],
                       dict(common, HAS_Z0=True, STORE_Z=True, LIF=True, HAS_V0=True, STORE_M=True,
                            RESET=RESET_CODES["subtract_after_decay"]), s4d_chunked.NUM_WARPS)
        yield ("s4d_chunked_bwd", label, s4d_chunked.chunked_bwd_kernel,
               ["gy_ptr", *operators, "gT_ptr", "du_ptr", "G_ptr", "dz0_ptr"], ["Bsz", "L", "H", "N"],
               dict(common, HAS_GT=True, HAS_Z0=True), s4d_chunked.NUM_WARPS)


def lif_variants():
    """LIF kernels: every reset in the forward passes (pass 1 with and without the saved membrane); every
    surrogate, and every reset with and without detach_reset, in the backward, composing and not."""
    block_h, T = lif.block_h_for(256), lif.FWD_CHUNK
    fwd_ptrs = ["x_ptr", "beta_ptr", "th_ptr", "s_ptr", "m_ptr", "vend_ptr"]
    for reset, store_m in itertools.product(RESET_CODES, (False, True)):
        flags = dict(STORE_M=store_m, RESET=RESET_CODES[reset], BLOCK_H=block_h, T=T)
        label = f"reset={reset} store_m={int(store_m)} T={T}"
        yield ("lif_fwd", f"{label} stages={lif.STAGES}", lif.lif_fwd_kernel, fwd_ptrs + ["h0_ptr"],
               ["L", "H", "SEG"], dict(flags, HAS_H0=True, STAGES=lif.STAGES), 1)
        if store_m:
            yield ("lif_fix_par", label, lif.lif_fixup_parallel_kernel, fwd_ptrs + ["vfix_ptr", "merged_ptr"],
                   ["L", "H", "SEG", "n_seg"], flags, 1)
            yield ("lif_fix_seq", label, lif.lif_fixup_sequential_kernel,
                   fwd_ptrs + ["vfix_ptr", "merged_ptr", "vT_ptr"], ["L", "H", "SEG", "n_seg"],
                   dict(flags, BLOCK_S=64), 1)
    combos = [("subtract", name, False) for name in SURROGATE_CODES]  # "leaky" included
    combos += [(reset, "atan", detach) for reset in ("zero", "none", "subtract_after_decay")
               for detach in (False, True)]
    combos += [("subtract", "atan", True)]
    # the defaults, then the longest chunk the tuner may pick
    chunks = [(lif.BWD_CHUNK, combo, compose) for combo, compose in itertools.product(combos, (False, True))
              if not compose or combo in (("subtract", "atan", False), ("subtract_after_decay", "atan", False))]
    chunks += [(max(lif.BWD_CHUNKS), combo, False) for combo in (("subtract", "atan", False),
                                                                 ("subtract", "leaky", False))]
    for T, (reset, surrogate, detach), compose in chunks:
        yield ("lif_bwd", f"reset={reset} surrogate={surrogate} detach={int(detach)} compose={int(compose)} T={T}",
               lif.lif_bwd_kernel,
               ["beta_ptr", "th_ptr", "h0_ptr", "m_ptr", "gs_ptr", "sigma_ptr", "gT_ptr", "chained_ptr", "dx_ptr",
                "out_ptr", "alpha_ptr"], ["L", "H", "SEG"],
               dict(HAS_H0=True, HAS_GT=True, RESET=RESET_CODES[reset], SURROGATE=SURROGATE_CODES[surrogate],
                    DETACH_RESET=detach, COMPOSE=compose, BLOCK_H=block_h, T=T, STAGES=lif.BWD_STAGES), 1)


RF_FWD_POINTERS = ["x_ptr", "lam_ptr", "w_ptr", "th_ptr", "rho_ptr", "kappa_ptr", "h0_ptr", "a0_ptr", "s_ptr",
                   "zeta_ptr", "aprev_ptr", "zT_ptr", "aT_ptr"]
RF_BWD_POINTERS = ["lam_ptr", "w_ptr", "th_ptr", "rho_ptr", "kappa_ptr", "h0_ptr", "zeta_ptr", "aprev_ptr", "s_ptr",
                   "gs_ptr", "gz_ptr", "ga_ptr", "alpha_ptr", "dx_ptr", "dlam_ptr", "dw_ptr", "dth_ptr", "drho_ptr",
                   "dkappa_ptr", "dh0_ptr", "da0_ptr"]


def rf_variants():
    """RF kernels at H = 256: one branch with every reset (training's forward and the backward; PRF's reset
    "none" also without saving), and the D-RF form (4 and 8 branches with weights and an adaptive threshold)."""
    cases = [(1, "subtract", False, False), (1, "zero", False, False), (1, "none", False, False),
             (1, "subtract", True, False), (4, "none", True, True), (4, "zero", True, True), (8, "none", True, True)]
    for K, reset, adapt, weighted in cases:
        block_h, block_k, warps = rf.launch_config(256, K)
        common = dict(HAS_W=weighted, HAS_H0=True, HAS_A0=adapt, ADAPT=adapt, RESET=RESET_CODES[reset],
                      BLOCK_H=block_h, BLOCK_K=block_k, T=rf.T)
        label = f"K={K} reset={reset} adapt={int(adapt)} w={int(weighted)} BH={block_h}"
        stores = (True, False) if (K, reset, adapt) == (1, "none", False) else (True,)
        for store in stores:
            yield ("rf_fwd", f"{label} store={int(store)}", rf.rf_fwd_kernel, RF_FWD_POINTERS, ["L", "H", "K"],
                   dict(common, STORE=store), warps)
        surrogates = ("atan", "sigmoid") if (K, reset, adapt) == (1, "subtract", False) else ("atan",)
        for surrogate in surrogates:
            yield ("rf_bwd", f"{label} {surrogate}", rf.rf_bwd_kernel, RF_BWD_POINTERS, ["L", "H", "K"],
                   dict(common, HAS_GZ=True, HAS_GA=adapt, SURROGATE=SURROGATE_CODES[surrogate],
                        DETACH_RESET=False), warps)


def compile_variant(fn, pointers, ints, constexprs, arch: int, num_warps: int):
    """Compiled as a launch with 16-byte aligned tensors and sizes divisible by 16 (the benchmarks' shapes): at
    run time Triton specializes such arguments, which lets parameter loads vectorise and sets tile layouts."""
    sig = _signature(fn, pointers, ints, "fp32")
    index = {name: i for i, name in enumerate(fn.arg_names)}
    divisible = {(index[name],): [["tt.divisibility", 16]] for name in pointers + ints}
    src = ASTSource(fn=fn, signature=sig, constexprs={(index[k],): v for k, v in constexprs.items()},
                    attrs=divisible)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


# Kernels whose launch plans were chosen by timing on an H100 although an sm_90 compile spills a few registers:
# the LIF fix-up passes at (BLOCK_H=128, CHUNK=16, 1 warp), which re-run only tens to hundreds of steps per
# segment (benchmarks/results/tune-lif-nvidia-h100-80gb-hbm3.txt). Every other kernel may spill at most one
# value (one store and one load): ptxas does that even far below the register cap.
SPILLS_KEPT_BY_TIMING = {"lif_fix_par", "lif_fix_seq"}
# Kernels not yet timed on a GPU, whose spills the first timing must weigh (they run only when asked for):
# the chunked S4D kernels (algorithm="chunked" of s4d_scan and s4d_lif) hold 3xTF32 operand splits in registers.
SPILLS_UNTIMED = {"s4d_chunked_fwd", "s4d_chunked_bwd", "s4d_lif_chunked_fwd"}
MAX_LOCAL_MOVES = 2


def _cuobjdump(cubin: bytes, flag: str) -> str:
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        return subprocess.run([cuobjdump, flag, path], capture_output=True, text=True, check=True).stdout


def cubin_resources(cubin: bytes) -> tuple[int, int, int, int]:
    """(registers per thread, stack bytes per thread, shared memory bytes, local-memory instructions) of a
    compiled kernel, read by the cuobjdump that ships with Triton. Spilled registers live in the stack frame
    and are moved by local-memory instructions (STL/LDL), which is what counts as spilling here."""
    text = _cuobjdump(cubin, "-res-usage")
    field = lambda key: int(re.search(rf"{key}:(\d+)", text).group(1))  # noqa: E731
    local_moves = len(re.findall(r"\b(?:STL|LDL)\b", _cuobjdump(cubin, "-sass")))
    return field("REG"), field("STACK"), field("SHARED"), local_moves


def main_loop(cubin: bytes) -> tuple[int, int]:
    """(instructions, barriers) in the largest loop of the kernel's SASS: its static size per iteration, a first
    measure of the work per step without a GPU; a barrier is a layout exchange through shared memory."""
    instrs = [(int(m.group(1), 16), m.group(2))
              for m in re.finditer(r"/\*([0-9a-f]{4,})\*/\s+([^;]*);", _cuobjdump(cubin, "-sass"))]
    index = {address: k for k, (address, _) in enumerate(instrs)}
    body = []
    for k, (address, text) in enumerate(instrs):
        branch = re.search(r"BRA\s+0x([0-9a-f]+)", text)
        if branch and int(branch.group(1), 16) < address and int(branch.group(1), 16) in index:
            loop = instrs[index[int(branch.group(1), 16)]:k + 1]
            body = loop if len(loop) > len(body) else body
    return len(body), sum(" BAR" in f" {text}" for _, text in body)


_SELECTED: list = []  # the variants main() compiles; a module global so that forked workers see it


def _measure(index: int, arch: int) -> tuple:
    """(name, label, warps, regs, stack, shared, local moves, loop instructions, loop barriers, compile seconds)
    of variant _SELECTED[index] (an index: forked workers find the variant in their copy of the list)."""
    name, label, fn, pointers, ints, constexprs, warps = _SELECTED[index]
    start = time.perf_counter()
    cubin = compile_variant(fn, pointers, ints, constexprs, arch, warps).asm["cubin"]
    seconds = time.perf_counter() - start
    return (name, label, warps, *cubin_resources(cubin), *main_loop(cubin), seconds)


def main() -> None:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default; set to silence its notice
    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90 = H100/H200)")
    parser.add_argument("--fail-on-spill", action="store_true",
                        help="exit 1 if a kernel spills registers (beyond SPILLS_KEPT_BY_TIMING)")
    parser.add_argument("--only", nargs="+", metavar="PREFIX",
                        help="compile only the kernels whose names start with one of these (e.g. diag_scan lif_bwd)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="variants compiled at once, in forked processes (default: one per CPU)")
    args = parser.parse_args()
    measure = functools.partial(_measure, arch=args.arch)
    all_variants = itertools.chain(variants(), s4d_variants(), s4d_chunked_variants(), lif_variants(),
                                   rf_variants())
    _SELECTED[:] = [v for v in all_variants if not args.only or v[0].startswith(tuple(args.only))]
    spilled = []
    print(f"Triton {triton.__version__}, target sm_{args.arch}, fp32 state")
    print(f"{'kernel':19s} {'variant':48s} {'warps':>5s} {'regs':>5s} {'stack B':>8s} {'STL/LDL':>8s} "
          f"{'shared B':>9s} {'loop instr':>10s} {'loop BAR':>8s} {'compile s':>9s}")
    if args.jobs > 1 and "fork" in multiprocessing.get_all_start_methods():
        pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("fork"))
        rows = pool.map(measure, range(len(_SELECTED)))
    else:
        pool, rows = None, map(measure, range(len(_SELECTED)))
    for name, label, warps, regs, stack, shared, local_moves, loop, barriers, seconds in rows:  # in order
        print(f"{name:19s} {label:48s} {warps:5d} {regs:5d} {stack:8d} {local_moves:8d} {shared:9d} {loop:10d} "
              f"{barriers:8d} {seconds:9.1f}", flush=True)
        if local_moves > MAX_LOCAL_MOVES and name not in SPILLS_KEPT_BY_TIMING | SPILLS_UNTIMED:
            spilled.append(f"{name} {label}")
    if pool is not None:
        pool.shutdown()
    if spilled and args.fail_on_spill:
        raise SystemExit(f"kernels that spill registers: {spilled}")


if __name__ == "__main__":
    main()
