"""The HTTP service's JSON contract: request and response models (the OpenAPI schema is made from them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_ITEMS = 256  # items in one request; a larger list is refused whole (422)
Status = Literal["ok", "error", "skipped"]
IS_TERM_OMITTED = "omitted: no --reference-marginal"


class ScoreItem(BaseModel):
    """One generated image to score: exactly one of `image_url` and `image_base64`, and its prompt."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "r-1_0", "image_url": "https://cdn.example.com/gen/r-1_0.jpg",
        "prompt": "大理石台面配金色装饰，咖啡杯", "category": "咖啡杯",
        "product_image_url": "https://cdn.example.com/cutouts/p-001.png"}]})

    id: str | None = Field(None, max_length=256, description="the caller's id, echoed in the result")
    image_url: str | None = Field(None, max_length=4096, description="http(s) URL of the generated image")
    image_base64: str | None = Field(
        None, description="the generated image's bytes in standard base64 (a `data:...;base64,` prefix is accepted)")
    prompt: str = Field(..., max_length=20000,
                        description="the generation prompt as sent to the generator; cleaned as main.py cleans it")
    category: str | None = Field(None, max_length=256, description="product category (labels the prompt's subject)")
    product_image_url: str | None = Field(
        None, max_length=4096, description="http(s) URL of the merchant's cut-out (RGBA PNG): runs the product check")

    @model_validator(mode="after")
    def _one_image(self) -> "ScoreItem":
        if (self.image_url is None) == (self.image_base64 is None):
            raise ValueError("give exactly one of image_url and image_base64")
        return self


ScoreItems = Annotated[list[ScoreItem], Field(min_length=1, max_length=MAX_ITEMS)]


class ProductCheck(BaseModel):
    """The product check against the cut-out (see docs/product.md): score, issues and measurements."""

    status: Status
    error: str | None = None
    product_score: float | None = Field(None, description="0..1; joins total_score with --product-weight when ok")
    product_issues: list[str] = Field(default_factory=list, description="issue codes, e.g. product_cut_off")
    crop_box: list[int] | None = Field(None, description="left top right bottom of the product in the image, pixels")
    measurements: dict[str, float | int | bool | str | None] = Field(
        default_factory=dict, description="the result_product.csv columns (placement, fidelity, composition, quality)")


class Components(BaseModel):
    """What total_score is made of: each normalised term and the weight it had (0 when left out)."""

    clip_norm: float | None = None
    is_norm: float | None = None
    product_score: float | None = None
    clip_weight: float
    is_weight: float
    product_weight: float
    terms: dict[str, float] = Field(default_factory=dict, description="every term in total_score, by metric")
    weights: dict[str, float] = Field(default_factory=dict, description="the weight each of those terms had")


class MetricOutcome(BaseModel):
    """One metric's result for the item (every registered metric that ran, plugins included)."""

    status: Status
    error: str | None = None
    values: dict[str, float | int | bool | str | None] = Field(default_factory=dict)


class ItemResult(BaseModel):
    """One item's scores and decision, the numbers main.py --input gives the same image."""

    id: str | None = None
    status: Status = Field(description="ok; skipped (nothing visual in the prompt); error (see error)")
    error: str | None = Field(None, description="why the item was not scored (image not fetched or decoded, ...)")
    prompt: str = Field(description="the cleaned prompt that was scored")
    raw_prompt: str = Field(description="the prompt as given")
    clip_score: float | None = Field(None, description="cosine of Chinese-CLIP image and text embeddings, -1..1")
    prompt_tokens: int | None = None
    prompt_truncated: bool | None = None
    top1_class: int | None = None
    top1_label: str | None = None
    top1_confidence: float | None = None
    kl: float | None = Field(None, description="KL(p(y|x) || reference marginal), nats; null without one")
    total_score: float | None = Field(None, description="weighted total, 0..1 (status ok only)")
    components: Components | None = None
    is_term: str = Field(description="whether the Inception term is in total_score, and why not")
    product: ProductCheck | None = Field(None, description="present when product_image_url was given")
    regenerate: list[str] = Field(default_factory=list, description="reasons to generate the image again; [] passes")
    metrics: dict[str, MetricOutcome] = Field(default_factory=dict, description="each metric's own result, by name")


class ScoreResponse(BaseModel):
    """Results in the order of the request's items (one item gives a list of one)."""

    results: list[ItemResult]
    is_term: str = Field(description=f"'included: ...' or '{IS_TERM_OMITTED}'")


class ErrorDetail(BaseModel):
    """What was wrong, and with which field (a dotted path such as `items.0.image_base64`; null when none)."""

    field: str | None = None
    message: str


class ErrorResponse(BaseModel):
    """The body of every error answer other than 422."""

    detail: ErrorDetail


class Health(BaseModel):
    """/healthz and /readyz."""

    status: Literal["ok", "loading", "failed", "stopping"]
    detail: str = ""
