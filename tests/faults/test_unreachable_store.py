"""An object store that cannot be reached: one line saying what to fix, exit code 2 (issue 25).

Real ``comode`` processes against a real S3 server (moto's, on 127.0.0.1) with no
credentials in their environment, against a closed loopback port, and through a loopback
proxy that drops every connection (and refuses new ones) once the command asks for a
given object, after it opened the store.  Before, the first gave a ``NoCredentialsError``
traceback and the second an ``EndpointConnectionError`` traceback (the issue saw "no Zarr
group here"), both exit code 1; the third a botocore traceback, or a wait of about 15
minutes (tensorstore's own retries) ended by "data unreadable (a chunk fails its checksum ...)".
"""

from __future__ import annotations

import select
import socket
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

from tests.commands import comode_command, extract_folder_args

pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")

STORE = "s3://comode-test/x.zarr"  # the s3_bucket fixture's bucket


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _commands(tmp_path, tiny_folder_factory) -> list[list[str]]:
    """A reader (``store info``) and the writer (``extract``) of the store."""
    folder = tiny_folder_factory(tmp_path / "videos", 1, frames=5)
    return [comode_command("store", "info", STORE), comode_command(*extract_folder_args(folder, STORE, "--workers", 0))]


def _one_line_error(command: list[str], env: dict[str, str], cwd) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=cwd)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def test_missing_credentials_are_named_in_one_line(tmp_path, s3_bucket, tiny_folder_factory):
    env = s3_bucket.environment(tmp_path, credentials=False)
    for command in _commands(tmp_path, tiny_folder_factory):
        error = _one_line_error(command, env, tmp_path)
        assert error.startswith(f"error: {STORE}: no S3 credentials found"), error
        assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in error


def test_an_unreachable_endpoint_is_named_in_one_line_not_no_zarr_group(tmp_path, s3_bucket, tiny_folder_factory):
    closed = f"http://127.0.0.1:{_closed_port()}"
    env = s3_bucket.environment(tmp_path, endpoint=closed)
    for command in _commands(tmp_path, tiny_folder_factory):
        error = _one_line_error(command, env, tmp_path)
        assert error.startswith(f"error: {STORE}: cannot reach the S3 endpoint {closed} (ConnectionRefusedError"), error
        assert "no Zarr group" not in error


# ------------------------------------------------------------------ the connection lost mid-run

SECOND = "right__video00.mkv"  # two_video_store's second video: the first is read whole before the loss


@pytest.fixture(scope="module")
def remote_store(s3_bucket, two_video_store) -> str:
    """two_video_store's store copied onto the S3 server."""
    return s3_bucket.upload(two_video_store[1], "lost.zarr")


class _CuttingProxy:
    """A loopback TCP proxy to ``endpoint`` that, from the first request whose bytes hold
    ``marker`` on, drops every connection and refuses new ones: the server gone mid-run."""

    def __init__(self, endpoint: str, marker: str) -> None:
        target = urlsplit(endpoint)
        self._target, self._marker = (target.hostname, target.port), marker.encode()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.cut = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed: the cut
                return
            server = socket.create_connection(self._target)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        other = {client: server, server: client}
        try:
            while not self.cut.is_set():
                for source in select.select(list(other), [], [], 0.1)[0]:
                    data = source.recv(1 << 16)
                    if source is client and self._marker in data:
                        self.close()  # the request is never answered
                    if not data or self.cut.is_set():
                        return
                    other[source].sendall(data)
        except OSError:
            pass
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self.cut.set()
        self._listener.close()
        for connection in self._sockets:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@pytest.mark.parametrize(
    "command, marker, reading",
    [
        # tensorstore's read of a chunk; zarr-python's (s3fs) read of an array's metadata
        (("store", "validate", "--data"), f"videos/{SECOND}/rgb_stream/c/", SECOND),
        (("store", "validate"), f"videos/{SECOND}/frame_types/zarr.json", SECOND),
        (("store", "info"), "index/snapshot.json", None),  # reads no video
    ],
    ids=["validate-data-chunk", "validate-array-metadata", "info-index"],
)
def test_a_connection_lost_after_the_opening_is_named_in_one_line(
    tmp_path, s3_bucket, remote_store, command, marker, reading
):
    proxy = _CuttingProxy(s3_bucket.endpoint, marker)
    try:
        error = _one_line_error(
            comode_command(*command, remote_store), s3_bucket.environment(tmp_path, endpoint=proxy.url), tmp_path
        )
    finally:
        proxy.close()
    where = f" while reading video '{reading}'" if reading else ""
    assert error.startswith(f"error: {remote_store}: cannot reach the S3 endpoint {proxy.url} ("), error
    assert error.endswith(f"){where}; check AWS_ENDPOINT_URL and the network"), error
