"""``GET /metrics`` for Prometheus: the app's own registry, behind a token or loopback only.

Not in the OpenAPI schema: it is for a scraper, not an API client, and answers in the
Prometheus text format rather than JSON.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from deskpilot.config import Settings
from deskpilot.errors import AuthError, ForbiddenError
from deskpilot.gateway.metrics import GatewayMetrics

router = APIRouter(tags=["health"], include_in_schema=False)

TOKEN_HINT = "send the DESKPILOT_METRICS_TOKEN value as 'Authorization: Bearer <token>'"
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


def authorize(request: Request, settings: Settings) -> None:
    """With a metrics token: that token, as a Bearer. Without: direct loopback clients only.

    A request relayed by a proxy on this machine looks like loopback; one carrying a
    forwarding header is refused, so a local reverse proxy does not publish the metrics.
    """
    token = settings.metrics_token.get_secret_value() if settings.metrics_token is not None else ""
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise AuthError("/metrics needs the metrics token", hint=TOKEN_HINT)
        return
    host = request.client.host if request.client is not None else None
    if not _is_loopback(host) or any(name in request.headers for name in PROXY_HEADERS):
        raise ForbiddenError(
            "/metrics answers only clients on this machine while no metrics token is set",
            hint="set DESKPILOT_METRICS_TOKEN and " + TOKEN_HINT + ", or scrape from the gateway's host",
        )


@router.get("/metrics", summary="Prometheus metrics")
def metrics(request: Request) -> Response:
    """Sync on purpose: the store figures are read with a blocking query, in the threadpool."""
    settings: Settings = request.app.state.settings
    authorize(request, settings)
    gateway_metrics: GatewayMetrics = request.app.state.metrics
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encode(gateway_metrics.registry), media_type=None, headers={"Content-Type": content_type})
