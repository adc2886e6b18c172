"""benchmarks/profile_ops.py runs its CPU cases end to end and writes what it prints (a smoke test: the script is
meant for GPU sessions, where a broken script costs device time)."""
import json
import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "profile_ops.py"


def _run(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    return subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--batch", "2", "--length", "70",
                           "--width", "3", "--state", "4", "--steps", "2", "--top", "3", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_profiles_every_cpu_case(tmp_path):
    out = tmp_path / "profile.json"
    result = _run(tmp_path, "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert [c["case"] for c in data["cases"]] == ["s4d_scan/torch", "s4d_lif/torch", "lif"]
    assert data["shape"] == {"B": 2, "L": 70, "H": 3, "N": 4}
    for case in data["cases"]:
        assert case["wall_ms"] > 0 and case["profiled_ms"] > 0
        rows = case["rows"]
        assert len(rows) == 4 and rows[-1]["name"].endswith("others)"), rows  # top 3, then the rest summed
        assert abs(sum(r["share"] for r in rows) - 1) < 1e-9
        assert all(r["ms"] > 0 and r["calls"] > 0 for r in rows)
        assert f"{case['case']}: " in result.stdout


def test_triton_cases_need_a_gpu(tmp_path):
    result = _run(tmp_path, "--cases", "s4d_lif/chunked", "--out", str(tmp_path / "p.json"))
    assert result.returncode != 0
    assert "needs a CUDA device" in result.stderr
    assert not (tmp_path / "p.json").exists()
