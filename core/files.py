"""Files a bot answered with (a generated image, a voice recording): which the proxy may fetch,
and the calls that fetch them.

A bot's ``file`` event names a URL on Poe's CDN. The proxy fetches one only when a client asked
for the bytes (``b64_json`` images, speech), and only a URL it may fetch: HTTPS, to a host that is
not an address of a private network, or any URL at the origin of ``POE_BASE_URL`` or
``POE_UPLOAD_URL`` (a local stand-in of Poe). A plain-HTTP URL anywhere else (a cloud's metadata
address, a VPC's services) is never fetched, nor is any redirect to one. The calls carry no key:
Poe's file URLs are public, and a bot's URL may lead anywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from .calls import CallGroup
from .errors import UpstreamError
from .flow import USER_AGENT, Action, Context, Step, UpstreamRequest

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched file's bytes and the content type its server gave them."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return (parts.scheme, parts.hostname.lower(), port)


def may_fetch(url: str, poe_origins: Sequence[str]) -> bool:
    """Whether the proxy may fetch ``url`` (see the module's docstring); ``poe_origins``: the
    URLs of Poe the deployment is configured with."""
    origin = _origin(url)
    if origin is None or "@" in urlsplit(url).netloc:  # no credentials in a URL a bot gave
        return False
    if origin in {_origin(poe) for poe in poe_origins}:
        return True
    if origin[0] != "https":
        return False
    try:
        address = ipaddress.ip_address(origin[1].strip("[]"))
    except ValueError:
        return True  # a host name
    return address.is_global


class FetchFiles(CallGroup):
    """One GET per URL; ``result``: a ``Fetched`` or a ``Redirect`` for each, in order. Files
    over ``limit`` bytes together, or a status that is neither 200 nor a redirect, fail the
    group."""

    def __init__(self, context: Context, urls: Sequence[str], limit: int) -> None:
        headers = {"user-agent": USER_AGENT, "accept": "*/*"}
        super().__init__(context, [UpstreamRequest("GET", url, dict(headers), None) for url in urls])
        self._urls = urls
        self._limit = limit
        self._bodies = [bytearray() for _ in urls]
        self.size = 0  # bytes read, all files together
        self._types = ["application/octet-stream"] * len(urls)
        self.result: list[Fetched | Redirect | None] = [None] * len(urls)
        self._left = len(urls)

    def answered(self, index: int, status: int, headers: Mapping[str, str]) -> list[Action]:
        location = headers.get("location")
        if status in _REDIRECTS and location:
            self.result[index] = Redirect(urljoin(self._urls[index], location))
            return self._stop(index, reuse=False) + self._one_done()
        if status != 200:
            return super().answered(index, status, headers)
        declared = headers.get("content-length", "")
        if declared.isdigit() and self.size + int(declared) > self._limit:
            return self._fail(self._too_large())
        self._types[index] = headers.get("content-type") or self._types[index]
        return []

    def _body(self, index: int, data: bytes) -> list[Action]:
        self._bodies[index].extend(data)
        self.size += len(data)
        return self._fail(self._too_large()) if self.size > self._limit else []

    def _end(self, index: int) -> list[Action]:
        self.result[index] = Fetched(bytes(self._bodies[index]), self._types[index])
        self._bodies[index] = bytearray()
        return self._one_done()

    def _one_done(self) -> list[Action]:
        self._left -= 1
        if self._left == 0:
            self.done = True
        return []

    def _refuse(self, index: int) -> list[Action]:
        status = self._refused[index][0]
        host = urlsplit(self._urls[index]).hostname
        return self._fail(
            UpstreamError(
                f"The file the bot answered with could not be fetched: {host} answered {status}.",
                code="upstream_file_unavailable",
            )
        )

    def _too_large(self) -> UpstreamError:
        return UpstreamError(
            f"The files the bot answered with are larger than the limit of {self._limit} bytes "
            "(MAX_FILE_BYTES, for all the files of one request).",
            code="upstream_file_too_large",
        )


def fetch_files(context: Context, urls: Sequence[str]) -> Generator[Step, Any, list[Fetched]]:
    """The bytes of each of ``urls``, following redirects; each URL, and each place a redirect
    leads, checked with ``may_fetch`` first. ``MAX_FILE_BYTES`` bounds them all together: what
    one request may make a host hold."""
    settings = context.settings
    poe = (settings.poe_base_url, settings.poe_upload_url)
    wanted = list(urls)
    found: list[Fetched | None] = [None] * len(wanted)
    budget = settings.max_file_bytes
    for _ in range(MAX_REDIRECTS + 1):
        pending = [i for i, file in enumerate(found) if file is None]
        if not pending:
            return [file for file in found if file is not None]
        for i in pending:
            if not may_fetch(wanted[i], poe):
                origin = _origin(wanted[i])
                where = f" ({origin[0]}://{origin[1]})" if origin else ""
                raise UpstreamError(
                    "The bot answered with a file at a URL the proxy does not fetch: only HTTPS to "
                    f"a public host, or Poe's own origin{where}.",
                    code="upstream_file_refused",
                )
        step = FetchFiles(context, [wanted[i] for i in pending], budget)
        answers = yield step
        budget -= step.size
        for i, answer in zip(pending, answers, strict=True):
            if isinstance(answer, Redirect):
                wanted[i] = answer.location
            else:
                found[i] = answer
    raise UpstreamError(
        f"The file the bot answered with redirected more than {MAX_REDIRECTS} times.",
        code="upstream_file_unavailable",
    )
