"""Typed request and response bodies of the JSON API (they are the OpenAPI contract at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import MAX_NEW_TOKENS, MAX_PROMPT_CHARS

RunName = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", max_length=128, description="a registered run")
RelPath = Field(max_length=512, description="path relative to the run folder, forward slashes")


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one readable message, plus details for validation errors."""

    error: str
    details: list[dict[str, Any]] | None = None


class DictionaryEntry(BaseModel):
    path: str
    architecture: str | None = None
    d_in: int | None = None
    d_sae: int | None = None
    hook_name: str | None = None
    model_name: str | None = None
    error: str | None = None


class RunSummary(BaseModel):
    name: str
    summary: str


class RunDetail(BaseModel):
    """The artifacts found in one run folder (paths relative to it)."""

    name: str
    summary: str
    dictionaries: list[DictionaryEntry]
    feature_dbs: list[str]
    dashboards: list[str]
    graphs: list[str]
    reports: list[str]
    evals: list[str]
    metrics: list[str]
    eval: dict[str, Any] | None = Field(None, description="contents of the first eval.json (when small)")
    last_metrics: dict[str, Any] | None = Field(None, description="last line of the first metrics.jsonl")


class ModelInfo(BaseModel):
    name: str
    loaded: bool
    busy: bool
    queued: int = Field(0, description="model requests waiting or running")
    error: str | None = None
    n_layers: int | None = None
    d_model: int | None = None
    jobs_done: int


class ServerInfo(BaseModel):
    version: str
    runs_root: str
    model: ModelInfo
    limits: dict[str, int]
    features_backend: str
    graphs_backend: str


class FeatureHit(BaseModel):
    feature: int
    label: str = ""
    score: float | None = None
    frequency: float | None = None
    max_activation: float | None = None


class FeatureSearch(BaseModel):
    run: str
    db: str
    query: str
    total: int | None = None
    hits: list[FeatureHit]


class FeatureCard(BaseModel):
    """A feature's card from the feature database: headline statistics, examples, logit effects."""

    run: str
    db: str
    feature: int
    label: str = ""
    dashboard: str | None = Field(None, description="path of its dashboard page in the run, when there is one")
    card: dict[str, Any]


class GraphNode(BaseModel):
    node_id: str
    feature_type: str
    layer: str
    ctx_idx: int
    feature: int | None = None
    clerp: str = ""
    activation: float | None = None
    influence: float | None = None
    token_prob: float | None = None
    is_target_logit: bool = False


class GraphLink(BaseModel):
    source: str
    target: str
    weight: float


class Graph(BaseModel):
    """An attribution graph in circuit-tracer's viewer format (``metadata``, ``nodes``, ``links``)."""

    run: str
    path: str
    metadata: dict[str, Any]
    nodes: list[GraphNode]
    links: list[GraphLink]


class SteerRequest(Strict):
    run: str = RunName
    dictionary: str = RelPath
    feature: int = Field(ge=0, description="feature index in the dictionary")
    strength: float = Field(ge=-100, le=100, allow_inf_nan=False,
                            description="added vector = strength × the feature's max activation (from the run's "
                                        "feature database; 1 without one) × its decoder direction")
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    max_new_tokens: int = Field(16, ge=1, le=MAX_NEW_TOKENS)


class SteerResponse(BaseModel):
    prompt: str
    feature: int
    strength: float
    max_activation: float | None = Field(None, description="scale used (None: no feature database, scale 1)")
    hook_name: str
    baseline: str
    steered: str
    baseline_feature_act: float | None = Field(None, description="mean activation of the feature over the prompt")
    steered_feature_act: float | None = None
    seconds: float


class LensRequest(Strict):
    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    top_k: int = Field(1, ge=1, le=5)


class Heatmap(BaseModel):
    """A labelled matrix: ``values[row][col]``, with optional token text per cell."""

    title: str
    row_labels: list[str]
    col_labels: list[str]
    values: list[list[float | None]] = Field(description="null where a value is undefined (NaN, e.g. a zero "
                                                          "normaliser)")
    cell_text: list[list[str]] | None = None
    value_name: str
    meta: dict[str, Any] = {}


class PatchRequest(Strict):
    clean: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    corrupted: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    answer: str = Field(min_length=1, max_length=64, description="the clean completion, a single token")
    wrong: str = Field(min_length=1, max_length=64, description="the corrupted completion, a single token")
    kind: Literal["resid_pre", "attn_out", "mlp_out"] = "resid_pre"
    layer_step: int = Field(3, ge=1, le=8, description="patch every n-th layer (bounds the work: layers × positions "
                                                         "forward passes)")
