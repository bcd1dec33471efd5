"""Datasets: the --data forms, unreadable and oversized images, unusable folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.transforms import ToTensor

from fbnetv3_zoo.data import DataError, Skipped, collate_skipping, load_data
from fbnetv3_zoo.errors import UserError


def _png(path: Path, size: int = 8, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (value, value, value)).save(path)


@pytest.mark.parametrize("text", ["digits:abc", "digits:0", "digits:-3", "digits:"])
def test_digits_argument_names_itself_and_the_expected_form(text):
    with pytest.raises(DataError) as err:
        load_data(text, 16)
    assert isinstance(err.value, UserError)
    assert repr(text) in str(err.value) and "'digits:N' with N a positive integer" in str(err.value)


def test_digits_resolution_can_be_given_once_the_model_is_known():
    direct = load_data("digits:3", 16)
    deferred = load_data("digits:3", None)
    assert deferred.train.images[0].size == (8, 8)  # kept at its size until told
    deferred.set_transforms(None, None, resolution=16)
    for a, b in ((direct.train, deferred.train), (direct.val, deferred.val)):
        assert len(a) == len(b) and a.labels == b.labels
        assert all(
            np.array_equal(np.asarray(x), np.asarray(y))
            for x, y in zip(a.images, b.images, strict=True)
        )


def test_decompression_bombs_are_skipped_and_counted_like_broken_files(tmp_path, monkeypatch):
    # PIL warns above MAX_IMAGE_PIXELS and refuses above twice that; a small limit stands in
    # for a 20000x20000 PNG without allocating one
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    for c in ("a", "b"):
        for i in range(3):
            _png(tmp_path / c / f"{i}.png", size=8, value=40 * i)  # 64 px: fine
    _png(tmp_path / "a" / "warns.png", size=12)  # 144 px: DecompressionBombWarning
    _png(tmp_path / "b" / "bomb.png", size=16)  # 256 px: DecompressionBombError
    (tmp_path / "b" / "broken.png").write_bytes(b"not an image")
    splits = load_data(tmp_path, 8, train=False)
    splits.set_transforms(None, ToTensor())
    items = [splits.val[i] for i in range(len(splits.val))]
    skipped = sorted(Path(s.path).name for s in items if isinstance(s, Skipped))
    assert skipped == ["bomb.png", "broken.png", "warns.png"]
    x, y, paths = collate_skipping(items)
    assert len(x) == len(y) == 6 and len(paths) == 3


def test_folders_without_two_classes_or_a_readable_image_are_refused(tmp_path):
    _png(tmp_path / "one" / "only" / "0.png")
    with pytest.raises(DataError, match=r"1 class folder\(s\) found \(only\); a classifier needs"):
        load_data(tmp_path / "one", 8)
    for c in ("x", "y"):
        (tmp_path / "broken" / c).mkdir(parents=True)
        (tmp_path / "broken" / c / "0.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"none of its 2 image file\(s\) could be read"):
        load_data(tmp_path / "broken", 8, train=False)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    with pytest.raises(DataError, match="empty"):
        load_data(tmp_path / "empty", 8)
    with pytest.raises(DataError, match="dataset directory not found"):
        load_data(tmp_path / "missing", 8)


def test_holdout_sets_a_seeded_share_of_each_class_aside_from_training():
    """A search's selection split: carved from the training images, never from validation."""
    plain = load_data("digits:10", 8)
    split = load_data("digits:10", 8, holdout=0.2)
    assert (len(split.train), len(split.val)) == (80, 20)  # 2 of each class's 10 held out
    held, kept = list(split.val.indices), list(split.train.indices)
    assert not set(held) & set(kept) and sorted(held + kept) == list(range(100))
    labels = np.array(plain.train.labels)
    assert np.bincount(labels[held]).tolist() == [2] * 10
    assert held == list(load_data("digits:10", 8, holdout=0.2).val.indices)  # same seed, same split
    # the two parts take their own transforms (training augmentation must not reach selection)
    split.set_transforms(lambda img: "train", lambda img: "eval")
    assert split.train[0][0] == "train" and split.val[0][0] == "eval"
    assert split.val[0][1] == plain.train.labels[held[0]]


def test_holdout_of_a_folder_and_bad_shares(tmp_path):
    for c in ("a", "b"):
        for i in range(5):
            _png(tmp_path / "train" / c / f"{i}.png", value=20 * i)
        _png(tmp_path / "val" / c / "0.png")
    split = load_data(tmp_path, 8, holdout=0.4)
    assert (len(split.train), len(split.val)) == (6, 4)
    assert all(
        split.val.dataset.samples[i][0].startswith(str(tmp_path / "train"))
        for i in split.val.indices
    )
    for share in (-0.1, 0.6):
        with pytest.raises(
            DataError, match=r"holdout: expected a share of the training images in \[0, 0.5\]"
        ):
            load_data(tmp_path, 8, holdout=share)
