"""An object store that cannot be reached: one line saying what to fix, exit code 2 (issue 25).

Real ``comode`` processes against a real S3 server (moto's, on 127.0.0.1) with no
credentials in their environment, and against a closed loopback port.  Before, the first
gave a ``NoCredentialsError`` traceback and the second an ``EndpointConnectionError``
traceback (the issue saw "no Zarr group here"), both exit code 1.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.commands import comode_command, extract_folder_args

pytest.importorskip("moto.server", reason="needs moto[server] (the test extra)")
pytest.importorskip("s3fs", reason="needs s3fs (the s3 extra)")

BUCKET = "comode-test"
STORE = f"s3://{BUCKET}/x.zarr"


@pytest.fixture(scope="module")
def endpoint():
    """The URL of a real S3 server on loopback holding an empty bucket."""
    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client(
        "s3", endpoint_url=url, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
    ).create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(tmp_path, endpoint: str, *, credentials: bool) -> dict[str, str]:
    """A user's AWS environment: the endpoint, keys or none, a HOME without ~/.aws.  One
    attempt per request and no instance-metadata lookup, so that each command fails at once."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path / "home"),
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_MAX_ATTEMPTS="1",
        AWS_EC2_METADATA_DISABLED="true",
    )
    if credentials:
        env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    return env


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


def test_missing_credentials_are_named_in_one_line(tmp_path, endpoint, tiny_folder_factory):
    env = _environment(tmp_path, endpoint, credentials=False)
    for command in _commands(tmp_path, tiny_folder_factory):
        error = _one_line_error(command, env, tmp_path)
        assert error.startswith(f"error: {STORE}: no S3 credentials found"), error
        assert "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in error


def test_an_unreachable_endpoint_is_named_in_one_line_not_no_zarr_group(tmp_path, tiny_folder_factory):
    closed = f"http://127.0.0.1:{_closed_port()}"
    env = _environment(tmp_path, closed, credentials=True)
    for command in _commands(tmp_path, tiny_folder_factory):
        error = _one_line_error(command, env, tmp_path)
        assert error.startswith(f"error: {STORE}: cannot reach the S3 endpoint {closed} (ConnectionRefusedError"), error
        assert "no Zarr group" not in error
