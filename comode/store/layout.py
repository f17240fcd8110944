"""The store contract: names, dtypes and chunking of everything in a comode store.

This is the only module that spells array and attribute names; everything else goes
through :mod:`comode.store.writer` and the readers (:mod:`comode.store.reader`,
:mod:`comode.store.video`).  The same contract is written down language-neutrally as JSON
Schema in ``comode/store/schemas/``, documented in the repository's ``schemas/README.md``.

Layout (Zarr v3)::

    store.zarr/
      zarr.json                 root attributes: schema, dataset (classes, splits), extraction settings
      dataset_report.json       what the last run's dataset adapter found (missing, unlisted, skipped)
      videos/<video_id>/        one group per video, written by exactly one task
        zarr.json               attributes; "status" is written LAST ("complete" marks a usable video)
        frame_types     uint8  (T,)            ASCII 'I'/'P'/'B' per frame, presentation order
        iframes         uint8  (K, h, w, 3)    decoded I-frames, RGB, at the RGB-stream size
        iframe_index    int32  (K,)            frame number of each I-frame
        mvs             int16  (T, 2, gh, gw)  motion vectors on the block grid (x, y), quarter pixels
        mv_valid        uint8  (T, gh, gw)     1 where a cell has a vector, 0 where it has none
                                               (I-frame, intra block): tells "no vector" from (0, 0) (optional)
        rgb_stream      uint8  (N,)            MPEG-2 elementary stream (GOP 12, no B) at the RGB size
        rgb_stream_offsets int64 (T + 1,)      byte offset of frame t's packet; last = N
        timestamps      int64  (T,)            source presentation time of frame t, in ticks of the
                                               group's time_base attribute (optional)
      index/                    derived: the video listing (comode.store.index; schemas/README.md "Index")
        snapshot.json           the journals merged up to recorded offsets
        journal-*.jsonl         one writer process's start / done lines
        claims/<video_id>.json  held by the process writing that group
"""

from __future__ import annotations

import re

SCHEMA_NAME = "comode.store"
SCHEMA_MAJOR = 1
# Minor versions only add optional things:
#   1: dataset.label_sets and per-video labels / label_names (sample dataset);
#   2: the timestamps array and the source_rotation / source_stream attributes;
#   3: the index group (index/, comode.store.index) and each video group's write_id;
#   4: the mv_valid array, dimension_names on every array, the source's frame rate in the
#      rgb_stream's sequence header (was always 25).
SCHEMA_MINOR = 4
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}"

# Attribute names (the contract; schemas/README.md describes each).  Root group:
ATTR_SCHEMA = "schema"
ATTR_DATASET = "dataset"  # {name, root, classes, split_names, missing, label_sets?}
ATTR_EXTRACTION = "extraction"  # the extraction settings the store was made with
DATASET_CLASSES = "classes"
DATASET_SPLIT_NAMES = "split_names"
DATASET_LABEL_SETS = "label_sets"
# What the labels and splits were derived from (optional; stores written since issue 24):
# {fingerprint, files: [{path, sha256}]}; every video group carries the fingerprint too.
DATASET_ANNOTATIONS = "annotations"
ANNOTATIONS_FINGERPRINT = "fingerprint"
# The dataset report of the last extraction run (a JSON file in the store's root folder).
DATASET_REPORT = "dataset_report.json"
DATASET_REPORT_FORMAT = "comode.dataset_report/1"
# Each video group:
ATTR_STATUS = "status"  # written LAST: "complete" marks a usable video
ATTR_SOURCE = "source"
ATTR_LABEL = "label"
ATTR_CLASS_NAME = "class_name"
ATTR_SPLITS = "splits"  # {split name: "train" | "test"}
ATTR_LABELS = "labels"  # extra label sets: {set name: class index}
ATTR_LABEL_NAMES = "label_names"
ATTR_ANNOTATIONS = "annotations_fingerprint"  # the root's dataset.annotations.fingerprint its labels come from
ATTR_FRAMES = "frames"
ATTR_ERROR = "error"  # why a failed video failed
ATTR_RGB_CODEC = "rgb_codec"

# The codec of every rgb_stream (the group's and the extraction settings' rgb_codec attribute).
RGB_CODEC = "mpeg2video"
# A Zarr v3 node's metadata file; a video group's is written last (its status marker).
ZARR_JSON = "zarr.json"

VIDEOS_GROUP = "videos"
# What a video id (the name of its folder under videos/) may look like: the characters
# ``comode.extract.datasets.safe_video_id`` produces, not starting with a dot (no ".", "..",
# hidden names) and short enough for any file system's name limit.  An allowlist, not a
# blocklist: no separator ("/", "\\"), drive (":"), NUL, control or non-ASCII character can
# reach a path, whatever annotation files, the index or a journal say.
SAFE_VIDEO_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
# The index of the videos (derived data, comode.store.index): a group beside videos/.
INDEX_GROUP = "index"
INDEX_FORMAT = "comode.index/1"
INDEX_SNAPSHOT = "snapshot.json"
INDEX_CLAIMS = "claims"
# Each write of a video group has its own id (a group attribute, schema_minor >= 3): the
# index names writes by it.
WRITE_ID = "write_id"
# The group attributes an index entry carries: what listing and selecting videos needs
# (status, split membership, labels, frame count, the failure reason), not the whole group.
INDEXED_ATTRS = (
    ATTR_STATUS,
    ATTR_SOURCE,
    ATTR_LABEL,
    ATTR_CLASS_NAME,
    ATTR_SPLITS,
    ATTR_LABELS,
    ATTR_LABEL_NAMES,
    ATTR_FRAMES,
    ATTR_ERROR,
    ATTR_ANNOTATIONS,
)
# The attributes derived from the annotations: what relabelling a group rewrites.
LABEL_ATTRS = (ATTR_LABEL, ATTR_CLASS_NAME, ATTR_SPLITS, ATTR_LABELS, ATTR_LABEL_NAMES, ATTR_ANNOTATIONS)

