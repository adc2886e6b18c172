"""Pathfinder: the generator (method, determinism, LRA layout) and the loader (format, skips, errors, cache)."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from s4_reference import pathfinder_split, to_tensor_normalize

from spikessm.data import pathfinder
from spikessm.data.base import collate
from spikessm.data.pathfinder import METADATA_COLUMNS, load_pathfinder
from spikessm.data.pathfinder_generator import PathfinderSettings, generate_pathfinder_image, write_pathfinder

EASY = "curv_baseline"


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    """12 easy 32 px images in batches of 5 (5 + 5 + 2)."""
    root = tmp_path_factory.mktemp("pathfinder")
    write_pathfinder(root, 12, contour_length=6, images_per_batch=5, seed=3)
    return root


@pytest.fixture
def copy_of(generated, tmp_path) -> Path:
    """A private copy of the generated data, without the cache other tests may have written there."""
    shutil.copytree(generated, tmp_path / "data", ignore=shutil.ignore_patterns(pathfinder.CACHE_FOLDER))
    return tmp_path / "data"


@pytest.fixture(scope="module")
def samples() -> list:
    settings = PathfinderSettings.preset(32, 14)
    return [generate_pathfinder_image(np.random.default_rng(i), settings) for i in range(40)]


# ---- generator -------------------------------------------------------------------------------------------------


def test_same_seed_same_files_other_seed_other_images(generated, tmp_path):
    write_pathfinder(tmp_path / "again", 12, contour_length=6, images_per_batch=5, seed=3)
    write_pathfinder(tmp_path / "other", 12, contour_length=6, images_per_batch=5, seed=4)
    reference = files_of(generated / "pathfinder32")
    assert files_of(tmp_path / "again" / "pathfinder32") == reference
    other = files_of(tmp_path / "other" / "pathfinder32")
    assert other.keys() == reference.keys()
    pngs = [name for name in reference if name.endswith(".png")]
    assert sum(other[name] != reference[name] for name in pngs) >= len(pngs) - 1


def test_layout_and_metadata_format(generated):
    folder = generated / "pathfinder32" / EASY
    expected = {f"imgs/{b}/sample_{k}.png" for b, n in enumerate((5, 5, 2)) for k in range(n)}
    expected |= {f"metadata/{b}.npy" for b in range(3)}
    assert set(files_of(folder)) == expected  # no temporary files left behind
    for batch, n in enumerate((5, 5, 2)):
        text = (folder / "metadata" / f"{batch}.npy").read_text()  # text despite the extension
        rows = [line.split(" ") for line in text.splitlines()]
        assert len(rows) == n and text.endswith("\n")
        for k, row in enumerate(rows):
            assert len(row) == len(METADATA_COLUMNS)
            assert row[:3] == [f"imgs/{batch}", f"sample_{k}.png", str(k)]
            assert row[3] in ("0", "1")
            assert row[5] == "6" and row[6] == "2"  # contour length, distractor length
            with Image.open(folder / row[0] / row[1]) as image:
                assert image.mode == "L" and image.size == (32, 32)


def test_labels_balanced_images_drawn(samples):
    labels = [s.label for s in samples]
    assert 0.25 <= np.mean(labels) <= 0.75
    for s in samples:
        assert s.image.shape == (32, 32) and s.image.dtype == np.uint8
        lit = (s.image > 0).mean()
        assert 0.1 < lit < 0.7, "paths are thin lines over a dark background"
        for x, y in s.markers:
            assert s.image[int(y), int(x)] >= 200, "a marker is a bright disc"


def test_markers_on_one_snake_iff_positive(samples):
    for s in samples:
        starts = [snake[0, 0] for snake in s.snakes]
        ends = [snake[-1, 1] for snake in s.snakes]
        first = [i for i, p in enumerate(starts) if np.allclose(p, s.markers[0])]
        second = [i for i, p in enumerate(ends) if np.allclose(p, s.markers[1])]
        assert len(first) == 1 and len(second) == 1 and {first[0], second[0]} <= {0, 1}
        assert (first[0] == second[0]) == (s.label == 1)


def test_snakes_are_dashed_curved_and_apart(samples):
    settings = PathfinderSettings.preset(32, 14)
    turns = []
    for s in samples:
        assert [len(snake) for snake in s.snakes[:2]] == [14, 14]
        assert all(len(snake) == settings.distractor_length for snake in s.snakes[2:])
        for snake in s.snakes:
            assert np.allclose(np.linalg.norm(snake[:, 1] - snake[:, 0], axis=1), settings.paddle_length)
            assert np.allclose(np.linalg.norm(snake[1:, 0] - snake[:-1, 1], axis=1), settings.paddle_margin)
            direction = snake[:, 1] - snake[:, 0]
            turns += list(np.abs(np.angle(np.exp(1j * np.diff(np.arctan2(direction[:, 1], direction[:, 0]))))))
        # Brute force over points along the paddles: paddles of different snakes keep the clearance.
        t = np.linspace(0, 1, 9)[None, :, None]
        points = [(snake[:, :1] * (1 - t) + snake[:, 1:] * t).reshape(-1, 2) for snake in s.snakes]
        for i in range(len(points)):
            for j in range(i):
                gap = np.linalg.norm(points[i][:, None] - points[j][None], axis=-1).min()
                assert gap >= settings.clearance - 1e-6
    turns = np.degrees(turns)
    assert (turns > 1).mean() > 0.3, "paths bend"
    assert turns.mean() < 30, "turns are weighted toward straight continuation"


def test_path_x_preset_draws_128_px():
    sample = generate_pathfinder_image(np.random.default_rng(0), PathfinderSettings.preset(128, 14))
    assert sample.image.shape == (128, 128)
    assert all(sample.image[int(y), int(x)] >= 200 for x, y in sample.markers)


def test_generator_rejects_unknown_settings(tmp_path):
    with pytest.raises(ValueError, match="6, 9, 14"):
        write_pathfinder(tmp_path, 1, contour_length=7)
    with pytest.raises(ValueError, match="32, 128"):
        PathfinderSettings.preset(64)


# ---- loader ----------------------------------------------------------------------------------------------------


def test_loader_reads_generated_files(generated):
    task = load_pathfinder(generated, difficulty=EASY, split=(0.5, 0.25, 0.25), seed=0)
    assert (task.n_classes, task.d_input, task.max_length, task.vocab_size) == (2, 1, 1024, None)
    assert [len(task.train), len(task.val), len(task.test)] == [6, 3, 3]
    folder = generated / "pathfinder32" / EASY
    by_pixels = {}
    for line in "".join((folder / "metadata" / f"{b}.npy").read_text() for b in range(3)).splitlines():
        row = line.split()
        by_pixels[np.asarray(Image.open(folder / row[0] / row[1])).tobytes()] = int(row[3])
    seen = set()
    for split in (task.train, task.val, task.test):
        for x, label in split:
            assert x.shape == (1024, 1) and x.dtype == torch.float32
            assert 0 <= x.min() and x.max() <= 1
            key = (x[:, 0] * 255).round().to(torch.uint8).numpy().tobytes()  # row-major pixels
            assert by_pixels[key] == label
            seen.add(key)
    assert len(seen) == 12


def write_release_folder(root: Path, difficulty: str, names: list[tuple[int, int]]) -> list[tuple[str, bytes, int]]:
    """pathfinder32/<difficulty>/ in the release format: one PNG per (batch, sample) and metadata/<batch>.npy text
    rows; returns (relative path, pixels, label) per row, in the metadata's order (batches by number)."""
    folder = root / "pathfinder32" / difficulty
    rng = np.random.default_rng(7)
    rows, lines = [], {}
    for batch, sample in names:
        (folder / "imgs" / str(batch)).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32), dtype=np.uint8)
        label = int(rng.integers(0, 2))
        Image.fromarray(pixels, mode="L").save(folder / "imgs" / str(batch) / f"sample_{sample}.png")
        lines.setdefault(batch, []).append(f"imgs/{batch} sample_{sample}.png {sample} {label} 1.8 6 2 2 0.5 1 1\n")
        rows.append((f"imgs/{batch}/sample_{sample}.png", pixels.tobytes(), label))
    (folder / "metadata").mkdir(parents=True)
    for batch, text in lines.items():
        (folder / "metadata" / f"{batch}.npy").write_text("".join(text))
    return sorted(rows, key=lambda row: int(row[0].split("/")[1]))  # stable: keeps each batch's line order


