"""Files a bot answered with (a generated image, a voice recording): which the proxy may fetch,
and the calls that fetch them.

A bot's ``file`` event names a URL on Poe's CDN, but any Poe user can publish a bot, and a bot's
URL may lead anywhere. The proxy fetches one only when a client asked for the bytes (``b64_json``
images, speech), and only a URL it may fetch: HTTPS to a public host, or any URL at the origin
of ``POE_BASE_URL`` or ``POE_UPLOAD_URL`` (a local stand-in of Poe). Every URL, and every place a
redirect leads, is parsed by one rule (``core.urls``, the URL Standard's, as a browser-style
``fetch`` reads it), so that every spelling of an address (``https://2130706433/``,
``https://127.1/``, ``https://0x7f000001/``, ...) is checked as the address it is, and names of
a local network (``localhost``, a single label, ``.internal``) are refused. A host that resolves
names itself checks the addresses a name resolves to before connecting (``StartCall.public``).
The calls carry no key: Poe's file URLs are public.
"""

from __future__ import annotations

from collections.abc import Collection, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .calls import CallGroup
from .errors import UpstreamError
from .flow import USER_AGENT, Action, Context, Step, UpstreamRequest
from .urls import URL, Origin, parse

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Fetched:
    """A fetched file's bytes and the content type its server gave them."""

    data: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Redirect:
    location: str  # as the server said it: relative to the URL that answered


def origins(urls: Sequence[str]) -> set[Origin]:
    """The origins of ``urls`` (Poe's, as the deployment names them)."""
    return {parsed.origin for parsed in map(parse, urls) if parsed is not None}


def fetchable(url: str, poe_origins: Sequence[str], base: URL | None = None) -> URL:
    """``url`` (relative to ``base``, for a redirect) as the proxy may fetch it (see the module's
    docstring), or the 502 that refuses it; ``poe_origins``: the URLs of Poe the deployment is
    configured with."""
    parsed = parse(url, base)
    if parsed is None:
        raise UpstreamError(
            "The bot answered with a file at a URL that does not parse.", code="upstream_file_refused"
        )
    poe = origins(poe_origins)
    if parsed.credentials or not (parsed.origin in poe or (parsed.scheme == "https" and parsed.public)):
        raise UpstreamError(
            "The bot answered with a file at a URL the proxy does not fetch: only HTTPS to a public "
            f"host, or Poe's own origin ({parsed.scheme}://{parsed.host}:{parsed.port}).",
            code="upstream_file_refused",
        )
    return parsed


class FetchFiles(CallGroup):
    """One GET per URL; ``result``: a ``Fetched`` or a ``Redirect`` for each, in order. Files
    over ``limit`` bytes together, or a status that is neither 200 nor a redirect, fail the
    group."""

    def __init__(self, context: Context, urls: Sequence[URL], poe: Collection[Origin], limit: int) -> None:
        headers = {"user-agent": USER_AGENT, "accept": "*/*"}
        # Only Poe's own origin may resolve to a private address (a local stand-in of Poe).
        deadline = context.settings.file_timeout
        requests = [
            UpstreamRequest("GET", str(url), dict(headers), None, url.origin not in poe, deadline)
            for url in urls
        ]
        super().__init__(context, requests)
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
            self.result[index] = Redirect(location)
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
        host = self._urls[index].host
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
    """The bytes of each of ``urls``, following up to ``MAX_REDIRECTS`` redirects each; each URL,
    and each place a redirect leads, checked with ``fetchable`` first. ``MAX_FILE_BYTES`` bounds
    them all together: what one request may make a host hold."""
    settings = context.settings
    poe = (settings.poe_base_url, settings.poe_upload_url)
    wanted = [fetchable(url, poe) for url in urls]
    found: list[Fetched | None] = [None] * len(wanted)
    budget = settings.max_file_bytes
    for _ in range(MAX_REDIRECTS + 1):
        pending = [i for i, file in enumerate(found) if file is None]
        step = FetchFiles(context, [wanted[i] for i in pending], origins(poe), budget)
        answers = yield step
        budget -= step.size
        for i, answer in zip(pending, answers, strict=True):
            if isinstance(answer, Redirect):
                wanted[i] = fetchable(answer.location, poe, base=wanted[i])
            else:
                found[i] = answer
        if all(file is not None for file in found):
            return [file for file in found if file is not None]
    raise UpstreamError(
        f"The file the bot answered with redirected more than {MAX_REDIRECTS} times.",
        code="upstream_file_unavailable",
    )
