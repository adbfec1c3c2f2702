"""`GET /metrics`: this process's Prometheus metrics (backend/metrics.py), for the
networks in `REPLENISH_METRICS_FROM` (loopback by default); others get a 404, as if
there were no such page (the figures say how busy a deployment is)."""

from __future__ import annotations

import ipaddress

from flask import Blueprint, Response, abort, current_app, request

bp = Blueprint("metrics", __name__)


def _allowed(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net
               for net in current_app.config["METRICS_FROM"])


@bp.get("/metrics")
def metrics():
    if not _allowed(request.remote_addr):
        abort(404)
    body, content_type = current_app.config["METRICS"].render()
    return Response(body, content_type=content_type)


def init_app(app, metrics, networks) -> None:
    app.config["METRICS"] = metrics
    app.config["METRICS_FROM"] = tuple(ipaddress.ip_network(n, strict=False)
                                       for n in networks)
    app.register_blueprint(bp)
