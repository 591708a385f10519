"""HTTP for price sources: which URLs may be fetched, the client, and GETs with retries."""

from __future__ import annotations

import ipaddress
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

import httpx

from harness.cost.prices.offer import PriceFetchError
from harness.errors import ConfigError

DEFAULT_TIMEOUT_S = 20.0
_RETRY_BACKOFF_S = (0.25, 1.0)    # sleeps before the 2nd and 3rd try (connection errors, HTTP 5xx)
_HEADERS = {"User-Agent": "harness-prices/0.1"}


def check_url(url: str) -> str:
    """Return `url` if it is https, or http to a loopback host (127.0.0.0/8, ::1, localhost);
    else raise ConfigError("prices.url")."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError as err:
        raise ConfigError("prices.url", f"{url!r} is not a URL ({err})") from None
    if not host:
        raise ConfigError("prices.url", f"{url!r} has no host")
    scheme = parts.scheme.lower()
    if scheme == "https" or (scheme == "http" and _is_loopback(host)):
        return url
    raise ConfigError("prices.url", f"{url!r} is not allowed: use https, or http only to a loopback "
                               "address (127.0.0.0/8, ::1, localhost)")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Get:
    """GETs for one source over one client; every failure is a PriceFetchError naming `source`."""

    client: httpx.Client
    source: str
    timeout_s: float

    def __call__(self, url: str) -> httpx.Response:
        """The HTTP 200 response for `url`; connection errors and HTTP 5xx are retried, timeouts
        are not (a slow server stays slow)."""
        for attempt in range(len(_RETRY_BACKOFF_S) + 1):
            last = attempt == len(_RETRY_BACKOFF_S)
            try:
                response = self.client.get(url)
            except httpx.TimeoutException:
                raise PriceFetchError(self.source, f"timed out after {self.timeout_s:g} s fetching {url}") from None
            except httpx.ConnectError as err:
                if last:
                    raise PriceFetchError(self.source, f"cannot connect to {url} ({err})") from None
            except httpx.TransportError as err:  # body cut short, protocol error, read error
                raise PriceFetchError(self.source, f"transfer from {url} failed "
                                                   f"({err.__class__.__name__}: {err})") from None
            except httpx.HTTPError as err:  # e.g. a body that does not decompress
                raise PriceFetchError(self.source, f"request to {url} failed "
                                                   f"({err.__class__.__name__}: {err})") from None
            else:
                if response.status_code == 200:
                    return response
                if response.status_code < 500 or last:
                    raise PriceFetchError(self.source, f"HTTP {response.status_code} from {url}")
            time.sleep(_RETRY_BACKOFF_S[attempt])
        raise AssertionError("unreachable")


@contextmanager
def session(source: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[Get]:
    """A `Get` for `source` over a fresh client that follows no redirects."""
    with httpx.Client(timeout=timeout_s, follow_redirects=False, headers=_HEADERS) as client:
        yield Get(client, source, timeout_s)
