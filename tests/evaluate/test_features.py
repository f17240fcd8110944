"""Video features on a real (synthetic) store: the documented clips, every video counted, the cache."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from comode.data.clips import VideoClips
from comode.data.frames import WindowSpec, sliding_window_indices
from comode.data.transforms import centre_crop_boxes, crop_resize, normalize
from comode.evaluate.features import (
    CPU_CLIPS_PER_PASS,
    Inference,
    cached_features,
    extract_features,
    extract_features_of_many,
    pooled_features,
    prepare_clips,
)
from comode.evaluate.network import EvaluatedNetwork
from comode.evaluate.options import FeatureOptions, fill_feature_caches, split_features
from comode.models.backbones import build_backbone
from comode.store import open_store
from comode.store.reader import Video

CPU_64 = Inference(size=64, device=torch.device("cpu"))  # 64-pixel clips: 3x fewer pixels, same protocol


def _id(store, suffix):
    return next(v for v in store.video_ids() if v.endswith(suffix))


def test_test_clips_are_the_documented_frames(eval_store):
    store = open_store(eval_store)
    short, long = _id(store, "f.avi"), _id(store, "a.avi")
    dataset = VideoClips(eval_store, [short, long])
    for i, video_id in enumerate((short, long)):
        video = store.video(video_id)
        item = dataset[i]
        assert item["error"] is None and item["label"] == video.label
        frames = sliding_window_indices(video.num_frames)
        clips = item["clips"]  # (10, 3, 16, H, W)
        assert clips.shape == (10, 3, 16, 128, 170) and clips.dtype == torch.uint8
        for c in (0, 9):
            expected = video.decode_frames(frames[c])  # (16, H, W, 3)
            assert torch.equal(clips[c].permute(1, 2, 3, 0), torch.from_numpy(expected))
    assert store.video(short).num_frames == 10
    # the short video: every clip is frames 0..9 then frame 9 repeated
    assert torch.equal(dataset[0]["clips"][0][:, 9], dataset[0]["clips"][0][:, 15])


def test_features_are_the_mean_over_ten_clips_and_no_video_is_dropped(eval_store, tiny_checkpoint):
    store = open_store(eval_store)
    ids = store.video_ids()
    vnet = EvaluatedNetwork.parse(tiny_checkpoint).build().eval()
    result = extract_features(vnet, eval_store, ids, Inference(videos_per_batch=4, device=torch.device("cpu")))
    assert result.video_ids == ids and not result.failed and result.count == len(ids) == 9
    assert result.features.shape == (9, vnet.out_channels) and result.features.dtype == np.float32
    assert result.labels.tolist() == [store.video(v).label for v in ids]
    # one video by hand
    i = ids.index(_id(store, "e.avi"))
    clips = VideoClips(eval_store, [ids[i]])[0]["clips"]
    with torch.no_grad():
        by_hand = pooled_features(vnet, prepare_clips(clips)).mean(dim=0).numpy()
    np.testing.assert_allclose(result.features[i], by_hand, rtol=1e-4, atol=1e-5)


def test_failed_videos_are_reported_not_dropped(eval_store, tiny_checkpoint, monkeypatch):
    store = open_store(eval_store)
    ids = store.video_ids()
    bad = _id(store, "c.avi")
    original = Video.decode_frames

    def decode(self, indices, **kwargs):
        if self.video_id == bad:
            raise RuntimeError("corrupt stream")
        return original(self, indices, **kwargs)

    monkeypatch.setattr(Video, "decode_frames", decode)
    result = extract_features(EvaluatedNetwork.parse(tiny_checkpoint).build(), eval_store, ids, CPU_64)
    assert bad not in result.video_ids and result.count == len(ids) - 1
    assert list(result.failed) == [bad] and "corrupt stream" in result.failed[bad]


def test_cache_is_keyed_by_model_and_reused(eval_store, tiny_checkpoint, tmp_path):
    store = open_store(eval_store)
    ids = store.video_ids()[:3]
    network = EvaluatedNetwork.parse(tiny_checkpoint)
    calls = []

    def factory():
        calls.append(1)
        return network.build()

    kwargs = dict(store=store, video_ids=ids, cache_dir=tmp_path, inference=CPU_64)
    first, cached = cached_features(factory, model=network.describe(), **kwargs)
    again, cached_again = cached_features(factory, model=network.describe(), **kwargs)
    assert (cached, cached_again) == (False, True) and len(calls) == 1
    np.testing.assert_array_equal(first.features, again.features)
    random = EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0.125)
    other, other_cached = cached_features(random.build, model=random.describe(), **kwargs)
    assert not other_cached and not np.allclose(other.features, first.features)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_several_networks_in_one_pass_get_the_features_each_gets_alone(eval_store, tiny_checkpoint, monkeypatch):
    ids = open_store(eval_store).video_ids()[:4]
    networks = [
        EvaluatedNetwork.parse(tiny_checkpoint).build(),
        EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0.125, seed=2).build(),
    ]
    alone = [extract_features(net, eval_store, ids, CPU_64) for net in networks]
    decoded = []
    original = VideoClips.__getitem__
    monkeypatch.setattr(VideoClips, "__getitem__", lambda self, i: decoded.append(i) or original(self, i))
    together = extract_features_of_many(networks, eval_store, ids, CPU_64)
    assert sorted(decoded) == list(range(len(ids)))  # every video decoded once for both networks
    for one, many in zip(alone, together):
        assert many.video_ids == one.video_ids and not many.failed
        np.testing.assert_array_equal(many.labels, one.labels)
        np.testing.assert_array_equal(many.features, one.features)
    assert not np.allclose(together[0].features[:, :8], together[1].features[:, :8])


def test_filled_caches_are_what_each_evaluation_reads(eval_store, tmp_path):
    def options(seed, backbone, cache):
        return FeatureOptions(
            backbone=backbone, width_multiplier=0.125, seed=seed, device="cpu", size=64, cache_dir=tmp_path / cache
        )

    floors = [options(0, "r3d_18", "a"), options(1, "r3d_18", "b"), options(0, "r21d_18", "c")]
    fill_feature_caches(eval_store, [("random", o) for o in floors], split="1")
    assert all(len(list((tmp_path / c).glob("*.npz"))) == 2 for c in "abc")  # train and test of each
    for floor in floors:
        from_cache = split_features(eval_store, "random", floor, split="1", out_dir=tmp_path)
        fresh = split_features(
            eval_store, "random", dataclasses.replace(floor, cache_dir=tmp_path / "fresh"), split="1", out_dir=tmp_path
        )
        assert from_cache.counts["features_from_cache"] == 1 and fresh.counts["features_from_cache"] == 0
        np.testing.assert_array_equal(from_cache.train.features, fresh.train.features)
        np.testing.assert_array_equal(from_cache.test.features, fresh.test.features)
        shutil.rmtree(tmp_path / "fresh")
    with pytest.raises(ValueError, match="cache_dir"):
        fill_feature_caches(eval_store, [("random", dataclasses.replace(floors[0], cache_dir=None))], split="1")


def test_split_features_counts(eval_store, tiny_checkpoint, tmp_path, feature_cache):
    cpu_64 = FeatureOptions(device="cpu", size=64, cache_dir=feature_cache)  # the training clip, 64 px
    data = split_features(eval_store, tiny_checkpoint, cpu_64, split="1", out_dir=tmp_path)
    assert data.counts["train_videos"] == data.counts["train_evaluated"] == 6
    assert data.counts["test_videos"] == data.counts["test_evaluated"] == 3
    assert data.counts["failed"] == 0 and data.counts["split_videos_not_complete"] == 0
    assert data.counts["unlabelled"] == 0
    assert data.classes == ["down", "right"]
    with pytest.raises(ValueError, match="no split '2'"):
        split_features(eval_store, tiny_checkpoint, split="2", out_dir=tmp_path)


def test_exported_backbone_gives_the_same_features_and_cache_entry(eval_store, tiny_checkpoint, tmp_path):
    from comode.evaluate.features import feature_key
    from comode.train.export import export_backbone

    exported = export_backbone(tiny_checkpoint, tmp_path / "vnet.safetensors")
    store = open_store(eval_store)
    ids = store.video_ids()[:2]
    features = [
        extract_features(EvaluatedNetwork.parse(path).build(), eval_store, ids, CPU_64).features
        for path in (tiny_checkpoint, exported)
    ]
    np.testing.assert_array_equal(features[0], features[1])
    described = EvaluatedNetwork.parse(exported).describe()
    assert described["backbone"] == "r3d_18" and described["step"] == 7 and len(described["sha256"]) == 64
    # different files (bytes), so different cache keys, even though the weights are equal
    keys = {
        feature_key(
            model=EvaluatedNetwork.parse(p).describe(), store=store, video_ids=ids, window=WindowSpec(), size=64
        )
        for p in (tiny_checkpoint, exported)
    }
    assert len(keys) == 2


def test_model_source_errors():
    with pytest.raises(ValueError, match="--backbone must be one of"):
        EvaluatedNetwork.parse("random", backbone="r3d_10")  # the M-Network is not a clip backbone
    with pytest.raises(ValueError, match="width-multiplier"):
        EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0)
    a = EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0.125, seed=5).build()
    b = EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0.125, seed=5).build()
    state = torch.get_rng_state()
    c = EvaluatedNetwork.parse("random", backbone="r3d_18", width_multiplier=0.125, seed=6).build()
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))


def test_short_video_feature_is_its_single_clip(eval_store, tiny_checkpoint):
    store = open_store(eval_store)
    short = _id(store, "f.avi")  # 10 frames: all ten clips are frames 0..9 then 9 repeated
    vnet = EvaluatedNetwork.parse(tiny_checkpoint).build().eval()
    result = extract_features(vnet, eval_store, [short], CPU_64)
    clip = VideoClips(eval_store, [short])[0]["clips"][:1]
    with torch.no_grad():
        by_hand = pooled_features(vnet, prepare_clips(clip, size=64))[0].numpy()
    np.testing.assert_allclose(result.features[0], by_hand, rtol=1e-5, atol=1e-6)


def test_cpu_passes_of_a_few_clips_give_the_whole_batch_result():
    torch.manual_seed(0)
    vnet = build_backbone("r3d_18", width_multiplier=0.125).eval()
    clips = torch.randn(CPU_CLIPS_PER_PASS * 2 + 3, 3, 8, 32, 32)  # 3 passes, the last one short
    calls = []
    handle = vnet.register_forward_hook(lambda _module, inputs, _output: calls.append(inputs[0].shape[0]))
    with torch.no_grad():
        in_passes = pooled_features(vnet, clips)
        handle.remove()
        whole = vnet(clips).mean(dim=(2, 3, 4))
    assert calls == [CPU_CLIPS_PER_PASS, CPU_CLIPS_PER_PASS, 3]
    torch.testing.assert_close(in_passes, whole, rtol=1e-4, atol=1e-5)


def test_a_crop_without_resize_is_sliced_like_the_resampling_path():
    clips = torch.randint(0, 256, (2, 3, 4, 128, 170), dtype=torch.uint8)
    sliced = prepare_clips(clips, size=112)  # 112 of 128: the slice path
    assert sliced.shape == (2, 3, 4, 112, 112)
    # Reference: the bilinear resample (grid_sample) of the same centre box.
    boxes = centre_crop_boxes(2, 128, 170, fraction=112 / 128, device=clips.device)
    frames = clips.to(torch.float32).div(255.0).flatten(1, 2)  # (B, 3T, H, W)
    resampled = crop_resize(frames, boxes, size=112, flip=torch.zeros(2, dtype=torch.bool)).unflatten(1, (3, 4))
    # grid_sample weights are off by float rounding: 5e-5 measured, 1/300 of one grey level (0.017).
    torch.testing.assert_close(sliced, normalize(resampled, channel_dim=1), rtol=0, atol=1e-4)


def test_a_checkpoint_is_hashed_once_per_version(tmp_path, monkeypatch):
    """Reports and cache keys ask for the checkpoint's SHA-256 several times per run: the file
    is read once, and read again when it changes (a new epoch written under the same name)."""
    import hashlib
    import os

    import comode.evaluate.network as network

    reads = []
    real_hash = network._hash_file
    monkeypatch.setattr(network, "_hash_file", lambda path: reads.append(path) or real_hash(path))
    checkpoint = tmp_path / "last.pt"
    checkpoint.write_bytes(b"epoch 1")
    assert (
        network.file_sha256(checkpoint)
        == network.file_sha256(str(checkpoint))
        == hashlib.sha256(b"epoch 1").hexdigest()
    )
    assert len(reads) == 1
    checkpoint.write_bytes(b"epoch 2")
    os.utime(checkpoint, ns=(0, 10**9))  # a new version even where mtime granularity is coarse
    assert network.file_sha256(checkpoint) == hashlib.sha256(b"epoch 2").hexdigest() and len(reads) == 2


def test_store_split_and_label_classes(eval_store):
    from comode.store import open_store

    store = open_store(eval_store)
    train, test = store.split("1")
    assert train and test and not set(train) & set(test)
    assert sorted(train + test) == sorted(store.video_ids(split="1"))
    assert store.label_classes() == store.classes
    assert store.label_classes("texture") == store.label_sets["texture"] != store.classes
    with pytest.raises(ValueError, match="no split '9'; its splits"):
        store.split("9")
    with pytest.raises(ValueError, match="no label set 'nope'; its label sets"):
        store.label_classes("nope")


def test_an_evaluation_reads_the_checkpoint_metadata_once(
    eval_store, tiny_checkpoint, tmp_path, feature_cache, monkeypatch
):
    """Reading a checkpoint's metadata loads the whole file: the clip and the report's model
    description come from one read."""
    import comode.evaluate.network as network

    reads = []
    original = network.read_backbone_metadata
    monkeypatch.setattr(network, "read_backbone_metadata", lambda path: reads.append(path) or original(path))
    split_features(
        eval_store,
        tiny_checkpoint,
        FeatureOptions(device="cpu", size=64, cache_dir=feature_cache),
        split="1",
        out_dir=tmp_path,
    )
    assert len(reads) == 1
