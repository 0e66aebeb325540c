"""Feature store: every public layout round-trips, and every bad file names itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sidetune.errors import SidetuneError
from sidetune.features.store import (
    FeatureError,
    FeatureStore,
    find_feature_file,
    load_feature_file,
    load_text_features,
    load_video_features,
    save_text_features,
    save_video_features,
)


def _feats(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("shape", [(7, 5), (3, 7, 5)])
def test_npz_round_trip_video_and_text(tmp_path: Path, shape: tuple[int, ...]) -> None:
    feats = _feats(*shape)
    vpath = save_video_features(tmp_path / "v", "vid_A-1.5", feats)
    tpath = save_text_features(tmp_path / "t", 42, feats)
    assert vpath == tmp_path / "v" / "vid_A-1.5.npz"
    assert tpath == tmp_path / "t" / "qid42.npz"
    with np.load(vpath) as z:
        assert z.files == ["features"] and z["features"].dtype == np.float16
    with np.load(tpath) as z:
        assert z.files == ["last_hidden_state"]
    video = load_video_features(tmp_path / "v", "vid_A-1.5")
    text = load_text_features(tmp_path / "t", 42)
    assert video.shape == shape and text.shape == shape
    np.testing.assert_allclose(video, feats, atol=2e-3, rtol=1e-3)
    np.testing.assert_array_equal(video, text)
    # Atomic writes leave no temporary files behind.
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["vid_A-1.5.npz"]


@pytest.mark.parametrize("shape", [(6, 4), (2, 6, 4)])
def test_pt_and_npy_layouts(tmp_path: Path, shape: tuple[int, ...]) -> None:
    feats = _feats(*shape)
    torch.save(torch.from_numpy(feats), tmp_path / "v1.pt")
    torch.save({"features": torch.from_numpy(feats).bfloat16()}, tmp_path / "v2.pt")
    np.save(tmp_path / "v3.npy", feats.astype(np.float16))
    torch.save({"last_hidden_state": torch.from_numpy(feats)}, tmp_path / "qid7.pt")
    np.save(tmp_path / "qid8.npy", feats)
    np.save(tmp_path / "9.npy", feats)  # bare-id fallback for query caches

    np.testing.assert_array_equal(load_video_features(tmp_path, "v1"), feats)
    bf16 = load_video_features(tmp_path, "v2")
    assert bf16.dtype == np.float32  # NumPy has no bfloat16
    np.testing.assert_allclose(bf16, feats, rtol=1e-2, atol=1e-2)
    assert load_video_features(tmp_path, "v3").dtype == np.float16
    np.testing.assert_array_equal(load_text_features(tmp_path, 7), feats)
    np.testing.assert_array_equal(load_text_features(tmp_path, "8"), feats)
    np.testing.assert_array_equal(load_text_features(tmp_path, 9), feats)


def test_npz_is_preferred_over_pt_and_npy(tmp_path: Path) -> None:
    save_video_features(tmp_path, "a", np.ones((2, 3)))
    np.save(tmp_path / "a.npy", np.zeros((2, 3), dtype=np.float32))
    assert find_feature_file(tmp_path, "a", "video").name == "a.npz"
    assert load_video_features(tmp_path, "a").sum() == 6


def test_missing_file_and_directory_are_named(tmp_path: Path) -> None:
    with pytest.raises(FeatureError, match=r"video 'nope'.*nope\.npz") as info:
        load_video_features(tmp_path, "nope")
    assert str(tmp_path) in str(info.value)
    assert isinstance(info.value, SidetuneError)
    with pytest.raises(FeatureError, match=r"qid=3.*qid3\.npz"):
        load_text_features(tmp_path, 3)
    with pytest.raises(FeatureError, match="does not exist"):
        load_video_features(tmp_path / "absent", "a")


def test_corrupt_and_wrong_key_files(tmp_path: Path) -> None:
    (tmp_path / "bad.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(FeatureError, match=r"bad\.npz.*corrupt"):
        load_video_features(tmp_path, "bad")
    (tmp_path / "bad2.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(FeatureError, match=r"bad2\.npy"):
        load_video_features(tmp_path, "bad2")
    np.savez(tmp_path / "wrongkey.npz", feats=np.zeros((2, 3)))
    with pytest.raises(FeatureError, match=r"wrongkey\.npz: missing key 'features'.*feats"):
        load_video_features(tmp_path, "wrongkey")
    torch.save({"other": torch.zeros(2, 3)}, tmp_path / "wrongkey2.pt")
    with pytest.raises(FeatureError, match=r"wrongkey2\.pt: missing key 'features'"):
        load_video_features(tmp_path, "wrongkey2")
    (tmp_path / "bad3.pt").write_bytes(b"garbage")
    with pytest.raises(FeatureError, match=r"bad3\.pt: cannot read"):
        load_video_features(tmp_path, "bad3")
    torch.save([1, 2, 3], tmp_path / "notensor.pt")
    with pytest.raises(FeatureError, match="expected a tensor"):
        load_video_features(tmp_path, "notensor")


class _Evil:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (print, ("unpickled!",))


def test_pt_is_never_unpickled(tmp_path: Path) -> None:
    torch.save({"features": _Evil()}, tmp_path / "evil.pt")
    with pytest.raises(FeatureError, match=r"evil\.pt: cannot read"):
        load_video_features(tmp_path, "evil")


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4)])
def test_wrong_rank_is_rejected(tmp_path: Path, shape: tuple[int, ...]) -> None:
    np.save(tmp_path / "v.npy", np.zeros(shape, dtype=np.float32))
    with pytest.raises(FeatureError, match=r"v\.npy: features must be \[T, F\] or \[K, T, F\]"):
        load_video_features(tmp_path, "v")
    with pytest.raises(FeatureError, match="refusing to write"):
        save_video_features(tmp_path, "w", np.zeros(shape))


def test_empty_and_integer_arrays_are_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.zeros((0, 4), dtype=np.float32))
    with pytest.raises(FeatureError, match="empty"):
        load_video_features(tmp_path, "e")
    np.save(tmp_path / "i.npy", np.zeros((3, 4), dtype=np.int64))
    with pytest.raises(FeatureError, match="floating point"):
        load_video_features(tmp_path, "i")
    with pytest.raises(FeatureError, match="unsupported"):
        load_feature_file(tmp_path / "x.h5", "features")


def test_store_cache_and_lru(tmp_path: Path) -> None:
    for i in range(3):
        save_video_features(tmp_path, f"v{i}", np.full((2, 3), i))
    store = FeatureStore(tmp_path, "video", cache=True, max_items=2)
    a = store.get("v0")
    assert store.get("v0") is a  # served from memory
    store.get("v1")
    store.get("v2")  # evicts v0, the least recently used
    assert store.get("v0") is not a
    assert store.exists("v1") and not store.exists("v9")
    uncached = FeatureStore(tmp_path, "video")
    assert uncached.get("v1") is not uncached.get("v1")
    assert uncached["v2"][0, 0] == 2
    texts = FeatureStore(tmp_path, "text", cache=True)
    save_text_features(tmp_path, "s1-d2_0", np.ones((4, 3)))
    assert texts.get("s1-d2_0").shape == (4, 3) and texts.path("s1-d2_0").name == "qids1-d2_0.npz"


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".npy"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_features_name_the_file_and_index(
    tmp_path: Path, suffix: str, bad: float
) -> None:
    arr = np.ones((2, 5, 3), dtype=np.float16)
    arr[1, 3, 2] = bad
    arr[1, 4, 0] = bad
    path = tmp_path / f"v{suffix}"
    if suffix == ".npz":
        np.savez(path, features=arr)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(arr), path)
    else:
        np.save(path, arr)
    with pytest.raises(FeatureError) as err:
        load_video_features(tmp_path, "v")
    msg = str(err.value)
    assert str(path) in msg and "[1, 3, 2]" in msg and "2 non-finite" in msg
