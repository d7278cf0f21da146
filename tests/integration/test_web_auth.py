"""Bearer-token auth on the worker's real faust web application: every route but the probes.

The routes are enumerated from the application itself (ours and faust's built-in pages), so a
route added later is covered by this test without editing it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from stream.config.settings import Settings
from stream.service.app import build_app
from stream.service.web_auth import CHALLENGE, PUBLIC_ROUTES, authorized, load_token

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-with-enough-entropy"


def _routes(web_app: web.Application) -> list[str]:
    paths = set()
    for route in web_app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path:
            paths.add(re.sub(r"\{[^}]+\}", "dau", path))
    return sorted(paths)


@pytest.fixture
async def client(settings: Settings, tmp_path: Path) -> AsyncIterator[TestClient]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")  # secrets mounted from files often end with a newline
    application = build_app(settings.with_overrides(web_auth_token_file=str(token_file)))
    web_driver = application.app.web
    web_driver.init_server()  # registers faust's own pages too, as the worker does
    async with TestClient(TestServer(web_driver.web_app)) as test_client:
        yield test_client


async def test_every_non_probe_route_refuses_requests_without_the_token(
    client: TestClient,
) -> None:
    routes = _routes(client.server.app)
    assert {"/metrics", "/api/v1/metrics", "/api/v1/metrics/dau"} <= set(routes)
    protected = [r for r in routes if r not in PUBLIC_ROUTES]
    for path in protected:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            response = await client.get(path, headers=headers)
            assert response.status == 401, (path, headers)
            assert response.headers["WWW-Authenticate"] == CHALLENGE
    for path in protected:
        response = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert response.status != 401, path
    for path in ("/healthz", "/readyz"):
        assert (await client.get(path)).status in (200, 503)  # open; 503 = not ready yet
    assert (await client.get("/healthz/")).status == 401  # not the probe's route: not exempt


def test_token_sources(tmp_path: Path) -> None:
    base = Settings(kafka_bootstrap_servers="x", redis_url="y")
    assert load_token(base) is None
    with_token = Settings(kafka_bootstrap_servers="x", redis_url="y", web_auth_token=TOKEN)
    assert load_token(with_token) == TOKEN.encode()
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_token(base.with_overrides(web_auth_token_file=str(empty)))
    assert authorized(f"bearer {TOKEN}", TOKEN.encode())
    assert not authorized(f"Bearer {TOKEN}x", TOKEN.encode())
    assert not authorized("Bearer", TOKEN.encode())
    assert not authorized(None, TOKEN.encode())
