"""The Flask web app: JSON API v1, merchant callbacks, household and operator pages."""

from __future__ import annotations

from flask import Flask, jsonify
from sqlalchemy.orm import sessionmaker

from backend.config import Settings
from backend.errors import ReplenishError
from backend.metrics import Metrics
from backend.web import api, merchant, pages, request_db, security
from backend.web import metrics as metrics_page


def create_app(sessions: sessionmaker, writer_sessions: sessionmaker | None = None,
               settings: Settings | None = None, metrics: Metrics | None = None) -> Flask:
    app = Flask(__name__)
    request_db.init_app(app, sessions, writer_sessions or sessions)
    app.config["SETTINGS"] = settings or Settings()
    app.register_blueprint(api.bp)
    app.register_blueprint(merchant.bp)
    security.init_app(app, app.config["SETTINGS"])  # secret key, cookies, headers
    app.register_blueprint(pages.bp)  # household and operator pages (CSRF inside)
    if metrics is not None:  # GET /metrics, for REPLENISH_METRICS_FROM
        metrics_page.init_app(app, metrics, app.config["SETTINGS"].metrics_from)

    @app.errorhandler(ReplenishError)
    def replenish_error(err: ReplenishError):
        return error_body(err.http_status, type(err).__name__, str(err))

    @app.errorhandler(404)
    def not_found(_err):
        return error_body(404, "NotFound", "no such resource")

    @app.errorhandler(400)
    def bad_request(err):
        return error_body(400, "BadRequest", getattr(err, "description", "bad request"))

    @app.errorhandler(405)
    def wrong_method(_err):
        return error_body(405, "MethodNotAllowed", "method not allowed here")

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    return app


def error_body(status: int, code: str, message: str):
    """Every error has the same shape: {"error": {"code", "message"}}."""
    return jsonify({"error": {"code": code, "message": message}}), status