def test_split_is_s4s_with_its_blacklist(tmp_path):
    # 15 rows in two batches (metadata 10.npy after 2.npy, by number), one the release's known-empty image.
    names = [(2, k) for k in range(7)] + [(0, 172), (0, 5)] + [(10, k) for k in range(6)]
    rows = write_release_folder(tmp_path, EASY, names)
    kept = [row for row in rows if row[0] != "imgs/0/sample_172.png"]  # s4's blacklist, before the split
    task = load_pathfinder(tmp_path, difficulty=EASY)
    for part, ids in zip((task.train, task.val, task.test), pathfinder_split(len(kept))):  # 12 / 1 / 1, seed 42
        assert len(part) == len(ids)
        for (x, label), i in zip(part, ids):
            assert x.numpy().tobytes() == to_tensor_normalize(np.frombuffer(kept[i][1], np.uint8)).tobytes()
            assert label == kept[i][2] and x.shape == (1024, 1)
    old = load_pathfinder(tmp_path, difficulty=EASY, conventions="spikessm-0.1")  # all 15, seed 0, rounded sizes
    assert [len(old.train), len(old.val), len(old.test)] == [12, 2, 1]
    order = torch.randperm(15, generator=torch.Generator().manual_seed(0))
    assert old.val.labels.tolist() == [rows[i][2] for i in order[12:14]]
    # The blacklist names a curv_baseline file only: elsewhere every row is split.
    write_release_folder(tmp_path / "hard", "curv_contour_length_14", names)
    hard = load_pathfinder(tmp_path / "hard")
    assert [len(hard.train), len(hard.val), len(hard.test)] == [13, 1, 1]  # 15 - 2 * int(1.5)


