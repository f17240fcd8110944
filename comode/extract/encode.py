"""Re-encode a source video with FFmpeg into the two streams extraction needs.

One ffmpeg process per video decodes the source once and writes, into one NUT file:
  stream 0: the MV stream, ``codec`` at width x height, GOP ``gop``, no B-frames;
  stream 1: the RGB stream, MPEG-2 at rgb_width x rgb_height, same GOP (stored for training);
and writes each frame's source timestamp (:mod:`comode.extract.frametimes`).

The invariant (schemas/README.md): every frame the decoder outputs from the source's video
stream (the first one that is not a cover picture) becomes one frame of both streams, in
the decoder's output order, whatever its timestamps.  So the frames are renumbered 0, 1,
2, ... on a fixed 1/25 s clock before they reach the encoders: FFmpeg's MPEG encoders
refuse a frame whose pts, rescaled to their time base, is not above the last one
("Invalid pts (7) <= last (7)"), which irregular, repeated or backward source timestamps
(phones, screen recorders, broken muxers) produce.

Why the ffmpeg command line and not PyAV in-process (measured, README "Extraction"):
the CLI re-encode ran clearly faster than the same PyAV decode/scale/encode loop, and a
separate process is the isolation we need anyway: a source that makes the decoder hang
or crash only kills that process, which we time-limit.  The binary is the static one from
the ``imageio-ffmpeg`` wheel (a pinned dependency) unless ``COMODE_FFMPEG`` names another,
so the same version (and the same motion vectors) comes out on every machine.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import signal
import stat
import subprocess
import sys
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

import imageio_ffmpeg

from comode.extract.frametimes import ffmpeg_writes_frame_stats, read_frame_times, stats_args
from comode.extract.settings import ExtractSettings
from comode.extract.sourceinfo import SourceInfo, parse_source_info
from comode.store import layout


class ExtractionFailure(Exception):
    """A video could not be extracted; ``str(error)`` is the reason recorded in the store."""


@lru_cache(maxsize=None)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: $COMODE_FFMPEG, else the imageio-ffmpeg static build."""
    configured = os.environ.get("COMODE_FFMPEG")
    if configured:
        return configured
    return imageio_ffmpeg.get_ffmpeg_exe()


@lru_cache(maxsize=None)
def ffmpeg_version() -> str:
    output = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-version"], capture_output=True, text=True, timeout=30
    ).stdout
    first = output.splitlines()[0] if output else "unknown"
    return first.removeprefix("ffmpeg version ").split(" Copyright")[0].strip()


# The clock the renumbered frames run on (frame t at t/25 s).  Any fixed rate works; 25 is
# one MPEG-2 knows.  The encoders get the same time base (-enc_time_base), so one frame is
# one tick whatever rate ffmpeg would have guessed from the source (a coarser guess, e.g.
# 24000/1001 for a 10 fps source, would merge ticks again).
FRAME_CLOCK = "1/25"


def gop_encoder_args(spec: str, codec: str, gop: int, quality: int) -> list[str]:
    """The encoder, one thread, a strictly regular GOP without B-frames and a fixed quantiser,
    for the output streams stream specifier ``spec`` selects (e.g. ``:v:0``).  Shared with the
    bare re-encode ``make bench`` compares extraction with (benchmarks/bench_extract.py)."""
    return [
        f"-c{spec}",
        codec,
        f"-threads{spec}",
        "1",
        f"-g{spec}",
        str(gop),
        f"-bf{spec}",
        "0",
        # Scene-change detection would insert extra I-frames: keep the GOP strictly regular
        # so I-frame positions are known and identical in both streams.
        f"-sc_threshold{spec}",
        "1000000000",
        f"-q{spec}",
        str(quality),
    ]


def _encoder_args(stream: int, codec: str, gop: int, quality: int) -> list[str]:
    """Encoder options for output stream ``stream`` (explicit specifiers: an option without
    one would apply to every output stream, and the last occurrence would win)."""
    spec = f":v:{stream}"
    return [
        *gop_encoder_args(spec, codec, gop, quality),
        f"-pix_fmt{spec}",
        "yuv420p",
        f"-enc_time_base{spec}",
        FRAME_CLOCK,
    ]


def _low_delay_args(stream: int, codec: str) -> list[str]:
    """Mark an MPEG-2 stream low-delay (its sequence extension's low_delay bit; legal only
    without B-frames, which we never have).  Without it every MPEG-2 decoder holds each
    frame back until the next one arrives and hands out the last frame only when flushed,
    and FFmpeg attaches no motion-vector side data to a flushed frame: a reader that cannot
    set the decoder's low_delay flag itself (mv-extractor) lost the last frame's vectors
    (issue 18).  The frames are encoded exactly as before.  MPEG-4 Part 2 without B-frames
    is low-delay already (its VOL header says so)."""
    return [f"-flags:v:{stream}", "+low_delay"] if codec == "mpeg2video" else []


