"""Cookie, secret-key and header settings of the web app (docs/web.md, "Security").

- Secret key: REPLENISH_SECRET_KEY, else `<data dir>/web-secret.key`, created on first
  start with 32 random bytes, readable by its owner only (like the KEK). Never logged.
- Session cookie: HttpOnly, SameSite=Lax, Secure whenever the request came over https
  (with REPLENISH_BEHIND_PROXY=true, as told by one reverse proxy's X-Forwarded-Proto).
- Headers on every answer: nosniff, no framing, no referrer (claim URLs carry the
  code), and a Content-Security-Policy that allows no inline script or style; HSTS
  over https.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from backend.accounts.keys import _write_owner_only
from backend.config import Settings
from backend.errors import ConfigError

log = logging.getLogger(__name__)

SECRET_FILE = "web-secret.key"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": CSP,
}


class _SessionInterface(SecureCookieSessionInterface):
    """Secure cookies over https, also when only the request (not the config) knows."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure


def secret_key(settings: Settings) -> str:
    if settings.web_secret_key:
        return settings.web_secret_key
    path: Path = settings.data_dir / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _write_owner_only(path, secrets.token_hex(32) + "\n")
            log.info("created the web session key at %s", path)
        except FileExistsError:
            pass  # another process made it first
    if path.stat().st_mode & 0o077:
        raise ConfigError(f"{path} must be readable by its owner only (chmod 600)")
    key = path.read_text().strip()
    if len(key) < 32:
        raise ConfigError(f"{path} is too short to be a session key")
    return key


def init_app(app: Flask, settings: Settings) -> None:
    app.secret_key = secret_key(settings)
    app.config.update(SESSION_COOKIE_NAME="replenish_session",
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      MAX_CONTENT_LENGTH=1024 * 1024)
    app.session_interface = _SessionInterface()
    if settings.behind_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)

    @app.after_request
    def security_headers(response):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:  # only over https, or a browser would pin plain http out
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response
