"""URLs as every host's HTTP client reads them: the WHATWG URL Standard's rules for http(s).

A URL a bot answers with is checked here, then fetched by a host whose client (a browser-style
``fetch``, or httpx) parses it again. The check must see the host the client will connect to,
so it parses as the URL Standard does, the strictest reading the clients share:

- anything after the scheme's colon may open with any run of ``/`` and ``\\``;
- the host is percent-decoded, mapped as UTS 46 maps it (here NFKC and case folding, which turn
  full-width digits and dots into ASCII ones; the rest goes through IDNA), and ends in a dot or
  not alike;
- a host whose last label is a number is an IPv4 address in any of its spellings: ``2130706433``,
  ``0x7f000001``, ``0177.0.0.1``, ``127.1`` are all 127.0.0.1.

``parse`` answers with the URL as the fetch must be made (its host in that one spelling), or
None when it does not parse; nothing here raises on any input.
"""

from __future__ import annotations

import ipaddress
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

DEFAULT_PORTS = {"http": 80, "https": 443}
_FORBIDDEN_HOST = frozenset(" #%/:<>?@[\\]^|") | frozenset(map(chr, range(0x20))) | {"\x7f"}
_LABEL_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})
_TRIM = "".join(map(chr, range(0x21)))  # C0 controls and space, trimmed from both ends
# Names that lead inside a network, whatever it is: never a public host.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa", ".lan", ".intranet")


Origin = tuple[str, str, int]  # scheme, host, port


@dataclass(frozen=True, slots=True)
class URL:
    scheme: str
    host: str  # a domain in ASCII, an IPv4 address dotted, or an IPv6 address in brackets
    port: int
    rest: str  # the path, query and fragment, as they came
    credentials: bool  # it named a user or password (``user@host``)

    @property
    def origin(self) -> Origin:
        return (self.scheme, self.host, self.port)

    @property
    def address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The host as an IP address, or None for a domain."""
        try:
            return ipaddress.ip_address(self.host.strip("[]"))
        except ValueError:
            return None

    def __str__(self) -> str:
        port = "" if self.port == DEFAULT_PORTS[self.scheme] else f":{self.port}"
        return f"{self.scheme}://{self.host}{port}{self.rest}"

    @property
    def public(self) -> bool:
        """Whether the host is on the public internet: a global address, or a name that is not
        one of a local network's (``localhost``, a single label, ``.internal``, …)."""
        address = self.address
        if address is not None:
            return public_address(address)
        name = self.host.rstrip(".")
        return "." in name and name != "localhost" and not name.endswith(_LOCAL_SUFFIXES)


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is on the public internet (an IPv6 address that carries an IPv4 one,
    mapped or 6to4, only if that one is too): the one rule core's check of a URL and a host's
    check of what a name resolved to share."""
    carried = getattr(address, "ipv4_mapped", None) or getattr(address, "sixtofour", None)
    return address.is_global and (carried is None or carried.is_global)


def parse(text: str, base: URL | None = None) -> URL | None:
    """``text`` as an http(s) URL (relative to ``base``, for a redirect's ``Location``)."""
    text = text.strip(_TRIM).replace("\t", "").replace("\n", "").replace("\r", "")
    colon = text.find(":")
    scheme = text[:colon].lower() if colon > 0 else ""
    if scheme.isascii() and scheme.isalpha() and scheme:
        if scheme not in DEFAULT_PORTS:
            return None
        after = text[colon + 1 :]
        if base is not None and scheme == base.scheme and after[:1] not in ("/", "\\"):
            return _relative(after, base)  # "https:path" is relative to a base of the same scheme
        return _authority(scheme, after.lstrip("/\\"))
    if base is None:
        return None
    return _relative(text, base)


def _relative(text: str, base: URL) -> URL | None:
    if text[:2] in ("//", "\\\\", "/\\", "\\/"):  # scheme-relative: a new authority
        return _authority(base.scheme, text.lstrip("/\\"))
    if text[:1] in ("/", "\\"):
        return URL(base.scheme, base.host, base.port, text.replace("\\", "/"), base.credentials)
    path, _, _ = base.rest.partition("?")
    path = path.partition("#")[0]
    directory = path[: path.rfind("/") + 1] or "/"
    if text.startswith(("?", "#")) or not text:
        return URL(base.scheme, base.host, base.port, path + text, base.credentials)
    return URL(base.scheme, base.host, base.port, directory + text.replace("\\", "/"), base.credentials)


def _authority(scheme: str, text: str) -> URL | None:
    end = min((i for i in map(text.find, "/\\?#") if i >= 0), default=len(text))
    authority, rest = text[:end], text[end:]
    credentials = "@" in authority
    authority = authority.rpartition("@")[2]
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            return None
        host_text, port_text = authority[: close + 1], authority[close + 1 :]
        if port_text and not port_text.startswith(":"):
            return None
        port_text = port_text[1:]
    else:
        host_text, _, port_text = authority.partition(":")
    port = DEFAULT_PORTS[scheme]
    if port_text:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            return None
        port = int(port_text)
    host = parse_host(host_text)
    if host is None:
        return None
    rest = rest.replace("\\", "/") if rest[:1] == "\\" else rest
    return URL(scheme, host, port, rest or "/", credentials)


def parse_host(text: str) -> str | None:
    """A special URL's host as the URL Standard serialises it, or None where it fails."""
    if text.startswith("["):
        if not text.endswith("]"):
            return None
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        decoded = unquote_to_bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        return None
    mapped = unicodedata.normalize("NFKC", decoded.translate(_LABEL_DOTS)).casefold().translate(_LABEL_DOTS)
    if not mapped.isascii():
        try:
            mapped = ".".join(
                label.encode("idna").decode("ascii") if label else "" for label in mapped.split(".")
            )
        except UnicodeError:
            return None
    if not mapped or any(c in _FORBIDDEN_HOST for c in mapped):
        return None
    labels = mapped.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels.pop()
    last = labels[-1]
    if last.isdigit() or (last[:2] == "0x" and all(c in "0123456789abcdef" for c in last[2:])):
        return _ipv4(labels)
    return mapped


def _ipv4(parts: list[str]) -> str | None:
    """The URL Standard's IPv4 parser: up to four numbers, each decimal, ``0x`` hex or
    ``0``-led octal, the last filling the bytes the others left."""
    if len(parts) > 4:
        return None
    numbers = []
    for part in parts:
        if part[:2] == "0x":
            digits, radix = part[2:] or "0", 16
        elif len(part) > 1 and part[0] == "0":
            digits, radix = part[1:], 8
        else:
            digits, radix = part, 10
        try:
            numbers.append(int(digits, radix) if digits.isascii() and digits.isalnum() else -1)
        except ValueError:
            return None
        if numbers[-1] < 0:
            return None
    if any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(numbers[:-1]))
    return str(ipaddress.IPv4Address(value))