def _filter_graph(settings: ExtractSettings) -> str:
    """Fit to the MV-stream size, renumber the frames on FRAME_CLOCK, then split into the MV
    stream and the (smaller) RGB stream.

    ``0:V:0``: the first video stream that is not a cover picture (an MP4's attached
    thumbnail would otherwise be taken for a one-frame video)."""
    w, h = settings.width, settings.height
    if settings.resize == "crop":
        fit = f"scale={w}:{h}:force_original_aspect_ratio=increase,crop={w}:{h}"
    else:
        fit = f"scale={w}:{h}"
    return (
        f"[0:V:0]{fit},setsar=1,format=yuv420p,settb={FRAME_CLOCK},setpts=N,split[mv][rgb];"
        f"[rgb]scale={settings.rgb_width}:{settings.rgb_height}:flags=area[rgbout]"
    )


def frame_times_path(output: Path) -> Path:
    """Where the re-encode writing ``output`` writes its frame times (comode.extract.frametimes)."""
    return output.with_name(f"{output.name}.frametimes")


def reencode_command(source: Path, output: Path, settings: ExtractSettings) -> list[str]:
    """The ffmpeg command line (its encoder options, :func:`gop_encoder_args`, are also those
    of ``make bench``'s baseline, a bare re-encode to the MV stream)."""
    frame_times = stats_args(0, frame_times_path(output)) if ffmpeg_writes_frame_stats(ffmpeg_exe()) else []
    return [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "info",
        "-y",
        "-threads",
        "1",
        "-filter_threads",
        "1",
        "-filter_complex_threads",
        "1",
        # A source whose frame size or pixel format changes mid-stream (stream splices,
        # adaptive-bitrate captures) must not rebuild the filter graph: that would restart
        # setpts=N at 0 and the encoder would refuse the repeated pts.  The scale filter at
        # the graph's head adapts to the new frame size by itself.
        "-reinit_filter",
        "0",
        "-i",
        str(source),
        "-an",
        "-sn",
        "-dn",
        # One output frame per decoded source frame: no duplication or dropping to a
        # constant rate (the frames are renumbered; frame numbers are what we use).
        "-fps_mode",
        "passthrough",
        "-filter_complex",
        _filter_graph(settings),
        "-map",
        "[mv]",
        *_encoder_args(0, settings.codec, settings.gop, settings.quality),
        *_low_delay_args(0, settings.codec),
        "-map",
        "[rgbout]",
        *_encoder_args(1, layout.RGB_CODEC, settings.gop, settings.rgb_quality),
        *frame_times,
        "-f",
        "nut",
        str(output),
    ]


def _failure_reason(stderr: str, returncode: int, settings: ExtractSettings | None = None) -> str:
    """A one-line reason from ffmpeg's log: the known cases by name, else its last error line."""
    lowered = stderr.lower()
    limit = settings.memory_limit_mb if settings is not None else 0
    if "cannot allocate memory" in lowered or "out of memory" in lowered:
        if limit:
            return (
                f"out of memory: ffmpeg exceeded the per-video limit of {limit} MiB "
                "(memory_limit_mb; a huge frame size or a hostile file)"
            )
        return "out of memory: ffmpeg could not allocate memory"
    if returncode < 0:
        # Under RLIMIT_AS an allocation failure can also surface as a crash (a NULL the
        # decoder did not check), so a crash names the limit too.
        also = f", or it ran out of its {limit} MiB memory limit" if limit else ""
        return f"ffmpeg crashed (killed by {_signal_name(-returncode)}): decoder crash on this input{also}"
    known = [
        ("matches no streams", "no video stream in file"),
        ("does not contain any stream", "no video stream in file"),
        # ffmpeg's MP4/MOV index (moov) is missing: a truncated file, or noise named .mp4.
        ("moov atom not found", "not a readable video (moov atom not found: truncated MP4/MOV, or not one)"),
        ("invalid data found when processing input", "not a readable video (invalid data)"),
        ("no such file or directory", "file not found"),
        ("permission denied", "permission denied"),
        ("too many levels of symbolic links", "symbolic link loop"),
    ]
    for needle, reason in known:
        if needle in lowered:
            return reason
    return f"ffmpeg exited with code {returncode}: {_last_cause(stderr)[:300]}"


# ffmpeg's own wrap-up after any error ("Conversion failed!", "Error submitting video frame
# to the encoder", "Task finished with error code ...") says nothing about the cause.
_GENERIC = re.compile(
    r"conversion failed|error (submitting|encoding|while|opening output)|terminating thread|"
    r"task finished|nothing was written|error closing",
    re.IGNORECASE,
)
_ERRORISH = re.compile(r"error|invalid|fail|cannot|could not|not supported|unsupported", re.IGNORECASE)
_LOG_PREFIX = re.compile(r"^(\[[^\]]*?) @ 0x[0-9a-f]+\]")  # "[mpeg2video @ 0x55d1]" -> "[mpeg2video]"


