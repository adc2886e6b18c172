"""The LRA release layout as downloaded (lra_release/{listops-1000, tsv_data, lra_release/pathfinder32}), found from
its top folder."""
import pytest
from s4_reference import SPECIALS, listops_tokens, torchtext_vocab

from spikessm.data.listops import write_listops
from spikessm.data.lra_release import lra_task_dir
from spikessm.data.pathfinder_generator import write_pathfinder
from spikessm.data.releases import find_release, load_release

AAN_ROWS = ["1.0\tid1\tid2\tabcab\tbcb", "0.0\tid3\tid4\tcab\taaab"]


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """<top>/lra_release/ with all three folders, tiny."""
    top = tmp_path_factory.mktemp("extracted")
    outer = top / "lra_release"
    write_listops(outer / "listops-1000", n_train=6, n_val=2, n_test=2, max_depth=3, max_args=3, min_length=2,
                  max_length=40, seed=0)
    (outer / "tsv_data").mkdir(parents=True)
    for split in ("train", "eval", "test"):
        (outer / "tsv_data" / f"new_aan_pairs.{split}.tsv").write_text("\n".join(AAN_ROWS) + "\n")
    write_pathfinder(outer / "lra_release", 6, contour_length=14, images_per_batch=3, seed=0)
    return top


@pytest.mark.parametrize("where", ["top", "outer"])
def test_each_task_is_found_from_the_top_or_the_outer_release_folder(release, where):
    top = release if where == "top" else release / "lra_release"
    outer = release / "lra_release"
    assert lra_task_dir(top, "listops") == outer / "listops-1000"
    assert lra_task_dir(top, "retrieval") == outer / "tsv_data"
    assert lra_task_dir(top, "pathfinder") == outer / "lra_release"
    assert find_release("pathfinder", outer / "lra_release") == outer / "lra_release"  # the inner one too
    assert find_release("path-x", top) is None


def test_each_task_loads_from_the_release(release):
    listops = load_release("listops", release, max_length=64)
    train = (release / "lra_release" / "listops-1000" / "basic_train.tsv").read_text().splitlines()[1:]
    vocab = torchtext_vocab([listops_tokens(line.split("\t")[0]) for line in train], SPECIALS)
    assert (listops.name, listops.vocab_size, len(listops.train), len(listops.val), len(listops.test)) == (
        "listops", len(vocab), 6, 2, 2)
    assert load_release("listops", release, max_length=64, conventions="spikessm-0.1").vocab_size == 16
    aan = load_release("retrieval", release)
    assert (aan.name, aan.pair, len(aan.train), aan.train[0][1], aan.train[1][1]) == ("aan", True, 2, 1, 0)
    assert aan.train[0][0][0].tolist() == [3, 4, 5, 3, 4, 2]  # a b c a b <eos>: a, b 6 each, c 3
    pathfinder = load_release("pathfinder", release, split=(0.5, 0.0, 0.5), resolution=32)  # the preset's data
    assert (pathfinder.name, pathfinder.max_length, pathfinder.d_input) == ("pathfinder32", 1024, 1)
    assert len(pathfinder.train) + len(pathfinder.test) == 6


def test_path_x_is_pathfinder128_and_a_missing_task_says_where_it_looked(release, tmp_path):
    (tmp_path / "lra_release" / "lra_release" / "pathfinder128").mkdir(parents=True)
    assert lra_task_dir(tmp_path, "path-x") == tmp_path / "lra_release" / "lra_release"
    with pytest.raises(FileNotFoundError, match=r"no basic_train\.tsv, basic_val\.tsv, basic_test\.tsv in .*"
                                                r"lra_release.gz"):
        lra_task_dir(tmp_path, "listops")
    with pytest.raises(ValueError, match="task 'path-x' reads pathfinder128; got resolution 32"):
        load_release("path-x", tmp_path, resolution=32)
    with pytest.raises(ValueError, match="unknown LRA release task 'text'"):
        lra_task_dir(release, "text")
    with pytest.raises(ValueError, match="no release reader for task 'tiny-listops'"):
        load_release("tiny-listops", release)
