"""Compile every Triton kernel variant the ops launch for a GPU target, without a GPU, and report resources.

Triton lowers a kernel to PTX for an explicit target and its bundled ptxas assembles it, so a CPU-only machine
can prove that the kernels compile for an H100/H200 (sm_90) and see their register use and spills. This is
not a timing; it catches code-generation failures and register spills before a GPU session.
Local memory per thread > 0 means spills.

    python benchmarks/kernel_resources.py            # table: kernel, variant, registers, local/shared bytes
    python benchmarks/kernel_resources.py --arch 80  # another compute capability
    python benchmarks/kernel_resources.py --fail-on-spill   # exit 1 if any variant spills (used by the tests)
"""
from __future__ import annotations

import argparse
import itertools
import os
import warnings
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from spikessm.kernels import diag_scan, lif, s4d_lif, s4d_scan


def _signature(fn, pointers: list[str], ints: list[str], dtype: str) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:
        if name in pointers:
            sig[name] = f"*{dtype}"
        elif name in ints:
            sig[name] = "i32"
        elif name == "alpha":
            sig[name] = "fp32"
        else:
            sig[name] = "constexpr"
    return sig


def variants():
    """(kernel, label, jit function, pointer names, int names, constexprs, num_warps) as the launchers use them."""
    fwd, bwd = diag_scan._diag_scan_fwd_kernel, diag_scan._diag_scan_bwd_kernel
    seen = set()
    # Two shapes whose launch configurations differ: the benchmark's (small channel blocks) and a large batch.
    for (B, P), tv, cplx, rev in itertools.product([(8, 1536), (64, 1024)], *[[False, True]] * 3):
        block_t, block_p, warps = diag_scan.launch_config(B, P, cplx, None)
        flags = dict(A_TIME_VARYING=tv, COMPLEX=cplx, REVERSE=rev, BLOCK_T=block_t, BLOCK_P=block_p)
        key = (tuple(flags.items()), warps)
        if key in seen:
            continue
        seen.add(key)
        label = f"tv={int(tv)} complex={int(cplx)} reverse={int(rev)} BP={block_p}"
        yield ("diag_scan_fwd", label, fwd, ["a_ptr", "b_ptr", "h0_ptr", "x_ptr", "hT_ptr"], ["L", "P"],
               dict(flags, HAS_H0=True), warps)
        yield ("diag_scan_bwd", label, bwd,
               ["a_ptr", "x_ptr", "h0_ptr", "gx_ptr", "gT_ptr", "da_ptr", "db_ptr", "dh0_ptr"], ["L", "P"],
               dict(flags, HAS_H0=True, HAS_GT=True), warps)
    for N, rev in itertools.product([16, 64], [False, True]):
        block_t, block_h, block_n = s4d_scan._blocks(256, N, None)
        blocks = dict(BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n)
        label = f"N={N} reverse={int(rev)} T={block_t} BH={block_h}"
        yield ("s4d_scan_fwd", label, s4d_scan._s4d_scan_fwd_kernel,
               ["u_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "h0_ptr", "y_ptr", "hT_ptr", "states_ptr"],
               ["L", "H", "N", "n_chunks"], dict(blocks, HAS_D=True, HAS_H0=True, SAVE_STATES=True, REVERSE=rev),
               s4d_scan.FWD_NUM_WARPS)
        yield ("s4d_scan_bwd", label, s4d_scan._s4d_scan_bwd_kernel,
               ["u_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "h0_ptr", "states_ptr", "gy_ptr", "gT_ptr",
                "du_ptr", "dA_ptr", "dB_ptr", "dC_ptr", "dD_ptr", "dh0_ptr"],
               ["L", "H", "N", "n_chunks"], dict(blocks, HAS_D=True, HAS_H0=True, HAS_GT=True, REVERSE=rev),
               s4d_scan.BWD_NUM_WARPS)


def lif_variants():
    """LIF kernels: every reset in the forward passes (pass 1 with and without the saved membrane); every
    surrogate, and every reset with and without detach_reset, in the backward, composing and not."""
    block_h, T = lif._block_h(256), lif.CHUNK
    fwd_ptrs = ["x_ptr", "beta_ptr", "th_ptr", "s_ptr", "m_ptr", "vend_ptr"]
    for reset, store_m in itertools.product(lif.RESET_CODES, (False, True)):
        flags = dict(STORE_M=store_m, RESET=lif.RESET_CODES[reset], BLOCK_H=block_h, T=T)
        label = f"reset={reset} store_m={int(store_m)} T={T}"
        yield ("lif_fwd", label, lif._lif_fwd_kernel, fwd_ptrs + ["h0_ptr"], ["L", "H", "SEG"],
               dict(flags, HAS_H0=True), 1)
        if store_m:
            yield ("lif_fix_par", label, lif._lif_fixup_parallel_kernel, fwd_ptrs + ["vfix_ptr", "merged_ptr"],
                   ["L", "H", "SEG", "n_seg"], flags, 1)
            yield ("lif_fix_seq", label, lif._lif_fixup_sequential_kernel,
                   fwd_ptrs + ["vfix_ptr", "merged_ptr", "vT_ptr"], ["L", "H", "SEG", "n_seg"],
                   dict(flags, BLOCK_S=64), 1)
    combos = [("subtract", name, False) for name in lif.SURROGATE_CODES]  # "leaky" included
    combos += [(reset, "atan", detach) for reset in ("zero", "none") for detach in (False, True)]
    combos += [("subtract", "atan", True)]
    for (reset, surrogate, detach), compose in itertools.product(combos, (False, True)):
        if compose and (reset, surrogate, detach) != ("subtract", "atan", False):
            continue
        yield ("lif_bwd", f"reset={reset} surrogate={surrogate} detach={int(detach)} compose={int(compose)}",
               lif._lif_bwd_kernel,
               ["beta_ptr", "th_ptr", "h0_ptr", "m_ptr", "gs_ptr", "sigma_ptr", "carry_ptr", "dx_ptr", "dbeta_ptr",
                "dth_ptr", "out_a_ptr", "out_b_ptr"], ["L", "H", "SEG"],
               dict(HAS_H0=True, RESET=lif.RESET_CODES[reset], SURROGATE=lif.SURROGATE_CODES[surrogate],
                    DETACH_RESET=detach, COMPOSE=compose, BLOCK_H=lif.BWD_BLOCK_H, T=T), lif.BWD_NUM_WARPS)


def s4d_lif_variants():
    """Fused S4D + LIF at N = 64: each reset once, and the "leaky" surrogate (read from memory) once."""
    block_t, block_h, block_n = s4d_lif._blocks(256, 64, None)
    blocks = dict(BLOCK_T=block_t, BLOCK_H=block_h, BLOCK_N=block_n)
    for reset, rev, surrogate in (("subtract", False, "atan"), ("zero", True, "leaky"), ("none", False, "atan")):
        label = f"N=64 reset={reset} reverse={int(rev)} {surrogate} T={block_t}"
        flags = dict(blocks, HAS_D=True, HAS_H0=True, HAS_V0=True, RESET=lif.RESET_CODES[reset], REVERSE=rev)
        yield ("s4d_lif_fwd", label, s4d_lif._s4d_lif_fwd_kernel,
               ["u_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "h0_ptr", "v0_ptr", "beta_ptr", "th_ptr", "s_ptr",
                "mem_ptr", "hT_ptr", "vT_ptr", "states_ptr", "vstates_ptr"], ["L", "H", "N", "n_chunks"],
               dict(flags, SAVE_STATES=True, OUTPUT_MEMBRANE=False), s4d_lif.FWD_NUM_WARPS)
        yield ("s4d_lif_bwd", label, s4d_lif._s4d_lif_bwd_kernel,
               ["u_ptr", "A_ptr", "B_ptr", "C_ptr", "D_ptr", "h0_ptr", "v0_ptr", "beta_ptr", "th_ptr", "states_ptr",
                "vstates_ptr", "gs_ptr", "gT_ptr", "gvT_ptr", "sigma_ptr", "du_ptr", "dA_ptr", "dB_ptr", "dC_ptr",
                "dD_ptr", "dh0_ptr", "dv0_ptr", "dbeta_ptr", "dth_ptr"], ["L", "H", "N", "n_chunks"],
               dict(flags, HAS_GT=True, HAS_GVT=True, SURROGATE=lif.SURROGATE_CODES[surrogate], DETACH_RESET=False),
               s4d_lif.BWD_NUM_WARPS)


def compile_variant(fn, pointers, ints, constexprs, arch: int, num_warps: int):
    sig = _signature(fn, pointers, ints, "fp32")
    index = {name: i for i, name in enumerate(fn.arg_names)}
    src = ASTSource(fn=fn, signature=sig, constexprs={(index[k],): v for k, v in constexprs.items()})
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})


