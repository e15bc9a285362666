"""The dashboard's JSON bodies as pydantic models: the OpenAPI schema (/openapi.json) is the
contract for anyone reading the endpoints without the page."""

from __future__ import annotations

from pydantic import BaseModel


class Rate(BaseModel):
    rate: float | None
    low: float | None
    high: float | None


class Point(BaseModel):
    """One period (day, or the Monday of a week) of one group ("" overall); intervals are 95%."""

    period: str
    group: str
    n_rows: int
    n_ok: int
    total_mean: float | None
    total_low: float | None
    total_high: float | None
    p_accept_mean: float | None
    p_accept_low: float | None
    p_accept_high: float | None
    clip_mean: float | None
    clip_low: float | None
    clip_high: float | None
    regenerate_rate: float | None
    regenerate_low: float | None
    regenerate_high: float | None
    issues: dict[str, Rate]


class Release(BaseModel):
    generator_version: str
    first_day: str


class Overview(BaseModel):
    points: list[Point]
    releases: list[Release]


class Meta(BaseModel):
    categories: list[str]
    generator_versions: list[str]
    first_day: str | None
    last_day: str | None


class Image(BaseModel):
    run_id: str
    image_id: str
    category: str
    generator_version: str
    scored_day: str
    total_score: float | None
    clip_score: float | None
    p_accept: float | None
    product_issues: str
    regenerate: str
    image_url: str | None
    prompt: str | None


class Drilldown(BaseModel):
    images: list[Image]


class Test(BaseModel):
    pairing: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    difference: float
    ci_low: float
    ci_high: float
    t_test_p: float
    rank_test_p: float


class Moved(BaseModel):
    category: str
    mean_a: float
    mean_b: float
    difference: float
    n_a: int
    n_b: int


class Comparison(BaseModel):
    tests: dict[str, Test]
    distance: dict[str, float | int | str]
    moved: list[Moved]


class Alarm(BaseModel):
    category: str
    kind: str
    line: str


class Alarms(BaseModel):
    window: list[str]
    baseline: list[str]
    alarms: list[Alarm]