def test_split_is_deterministic(generated):
    a, b = (load_pathfinder(generated, difficulty=EASY, seed=1) for _ in range(2))
    c = load_pathfinder(generated, difficulty=EASY, seed=2)
    assert torch.equal(a.train.pixels, b.train.pixels) and torch.equal(a.test.labels, b.test.labels)
    assert not torch.equal(a.train.pixels, c.train.pixels)


def test_collate_shapes(generated):
    task = load_pathfinder(generated, difficulty=EASY)
    batch = collate([task.train[i] for i in range(3)])
    assert batch["inputs"].shape == (3, 1024, 1) and batch["inputs"].dtype == torch.float32
    assert batch["lengths"].tolist() == [1024] * 3 and batch["labels"].shape == (3,)


def test_unreadable_images_are_skipped_with_a_warning(copy_of):
    images = copy_of / "pathfinder32" / EASY / "imgs"
    (images / "0" / "sample_3.png").write_bytes(b"")  # the real data has one empty file
    (images / "1" / "sample_1.png").write_bytes(b"not a png at all")
    with pytest.warns(UserWarning) as caught:
        task = load_pathfinder(copy_of, difficulty=EASY)
    messages = " ".join(str(w.message) for w in caught)
    assert "imgs/0/sample_3.png" in messages and "imgs/1/sample_1.png" in messages
    assert len(task.train) + len(task.val) + len(task.test) == 10