def cubin_resources(cubin: bytes) -> tuple[int, int, int]:
    """(registers per thread, local memory bytes per thread, shared memory bytes) of a compiled kernel, read by
    the cuobjdump that ships with Triton. Local memory > 0 means register spills (or a stack)."""
    cuobjdump = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([cuobjdump, "-res-usage", path], capture_output=True, text=True, check=True).stdout
    field = lambda key: int(re.search(rf"{key}:(\d+)", text).group(1))  # noqa: E731
    return field("REG"), field("LOCAL"), field("SHARED")


def main() -> None:
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # Triton's default; set to silence its notice
    warnings.filterwarnings("ignore", message="TRITON_DEFAULT_FP_FUSION")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90 = H100/H200)")
    parser.add_argument("--fail-on-spill", action="store_true", help="exit 1 if any kernel uses local memory")
    args = parser.parse_args()
    spilled = []
    print(f"Triton {triton.__version__}, target sm_{args.arch}, fp32 state")
    print(f"{'kernel':15s} {'variant':48s} {'warps':>5s} {'regs':>5s} {'local B':>8s} {'shared B':>9s}")
    all_variants = itertools.chain(variants(), lif_variants(), s4d_lif_variants())
    for name, label, fn, pointers, ints, constexprs, warps in all_variants:
        compiled = compile_variant(fn, pointers, ints, constexprs, args.arch, warps)
        regs, local, shared = cubin_resources(compiled.asm["cubin"])
        print(f"{name:15s} {label:48s} {warps:5d} {regs:5d} {local:8d} {shared:9d}")
        if local:
            spilled.append(f"{name} {label}")
    if spilled and args.fail_on_spill:
        raise SystemExit(f"kernels using local memory (spills): {spilled}")


if __name__ == "__main__":
    main()
