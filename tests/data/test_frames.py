"""Index arithmetic of one pretraining sample: clip, I-frame, future and negative MV windows."""

from __future__ import annotations

import numpy as np
import pytest

from comode.data.frames import ClipSpec, pick_distinct_negatives, sample_indices, window_distance

SPEC = ClipSpec()
GOP = 12


def _iframes(num_frames: int, gop: int = GOP) -> np.ndarray:
    return np.arange(0, num_frames, gop)


def _draw(num_frames: int, seed: int = 0, *, iframes: np.ndarray | None = None, spec: ClipSpec = SPEC):
    iframes = _iframes(num_frames) if iframes is None else iframes
    return sample_indices(num_frames, iframes, spec=spec, rng=np.random.default_rng(seed))


def _windows_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.intersect1d(a, b).size)


def test_defaults_are_the_authors_layout():
    assert (SPEC.frames, SPEC.stride, SPEC.mv_window, SPEC.future_gap, SPEC.negatives, SPEC.iframe_radius) == (
        16,
        4,
        8,
        2,
        3,
        5,
    )
    assert SPEC.clip_span == 61 and SPEC.required_frames == 70
    with pytest.raises(ValueError, match="stride must be >= 1"):
        ClipSpec(stride=0)


def test_one_frame_video_yields_a_sample_of_frame_zero():
    sample = _draw(1)
    assert sample.clip.tolist() == [0] * 16
    assert sample.future.tolist() == [0] * 8
    assert sample.negatives.shape == (3, 8) and not sample.negatives.any()
    assert (sample.iframe, sample.iframe_frame) == (0, 0)
    assert sample.clamped and sample.negatives_overlap  # counted by the caller


def test_exactly_one_clip_video_has_one_possible_sample():
    for seed in range(20):
        sample = _draw(70, seed)
        assert sample.clip.tolist() == list(range(0, 61, 4))
        assert sample.future.tolist() == list(range(62, 70))
        assert not sample.clamped and not sample.negatives_overlap


@pytest.mark.parametrize("seed", range(50))
def test_long_video_layout(seed):
    total = 1000
    sample = _draw(total, seed)
    clip, future, negatives = sample.clip, sample.future, sample.negatives
    assert np.all(np.diff(clip) == 4) and 0 <= clip[0] and clip[-1] < total
    # The future window: 8 consecutive frames starting future_gap = 2 after the clip's last.
    assert future[0] == clip[-1] + 2 and np.all(np.diff(future) == 1) and future[-1] < total
    # Negatives: consecutive windows inside the video, never overlapping the future window,
    # drawn without replacement.
    assert negatives.shape == (3, 8) and np.all(np.diff(negatives, axis=1) == 1)
    assert negatives.min() >= 0 and negatives.max() < total
    assert not any(_windows_overlap(window, future) for window in negatives)
    assert len({int(w[0]) for w in negatives}) == 3
    # The I-frame lies within [clip[0] - 5, clip[-1] + 5] and is an I-frame.
    assert clip[0] - 5 <= sample.iframe_frame <= clip[-1] + 5
    assert _iframes(total)[sample.iframe] == sample.iframe_frame
    assert not sample.clamped and not sample.negatives_overlap


def test_iframe_choice_covers_every_candidate_of_the_widened_clip():
    # Clip fixed at 0..60 (T = 70); I-frames at 0, 12, ..., 60 and 65 (within last + 5) and 66 (beyond).
    iframes = np.array([0, 12, 24, 36, 48, 60, 65, 66])
    chosen = {_draw(70, seed, iframes=iframes).iframe_frame for seed in range(200)}
    assert chosen == {0, 12, 24, 36, 48, 60, 65}


def test_iframe_falls_back_to_the_nearest_one():
    # GOP longer than the widened clip: no I-frame within [first - 5, last + 5].
    iframes = np.array([0, 150, 299])
    for seed in range(30):
        sample = _draw(300, seed, iframes=iframes)
        low, high = sample.clip[0] - 5, sample.clip[-1] + 5
        distance = np.where(iframes < low, low - iframes, np.maximum(iframes - high, 0))
        assert distance[sample.iframe] == distance.min()


