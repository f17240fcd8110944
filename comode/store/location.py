"""Where a store lives (a local folder or an object-store URL) and how each library reaches it.

Three libraries touch a store, each through the one form it takes:

- zarr-python (groups, attributes, listing of members) takes the URL as given;
- fsspec (the writer's file and object writes, listing names) takes the filesystem
  :func:`filesystem` returns; a local store is written with plain ``os`` calls instead,
  because only there can the writer fsync (see :mod:`comode.store.writer`);
- tensorstore (every array read, :mod:`comode.store.arrays`) takes the key-value store
  spec of :func:`kvstore`.

Object stores are configured the standard AWS way only: credentials, region and endpoint
come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` / ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL`` /
``AWS_ENDPOINT_URL_S3``, ``AWS_PROFILE``) or the files ``~/.aws/config`` and
``~/.aws/credentials``.  s3fs reads them through botocore; tensorstore's own S3 driver
does not read an endpoint from the environment, so :func:`kvstore` asks botocore's
resolver for the endpoint and region once per process and passes them on, so that both
libraries always talk to the same server.  docs/store.md, "Object stores (S3, MinIO, Ceph)",
has the details.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import fsspec
from zarr.storage import FsspecStore, LocalStore

__all__ = [
    "is_local",
    "is_plain_local",
    "local_path",
    "join",
    "group_url",
    "filesystem",
    "kvstore",
    "s3_endpoint",
    "s3_max_attempts",
]


def is_local(url: str) -> bool:
    """A folder on this machine: a plain path or a ``file://`` URL."""
    return "://" not in url or url.startswith("file://")


def is_plain_local(url: str, storage_options: dict | None) -> bool:
    """A local folder written with plain ``os`` calls (fsyncs, atomic renames): a local URL
    with no fsspec options (a local URL given options is reached through fsspec)."""
    return is_local(url) and not storage_options


def local_path(url: str) -> str:
    """The absolute folder of a local store URL."""
    return os.path.abspath(url[len("file://") :] if url.startswith("file://") else url)


def join(url: str, *parts: str) -> str:
    """``url/part/...`` (no doubled slashes), for local paths and URLs alike."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts if p)])


def group_url(group) -> str:
    """The URL of an open zarr.Group (through its store's public attributes: a LocalStore's
    ``root``, an FsspecStore's ``fs`` and ``path``)."""
    store = group.store
    if isinstance(store, LocalStore):
        base = str(store.root)
    elif isinstance(store, FsspecStore):
        base = store.fs.unstrip_protocol(store.path)
    else:
        raise TypeError(f"a store of type {type(store).__name__} has no URL (local folders and fsspec URLs do)")
    return join(base, group.path)


def filesystem(url: str, storage_options: dict | None = None):
    """(fsspec filesystem, path inside it) of a store URL, the filesystem in its blocking
    (synchronous) form.  Needs the filesystem's package (``s3fs`` for ``s3://``: the
    ``comode[s3]`` extra)."""
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as error:
        raise ImportError(f"{url}: {error}. For s3:// stores install the extra: pip install 'comode[s3]'") from None


def kvstore(url: str) -> dict[str, Any] | None:
    """tensorstore's key-value store spec of the folder ``url`` (a trailing ``/`` added),
    or None for a kind of URL tensorstore has no driver for (then zarr-python reads it)."""
    if is_local(url):
        return {"driver": "file", "path": local_path(url).rstrip("/") + "/"}
    parts = urlsplit(url)
    prefix = parts.path.strip("/") + "/" if parts.path.strip("/") else ""
    if parts.scheme in ("s3", "s3a"):
        spec: dict[str, Any] = {
            "driver": "s3",
            "bucket": parts.netloc,
            "path": prefix,
            "aws_credentials": _aws_credentials_spec(),
        }
        # tensorstore's own default is 33 attempts over about 15 minutes: a connection lost
        # mid-run looked like a hang.  botocore's number instead, its backoff roughly.
        spec["s3_request_retries"] = {"max_retries": s3_max_attempts() - 1, "initial_delay": "1s", "max_delay": "20s"}
        endpoint, region = s3_endpoint()
        if endpoint:
            spec["endpoint"] = endpoint
        if region:
            spec["aws_region"] = region
        return spec
    if parts.scheme in ("gs", "gcs"):
        return {"driver": "gcs", "bucket": parts.netloc, "path": prefix}
    return None


def _aws_credentials_spec() -> dict[str, str]:
    # Keys in the environment: read them from there ("default" would also look for the
    # ~/.aws files first and log an error line for each missing one).
    if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
        return {"type": "environment"}
    return {"type": "default"}


@lru_cache(maxsize=1)
def s3_endpoint() -> tuple[str | None, str | None]:
    """(endpoint URL, region) of S3 as botocore resolves them from the AWS environment and
    config files: ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``, a profile's ``endpoint_url``
    (None: AWS itself).  Read once per process; botocore comes with s3fs."""
    try:  # here, not at the top: botocore is optional (the s3 extra, with s3fs)
        import botocore.session
    except ImportError:
        return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"), os.environ.get(
            "AWS_REGION"
        ) or os.environ.get("AWS_DEFAULT_REGION")
    session = botocore.session.Session()
    region = os.environ.get("AWS_REGION") or session.get_config_variable("region")
    client = session.create_client("s3", region_name=region or "us-east-1")
    endpoint = client.meta.endpoint_url
    if urlsplit(endpoint).hostname.endswith(".amazonaws.com"):
        endpoint = None  # AWS itself: tensorstore finds the bucket's region on its own
    return endpoint, region


# botocore's attempts per request (the first one and its retries) by retry mode, when
# neither AWS_MAX_ATTEMPTS nor a profile's max_attempts says.
_DEFAULT_ATTEMPTS = {"legacy": 5, "standard": 3, "adaptive": 3}


@lru_cache(maxsize=1)
def s3_max_attempts() -> int:
    """Attempts per S3 request as botocore resolves them from the AWS environment and config
    files (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``): tensorstore makes as many (:func:`kvstore`)."""
    try:  # here, not at the top: botocore is optional (the s3 extra, with s3fs)
        import botocore.session
    except ImportError:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS") or _DEFAULT_ATTEMPTS["legacy"]))
    session = botocore.session.Session()
    attempts = session.get_config_variable("max_attempts")
    if attempts is None:
        attempts = _DEFAULT_ATTEMPTS.get(session.get_config_variable("retry_mode") or "legacy", 3)
    return max(1, int(attempts))
