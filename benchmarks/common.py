"""Shared helpers for the spikessm benchmarks: timing, device roofline figures, environment, JSON, tables.

Nothing here knows about the ops under test; the bench_*.py scripts import it as ``common`` (they put this
directory on sys.path, so run them as ``python benchmarks/<script>.py``).
"""
from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_DIR = BENCH_DIR.parent

MiB = 1 << 20

# Datasheet fp32 (non-tensor-core) peaks, in FLOP/s, matched against torch.cuda.get_device_name().
# Both H100 and H200 are taken as 60 TFLOP/s: a round figure between the PCIe and SXM datasheet values,
# used only to place the compute floor, so being ~10% off moves the floor, never the measured times.
DATASHEET_FP32_PEAK = {"H100": 60e12, "H200": 60e12}


# ----------------------------------------------------------------------------------------------------------
# Devices
# ----------------------------------------------------------------------------------------------------------


def pick_device(name: str = "auto") -> torch.device:
    """'auto' -> the current CUDA device when there is one, else the CPU; 'cpu' / 'cuda' / 'cuda:1' as given."""
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: CUDA is not available on this machine")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    """Return cached blocks between configurations so one large config does not starve the next."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else whatever platform reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def device_tag(device: torch.device) -> str:
    """Short file-name-safe tag, e.g. 'nvidia-h100-80gb-hbm3' or 'cpu-amd-epyc'."""
    if device.type == "cuda":
        return _slug(device_name(device))
    return ("cpu-" + _slug(cpu_model()))[:48].rstrip("-")


# ----------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------


