"""One-line reasons why an object store cannot be reached: no credentials, no server.

botocore's errors reach the user through s3fs and zarr-python as a traceback several
exceptions deep (``NoCredentialsError``; an ``EndpointConnectionError`` caused by aiohttp's
``ClientConnectorError`` caused by ``ConnectionRefusedError``), or, where zarr took a failed
read for a missing file, as "no Zarr group here"; tensorstore's as a ValueError carrying
curl's error.  :func:`unreachable_reason` finds such a cause in an error's chain and says
what to fix; the callers that first touch a store (:func:`comode.store.reader.open_store`,
the writer's root) raise it as their own error, which the CLI prints as one line with exit
code 2, and so does ``store validate`` when the connection is lost later, naming the video
it was reading.

By class name, so that this module imports no optional package (botocore comes with the
``s3`` extra; aiohttp with s3fs).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

from comode.store.location import s3_endpoint

__all__ = ["unreachable_reason", "reaching"]

_NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError"}
# botocore's, aiohttp's and the socket layer's "the connection could not be made".
_NO_CONNECTION = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ClientConnectorError",
    "ServerDisconnectedError",
    "ConnectionRefusedError",
    "gaierror",
    # ... or was lost once made (a server gone mid-run)
    "ConnectionResetError",
    "ClientOSError",
    "ConnectionClosedError",
    "ReadTimeoutError",
}
# tensorstore's failed request: curl's message and code.  Codes of "could not connect" or
# "connection lost": proxy or host not resolved (5, 6), connect (7), timeout (28), TLS
# handshake (35), nothing or a cut reply (52, 56), send failed (55).
_CURL_ERROR = re.compile(r"CURL error (?P<what>.*?) \[curl_code='(?P<code>\d+)'\]")
_CURL_NO_CONNECTION = {"5", "6", "7", "28", "35", "52", "55", "56"}


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it (``__cause__``, else ``__context__`` unless raised ``from
    None``), at most 20 deep."""
    seen: list[BaseException] = []
    while error is not None and len(seen) < 20 and error not in seen:
        seen.append(error)
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    return seen


def _connection_failure(error: BaseException) -> str | None:
    """Why the connection could not be made or was lost, when ``error`` says so; else None."""
    if type(error).__name__ in _NO_CONNECTION:
        last = _chain(error)[-1]  # the innermost error says why (refused, no such host ...)
        return f"{type(last).__name__}: {last}"
    found = _CURL_ERROR.search(str(error)) if isinstance(error, ValueError) else None
    if found is not None and found["code"] in _CURL_NO_CONNECTION:
        return f"curl error {found['code']}: {found['what']}"
    return None


def _endpoint() -> str:
    try:  # botocore's own resolution of the endpoint
        return s3_endpoint()[0] or "of AWS"
    except Exception:  # noqa: BLE001 -- only the message's detail
        return "configured"


def unreachable_reason(url: str, error: BaseException, *, video: str | None = None) -> str | None:
    """What to fix, in one line, when ``error`` (raised while reaching ``url``, reading
    ``video`` if given) means that there are no credentials or that the endpoint cannot be
    reached (or was lost); None otherwise."""
    if "://" not in url or url.startswith("file://"):
        return None
    reading = f" while reading video {video!r}" if video is not None else ""
    for cause in _chain(error):
        if type(cause).__name__ in _NO_CREDENTIALS:
            return (
                f"{url}: no S3 credentials found ({cause}){reading}: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / ~/.aws/credentials (docs/store.md)"
            )
        failure = _connection_failure(cause)
        if failure is not None:
            return (
                f"{url}: cannot reach the S3 endpoint {_endpoint()} ({failure}){reading}; "
                "check AWS_ENDPOINT_URL and the network"
            )
    return None


@contextlib.contextmanager
def reaching(url: str, error_type: type[Exception] = ValueError, *, video: str | None = None) -> Iterator[None]:
    """Raise an error of ``error_type`` with :func:`unreachable_reason`'s one line instead of
    what the block raised, where that reason applies."""
    try:
        yield
    except Exception as error:
        reason = unreachable_reason(url, error, video=video)
        if reason is None:
            raise
        raise error_type(reason) from None