def _last_cause(stderr: str) -> str:
    """The last line of ffmpeg's log that names a cause, e.g. "[mpeg2video] Invalid pts (7) <=
    last (7)", else its last line.  The last, not the first: a damaged source logs decoding
    errors that ffmpeg conceals and goes on from; what stopped it comes after them."""
    lines = [_LOG_PREFIX.sub(r"\1]", line.strip()) for line in stderr.splitlines() if line.strip()]
    causes = [line for line in lines if _ERRORISH.search(line) and not _GENERIC.search(line)]
    return causes[-1] if causes else lines[-1] if lines else "no output"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _check_source(source: Path) -> None:
    """Fail fast, with a precise reason, on what ffmpeg would only call "not found"."""
    try:
        status = source.stat()  # follows symlinks: raises on a loop or a dangling link
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ExtractionFailure("symbolic link loop") from None
        if source.is_symlink():
            raise ExtractionFailure(f"broken symbolic link (to {os.readlink(source)!r})") from None
        if error.errno == errno.ENOENT:
            raise ExtractionFailure("file not found (deleted or moved since the dataset was indexed?)") from None
        raise ExtractionFailure(f"cannot read file: {error.strerror}") from None
    if stat.S_ISDIR(status.st_mode):
        raise ExtractionFailure("is a directory, not a video file")
    if not stat.S_ISREG(status.st_mode):
        # A FIFO blocks ffmpeg forever, /dev/zero or /dev/urandom feed it without end: a video
        # file is a regular file (a symlink to one is fine).
        kind = (
            "FIFO"
            if stat.S_ISFIFO(status.st_mode)
            else "socket"
            if stat.S_ISSOCK(status.st_mode)
            else "device"
            if stat.S_ISCHR(status.st_mode) or stat.S_ISBLK(status.st_mode)
            else "special file"
        )
        raise ExtractionFailure(f"not a regular file ({kind})")
    if status.st_size == 0:
        raise ExtractionFailure("empty file (0 bytes)")


# Test-only fault injection (documented in the README, "Faults and hostile input"):
# COMODE_FAULT_INJECT="MODE:GLOB" makes the re-encode of every source whose file name
# matches GLOB misbehave instead of running ffmpeg, to prove the isolation around it:
#   hang   the subprocess sleeps forever (a decoder stuck on a hostile file);
#   crash  the subprocess kills itself with SIGSEGV (a decoder crash).
# Never set it in production: it exists so tests need no hostile file that happens to
# hang or crash today's ffmpeg.
FAULT_INJECT_ENV = "COMODE_FAULT_INJECT"
_FAULT_PROGRAMS = {
    "hang": "import time\nwhile True: time.sleep(1)",
    "crash": "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
}


def injected_fault(source: Path, modes: tuple[str, ...] = tuple(_FAULT_PROGRAMS)) -> str | None:
    """The fault mode $COMODE_FAULT_INJECT asks for on ``source`` (one of ``modes``), or None."""
    for spec in filter(None, os.environ.get(FAULT_INJECT_ENV, "").split(",")):
        mode, _, pattern = spec.partition(":")
        if mode in modes and fnmatch.fnmatch(source.name, pattern or "*"):
            return mode
    return None


def _limited(command: list[str], memory_limit_mb: int) -> list[str]:
    """Run ``command`` under an address-space limit (RLIMIT_AS) through ``sh -c 'ulimit -v'``.

    A shell rather than ``preexec_fn``: Dask workers are multi-threaded, and running Python
    code between fork and exec is unsafe there; ``exec`` keeps ffmpeg as the process that the
    time limit kills and whose exit status we read.  ``MALLOC_ARENA_MAX=1``: glibc reserves
    64 MiB of address space per malloc arena and makes more arenas when ffmpeg's threads
    contend, so without it the address space a video needs varied with machine load
    (measured: a 64x48 video failed under 400 MiB on a busy machine, passed under 240 MiB
    alone); with one arena it is steady (64x48: < 240 MiB; 8K: 300-340 MiB) at no measurable cost.
    """
    if not memory_limit_mb or os.name != "posix":
        return command
    script = 'ulimit -v "$1" && shift && export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-1}" && exec "$@"'
    return ["/bin/sh", "-c", script, "sh", str(memory_limit_mb * 1024), *command]


def reencode(source: Path, output: Path, settings: ExtractSettings) -> SourceInfo:
    """Run the re-encode with the per-video time and memory limits; raise ExtractionFailure with a reason."""
    _check_source(source)
    command = reencode_command(source, output, settings)
    frame_times_path(output).unlink(missing_ok=True)  # never read another run's times
    fault = injected_fault(source)
    if fault:
        command = [sys.executable, "-c", _FAULT_PROGRAMS[fault]]
    try:
        result = subprocess.run(
            _limited(command, settings.memory_limit_mb),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=settings.timeout_s,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ExtractionFailure(
            f"timed out after {settings.timeout_s:g} s (decoder hang or very long video; raise --timeout)"
        ) from None
    if result.returncode != 0:
        raise ExtractionFailure(_failure_reason(result.stderr, result.returncode, settings))
    info = parse_source_info(result.stderr)
    times_file = frame_times_path(output)
    if not times_file.exists():  # an ffmpeg older than 6.0: no frame times, nothing else missing
        return info
    try:
        return replace(info, frame_times=read_frame_times(times_file))
    except ValueError as error:
        raise ExtractionFailure(f"ffmpeg broke the one-frame-per-source-frame rule: {error}") from None
