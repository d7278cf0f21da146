"""Bearer-token authentication of the HTTP API and ``/metrics``; the health probes stay open.

Deny by default: one aiohttp middleware on faust's web application checks every request, so a
route added later (ours, or one of faust's built-in pages) is protected without doing anything.
Only the routes in :data:`PUBLIC_ROUTES` are exempt — the probes a kubelet or load balancer
calls without credentials, which reveal nothing but up/ready. Whether a request is public is
decided on the *matched route*, not the raw path, so ``/healthz/../metrics``-style spellings
cannot borrow a probe's exemption.

Never log the token or the ``Authorization`` header.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, cast

import faust
from aiohttp import web
from aiohttp.typedefs import Handler

from stream.config.settings import Settings

__all__ = ["CHALLENGE", "PUBLIC_ROUTES", "authorized", "install", "is_public", "load_token"]

PUBLIC_ROUTES: frozenset[str] = frozenset({"/healthz", "/readyz"})
CHALLENGE = 'Bearer realm="engagement-stream"'


def load_token(settings: Settings) -> bytes | None:
    """The configured token (file wins over the variable), or None when auth is off."""
    if settings.web_auth_token_file:
        token = Path(settings.web_auth_token_file).read_text().strip()
        if not token:  # an empty secret file must not silently switch auth off
            raise ValueError(f"web_auth_token_file {settings.web_auth_token_file} is empty")
    else:
        token = settings.web_auth_token.get_secret_value().strip()
    return token.encode() if token else None


def authorized(header: str | None, token: bytes) -> bool:
    if not header:
        return False
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant time: the comparison must not tell an attacker how many bytes were right.
    return hmac.compare_digest(presented.strip().encode(), token)


def is_public(request: web.Request) -> bool:
    resource = request.match_info.route.resource
    return resource is not None and resource.canonical in PUBLIC_ROUTES


def middleware(token: bytes) -> Any:
    @web.middleware
    async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_public(request) or authorized(request.headers.get("Authorization"), token):
            return await handler(request)
        return web.json_response(
            {"error": "unauthorized"}, status=401, headers={"WWW-Authenticate": CHALLENGE}
        )

    return bearer_auth


def install(app: faust.App, token: bytes | None) -> None:
    """Guard every route of the app's web server (call before the server starts)."""
    if token is not None:
        # faust's web driver is aiohttp; its base class does not declare the application.
        web_app: web.Application = cast(Any, app.web).web_app
        web_app.middlewares.append(middleware(token))
