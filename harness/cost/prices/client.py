"""HTTP for price sources: which URLs may be fetched, the client, and GETs with retries."""

from __future__ import annotations

import ipaddress
import json
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator
from urllib.parse import urlsplit

import httpcore
import httpx

from harness.cost.prices.offer import PriceFetchError
from harness.errors import ConfigError

DEFAULT_TIMEOUT_S = 20.0
_RETRY_BACKOFF_S = (0.25, 1.0)    # sleeps before the 2nd and 3rd try (connection errors, HTTP 5xx)
_HEADERS = {"User-Agent": "harness-prices/0.1", "Accept-Encoding": "gzip, deflate"}


MAX_URL_CHARS = 8192


def check_url(url: str) -> str:
    """Return `url` if it is https, or http to a loopback host (127.0.0.0/8, ::1, localhost), with
    a host, a numeric port if any, and no whitespace or control characters; else raise
    ConfigError("prices.url")."""
    if not isinstance(url, str) or not url:
        raise ConfigError("prices.url", "must be a non-empty URL")
    shown = repr(url if len(url) <= 80 else url[:80] + "...")
    if len(url) > MAX_URL_CHARS:
        raise ConfigError("prices.url", f"{shown} is {len(url):,} characters long; at most {MAX_URL_CHARS:,}")
    bad = next((ch for ch in url if ch.isspace() or ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ConfigError("prices.url", f"{shown} holds a space or control character ({bad!r}); not a URL")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number from 0 to 65535)
    except ValueError as err:
        raise ConfigError("prices.url", f"{shown} is not a URL ({err})") from None
    if not host:
        raise ConfigError("prices.url", f"{shown} has no host")
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return url
    raise ConfigError("prices.url", f"{shown} is not allowed: use https, or http only to a loopback "
                               "address (127.0.0.0/8, ::1, localhost)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# What one source may cost: the body as sent (compressed) and as decoded, and the wall time of the
# whole fetch (every page, every try), so that neither a decompression bomb nor a server that
# drips a byte a second can hold `prices update` or `estimate`. SkyPilot's largest catalog (AWS,
# ~40 MB as CSV) fits well inside; an Azure page is under 1 MB.
MAX_BODY_BYTES = 64 * 2**20
MAX_DECODED_BYTES = 256 * 2**20
DEFAULT_DEADLINE_S = 120.0
_CHUNK_BYTES = 64 * 2**10


def _bounded(timeout: float | None, deadline: float) -> float:
    """A socket timeout that never runs past `deadline` (time.monotonic())."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpcore.ReadTimeout("the deadline of the whole fetch has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A socket whose every read, write and handshake ends by the fetch's deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float):
        self._stream, self._deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _bounded(timeout, self._deadline))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _bounded(timeout, self._deadline))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None) -> "_DeadlineStream":
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, _bounded(timeout, self._deadline)),
                               self._deadline)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sockets, each bounded by one deadline: a total time for the fetch, where httpx's
    own timeouts bound each read only (a byte a second would never trip them)."""

    def __init__(self, deadline: float):
        self._inner, self._deadline = httpcore.SyncBackend(), deadline

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._inner.connect_tcp(host, port, _bounded(timeout, self._deadline), local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover (no uds here)
        return _DeadlineStream(self._inner.connect_unix_socket(path, _bounded(timeout, self._deadline), socket_options),
                               self._deadline)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class Body:
    """A whole response body, decoded (gzip or deflate undone), within the size limits."""

    url: str
    content: bytes
    source: str

    def text(self) -> str:
        try:
            return self.content.decode("utf-8")
        except UnicodeDecodeError as err:
            raise PriceFetchError(self.source, f"body from {self.url} is not UTF-8 text ({err.reason} at "
                                               f"byte {err.start})") from None

    def json(self) -> Any:
        """The body parsed as JSON; PriceFetchError when it is not JSON or nests too deeply."""
        try:
            return json.loads(self.text())
        except RecursionError:
            raise PriceFetchError(self.source, f"response from {self.url} is JSON nested too deeply") from None
        except ValueError as err:
            raise PriceFetchError(self.source, f"response from {self.url} is not valid JSON "
                                               f"({str(err)[:80]})") from None


@dataclass(frozen=True)
class Get:
    """GETs for one source over one client; every failure is a PriceFetchError naming `source`.
    All GETs of one `Get` share one deadline (`deadline`, time.monotonic())."""

    client: httpx.Client
    source: str
    timeout_s: float
    deadline: float = float("inf")
    deadline_s: float = DEFAULT_DEADLINE_S
    max_body_bytes: int = MAX_BODY_BYTES
    max_decoded_bytes: int = MAX_DECODED_BYTES

    def __call__(self, url: str) -> Body:
        """The body of the HTTP 200 response for `url`; connection errors and HTTP 5xx are
        retried, timeouts are not (a slow server stays slow)."""
        check_url(url)
        for attempt in range(len(_RETRY_BACKOFF_S) + 1):
            last = attempt == len(_RETRY_BACKOFF_S)
            try:
                with self.client.stream("GET", url) as response:
                    if response.status_code == 200:
                        return Body(url, self._read(response, url), self.source)
                    status = response.status_code
            except httpx.TimeoutException:
                if time.monotonic() >= self.deadline:
                    raise PriceFetchError(self.source, f"took longer than the {self.deadline_s:g} s allowed for "
                                                       f"the whole fetch ({url})") from None
                raise PriceFetchError(self.source, f"timed out after {self.timeout_s:g} s fetching {url}") from None
            except httpx.ConnectError as err:
                if last:
                    raise PriceFetchError(self.source, f"cannot connect to {url} ({err})") from None
            except httpx.TransportError as err:  # body cut short, protocol error, read error
                raise PriceFetchError(self.source, f"transfer from {url} failed "
                                                   f"({err.__class__.__name__}: {err})") from None
            except (httpx.HTTPError, httpx.InvalidURL) as err:
                raise PriceFetchError(self.source, f"request to {url} failed "
                                                   f"({err.__class__.__name__}: {err})") from None
            else:
                if status < 500 or last:
                    raise PriceFetchError(self.source, f"HTTP {status} from {url}")
            time.sleep(min(_RETRY_BACKOFF_S[attempt], max(0.0, self.deadline - time.monotonic())))
        raise AssertionError("unreachable")

    def _read(self, response: httpx.Response, url: str) -> bytes:
        """The body, counted as it arrives: at most `max_body_bytes` as sent and
        `max_decoded_bytes` once gzip or deflate is undone (decompressed a bounded piece at a time)."""
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding in ("", "identity"):
            decoder = None
        elif encoding in ("gzip", "x-gzip", "deflate"):
            decoder = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, told by the header
        else:
            raise PriceFetchError(self.source, f"{url} sent an unsupported Content-Encoding {encoding[:40]!r}")
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise PriceFetchError(self.source, f"{url} announces {int(declared):,} bytes, over the "
                                               f"{self.max_body_bytes:,} allowed")
        sent = 0
        parts: list[bytes] = []
        decoded = 0
        for chunk in response.iter_raw(_CHUNK_BYTES):
            sent += len(chunk)
            if sent > self.max_body_bytes:
                raise PriceFetchError(self.source, f"body from {url} is over the {self.max_body_bytes:,} bytes allowed")
            if time.monotonic() >= self.deadline:
                raise PriceFetchError(self.source, f"took longer than the {self.deadline_s:g} s allowed for "
                                                   f"the whole fetch ({url})")
            data = chunk
            while data:
                if decoder is None:
                    piece, data = data, b""
                else:
                    try:
                        piece = decoder.decompress(data, self.max_decoded_bytes - decoded + 1)
                    except zlib.error as err:
                        raise PriceFetchError(self.source, f"body from {url} does not decompress ({err})") from None
                    data = decoder.unconsumed_tail
                decoded += len(piece)
                if decoded > self.max_decoded_bytes:
                    raise PriceFetchError(self.source, f"body from {url} expands past the "
                                                       f"{self.max_decoded_bytes:,} bytes allowed")
                parts.append(piece)
                if decoder is not None and not piece:
                    break
        return b"".join(parts)


@contextmanager
def session(source: str, timeout_s: float = DEFAULT_TIMEOUT_S, deadline_s: float | None = None) -> Iterator[Get]:
    """A `Get` for `source` over a fresh client that follows no redirects, asks for gzip or
    deflate only, waits at most `timeout_s` for any one read and ends the whole fetch (every page,
    every try) within `deadline_s` (default DEFAULT_DEADLINE_S)."""
    deadline_s = DEFAULT_DEADLINE_S if deadline_s is None else deadline_s
    deadline = time.monotonic() + deadline_s
    transport = httpx.HTTPTransport()
    # httpx takes no network backend: its pool is httpcore's, rebuilt with sockets bounded by the deadline
    transport._pool = httpcore.ConnectionPool(ssl_context=httpx.create_ssl_context(),
                                              network_backend=_DeadlineBackend(deadline))
    with httpx.Client(timeout=timeout_s, follow_redirects=False, headers=_HEADERS, transport=transport) as client:
        yield Get(client, source, timeout_s, deadline, deadline_s, MAX_BODY_BYTES, MAX_DECODED_BYTES)
