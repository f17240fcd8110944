"""The comode store: a Zarr v3 group per video (see :mod:`comode.store.layout` and ``schemas/``).

Reading::

    from comode.store import open_store
    store = open_store("data/ucf101.zarr")
    video = store.video(store.video_ids()[0])
    video.mvs[:16]                  # (16, 2, gh, gw) int16, quarter pixels
    video.iframes[0]                # (h, w, 3) uint8 RGB
    video.decode_frames([0, 4, 8])  # (3, h, w, 3) uint8 RGB from the stored stream
    video.motion(8, 16)             # MotionWindow: (8, 2, gh, gw) pixels, (8, gh, gw) mask
    video.accumulated_motion(13, 16)  # the same, summed back to the last I-frame
    video.residuals([5, 13])        # (2, h, w, 3) int16, CoViAR's residuals

This reading API (``open_store``, ``Store``, ``Video``, ``MotionWindow``) is stable under the
schema's major version; docs/store.md "Reading it" has runnable examples.
"""

from comode.store.layout import MV_UNITS_PER_PIXEL, SCHEMA, STATUS_COMPLETE, STATUS_FAILED, STATUS_WRITING
from comode.store.motion import MotionWindow
from comode.store.reader import Store, StoreError, open_store
from comode.store.schema import SchemaError, check_root_attrs, check_video_attrs
from comode.store.video import Video
from comode.store.writer import VideoArrays, create_or_open_root, write_failure, write_video

__all__ = [
    "MV_UNITS_PER_PIXEL",
    "SCHEMA",
    "STATUS_COMPLETE",
    "STATUS_FAILED",
    "STATUS_WRITING",
    "Store",
    "StoreError",
    "Video",
    "MotionWindow",
    "open_store",
    "SchemaError",
    "check_root_attrs",
    "check_video_attrs",
    "VideoArrays",
    "create_or_open_root",
    "write_failure",
    "write_video",
]
