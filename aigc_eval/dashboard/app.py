"""The dashboard's app: JSON endpoints over the store (aigc_eval/store/queries.py, analysis.py)
and the static page (static/index.html, dashboard.js) with Plotly's own bundled JavaScript.

Every endpoint reads; nothing here writes to the store.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import plotly
from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import Engine

from aigc_eval.dashboard import models
from aigc_eval.store import analysis, queries
from aigc_eval.store.queries import Slice
from aigc_eval.store.stats import Thresholds

STATIC = Path(__file__).with_name("static")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
MAX_DRILL = 200


def _slice(since: date | None, until: date | None, category: str | None, version: str | None) -> Slice:
    if since and until and since >= until:
        raise HTTPException(422, detail={"field": "until", "error": f"until ({until}) must come after since ({since})"})
    return Slice(since, until, category or None, version or None)


def create_app(engine: Engine, thresholds: Thresholds = Thresholds()) -> FastAPI:
    """The dashboard on an open (migrated) store engine."""
    app = FastAPI(title="aigc-image-eval dashboard", docs_url=None, redoc_url=None)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    @app.get("/static/dashboard.js", include_in_schema=False)
    def dashboard_js() -> FileResponse:
        return FileResponse(STATIC / "dashboard.js", media_type="application/javascript")

    @app.get("/api/meta", response_model=models.Meta)
    def meta() -> dict:
        return queries.meta(engine)

    @app.get("/api/overview", response_model=models.Overview)
    def overview(grain: str = Query("day", pattern="^(day|week)$"),
                 by: str = Query("", pattern="^(|category|generator_version)$"),
                 category: str | None = None, generator_version: str | None = None,
                 since: date | None = None, until: date | None = None) -> dict:
        where = _slice(since, until, category, generator_version)
        return {"points": queries.overview(engine, where, grain, by), "releases": queries.releases(engine)}

    @app.get("/api/drilldown", response_model=models.Drilldown)
    def drilldown(since: date, until: date, category: str | None = None, generator_version: str | None = None,
                  limit: int = Query(20, ge=1, le=MAX_DRILL)) -> dict:
        return {"images": queries.lowest(engine, _slice(since, until, category, generator_version), limit)}

    @app.get("/api/compare", response_model=models.Comparison)
    def compare(a_since: date | None = None, a_until: date | None = None, b_since: date | None = None,
                b_until: date | None = None, a_version: str | None = None, b_version: str | None = None,
                category: str | None = None) -> dict:
        a = _slice(a_since, a_until, category, a_version)
        b = _slice(b_since, b_until, category, b_version)
        if a == b:
            raise HTTPException(422, detail={"field": "b_since", "error": "the two sides are the same; pick two windows or two versions"})
        return analysis.compare(engine, a, b)

    @app.get("/api/alarms", response_model=models.Alarms)
    def alarms(window: int = Query(7, ge=1, le=366), baseline: int = Query(28, ge=1, le=3660),
               until: date | None = None) -> dict:
        recent, before = analysis.windows(window, baseline, until)
        found = analysis.check(engine, recent, before, thresholds)
        return {"window": [str(recent.since), str(recent.until)], "baseline": [str(before.since), str(before.until)],
                "alarms": [{"category": a.category, "kind": a.kind, "line": a.line} for a in found]}

    return app


