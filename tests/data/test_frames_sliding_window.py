"""The 10-clip sliding window: documented frames for long, exact-fit and short videos."""

import numpy as np
import pytest

from comode.data.frames import WindowSpec, sliding_window_indices


def test_long_video_starts_evenly_and_covers_the_whole_video():
    clips = sliding_window_indices(100)
    assert clips.shape == (10, 16)
    # round(linspace(0, 100 - 61, 10)): the documented example
    assert clips[:, 0].tolist() == [0, 4, 9, 13, 17, 22, 26, 30, 35, 39]
    assert (np.diff(clips, axis=1) == 4).all()  # stride 4 inside every clip, nothing clamped
    assert clips[0, 0] == 0 and clips[-1, -1] == 99  # first frame and last frame are both used


def test_very_long_video():
    clips = sliding_window_indices(1000)
    # Evenly spaced from 0 to T - span = 1000 - 61 = 939, step 939 / 9 = 104.33, rounded.
    assert clips[:, 0].tolist() == [0, 104, 209, 313, 417, 522, 626, 730, 835, 939]
    assert clips.max() == 999 and (np.diff(clips, axis=1) == 4).all()


def test_exactly_one_clip_long():
    clips = sliding_window_indices(61)
    assert (clips == np.arange(0, 61, 4)[None]).all()


def test_short_video_repeats_its_last_frame():
    clips = sliding_window_indices(30)
    expected = [0, 4, 8, 12, 16, 20, 24, 28] + [29] * 8
    assert clips.shape == (10, 16) and all(row.tolist() == expected for row in clips)


def test_one_frame_video_and_bad_input():
    assert (sliding_window_indices(1) == 0).all()
    with pytest.raises(ValueError):
        sliding_window_indices(0)


def test_other_layouts():
    clips = sliding_window_indices(20, WindowSpec(clips=3, frames=4, stride=2))
    assert clips.tolist() == [[0, 2, 4, 6], [6, 8, 10, 12], [13, 15, 17, 19]]
    with pytest.raises(ValueError):
        WindowSpec(clips=0)
