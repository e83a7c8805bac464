"""Who pays: the Poe key a request is sent with.

Default mode: the client's bearer token *is* its Poe key, passed through. Owner mode (the server
has ``POE_API_KEY``): clients present one of ``PROXY_ACCESS_TOKEN`` and the server's key is
used; a request without a matching token never reaches Poe.
"""

from __future__ import annotations

import hmac

from .errors import AuthenticationError, InvalidRequestError
from .settings import Settings


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if there is one."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def resolve_poe_key(authorization: str | None, settings: Settings) -> str:
    """The Poe key for this request, or ``AuthenticationError`` (401).

    ``authorization`` is every Authorization header the request had, joined with ", " as HTTP
    joins repeated fields (each host passes them so): a request with two is refused, whichever
    order they came in, since hosts would otherwise disagree on which one counts.
    """
    if authorization is not None and "," in authorization:  # a bearer token has no comma
        raise InvalidRequestError(
            "The request has more than one Authorization header; send exactly one.",
            param=None,
            code="invalid_authorization_header",
        )
    token = bearer_token(authorization)
    if token is None:
        raise AuthenticationError(
            "You didn't provide an API key. Send your Poe API key as a bearer token "
            "(Authorization: Bearer <key>), which is what OpenAI clients do with their API key."
        )
    if not (token.isascii() and token.isprintable()):
        # Keys are printable ASCII; anything else cannot be sent on as a header, nor be a key.
        raise AuthenticationError("The API key provided is malformed: it is not printable ASCII.")
    if settings.poe_api_key is None:
        return token
    if settings.access_tokens:
        # Compare against every token so the time taken does not reveal which one came close.
        matched = False
        for allowed in settings.access_tokens:
            matched |= hmac.compare_digest(token.encode(), allowed.encode())
        if not matched:
            raise AuthenticationError("Incorrect access token provided.")
    return settings.poe_api_key
