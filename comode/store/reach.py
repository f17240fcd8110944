"""One-line reasons why an object store cannot be reached: no credentials, no server.

botocore's errors reach the user through s3fs and zarr-python as a traceback several
exceptions deep (``NoCredentialsError``; an ``EndpointConnectionError`` caused by aiohttp's
``ClientConnectorError`` caused by ``ConnectionRefusedError``), or, where zarr took a failed
read for a missing file, as "no Zarr group here".  :func:`unreachable_reason` finds such a
cause in an error's chain and says what to fix; the callers that first touch a store
(:func:`comode.store.reader.open_store`, the writer's root) raise it as their own error,
which the CLI prints as one line with exit code 2.

By class name, so that this module imports no optional package (botocore comes with the
``s3`` extra; aiohttp with s3fs).
"""

from __future__ import annotations

import contextlib
from typing import Iterator

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
}


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and what caused it (``__cause__``, else ``__context__``), at most 20 deep."""
    seen: list[BaseException] = []
    while error is not None and len(seen) < 20 and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _endpoint() -> str:
    from comode.store.location import s3_endpoint  # botocore's own resolution of it

    try:
        return s3_endpoint()[0] or "of AWS"
    except Exception:  # noqa: BLE001 -- only the message's detail
        return "configured"


def unreachable_reason(url: str, error: BaseException) -> str | None:
    """What to fix, in one line, when ``error`` (raised while reaching ``url``) means that
    there are no credentials or that the endpoint cannot be reached; None otherwise."""
    if "://" not in url or url.startswith("file://"):
        return None
    for cause in _chain(error):
        name = type(cause).__name__
        if name in _NO_CREDENTIALS:
            return (
                f"{url}: no S3 credentials found ({cause}): set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE / ~/.aws/credentials (docs/storage.md)"
            )
        if name in _NO_CONNECTION:
            last = _chain(cause)[-1]  # the innermost error says why (refused, no such host ...)
            return (
                f"{url}: cannot reach the S3 endpoint {_endpoint()} ({type(last).__name__}: {last}); "
                "check AWS_ENDPOINT_URL and the network"
            )
    return None


@contextlib.contextmanager
def reaching(url: str, error_type: type[Exception] = ValueError) -> Iterator[None]:
    """Raise an error of ``error_type`` with :func:`unreachable_reason`'s one line instead of
    what the block raised, where that reason applies."""
    try:
        yield
    except Exception as error:
        reason = unreachable_reason(url, error)
        if reason is None:
            raise
        raise error_type(reason) from None
