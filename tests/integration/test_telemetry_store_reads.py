"""Who may read the telemetry store: anyone while it listens on loopback only (``make run``), only the
admin holder (bearer token, or the viewer's sign-in and its session cookie) once it is bound to an
address other machines reach."""

from __future__ import annotations

from pathlib import Path

import httpx

from bookline.config import Settings
from bookline.services.telemetry.api import build_app
from bookline.telemetry import setup_telemetry
from support.serving import served

TOKEN = "viewer-test-admin-token"
READS = ["/api/services", "/api/traces", "/api/dashboard", "/api/sampling"]


def _store(tmp_path: Path, host: str):
    settings = Settings(data_dir=tmp_path, telemetry_host=host, admin_token=TOKEN)
    return build_app(settings, setup_telemetry("telemetry", settings, export=False))


def test_the_store_binds_loopback_by_default():
    assert Settings().telemetry_host == "127.0.0.1"


async def test_on_loopback_the_api_and_viewer_are_open(tmp_path: Path):
    async with served(_store(tmp_path, "127.0.0.1")) as url, httpx.AsyncClient(base_url=url) as http:
        answers = [(await http.get(path)).status_code for path in [*READS, "/"]]
    assert answers == [200] * (len(READS) + 1)


async def test_off_loopback_every_read_needs_the_admin_token(tmp_path: Path):
    async with served(_store(tmp_path, "0.0.0.0")) as url, httpx.AsyncClient(base_url=url) as http:
        anonymous = [await http.get(path) for path in READS]
        wrong = await http.get("/api/traces", headers={"Authorization": "Bearer not-it"})
        page = await http.get("/traces/" + "0" * 32)
        allowed = [await http.get(path, headers={"Authorization": f"Bearer {TOKEN}"}) for path in READS]
        health = await http.get("/healthz")
    assert [r.status_code for r in anonymous] == [401] * len(READS)
    assert anonymous[0].json()["error"]["code"] == "viewer_unauthorized"
    assert anonymous[0].headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong.status_code == 401
    assert page.status_code == 303 and page.headers["location"] == "/login"
    assert [r.status_code for r in allowed] == [200] * len(READS)
    assert health.status_code == 200


async def test_the_viewer_sign_in_keeps_a_session_cookie(tmp_path: Path):
    async with served(_store(tmp_path, "0.0.0.0")) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.post(
            "/login", content="token=guess", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        signed_in = await http.post(
            "/login", content=f"token={TOKEN}", headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        cookie = signed_in.cookies.get("bookline_viewer")
        with_cookie = await http.get("/api/traces", headers={"Cookie": f"bookline_viewer={cookie}"})
        forged = await http.get("/api/traces", headers={"Cookie": f"bookline_viewer={cookie[:-4]}AAAA"})
    assert refused.status_code == 401
    assert signed_in.status_code == 303 and cookie and TOKEN not in cookie
    assert "httponly" in signed_in.headers["set-cookie"].lower()
    assert with_cookie.status_code == 200
    assert forged.status_code == 401
