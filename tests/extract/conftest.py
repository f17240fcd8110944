"""The format matrix: small real-world-like variants of one shared clip, made with FFmpeg at
test time (codecs, containers, time bases, VFR, rotations, bit depths, odd sizes, stream
layouts).  Nothing is stored in git; each variant is about a second of video.

``reference_frames`` is what "the source's frame count" means for extraction: the frames a
decoder outputs for the video stream ffmpeg picks (the first one that is not a cover
picture), counted with PyAV (the FFmpeg libraries in the Python package), and, where
``ffprobe`` is installed, checked against ``ffprobe -count_frames``.  Frames an MP4 edit list
cuts (decoded, then discarded) are not counted, by both.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import av
import imageio_ffmpeg
import pytest

from tests.commands import run_ffmpeg

# The clip every variant is made from (340x256 H.264, 28 fps, real footage): 1.2 s of it
# (34 frames), with FFmpeg's moving test pattern and frame counter in a corner, so that no
# two frames are alike (the clip repeats some) and a stored frame is matched to its source
# frame without doubt.  Lossless (FFV1).
SOURCE_CLIP = "mmaction2_arm_wrestling.mp4"
_BASE = (
    "-ss 2 -t 1.2 -i {clip} -f lavfi -i testsrc2=size=96x72:rate=28 "
    "-filter_complex [0:v][1:v]overlay=shortest=1 -c:v ffv1 -an {out}"
)
_SMALL = "scale=160:120"


@dataclass(frozen=True)
class Variant:
    """One generated file: ``steps`` are ffmpeg argument lists run in order; in them
    ``{src}`` expands to the input of the base clip (make_base), ``{tmp}`` to a scratch file of the
    same extension and ``{out}`` to the variant's file.  ``rotation``: the display rotation
    (ffprobe's degrees, counter-clockwise) the file carries; ``what``: why it is here."""

    name: str
    steps: tuple[tuple[str, ...], ...]
    what: str
    rotation: float = 0.0


def _v(name: str, what: str, *steps: str, rotation: float = 0.0) -> Variant:
    return Variant(name, tuple(tuple(step.split()) for step in steps), what, rotation)


_X264 = "-c:v libx264 -preset veryfast -pix_fmt yuv420p"
_SINE = "-f lavfi -i sine=frequency=300:duration=1.3"

VARIANTS = (
    _v(
        "phone_h264_vfr_tb26777_audio_first.mp4",
        "issue 14: 640x480 H.264, audio as stream 0, time base 1/26777, ~26.8 fps with 0-5.6 ms of jitter "
        "(two frames fell on one tick of the MPEG-2 encoder's clock: 'Invalid pts')",
        f"{_SINE} {{src}} -map 0:a -map 1:v -c:a aac -vf scale=640:480,settb=1/26777,setpts=N*1000+150*random(0) "
        f"-fps_mode passthrough -enc_time_base:v 1/26777 {_X264} -video_track_timescale 26777 {{out}}",
    ),
    _v(
        "h264_bframes_editlist.mp4",
        "B-frames: the MP4 edit list shifts the decode delay away",
        f"{{src}} -vf {_SMALL} {_X264} -bf 3 -g 24 -an {{out}}",
    ),
    _v(
        "h264_trimmed_mid_gop.mp4",
        "stream copy cut at 0.5 s inside a GOP: the edit list makes the decoder drop the leading frames",
        f"{{src}} -vf {_SMALL} {_X264} -bf 2 -g 60 -an {{tmp}}",
        "-ss 0.5 -i {tmp} -c copy {out}",
    ),
    _v(
        "rotated_90.mp4",
        "display matrix 90 degrees (counter-clockwise)",
        f"{{src}} -vf {_SMALL} {_X264} -an {{tmp}}",
        "-display_rotation 90 -i {tmp} -c copy {out}",
        rotation=90.0,
    ),
    _v(
        "rotated_180.mov",
        "display matrix 180 degrees",
        f"{{src}} -vf {_SMALL} {_X264} -an {{tmp}}",
        "-display_rotation 180 -i {tmp} -c copy {out}",
        rotation=180.0,
    ),
    _v(
        "iphone_hevc_rotated_270_audio_first.mov",
        "HEVC in MOV, audio first, display matrix -90 degrees (a portrait phone video)",
        "{src} -vf scale=320:240 -c:v libx265 -preset ultrafast -x265-params log-level=error -tag:v hvc1 -an {tmp}",
        f"{_SINE} -display_rotation -90 -i {{tmp}} -map 0:a -map 1:v -c:v copy -c:a aac {{out}}",
        rotation=-90.0,
    ),
    _v(
        "hevc_main10_open_gop.mkv",
        "HEVC 10-bit, open GOPs, B-frames",
        f"{{src}} -vf {_SMALL} -c:v libx265 -preset ultrafast -pix_fmt yuv420p10le "
        "-x265-params log-level=error:open-gop=1:keyint=12:bframes=3 -an {out}",
    ),
    _v(
        "hevc_open_gop_cut.mkv",
        "HEVC open GOPs cut by stream copy at a CRA picture: its leading (RASL) "
        "pictures reference the cut-off GOP and are skipped by the decoder",
        f"{{src}} -vf {_SMALL} -c:v libx265 -preset ultrafast -x265-params log-level=error:open-gop=1:keyint=12:"
        "min-keyint=12:bframes=3:scenecut=0 -an {tmp}",
        "-i {tmp} -ss 0.45 -c copy {out}",
    ),
    _v(
        "mpeg2_open_gop_cut.ts",
        "MPEG-2 open GOPs with B-frames in MPEG-TS, cut 30% into its bytes",
        f"{{src}} -vf {_SMALL} -c:v mpeg2video -bf 2 -g 12 -q:v 5 -an {{tmp}}",
        "cut-ts 0.3 {tmp} {out}",
    ),
    _v(
        "vp8_altref.webm",
        "VP8 with hidden alt-ref frames (packets that decode to no frame)",
        f"{{src}} -vf {_SMALL} -c:v libvpx -deadline good -cpu-used 5 -auto-alt-ref 1 -lag-in-frames 16 -b:v 300k "
        "-an {out}",
    ),
    _v(
        "vp9_yuv444.webm",
        "VP9 profile 1 (4:4:4)",
        f"{{src}} -vf {_SMALL} -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -pix_fmt yuv444p -b:v 300k -an {{out}}",
    ),
    _v(
        "av1_svt.mkv",
        "AV1 (SVT-AV1)",
        "{src} -vf scale=160:128 -c:v libsvtav1 -preset 12 -pix_fmt yuv420p -svtav1-params loglevel=0 -an {out}",
    ),
    _v(
        "av1_aom_10bit.mp4",
        "AV1 (libaom) 10-bit in MP4",
        f"{{src}} -vf {_SMALL} -c:v libaom-av1 -usage realtime -cpu-used 8 -pix_fmt yuv420p10le -an {{out}}",
    ),
    _v(
        "mpeg4_bframes.avi",
        "MPEG-4 Part 2 with B-frames in AVI",
        f"{{src}} -vf {_SMALL} -c:v mpeg4 -q:v 5 -bf 2 -an {{out}}",
    ),
    _v(
        "mjpeg_yuvj422.avi",
        "Motion JPEG, full-range 4:2:2",
        f"{{src}} -vf {_SMALL} -c:v mjpeg -pix_fmt yuvj422p -q:v 5 -an {{out}}",
    ),
    _v(
        "prores_422hq_10bit.mov",
        "ProRes 422 HQ, 10-bit 4:2:2",
        f"{{src}} -vf {_SMALL} -c:v prores_ks -profile:v 3 -pix_fmt yuv422p10le -an {{out}}",
    ),
    _v(
        "prores_4444_alpha.mov",
        "ProRes 4444 with alpha",
        f"{{src}} -vf {_SMALL} -c:v prores_ks -profile:v 4 -pix_fmt yuva444p10le -an {{out}}",
    ),
    _v(
        "h264_interlaced_tff.ts",
        "interlaced H.264 (MBAFF, top field first) in MPEG-TS, with audio",
        f"{_SINE} {{src}} -map 1:v -map 0:a -vf {_SMALL},setfield=tff -c:v libx264 -preset veryfast "
        "-flags +ildct+ilme -x264-params tff=1 -pix_fmt yuv420p -c:a mp2 {out}",
    ),
    _v(
        "mpeg2_interlaced_bframes.mpg",
        "interlaced MPEG-2 with B-frames in MPEG-PS",
        "{src} -vf scale=352:288,setfield=tff -c:v mpeg2video -flags +ildct+ilme -bf 2 -q:v 5 -an {out}",
    ),
    _v(
        "h264_flv.flv",
        "H.264 + AAC in FLV (millisecond time base)",
        f"{_SINE} {{src}} -map 1:v -map 0:a -vf {_SMALL} {_X264} -c:a aac {{out}}",
    ),
    _v(
        "h264_negative_start.mkv",
        "timestamps starting at -0.5 s",
        f"{{src}} -vf {_SMALL} {_X264} -an -output_ts_offset -0.5 -avoid_negative_ts disabled {{out}}",
    ),
    _v(
        "h264_odd_317x179_yuv444.mkv",
        "odd frame size, 4:4:4",
        "{src} -vf scale=317:179 -c:v libx264 -preset veryfast -pix_fmt yuv444p -an {out}",
    ),
    _v(
        "h264_high422_10bit.mkv",
        "H.264 High 4:2:2 10-bit",
        f"{{src}} -vf {_SMALL} -c:v libx264 -preset veryfast -pix_fmt yuv422p10le -an {{out}}",
    ),
    _v(
        "two_video_streams.mkv",
        "two video streams (a 10 fps 96x72 one first): the first is extracted",
        "{src} -filter_complex [0:v]split[a][b];[a]scale=96:72,fps=10[s];[b]scale=160:120[l] "
        f"-map [s] -map [l] {_X264} {{out}}",
    ),
    _v(
        "cover_art.mp4",
        "an MP4 with a cover picture (attached PNG) beside its video",
        f"{{src}} -vf {_SMALL} {_X264} -an {{tmp}}",
        "-f lavfi -i testsrc2=size=64x64 -frames:v 1 -c:v png -f image2 {tmp}.png",
        "-i {tmp} -i {tmp}.png -map 0 -map 1 -c copy -disposition:v:1 attached_pic {out}",
    ),
    _v(
        "h264_starts_mid_gop.ts",
        "MPEG-TS cut 20% into its bytes: it starts inside a GOP, not on a keyframe",
        f"{{src}} -vf {_SMALL} {_X264} -bf 2 -g 12 -an {{tmp}}",
        "cut-ts 0.2 {tmp} {out}",
    ),
    _v(
        "h264_size_change.ts",
        "frame size changes mid-stream (two spliced TS files: 160x120 then 128x96)",
        f"{{src}} -vf {_SMALL} {_X264} -an {{tmp}}",
        f"-ss 0.5 {{src}} -vf scale=128:96 {_X264} -an {{tmp}}.b.ts",
        "concat {tmp} {tmp}.b.ts {out}",
    ),
    _v(
        "ffv1_repeated_timestamps.mkv",
        "every timestamp used twice (Matroska allows it)",
        f"{{src}} -vf {_SMALL},setpts=floor(N/2)*0.08/TB -fps_mode passthrough -c:v ffv1 -an {{out}}",
    ),
    _v(
        "h264_annexb.h264",
        "raw H.264 elementary stream: no container, no timestamps",
        f"{{src}} -vf {_SMALL} {_X264} -bf 2 -an -f h264 {{out}}",
    ),
    _v("mpeg1_ps.mpg", "MPEG-1 video in MPEG-PS", f"{{src}} -vf {_SMALL} -c:v mpeg1video -q:v 5 -an {{out}}"),
    _v(
        "wmv2.wmv",
        "Windows Media Video 8 in ASF, with WMA audio",
        f"{_SINE} {{src}} -map 1:v -map 0:a -vf {_SMALL} -c:v wmv2 -q:v 5 -c:a wmav2 {{out}}",
    ),
    _v("theora.ogv", "Theora in Ogg", f"{{src}} -vf {_SMALL} -c:v libtheora -q:v 5 -an {{out}}"),
    _v("animated.gif", "an animated GIF (palette frames)", "{src} -vf scale=96:72 {out}"),
    _v("h264_5fps.mp4", "5 fps (MPEG-2 has no such rate)", f"{{src}} -vf {_SMALL},fps=5 {_X264} -an {{out}}"),
    _v("h264_120fps.mkv", "120 fps", f"{{src}} -vf {_SMALL},fps=120 {_X264} -an {{out}}"),
    _v("qtrle_rgb24.mov", "QuickTime Animation, RGB", "{src} -vf scale=96:72 -c:v qtrle -an {out}"),
    _v("ffv1_gray16.mkv", "lossless 16-bit grey", f"{{src}} -vf {_SMALL} -c:v ffv1 -pix_fmt gray16le -an {{out}}"),
    _v(
        "h263_qcif.3gp",
        "H.263 QCIF in 3GP with AMR audio",
        f"{_SINE} {{src}} -map 1:v -map 0:a -vf scale=176:144 -c:v h263 -q:v 5 -c:a libopencore_amrnb -ar 8000 "
        "-ac 1 {out}",
    ),
    _v(
        "avchd_h264_ac3.m2ts",
        "camcorder-style BDAV MPEG-TS (192-byte packets), interlaced H.264 with AC-3",
        f"{_SINE} {{src}} -map 1:v -map 0:a -vf scale=320:240,setfield=tff -c:v libx264 -preset veryfast "
        "-flags +ildct+ilme -pix_fmt yuv420p -c:a ac3 -f mpegts -mpegts_m2ts_mode 1 {out}",
    ),
    _v(
        "dv_pal.dv",
        "DV (PAL 720x576, interlaced, 25 fps)",
        "{src} -vf scale=720:576,fps=25 -c:v dvvideo -pix_fmt yuv420p -an {out}",
    ),
    _v(
        "mpeg2_dvd.vob",
        "MPEG-2 in a DVD VOB with AC-3 first",
        f"{_SINE} {{src}} -map 0:a -map 1:v -vf scale=720:480 -c:v mpeg2video -q:v 5 -bf 2 -c:a ac3 -f vob {{out}}",
    ),
    _v(
        "mpeg2_broadcast.mxf",
        "MPEG-2 in MXF (broadcast)",
        "{src} -vf scale=720:576,fps=25 -c:v mpeg2video -q:v 5 -bf 2 -an {out}",
    ),
    _v(
        "av1_raw.ivf",
        "AV1 in IVF (raw VPx/AV1 framing)",
        "{src} -vf scale=160:128 -c:v libsvtav1 -preset 12 -svtav1-params loglevel=0 -an {out}",
    ),
    _v(
        "h264_pts_wrap.ts",
        "MPEG-TS whose 33-bit timestamps wrap around mid-file",
        f"{{src}} -vf {_SMALL} {_X264} -an -output_ts_offset 95443.3 {{out}}",
    ),
)


def _ffmpeg(args: list[str]) -> None:
    run_ffmpeg(*args, exe=imageio_ffmpeg.get_ffmpeg_exe())


def make_base(clip: Path, path: Path) -> Path:
    """The source of every variant (see SOURCE_CLIP), written to ``path`` (.mkv)."""
    _ffmpeg([str(clip) if part == "{clip}" else part.format(out=path) for part in _BASE.split()])
    return path


def make_variant(variant: Variant, base: Path, folder: Path) -> Path:
    """Write ``variant`` into ``folder`` (made from ``base``, see make_base) and return its path."""
    out = folder / variant.name
    tmp = folder / f"_{variant.name}.tmp{out.suffix}"
    names = {"{src}": ["-i", str(base)]}
    try:
        for step in variant.steps:
            args = [
                part
                for token in step
                for part in (names[token] if token in names else [token.format(tmp=tmp, out=out)])
            ]
            if args[0] == "cut-ts":  # keep the tail of a TS file, from a packet boundary
                data = Path(args[2]).read_bytes()
                start = int(len(data) * float(args[1])) // 188 * 188
                Path(args[3]).write_bytes(data[start:])
            elif args[0] == "concat":  # splice TS files byte for byte
                Path(args[-1]).write_bytes(b"".join(Path(p).read_bytes() for p in args[1:-1]))
            else:
                _ffmpeg(args)
    finally:
        for scratch in folder.glob(f"_{variant.name}.tmp*"):
            scratch.unlink()
    return out


def _first_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    return next(s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic)


def pyav_frame_count(path: Path) -> int:
    """Frames the decoder outputs for the stream ffmpeg extracts (0:V:0)."""
    with av.open(str(path)) as container:
        stream = _first_video_stream(container)
        return sum(1 for _ in container.decode(stream))


def ffprobe_frame_count(path: Path) -> int | None:
    """``ffprobe -count_frames`` of that stream, or None without ffprobe."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    with av.open(str(path)) as container:
        index = _first_video_stream(container).index
    out = subprocess.run(
        [
            ffprobe,
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            str(index),
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    return int(out.split()[0].strip(","))  # MPEG-TS lists the stream again under its program


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``variant``: every variant; ``rotated_variant``: those with a display rotation
    (test modules cannot import this file: pytest runs in importlib mode)."""
    for argument, chosen in (("variant", VARIANTS), ("rotated_variant", [v for v in VARIANTS if v.rotation])):
        if argument in metafunc.fixturenames:
            metafunc.parametrize(argument, chosen, ids=[v.name for v in chosen])


@dataclass(frozen=True)
class FrameCounters:
    pyav: Callable[[Path], int] = staticmethod(pyav_frame_count)
    ffprobe: Callable[[Path], int | None] = staticmethod(ffprobe_frame_count)


@pytest.fixture(scope="session")
def frame_counters() -> FrameCounters:
    return FrameCounters()


@pytest.fixture(scope="session")
def variant_folder(tmp_path_factory, real_dir) -> Callable[[], tuple[Path, dict[str, Variant]]]:
    """(folder holding every variant under ``formats/``, name -> Variant), made once."""
    made: list[tuple[Path, dict[str, Variant]]] = []

    def make() -> tuple[Path, dict[str, Variant]]:
        if not made:
            root = tmp_path_factory.mktemp("format_matrix")
            folder = root / "formats"
            folder.mkdir()
            base = make_base(real_dir / SOURCE_CLIP, tmp_path_factory.mktemp("format_base") / "base.mkv")
            for variant in VARIANTS:
                make_variant(variant, base, folder)
            made.append((root, {v.name: v for v in VARIANTS}))
        return made[0]

    return make