def test_one_unreadable_image_moves_no_other_between_splits(copy_of):
    def splits(task):
        return [{x.numpy().tobytes() for x, _ in part} for part in (task.train, task.val, task.test)]

    before = splits(load_pathfinder(copy_of, difficulty=EASY))
    shutil.rmtree(copy_of / pathfinder.CACHE_FOLDER)
    broken = copy_of / "pathfinder32" / EASY / "imgs" / "1" / "sample_2.png"
    lost = (torch.from_numpy(np.array(Image.open(broken))).reshape(-1, 1).float() / 255.0).numpy().tobytes()
    broken.write_bytes(b"\x89PNG truncated")
    for _ in range(2):  # decoded, then from the cache: the same splits and the same warning
        with pytest.warns(UserWarning, match=f"{broken}: skipped"):
            after = splits(load_pathfinder(copy_of, difficulty=EASY))
        assert [part - {lost} for part in before] == after


def test_a_corrupt_cache_is_decoded_again_with_a_warning(copy_of):
    first = load_pathfinder(copy_of, difficulty=EASY)
    cache = copy_of / pathfinder.CACHE_FOLDER / f"pathfinder32_{EASY}.pt"
    cache.write_bytes(cache.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"Pathfinder: ignoring the unreadable cache {cache}"):
        second = load_pathfinder(copy_of, difficulty=EASY)
    assert torch.equal(first.train.pixels, second.train.pixels)


def test_malformed_metadata_names_file_and_line(copy_of):
    metadata = copy_of / "pathfinder32" / EASY / "metadata" / "1.npy"
    lines = metadata.read_text().splitlines()
    metadata.write_text("\n".join(lines[:2] + ["imgs/1 sample_2.png"] + lines[3:]) + "\n")
    with pytest.raises(ValueError, match=r"metadata[/\\]1\.npy:3: expected at least 4"):
        load_pathfinder(copy_of, difficulty=EASY)
    metadata.write_text("\n".join(lines[:4] + ["imgs/1 sample_4.png 4 yes"]) + "\n")
    with pytest.raises(ValueError, match=r"1\.npy:5: label .* got 'yes'"):
        load_pathfinder(copy_of, difficulty=EASY)


def test_unknown_difficulty_lists_the_three(generated):
    with pytest.raises(ValueError, match="curv_baseline, curv_contour_length_9, curv_contour_length_14"):
        load_pathfinder(generated, difficulty="all")


def test_missing_directory_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="spikessm generate pathfinder --out DIR") as error:
        load_pathfinder(tmp_path / "nothing")
    assert "lra_release" in str(error.value)
    with pytest.raises(FileNotFoundError, match="--resolution 128"):
        load_pathfinder(tmp_path / "nothing", resolution=128)


def test_cache_hit_and_invalidation(copy_of, monkeypatch):
    first = load_pathfinder(copy_of, difficulty=EASY)
    assert list((copy_of / pathfinder.CACHE_FOLDER).iterdir()) == [
        copy_of / pathfinder.CACHE_FOLDER / f"pathfinder32_{EASY}.pt"
    ]
    decoded = []
    real_read = pathfinder.read_pathfinder_image
    monkeypatch.setattr(pathfinder, "read_pathfinder_image", lambda *args: decoded.append(args) or real_read(*args))
    second = load_pathfinder(copy_of, difficulty=EASY)
    assert decoded == [] and torch.equal(first.train.pixels, second.train.pixels)
    metadata = copy_of / "pathfinder32" / EASY / "metadata" / "2.npy"
    metadata.write_text(metadata.read_text().splitlines()[0] + "\n")  # drop the batch's second image
    third = load_pathfinder(copy_of, difficulty=EASY)
    assert len(decoded) == 11 and len(third.train) + len(third.val) + len(third.test) == 11
    decoded.clear()
    load_pathfinder(copy_of, difficulty=EASY)
    assert decoded == []


def test_path_x_round_trip(tmp_path):
    write_pathfinder(tmp_path, 3, resolution=128, contour_length=14, seed=0)
    task = load_pathfinder(tmp_path, resolution=128, split=(1 / 3, 1 / 3, 1 / 3))
    x, label = task.train[0]
    assert task.max_length == 16384 and x.shape == (16384, 1) and label in (0, 1)
