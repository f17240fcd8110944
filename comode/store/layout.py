"""The store contract: names, dtypes and chunking of everything in a comode store.

This is the only module that spells array and attribute names; everything else goes
through :mod:`comode.store.writer` and :mod:`comode.store.reader`.  The same contract is
written down language-neutrally as JSON Schema in ``comode/store/schemas/``, documented in
the repository's ``schemas/README.md``.

Layout (Zarr v3)::

    store.zarr/
      zarr.json                 root attributes: schema, dataset (classes, splits), extraction settings
      videos/<video_id>/        one group per video, written by exactly one task
        zarr.json               attributes; "status" is written LAST ("complete" marks a usable video)
        frame_types     uint8  (T,)            ASCII 'I'/'P'/'B' per frame, presentation order
        iframes         uint8  (K, h, w, 3)    decoded I-frames, RGB, at the RGB-stream size
        iframe_index    int32  (K,)            frame number of each I-frame
        mvs             int16  (T, 2, gh, gw)  motion vectors on the block grid (x, y), quarter pixels
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
#   3: the index group (index/, comode.store.index) and each video group's write_id.
SCHEMA_MINOR = 3
SCHEMA = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}"

# Attribute names (the contract; schemas/README.md describes each).  Root group:
ATTR_SCHEMA = "schema"
ATTR_DATASET = "dataset"  # {name, root, classes, split_names, missing, label_sets?}
ATTR_EXTRACTION = "extraction"  # the extraction settings the store was made with
DATASET_CLASSES = "classes"
DATASET_SPLIT_NAMES = "split_names"
DATASET_LABEL_SETS = "label_sets"
# Each video group:
ATTR_STATUS = "status"  # written LAST: "complete" marks a usable video
ATTR_SOURCE = "source"
ATTR_LABEL = "label"
ATTR_CLASS_NAME = "class_name"
ATTR_SPLITS = "splits"  # {split name: "train" | "test"}
ATTR_LABELS = "labels"  # extra label sets: {set name: class index}
ATTR_LABEL_NAMES = "label_names"
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
)

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
# Arrays a complete group may lack (written since schema_minor 2; stores made before have none).
TIMESTAMPS = "timestamps"
OPTIONAL_ARRAY_NAMES = (TIMESTAMPS,)

# Motion vectors are stored in this fixed sub-pixel unit: value / MV_UNITS_PER_PIXEL = pixels
# of the MV-stream frame (the extraction width x height, e.g. 340x256).
MV_UNITS_PER_PIXEL = 4
MV_CHANNELS = ("x", "y")

# Chunking, chosen by measurement (see the README's store section): every array is ONE
# shard (one file per array, so a video costs a handful of files) holding inner chunks
# sized for the training access pattern: an 8-frame MV window touches one or two MV
# chunks, a GOP of the RGB stream one or two 64 KiB chunks.  I-frames go 4 to a chunk:
# on the shared real clips that stored fewer bytes per frame than one per chunk, for a
# slightly slower read of one I-frame (docs/performance.md).
MVS_CHUNK_FRAMES = 32
IFRAMES_CHUNK = 4
RGB_STREAM_CHUNK_BYTES = 64 * 1024