@dataclass
class Timing:
    """Wall times of one benchmarked callable, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    others_busy: float | None = None  # share of the machine's CPU time other processes used meanwhile


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(busy seconds summed over all CPUs, this process's CPU seconds, wall seconds), or None without
    /proc/stat. Busy = user + nice + system + irq + softirq + steal."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        tick = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    own = os.times()
    return (sum(v) - v[3] - v[4]) / tick, own.user + own.system, time.perf_counter()


def others_busy_since(start: tuple[float, float, float] | None) -> float | None:
    """Share of all cores' time that *other* processes kept busy since `start` (from _cpu_seconds()).

    On a CPU benchmark anything above a few percent means the timings were contended: with as many torch
    threads as cores, every parallel region waits for whichever thread the scheduler took away."""
    end = _cpu_seconds()
    if start is None or end is None:
        return None
    wall = end[2] - start[2]
    if wall <= 0.05:  # /proc/stat counts in 10 ms ticks: too short to say anything
        return None
    others = (end[0] - start[0]) - (end[1] - start[1])
    return round(min(1.0, max(0.0, others / (wall * (os.cpu_count() or 1)))), 3)


class _L2Flusher:
    """Overwrites a buffer larger than the GPU's L2 before each timed run, so every run starts cold.

    Without it, a config whose inputs fit in L2 (50 MB on H100) would be timed reading from cache, which no
    caller of the op sees when the inputs were produced by a previous layer a while ago.
    """

    def __init__(self, device: torch.device, nbytes: int = 256 * MiB):
        self.buf = torch.empty(nbytes // 4, dtype=torch.int32, device=device)

    def __call__(self) -> None:
        self.buf.zero_()


_flushers: dict[torch.device, _L2Flusher] = {}


def _flusher(device: torch.device) -> _L2Flusher:
    if device not in _flushers:
        _flushers[device] = _L2Flusher(device)
    return _flushers[device]


def _time_cuda(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    """One CUDA-event pair per run (cache flushed outside the pair), read after a single synchronize."""
    flush = _flusher(device)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        flush()
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return [start.elapsed_time(end) for start, end in events]


def _time_cpu(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _time_runs(fn: Callable[[], Any], device: torch.device, repeats: int) -> list[float]:
    return _time_cuda(fn, device, repeats) if device.type == "cuda" else _time_cpu(fn, repeats)


def benchmark(
    fn: Callable[[], Any],
    device: torch.device,
    *,
    target_s: float = 1.0,
    warmup: int | None = None,
    min_repeats: int = 3,
    max_repeats: int | None = None,
) -> Timing:
    """Median wall time of ``fn()`` on ``device``.

    Warm-up runs come first (they absorb Triton compilation, autograd/dispatcher first-call costs and the
    caching allocator growing). One more run estimates the cost, and the repeat count is chosen so the timed
    runs take about ``target_s`` in total, clamped to [min_repeats, max_repeats]: a config that costs more
    than target_s / min_repeats per run simply takes longer. On CUDA each run is bracketed by CUDA events
    (queued back to back, read after one synchronize) with the L2 cache flushed before it; on the CPU each run
    is timed with time.perf_counter. ``others_busy`` says how much of the machine other processes used while
    the timed runs went on (see others_busy_since).
    """
    is_cuda = device.type == "cuda"
    warmup = (3 if is_cuda else 1) if warmup is None else warmup
    max_repeats = (1000 if is_cuda else 200) if max_repeats is None else max_repeats
    for _ in range(warmup):
        fn()
    synchronize(device)
    estimate_ms = max(_time_runs(fn, device, 1)[0], 1e-3)
    repeats = int(min(max_repeats, max(min_repeats, round(target_s * 1e3 / estimate_ms))))
    start = _cpu_seconds()
    times = _time_runs(fn, device, repeats)
    return Timing(
        median_ms=statistics.median(times), min_ms=min(times), max_ms=max(times), repeats=repeats, warmup=warmup,
        others_busy=others_busy_since(start),
    )


# ----------------------------------------------------------------------------------------------------------
# Roofline figures
# ----------------------------------------------------------------------------------------------------------


def measure_copy_bandwidth(device: torch.device, nbytes: int | None = None, target_s: float = 0.5) -> float:
    """Achieved bytes/s of ``dst.copy_(src)`` on a large float32 tensor, counting bytes read + bytes written.

    Default size: 256 MiB on GPUs (far beyond L2), 64 MiB on the CPU (beyond a typical last-level cache
    slice, while cheap to allocate on a small machine).
    """
    nbytes = nbytes or (256 * MiB if device.type == "cuda" else 64 * MiB)
    src = torch.rand(nbytes // 4, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = benchmark(lambda: dst.copy_(src), device, target_s=target_s)
    return 2 * src.numel() * src.element_size() / (t.median_ms * 1e-3)


def measure_sgemm(device: torch.device, n: int | None = None, target_s: float = 0.5) -> float:
    """Achieved FLOP/s of an n x n x n float32 matmul (2 n^3 flops), TF32 disabled while it runs."""
    n = n or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(n, n, dtype=torch.float32, device=device)
    b = torch.randn(n, n, dtype=torch.float32, device=device)
    out = torch.empty_like(a)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        t = benchmark(lambda: torch.matmul(a, b, out=out), device, target_s=target_s)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * n**3 / (t.median_ms * 1e-3)


def peak_fp32(device: torch.device, quick: bool = False) -> tuple[float, str]:
    """(peak fp32 FLOP/s, where the figure comes from).

    Known GPUs get their datasheet figure; anything else (the CPU, other GPUs) gets a measured large sgemm,
    which is what a well-tuned kernel can reach there.
    """
    if device.type == "cuda":
        name = device_name(device).upper()
        for key, flops in DATASHEET_FP32_PEAK.items():
            if key in name:
                return flops, f"datasheet ({key} fp32 non-tensor-core, {flops / 1e12:.0f} TFLOP/s)"
    n = None if not quick else (2048 if device.type == "cuda" else 512)
    return measure_sgemm(device, n=n, target_s=0.2 if quick else 0.5), "measured sgemm"


def floor_ms(nbytes: float, flops: float, copy_bandwidth: float, peak_flops: float) -> float:
    """Lower bound on the time of a kernel that moves `nbytes` and does `flops`: the slower of the two limits."""
    return max(nbytes / copy_bandwidth, flops / peak_flops) * 1e3


# ----------------------------------------------------------------------------------------------------------
# Environment
# ----------------------------------------------------------------------------------------------------------


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_DIR, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def cpu_busy_fraction(interval_s: float = 0.5) -> float | None:
    """Share of all CPUs' time spent busy during the next `interval_s` (this process sleeps meanwhile, so it
    is other processes), from /proc/stat; None where that does not exist. Unlike the load average, which
    lags by a minute, it says whether the machine is busy now."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
        return sum(v), v[3] + v[4]

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return round(1 - (idle1 - idle0) / total, 3) if total > 0 else None


