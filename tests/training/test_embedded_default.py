"""The README's main job: `spikessm train` with no arguments, on a machine with no data and no network."""
import json
import subprocess
import sys
import time


def test_embedded_default_beats_twice_the_majority_class(tmp_path):
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "spikessm", "train", "--run-dir", "runs/default"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "runs" / "tiny-listops-data" / "basic_train.tsv").is_file()
    results = json.loads((tmp_path / "runs" / "default" / "results.json").read_text())
    assert results["test_accuracy"] >= 2 * results["majority_accuracy"], results
    assert seconds < 600, f"the embedded default took {seconds:.0f} s"
    assert "test accuracy" in result.stdout and "majority class" in result.stdout
    assert results["firing_rates"] and results["energy_uj_per_example"] > 0