@pytest.mark.parametrize("total", list(range(1, 80)))
def test_every_length_gives_a_valid_sample(total):
    sample = _draw(total, seed=total)
    for frames in (sample.clip, sample.future, sample.negatives):
        assert frames.min() >= 0 and frames.max() < total
    assert np.all(np.diff(sample.clip) >= 0)
    assert sample.clamped == (total < 70)
    if total >= 8:  # the future window is 8 real consecutive frames
        assert np.all(np.diff(sample.future) == 1)
    if total >= 11:  # ... and it starts future_gap after the clip's (clamped) last frame
        assert sample.future[0] == sample.clip[-1] + 2
    # Two disjoint 8-frame windows need 16 frames; below that the overlap is reported.
    assert sample.negatives_overlap == (total < 16)
    if not sample.negatives_overlap:
        assert not any(_windows_overlap(window, sample.future) for window in sample.negatives)


def test_short_video_keeps_the_future_window_real():
    sample = _draw(40)
    assert sample.clip.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [30] * 8
    assert sample.future.tolist() == list(range(32, 40))


def test_same_generator_state_same_sample_and_seeds_differ():
    a, b = _draw(500, seed=7), _draw(500, seed=7)
    for field in ("clip", "future", "negatives"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.iframe == b.iframe
    starts = {int(_draw(500, seed=s).clip[0]) for s in range(20)}
    assert len(starts) > 10


def test_mv_frames_stacks_future_then_negatives():
    sample = _draw(300)
    frames = sample.mv_frames
    assert frames.shape == (4, 8)
    np.testing.assert_array_equal(frames[0], sample.future)
    np.testing.assert_array_equal(frames[1:], sample.negatives)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="at least 1 frame"):
        _draw(0)
    with pytest.raises(ValueError, match="non-empty"):
        _draw(10, iframes=np.array([], dtype=np.int32))


@pytest.mark.parametrize("seed", range(5))
def test_current_motion_window_lies_in_the_middle_of_the_clip(seed):
    spec = ClipSpec(motion_window="current")
    assert spec.required_frames == 61 and spec.current_offset == 26
    sample = sample_indices(200, np.arange(0, 200, 12), spec=spec, rng=np.random.default_rng(seed))
    np.testing.assert_array_equal(sample.future, sample.clip[0] + 26 + np.arange(8))
    assert sample.clip[0] <= sample.future[0] and sample.future[-1] <= sample.clip[-1]
    assert not any(_windows_overlap(sample.future, negative) for negative in sample.negatives)


def test_current_motion_window_of_a_short_video_stays_inside_it():
    sample = sample_indices(20, np.array([0, 12]), spec=ClipSpec(motion_window="current"), rng=np.random.default_rng(0))
    np.testing.assert_array_equal(sample.future, np.arange(12, 20))
    assert sample.clamped and sample.clip.max() == 19
    with pytest.raises(ValueError, match="motion_window must be one of"):
        ClipSpec(motion_window="past")


def test_spare_negatives_extend_the_same_draw():
    iframes = np.arange(0, 300, 12)
    plain = sample_indices(300, iframes, rng=np.random.default_rng(5))
    spared = sample_indices(300, iframes, rng=np.random.default_rng(5), spare_negatives=6)
    assert spared.negatives.shape == (9, 8)
    np.testing.assert_array_equal(spared.clip, plain.clip)
    np.testing.assert_array_equal(spared.future, plain.future)
    future = set(spared.future.tolist())
    assert not any(future & set(window.tolist()) for window in spared.negatives)  # still disjoint


def test_window_distance_is_zero_for_copies_and_still_windows():
    rng = np.random.default_rng(0)
    positive = rng.normal(size=(8, 2, 4, 5))
    still = np.zeros_like(positive)
    candidates = np.stack([positive, -positive, positive + 0.01 * rng.normal(size=positive.shape), still])
    distance = window_distance(positive, candidates)
    assert distance[0] == 0.0 and distance[1] == pytest.approx(1.0) and distance[2] < 0.01
    assert 0.99 < distance[3] <= 1.0  # nothing moving vs moving: as far as it gets
    assert window_distance(still, np.stack([still, still]))[0] == 0.0  # two still windows: copies


def test_pick_distinct_negatives_skips_near_copies_in_draw_order():
    distances = np.array([0.02, 0.5, 0.01, 0.4, 0.3, 0.6])
    keep, kept_near = pick_distinct_negatives(distances, 3, 0.1)
    assert keep.tolist() == [1, 3, 4] and kept_near == 0
    keep, kept_near = pick_distinct_negatives(np.array([0.02, 0.5, 0.01]), 3, 0.1)
    assert keep.tolist() == [0, 1, 2] and kept_near == 2  # too few distinct ones: the farthest copies fill up
