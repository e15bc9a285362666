"""The review page's server: a small static page (static/) and a JSON API over a Review.

Routes: `/` the page; `/api/config`; `POST /api/next` (the next images for a labeler);
`POST /api/label` (one verdict, answered only once it is fsynced in labels.csv); `POST /api/undo`;
`/api/summary`; `/api/image/{index}/{kind}` (the image or the cut-out as a display-size JPEG, or a
JSON error whose `detail` the page shows on its placeholder). With a token, every /api route needs
`Authorization: Bearer <token>`. Requests whose Host is not the address served are refused (no
DNS rebinding from a web page), and the page may load nothing but its own files.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict
from importlib import resources
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.concurrency import run_in_threadpool

from aigc_eval.io.image_fetch import ImageError
from aigc_eval.labelling.format import LABEL, LABEL_ID, REASON, REASONS, SKIP
from aigc_eval.labelling.images import ImageRefused, ImageSource
from aigc_eval.labelling.session import Item, Review
from aigc_eval.labelling.store import check_labeler

# The keys that pick each reason, in REASONS order: the digit row, so all twelve stay on the keyboard.
REASON_KEYS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "0", "-", "=")
STATIC = resources.files("aigc_eval.labelling") / "static"
MAX_BATCH = 50
BEARER = HTTPBearer(auto_error=False)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class NextRequest(BaseModel):
    labeler: str = Field(max_length=64)
    count: int = Field(default=10, ge=1, le=MAX_BATCH)
    holding: list[str] = Field(default_factory=list, max_length=MAX_BATCH * 4)
    recent: int = Field(default=0, ge=0, le=MAX_BATCH)


class LabelRequest(BaseModel):
    labeler: str = Field(max_length=64)
    id: str
    label: Literal["accept", "reject", "skip"]
    reason: str = ""


class UndoRequest(BaseModel):
    labeler: str = Field(max_length=64)


class Settings(BaseModel):
    """What the page needs to know and the server to enforce."""

    labeler: str | None = None
    token: str | None = None
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "[::1]"])
    calibrate_command: str = ""


def _labeler(name: str) -> str:
    try:
        return check_labeler(name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


def create_app(review: Review, images: ImageSource, settings: Settings) -> FastAPI:
    """The FastAPI app serving one review."""
    app = FastAPI(title="aigc-eval label", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    async def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if settings.token is not None and not secrets.compare_digest(given, settings.token.encode()):
            raise HTTPException(401, "missing or wrong token: open the address label.py printed (it carries ?token=)",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(require_token)]

    def item_json(item: Item, labeler: str) -> dict:
        row = review.verdict(item.id, labeler)
        return {**asdict(item), "image": None, "cutout": None, "has_cutout": bool(item.cutout),
                "verdict": None if row is None else {"label": row[LABEL], "reason": row[REASON]}}

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html; charset=utf-8")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/api/config", dependencies=guarded)
    def config() -> dict:
        return {"labeler": settings.labeler, "total": len(review.items),
                "reasons": [{"code": code, "key": key} for code, key in zip(REASONS, REASON_KEYS)]}

    @app.post("/api/next", dependencies=guarded)
    def next_items(body: NextRequest) -> dict:
        labeler = _labeler(body.labeler)
        items = review.next_items(labeler, body.count, body.holding)
        recent = review.recent(labeler, body.recent) if body.recent else []
        return {"items": [item_json(i, labeler) for i in items], "recent": [item_json(i, labeler) for i in recent],
                "progress": review.progress(labeler)}

    @app.post("/api/label", dependencies=guarded)
    def label(body: LabelRequest) -> dict:
        labeler = _labeler(body.labeler)
        if body.id not in review.by_id:
            raise HTTPException(404, f"no image with id {body.id[:100]!r} in this run")
        if body.reason and body.reason not in REASONS:
            raise HTTPException(422, f"reason must be one of {', '.join(REASONS)}")
        reason = "" if body.label == SKIP else body.reason
        try:
            row = review.store.append(body.id, body.label, labeler, reason)
        except OSError as exc:  # disk full and the like: the file is as it was, the page says not saved
            raise HTTPException(503, f"could not write labels.csv: {exc.strerror or exc}") from None
        return {"saved": row, "progress": review.progress(labeler)}

    @app.post("/api/undo", dependencies=guarded)
    def undo(body: UndoRequest) -> dict:
        labeler = _labeler(body.labeler)
        try:
            row = review.store.undo(labeler)
        except OSError as exc:
            raise HTTPException(503, f"could not write labels.csv: {exc.strerror or exc}") from None
        item = review.by_id.get(row[LABEL_ID]) if row else None
        return {"undone": None if item is None else item_json(item, labeler), "progress": review.progress(labeler)}

    @app.get("/api/summary", dependencies=guarded)
    def summary(labeler: str) -> dict:
        labeler = _labeler(labeler)
        return {**review.summary(labeler), "progress": review.progress(labeler),
                "command": settings.calibrate_command}

    @app.get("/api/image/{index}/{kind}", dependencies=guarded)
    async def image(index: int, kind: Literal["image", "cutout"]) -> Response:
        if not 0 <= index < len(review.items):
            raise HTTPException(404, f"no image number {index}")
        item = review.items[index]
        ref = item.image if kind == "image" else item.cutout
        if not ref:
            raise HTTPException(404, f"row {item.id} has no {'image' if kind == 'image' else 'cut-out'}")
        try:
            data = await run_in_threadpool(images.display, ref)
        except ImageRefused as exc:
            raise HTTPException(403, str(exc)) from None
        except ImageError as exc:
            raise HTTPException(502, str(exc)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    return app