def check_idle(device: torch.device) -> float | None:
    """CPU timings are only meaningful on an otherwise idle machine: measure how busy it is, warn if it is."""
    if device.type != "cpu":
        return None
    busy = cpu_busy_fraction()
    if busy is not None and busy > 0.15:
        log(f"warning: the CPUs are {busy:.0%} busy before starting; other processes compete for the "
            f"{os.cpu_count()} cores and will inflate CPU timings (recorded as env.cpu_busy_before)")
    return busy


def environment(device: torch.device) -> dict:
    """What the numbers were measured on: device, versions, threads, date, and the repo's commit."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    env = {
        "device": str(device),
        "device_name": device_name(device),
        "device_tag": device_tag(device),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "triton": package_version("triton"),
        "spikessm": package_version("spikessm"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_1_5_15min": load_average(),
        "argv": sys.argv,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env["gpu_capability"] = f"{props.major}.{props.minor}"
        env["gpu_memory_GiB"] = round(props.total_memory / 2**30, 1)
        env["gpu_sm_count"] = props.multi_processor_count
    return env


# ----------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------


def output_path(out: Path | None, quick: bool, name: str, device: torch.device) -> Path:
    """Where a benchmark writes its JSON: --out if given; a --quick smoke run goes to the temp directory, never
    to results/ (which holds committed numbers); otherwise results/<name>-<device-tag>.json."""
    if out is not None:
        return Path(out)
    if quick:
        return Path(tempfile.gettempdir()) / "spikessm-bench" / f"{name}-{device_tag(device)}-quick.json"
    return RESULTS_DIR / f"{name}-{device_tag(device)}.json"


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write `obj` as JSON so that readers see either the old file or the complete new one, never a torn write:
    a temporary file in the same directory (same file system, so os.replace is atomic), fsync'd, then renamed.
    NaN / infinity are refused (they are not JSON); use None for missing values."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the result ordinary file permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def fmt_num(value: Any, digits: int = 3) -> str:
    """Numbers to at most `digits` significant figures after the point-ish, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 1e-2:
            return f"{value:.{digits}g}"
        return f"{value:.1e}"
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    """Plain aligned text table. columns: (header, key) pairs; numbers right-aligned, text left-aligned."""
    cells = [[fmt_num(row.get(key)) for _, key in columns] for row in rows]
    numeric = [
        all(isinstance(row.get(key), (int, float)) or row.get(key) is None for row in rows) for _, key in columns
    ]
    widths = [max([len(header)] + [len(c[i]) for c in cells]) for i, (header, _) in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    out = [line([h for h, _ in columns]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    return "\n".join(out)


CONTENDED = 0.10  # others_busy above this: the row's CPU timing is not trustworthy


def contention_note(rows: Sequence[dict], key: str = "others_busy") -> str | None:
    """A caution line when some rows were timed while other processes used the CPUs, else None."""
    bad = [r for r in rows if (r.get(key) or 0) > CONTENDED]
    if not bad:
        return None
    worst = max(r[key] for r in bad)
    return (f"caution: {len(bad)} of {len(rows)} rows were timed while other processes kept > {CONTENDED:.0%} "
            f"of the CPUs busy (worst {worst:.0%}, column '{key}'); rerun those on an idle machine")


def log(message: str) -> None:
    """Progress lines go to stderr so stdout holds only the tables."""
    print(message, file=sys.stderr, flush=True)