# Per-video status values.  A group whose status is not COMPLETE holds no usable data:
# a missing chunk of an unfinished group would otherwise read back as zeros ("no motion").
STATUS_WRITING = "writing"
STATUS_COMPLETE = "complete"
STATUS_FAILED = "failed"

# Array names (the contract).
FRAME_TYPES = "frame_types"
IFRAMES = "iframes"
IFRAME_INDEX = "iframe_index"
MVS = "mvs"
RGB_STREAM = "rgb_stream"
RGB_STREAM_OFFSETS = "rgb_stream_offsets"
ARRAY_NAMES = (FRAME_TYPES, IFRAMES, IFRAME_INDEX, MVS, RGB_STREAM, RGB_STREAM_OFFSETS)
# Arrays a complete group may lack (stores made before their schema_minor have none):
# timestamps since 2, mv_valid since 4.
TIMESTAMPS = "timestamps"
MV_VALID = "mv_valid"
OPTIONAL_ARRAY_NAMES = (TIMESTAMPS, MV_VALID)

# Each array's dimension names (Zarr v3 ``dimension_names``, schema_minor >= 4): xarray and
# other labelled-array readers need them.  One name per axis length: arrays that share a
# name share its length in a group (``frame`` is T everywhere, ``rgb_stream_offsets`` has
# T + 1 entries and so its own name).
DIMENSION_NAMES = {
    FRAME_TYPES: ("frame",),
    IFRAMES: ("iframe", "rgb_y", "rgb_x", "rgb_channel"),
    IFRAME_INDEX: ("iframe",),
    MVS: ("frame", "component", "cell_y", "cell_x"),
    MV_VALID: ("frame", "cell_y", "cell_x"),
    RGB_STREAM: ("stream_byte",),
    RGB_STREAM_OFFSETS: ("frame_edge",),
    TIMESTAMPS: ("frame",),
}

# Motion vectors are stored in this fixed sub-pixel unit: value / MV_UNITS_PER_PIXEL = pixels
# of the MV-stream frame (the extraction width x height, e.g. 340x256).
MV_UNITS_PER_PIXEL = 4
MV_CHANNELS = ("x", "y")

# Chunking, chosen by measurement (docs/store.md, "Layout choices"): every array is ONE
# file, so a video costs a handful of files: a single chunk for the short arrays
# (frame_types, iframe_index, offsets, timestamps), else a shard of inner chunks sized for
# the training access pattern: an 8-frame MV window touches one or two MV chunks (mv_valid
# is chunked like mvs), a GOP of the RGB stream one or two 64 KiB chunks.  I-frames go 4 to a chunk:
# on the shared real clips that stored fewer bytes per frame than one per chunk, for a
# slightly slower read of one I-frame (docs/performance.md).
MVS_CHUNK_FRAMES = 32
IFRAMES_CHUNK = 4
RGB_STREAM_CHUNK_BYTES = 64 * 1024
# Rows per inner chunk of the arrays stored as a shard of chunks (the others are one chunk
# holding every row); readers accept only these (comode.store.bounds).  I-frames were one
# to a chunk before commit 97c6b82: stores written then read as they are.
CHUNK_ROWS = {
    MVS: (MVS_CHUNK_FRAMES,),
    MV_VALID: (MVS_CHUNK_FRAMES,),
    IFRAMES: (IFRAMES_CHUNK, 1),
    RGB_STREAM: (RGB_STREAM_CHUNK_BYTES,),
}
ARRAY_DTYPES = {
    FRAME_TYPES: "uint8",
    IFRAMES: "uint8",
    IFRAME_INDEX: "int32",
    MVS: "int16",
    MV_VALID: "uint8",
    RGB_STREAM: "uint8",
    RGB_STREAM_OFFSETS: "int64",
    TIMESTAMPS: "int64",
}

# The most frames a video of a store may have.  The store records no bound of its own on a
# video's length, and readers load a few arrays of a video whole (frame types, I-frame
# index, packet offsets, timestamps: at most 21 bytes a frame), so a store from elsewhere
# whose group says ``frames=400000000`` would size those reads.  2**22 frames is 19 hours
# at 60 fps, longer than any video of a clip-learning dataset (and than an extraction
# finishes within its default time limit); at that length the whole-array reads of a
# video take 88 MB.  A longer group is refused by readers and ``store validate``.
MAX_FRAMES = 1 << 22
