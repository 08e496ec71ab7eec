"""Prometheus /metrics: what the service did, read from the database at scrape time (so
the figures of every worker process are included), plus this process's HTTP requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from store import Store

from . import actions
from .auth import Handler, needs
from .keys import REDIS, STORE

SCAN_SECONDS = (1, 2.5, 5, 10, 20, 30, 60, 90, 120, 300)
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
REQUESTS = web.AppKey("metrics_requests", Counter)
LATENCY = web.AppKey("metrics_latency", Histogram)


def setup(app: web.Application) -> None:
    registry = CollectorRegistry()
    registry.register(StoreCollector(app))
    app[REGISTRY] = registry
    app[REQUESTS] = Counter(
        "hotline_http_requests",
        "HTTP requests answered by this API process",
        ["route", "method", "status"],
        registry=registry,
    )
    app[LATENCY] = Histogram(
        "hotline_http_request_seconds",
        "Time to answer an HTTP request",
        ["route"],
        registry=registry,
    )
    app.router.add_get("/metrics", metrics)


@needs("signed_in")
async def metrics(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(generate_latest, request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count requests by route template (never by raw path: ids and hashes stay out)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as e:
        status = e.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[REQUESTS].labels(route, request.method, str(status)).inc()
        request.app[LATENCY].labels(route).observe(time.perf_counter() - started)


class StoreCollector(Collector):
    """Scans by outcome, their durations, images hashed, matches by list, queue depths,
    checks by verdict and referrals by state."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        store: Store = self.app[STORE]
        scans = CounterMetricFamily(
            "hotline_scans", "Scans finished, by status and error kind", labels=["status", "error"]
        )
        for (status, error), count in store.scan_outcomes().items():
            scans.add_metric([status, error], count)
        yield scans

        counts, total_seconds, finished = store.scan_durations(SCAN_SECONDS)
        yield HistogramMetricFamily(
            "hotline_scan_duration_seconds",
            "Time from the start to the end of a scan",
            buckets=[
                *(
                    (floatToGoString(bound), count)
                    for bound, count in zip(SCAN_SECONDS, counts, strict=True)
                ),
                ("+Inf", finished),
            ],
            sum_value=total_seconds,
        )

        stats = store.statistics()
        yield CounterMetricFamily("hotline_images_hashed", "Images hashed", value=stats["images"])
        matches = CounterMetricFamily("hotline_matches", "Image matches, by list", labels=["list"])
        for name, count in stats["matches"]["by_list"].items():
            matches.add_metric([name], count)
        yield matches

        depths = actions.queue_depths(self.app[REDIS])
        yield GaugeMetricFamily("hotline_redis_up", "Redis answers", value=depths is not None)
        queues = GaugeMetricFamily("hotline_queue_depth", "Jobs waiting", labels=["queue"])
        for name, depth in (depths or {}).items():
            queues.add_metric([name], depth)
        yield queues

        verdicts = CounterMetricFamily(
            "hotline_takedown_checks", "Takedown checks, by verdict", labels=["verdict"]
        )
        for verdict, count in store.check_verdicts().items():
            verdicts.add_metric([verdict], count)
        yield verdicts
        referrals = GaugeMetricFamily(
            "hotline_referrals", "Referred reports, by takedown state", labels=["state"]
        )
        for state, count in store.referral_states().items():
            referrals.add_metric([state], count)
        yield referrals
