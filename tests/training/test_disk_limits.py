"""Writes that fail as on a full disk, under a file-size limit (RLIMIT_FSIZE, set in a subprocess: no root and no
real full disk needed; Python turns the limit into OSError "File too large"): every command exits non-zero with
one line naming the file and the cause, no temporary file is left, and the files already on disk stay intact."""
import json
import subprocess
import sys

import pytest
from training_helpers import assert_same_run, run_args

from spikessm.__main__ import main

resource = pytest.importorskip("resource")
LIMIT = 16 * 1024  # above config.json, metrics.jsonl and results.json; below a checkpoint, a plot, the caches


def limited(*argv, python=False):
    """Runs `spikessm ARGV` (or `python ARGV` with python=True) with files limited to LIMIT bytes."""
    def set_limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    command = [sys.executable, *argv] if python else [sys.executable, "-m", "spikessm", *argv]
    return subprocess.run(command, preexec_fn=set_limit, capture_output=True, text=True, timeout=600)


def files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def last_line(stderr):
    return stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(run_args(tiny_data, run)) == 0
    return run


def test_a_run_whose_checkpoints_cannot_be_written_fails_and_resumes_later(tiny_data, reference, tmp_path):
    run = tmp_path / "run"
    assert main(run_args(tiny_data, run, "--max-steps", "3")) == 0
    before = files(run)
    assert len(before["last.pt"]) > LIMIT > max(len(before[n]) for n in ("config.json", "results.json"))
    result = limited(*run_args(tiny_data, run, "--resume"))
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        f"spikessm train: error: could not write {run / 'last.pt'} (File too large), also on a second try, so the "
        f"model at step 12 is not saved; the newest checkpoint on disk, {run / 'last.pt'}, holds step 3; make room "
        f"(or lift the limit), then continue with: spikessm train --run-dir {run} --resume")
    assert (f"spikessm train: warning: could not write {run / 'best.pt'} (File too large); there is no earlier "
            "one") in result.stderr
    assert "results:" not in result.stdout
    after = files(run)
    for name in ("last.pt", "results.json", "config.json"):  # the results of step 3 still say step 3
        assert after[name] == before[name], name
    assert json.loads(after["results.json"])["checkpoint_step"] == 3
    assert "best.pt" not in after and not list(run.glob(".*.tmp"))
    assert main(run_args(tiny_data, run, "--resume")) == 0  # room again: the run ends as an uninterrupted one
    assert_same_run(reference, run)


def test_eval_outputs_that_cannot_be_written(reference, capsys):
    assert main(["eval", str(reference), "--per-step"]) == 0
    before = files(reference)
    assert len(before["anytime.png"]) > LIMIT
    result = limited("eval", str(reference), "--per-step", "0.5,1")
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (f"spikessm eval: error: could not write {reference / 'anytime.png'} (File "
                                        "too large)")
    assert files(reference) == before, "anytime.json and anytime.png stay the pair they were"
    assert not list(reference.glob(".*.tmp"))


def test_generate_leaves_no_partial_file(tmp_path):
    out = tmp_path / "listops"
    result = limited("generate", "listops", "--out", str(out), "--n-train", "2000", "--n-val", "10", "--n-test",
                     "10", "--min-length", "20", "--max-length", "60")
    assert result.returncode == 1, result.stderr[-2000:]
    assert last_line(result.stderr) == (f"spikessm generate: error: could not write {out / 'basic_train.tsv'} (File "
                                        "too large)")
    assert list(out.iterdir()) == []


def test_a_cache_that_cannot_be_written_is_skipped_with_a_warning(tmp_path):
    from spikessm.data.listops import load_listops

    out = tmp_path / "listops"
    assert main(["generate", "listops", "--out", str(out), "--n-train", "2000", "--n-val", "10", "--n-test", "10",
                 "--min-length", "4", "--max-length", "8"]) == 0
    before = files(out)  # (the limit is on writing: reading larger files is fine)
    code = (f"from spikessm.data.listops import load_listops; data = load_listops({str(out)!r}); "
            "print(len(data.train))")
    result = limited("-c", code, python=True)
    assert (result.returncode, result.stdout) == (0, "2000\n"), result.stderr[-2000:]
    assert "could not write the cache" in result.stderr and "(File too large); the data are read from their files" \
        in result.stderr
    assert files(out) == before
    assert [p for p in out.rglob("*") if p.is_file() and p.parent != out] == []  # no cache, no temporary
    load_listops(out)  # without the limit the cache is written, and it is larger than the limit
    caches = [p for p in out.rglob("*") if p.is_file() and p.parent != out]
    assert len(caches) == 1 and caches[0].stat().st_size > LIMIT
