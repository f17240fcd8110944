"""Pretraining samples from a comode store: ``PretrainDataset``.

    dataset = PretrainDataset("data/ucf101.zarr", split="1", subset="train", seed=0)
    loader = RunLoader(dataset, global_batch=64, workers=8, seed=0)   # comode.data.loader
    for epoch in range(epochs):
        for batch in loader.epoch(epoch):           # data order AND clip positions
            batch = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
            inputs = augment_batch(batch, generator=g, train=True)   # on the GPU

Division of work: the loader workers only READ and DECODE (CPU-bound, one core each);
every augmentation runs batched on the training device (:mod:`comode.data.transforms`),
so worker throughput is spent on decoding alone.  A sample (:meth:`PretrainDataset.__getitem__`)
is un-augmented:

=============  ==============================  ==========================================
key            value                           notes
=============  ==============================  ==========================================
clip           uint8 (3, 16, h, w)             RGB at the store's size (128 x 170)
iframe         uint8 (3, h, w)                 an I-frame within +-5 frames of the clip
mv_future      float32 (2, 8, gh, gw)          (x, y) in PIXELS PER FRAME of the MV frame
                                               (340x256): stored quarter pixels / 4
mv_negatives   float32 (3, 2, 8, gh, gw)       3 other windows of the same video
video_index    int                             the video actually used (after a skip)
label          int                             the store's label (-1 when none)
size, mv_size  int                             output sides for augment_batch
mv_geometry    float32 (4,)                    MV cell (h, w) and MV pixel (h, w) in RGB px
=============  ==============================  ==========================================

Which frames: :func:`comode.data.frames.sample_indices`, with a generator seeded from
(seed, epoch, index, attempt) -- a sample is a pure function of those, whatever worker or
process computes it, so runs are reproducible and resumable.

Reading one sample costs two store reads, chosen by measurement on the shared real clips
(``benchmarks/bench_loader.py`` prints the breakdown; the measured costs are in
docs/performance.md).  The MV read is started first and runs in tensorstore's thread while
the span is read and decoded:

1. ONE ``Video.decode_frames`` call for the 16 clip frames AND the I-frame: it reads one
   contiguous byte span of ``rgb_stream`` (from the I-frame before the first needed frame)
   and decodes it once.  The chosen I-frame lies within [first - 5, last + 5], so it is
   almost always inside that span (or <= 5 frames past it): decoding it from the stream
   is far cheaper than a separate read of ``iframes[k]``.  The two are bit-identical (the
   stored I-frames are decoded from the same stream; ``tests/store`` checks it).  Only an
   I-frame more than ``IFRAME_DECODE_REACH`` frames outside the span is read from
   ``iframes``.
2. ONE read of ``mvs`` for all windows (:func:`comode.data.motion_windows.start_mv_windows`;
   with ``missing_mv="interpolate"`` the same rows of ``mv_valid`` in the same call):
   the contiguous range from the first to the last needed frame when it spans at most
   ``MV_COVER_READ_FRAMES`` frames (always, for videos up to that length: one covering
   read beat separate window reads and an orthogonal read of just the needed frames),
   else that orthogonal read (one call touching only the needed chunks; long videos).
3. Per-video metadata (``iframe_index``, ``rgb_stream_offsets``, array handles) cached per
   process in an LRU of ``video_cache`` videos: reading them again would cost as much as
   the sample's own reads.  Read costs: docs/performance.md.

Processes: the store is opened lazily in each process that reads (first ``__getitem__``,
and again after a fork: :class:`comode.store.handle.LazyStore`), never shared;
``__init__`` keeps only the URL and the list of video ids.  The loader's workers start
with "forkserver" (:mod:`comode.data.loader` says why).

Bad videos: a video that fails at training time (corrupt stream, unreadable chunk) is
skipped, not fatal: the sample is replaced by another video's, chosen deterministically
from (seed, epoch, index, attempt), and the failure is counted.  ``dataset.skipped`` is
the total over this process and its loader workers (a shared-memory counter, one slot per
process); ``dataset.failures`` lists this process's failed video ids and reasons.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import torch
import zarr
from torch.utils.data import Dataset, get_worker_info

from comode.data.frames import ClipSpec, pick_distinct_negatives, sample_indices, window_distance
from comode.data.motion_windows import CAMERA_COMPENSATION, IFRAME_MV, MISSING_MV, compensate_camera, start_mv_windows
from comode.data.transforms import AugmentSpec
from comode.store import open_store
from comode.store.arrays import StoredArray
from comode.store.handle import LazyStore
from comode.store.reader import Store
from comode.store.video import Video

__all__ = ["PretrainDataset", "LOAD_ERRORS", "is_load_error", "IFRAME_DECODE_REACH"]

logger = logging.getLogger(__name__)

# Errors that mean "this video cannot be read", not "the code is wrong": FFmpeg decode
# errors (av.FFmpegError), a span that decodes to too few frames, out-of-range indices or
# missing arrays/chunks of a damaged group (ValueError, IndexError, KeyError), I/O errors.
LOAD_ERRORS: tuple[type[BaseException], ...] = (av.FFmpegError, ValueError, IndexError, KeyError, OSError)


def is_load_error(error: BaseException) -> bool:
    """Whether ``error`` means "this video cannot be read" (skip it) rather than a bug (raise).

    Besides :data:`LOAD_ERRORS`: Blosc's bare ``RuntimeError("error during blosc
    decompression ...")`` on a damaged chunk of a store written before chunks carried a
    CRC32C (newer stores report a checksum ValueError).  Other RuntimeErrors (torch's among
    them) are bugs and stop the run.
    """
    if isinstance(error, LOAD_ERRORS):
        return True
    return isinstance(error, RuntimeError) and "blosc" in str(error).lower()


# An I-frame at most this many frames beyond the decoded span is decoded with it (extra
# decoding a frame costs little beside a read); farther ones are read from the ``iframes`` array.
IFRAME_DECODE_REACH = 12
# Extra negative windows drawn per hard negative when near-copies are replaced.
SPARE_NEGATIVES = 2
# Retries with other videos before giving up on a sample (then the error is raised).
MAX_ATTEMPTS = 10
# Slots of the shared counter: [0] epoch, [1] main process skips, [2:] one per worker id.
_COUNTER_SLOTS = 258


@dataclass
class _VideoEntry:
    """Per-process cache of what every sample of a video needs."""

    video: Video  # holds its cached iframe_index and rgb_stream_offsets
    num_frames: int
    iframe_index: np.ndarray
    mvs: zarr.Array | StoredArray
    # (T, gh, gw) no-vector mask when missing_mv="interpolate" and the group has one, else None.
    mv_valid: zarr.Array | StoredArray | None
    label: int


class PretrainDataset(Dataset):
    """Un-augmented pretraining samples, one per complete video of a store per epoch.

    Args:
        store_url: comode store URL (any fsspec URL ``open_store`` accepts).
        split: store split name (e.g. "1"); None = every complete video.
        subset: side of ``split`` ("train" / "test"); None = both.
        spec: which frames a sample uses (:class:`~comode.data.frames.ClipSpec`).
        seed: with the epoch and the index, the only source of randomness.
        size: output side of the clip / I-frame crops (sent with every sample for
            :func:`~comode.data.transforms.augment_batch`; the dataset does not crop).
        mv_size: output side of the MV maps; None = size // 2.
        storage_options: fsspec options for remote stores.
        video_cache: videos whose metadata each process keeps (LRU); ~10 KB each.
        iframe_mv: "zero" (I-frame MV maps as stored) or "interpolate" (each cell filled
            from the same cell of the nearest frames), see :func:`read_mv_windows`.
        missing_mv: "zero" (P-frame cells without a vector read 0, as stored) or
            "interpolate" (filled like I-frame cells, from the store's ``mv_valid``; a video
            whose group has none, written before schema_minor 4, keeps 0 there, and one
            warning says so when the store's first video has none).
        camera_compensation: "none" or "median" (subtract each frame's median vector),
            see :func:`compensate_camera`.
        negative_min_distance: > 0 replaces hard-negative windows closer than this to the
            positive (:func:`comode.data.frames.window_distance`) by others of the video
            (:data:`SPARE_NEGATIVES` spare draws per negative); 0 = as drawn.

    Attributes:
        video_ids: the videos, in index order.
        num_classes: number of classes in the store's dataset description.
        failures: this process's failed video ids and reasons.
    """

    def __init__(
        self,
        store_url: str,
        *,
        split: str | None = None,
        subset: str | None = None,
        spec: ClipSpec = ClipSpec(),
        seed: int = 0,
        size: int = 112,
        mv_size: int | None = None,
        storage_options: dict | None = None,
        video_cache: int = 4096,
        iframe_mv: str = "zero",
        missing_mv: str = "zero",
        camera_compensation: str = "none",
        negative_min_distance: float = 0.0,
    ) -> None:
        store_url = str(store_url)
        self.spec, self.seed, self.size = spec, int(seed), int(size)
        self.mv_size = int(mv_size) if mv_size is not None else AugmentSpec(size=self.size).motion_size
        self.video_cache = max(1, int(video_cache))
        for name, value, choices in (
            ("iframe_mv", iframe_mv, IFRAME_MV),
            ("missing_mv", missing_mv, MISSING_MV),
            ("camera_compensation", camera_compensation, CAMERA_COMPENSATION),
        ):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        self.iframe_mv, self.missing_mv, self.camera_compensation = iframe_mv, missing_mv, camera_compensation
        self.negative_min_distance = float(negative_min_distance)
        store = open_store(store_url, storage_options=storage_options)  # checks the schema
        self.video_ids: tuple[str, ...] = tuple(store.video_ids(split=split, subset=subset))
        if not self.video_ids:
            where = "" if split is None else f" in split {split!r}" + ("" if subset is None else f" ({subset})")
            raise ValueError(f"{store_url}: no complete videos{where}")
        self.num_classes = len(store.classes)
        if missing_mv == "interpolate" and store.video(self.video_ids[0]).mv_valid is None:
            # One group is opened to ask (the first; a store is written by one version,
            # unless extended later): per video, one without the mask keeps its zeros.
            logger.warning(
                "data.missing_mv=interpolate: %s has no mv_valid mask (written before schema_minor 4): "
                "P-frame cells without a vector stay 0, as with missing_mv=zero; re-extract the store to use it",
                store_url,
            )
        extraction = store.extraction
        self.mv_units_per_pixel = float(extraction["mv_units_per_pixel"])
        px_h = extraction["rgb_height"] / extraction["height"]  # RGB px per MV-frame px
        px_w = extraction["rgb_width"] / extraction["width"]
        cell = extraction["mv_cell"]
        self.mv_geometry = (cell * px_h, cell * px_w, px_h, px_w)
        self._geometry_tensor = torch.tensor(self.mv_geometry, dtype=torch.float32)
        # [epoch, skips of process slot 0, 1, ...]: in shared memory so that set_epoch()
        # reaches persistent workers and the workers' skip counts reach the trainer.
        self._shared = torch.zeros(_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self.failures: dict[str, str] = {}
        self._handle = LazyStore(store_url, storage_options=storage_options)
        self._cache_store: Store | None = None  # the store object whose videos _cache holds
        self._cache: OrderedDict[int, _VideoEntry] = OrderedDict()

    # ------------------------------------------------------------------ epoch / counters

    def __len__(self) -> int:
        return len(self.video_ids)

    @property
    def epoch(self) -> int:
        return int(self._shared[0])

    def set_epoch(self, epoch: int) -> None:
        """Clip positions of epoch ``epoch`` (shared with the loader's worker processes)."""
        self._shared[0] = int(epoch)

    @property
    def skipped(self) -> int:
        """Samples whose video failed and was replaced, in this process and its workers."""
        return int(self._shared[1:].sum())

    def _count_skip(self) -> None:
        info = get_worker_info()
        slot = 1 if info is None else 2 + info.id % (_COUNTER_SLOTS - 2)
        self._shared[slot] += 1

    # ------------------------------------------------------------------ per-process store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_cache_store=None, _cache=OrderedDict())  # the handle ships its URL only
        return state

    def _open(self) -> Store:
        store = self._handle.get()  # opened again in a new process (LazyStore)
        if store is not self._cache_store:  # ... whose videos are read through that store
            self._cache_store, self._cache = store, OrderedDict()
        return store

    def _entry(self, video_index: int) -> _VideoEntry:
        store = self._open()
        entry = self._cache.get(video_index)
        if entry is not None:
            self._cache.move_to_end(video_index)
            return entry
        video = store.video(self.video_ids[video_index])
        entry = _VideoEntry(
            video=video,
            num_frames=video.num_frames,
            iframe_index=video.iframe_index,
            mvs=video.mvs,
            # Asked only when used: it lists the group's arrays (a request on an object store).
            mv_valid=video.mv_valid if self.missing_mv == "interpolate" else None,
            label=video.label,
        )
        video.rgb_stream_offsets  # noqa: B018 -- read now, cached on the Video
        self._cache[video_index] = entry
        if len(self._cache) > self.video_cache:
            self._cache.popitem(last=False)
        return entry

    # ------------------------------------------------------------------ samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        epoch = self.epoch
        error: BaseException | None = None
        for attempt in range(MAX_ATTEMPTS):
            video_index = index if attempt == 0 else self._replacement(index, epoch, attempt)
            rng = np.random.default_rng([self.seed, epoch, index, attempt])
            try:
                return self.load(video_index, rng=rng)
            except Exception as caught:
                if not is_load_error(caught):
                    raise
                error = caught
                self._record_failure(video_index, caught)
        raise RuntimeError(
            f"{MAX_ATTEMPTS} videos in a row failed to load for sample {index}; "
            f"last: {self.video_ids[video_index]}: {error!r}"
        ) from error

    def _replacement(self, index: int, epoch: int, attempt: int) -> int:
        """A deterministic other video for a sample whose video failed."""
        if len(self) == 1:
            return index
        draw = int(np.random.default_rng([self.seed, epoch, index, attempt, 1]).integers(len(self) - 1))
        return (index + 1 + draw) % len(self)

    def _record_failure(self, video_index: int, error: BaseException) -> None:
        self._count_skip()
        video_id = self.video_ids[video_index]
        if video_id not in self.failures:
            logger.warning("skipping video %s: %s: %s", video_id, type(error).__name__, error)
        self._cache.pop(video_index, None)  # a damaged group is re-opened next time
        if len(self.failures) < 10_000:
            self.failures[video_id] = f"{type(error).__name__}: {error}"[:300]

    def load(self, video_index: int, *, rng: np.random.Generator) -> dict[str, Any]:
        """The sample of video ``video_index`` drawn with ``rng`` (a failure: see is_load_error)."""
        entry = self._entry(video_index)
        spare = SPARE_NEGATIVES * self.spec.negatives if self.negative_min_distance > 0 else 0
        indices = sample_indices(entry.num_frames, entry.iframe_index, spec=self.spec, rng=rng, spare_negatives=spare)
        clip_frames = indices.clip
        before = np.searchsorted(entry.iframe_index, clip_frames.min(), side="right") - 1
        span_start = int(entry.iframe_index[max(0, before)])  # where decode_frames will start
        iframe_at = indices.iframe_frame
        from_stream = span_start - IFRAME_DECODE_REACH <= iframe_at <= int(clip_frames.max()) + IFRAME_DECODE_REACH
        wanted = np.append(clip_frames, iframe_at) if from_stream else clip_frames
        # The MV read is in flight (tensorstore reads and decompresses it in its own thread)
        # while the stream span is read and decoded here.
        finish_mv_read = start_mv_windows(
            entry.mvs,
            indices.mv_frames,
            iframe_index=entry.iframe_index,
            fill_iframes=self.iframe_mv == "interpolate",
            mv_valid=entry.mv_valid,
        )
        decoded = entry.video.decode_frames(wanted)  # (n, h, w, 3): ONE contiguous span
        if from_stream:
            iframe = decoded[-1]
        else:
            iframe = np.asarray(entry.video.iframes[indices.iframe])
        mv = finish_mv_read()  # (1 + N, 8, 2, gh, gw)
        if self.camera_compensation == "median":
            mv = compensate_camera(mv)
        if spare:  # drop near-copies of the positive among the drawn negatives
            keep, _ = pick_distinct_negatives(
                window_distance(mv[0], mv[1:]), self.spec.negatives, self.negative_min_distance
            )
            mv = np.concatenate([mv[:1], mv[1:][keep]])
        # -> (1 + N, 2, 8, gh, gw) float32 pixels per frame of the MV frame.
        mv = np.ascontiguousarray(mv.transpose(0, 2, 1, 3, 4), dtype=np.float32)
        mv /= self.mv_units_per_pixel
        mv_tensor = torch.from_numpy(mv)
        return {
            "clip": torch.from_numpy(decoded[: len(clip_frames)]).permute(3, 0, 1, 2),  # (3, T, h, w) view
            "iframe": torch.from_numpy(np.ascontiguousarray(iframe)).permute(2, 0, 1),
            "mv_future": mv_tensor[0],
            "mv_negatives": mv_tensor[1:],
            "video_index": video_index,
            "label": entry.label,
            "size": self.size,
            "mv_size": self.mv_size,
            "mv_geometry": self._geometry_tensor,
        }
