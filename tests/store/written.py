"""What the store tests write: a root's attributes, a new writable store and a video
group's attributes."""

from __future__ import annotations

from comode.extract.settings import ExtractSettings
from comode.store import create_or_open_root
from comode.store.writer import WritableStore, open_root_for_writing


def root_attrs(**extraction_overrides):
    extraction = {
        **ExtractSettings().store_attrs(),
        "mv_units_per_pixel": 4,
        "mv_sign": "dst_minus_src",
        "tools": {"ffmpeg": "test"},
        **extraction_overrides,
    }
    return {
        "schema": "comode.store/1",
        "schema_minor": 0,
        "dataset": {"name": "folder", "classes": ["a", "b"], "split_names": ["1"]},
        "extraction": extraction,
    }


def new_store(url: str) -> WritableStore:
    """A new store at ``url``, as the writers take it."""
    create_or_open_root(url, root_attrs=root_attrs())
    return open_root_for_writing(url)


def video_attrs(arrays, label=1):
    return {
        "source": "b/moving.mkv",
        "label": label,
        "class_name": "b",
        "splits": {"1": "train"},
        "frames": arrays.num_frames,
        "width": 340,
        "height": 256,
        "rgb_codec": "mpeg2video",
        "rgb_width": 170,
        "rgb_height": 128,
        "fps": 25.0,
        **({} if arrays.timestamps is None else {"time_base": [1, 1000]}),
    }  # Matroska's milliseconds
