"""The interpret stage's settings (:class:`InterpretConfig`): which features, which explainer, how much
evidence, and the LLM backend's connection (used by ``--explainer llm`` only)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from crosstime.stage import Device, StageConfig

FEATURE_SETS = ("reported", "top-ie", "all-live")


class InterpretConfig(StageConfig):
    """``crosstime interpret RUN --features reported|top-ie|all-live|IDS --explainer rules|llm``."""

    stage: ClassVar[str] = "interpret"
    execution: ClassVar[frozenset[str]] = frozenset({"device", "batch_rows", "llm_concurrency", "llm_timeout"})

    features: str = Field("reported", description="which features: 'reported' (the report's), 'top-ie' (the "
                                                  "attribution's top features by Σ_m |IE_m|, summed over tasks), "
                                                  "'all-live' (alive in evaluation/features.csv) or ids '3,17,42'")
    n_features: int | None = Field(None, ge=1, description="keep at most this many of them (None: all)")
    explainer: Literal["rules", "llm"] = Field("rules", description="'rules': the toy world's ground truth (the "
                                                                     "feature's type in evaluation/features.csv); "
                                                                     "'llm': an LLM through --llm-url")
    n_shown: int = Field(10, ge=1, description="top contexts per feature and view shown to the explainer")
    n_heldout: int = Field(10, ge=1, description="activating contexts drawn at evenly spaced activation quantiles, "
                                                 "held out from the explainer and scored on")
    n_inactive: int = Field(10, ge=1, description="contexts where the feature does not fire, scored on")
    window_before: int = Field(24, ge=0, description="tokens shown before the marked position")
    window_after: int = Field(4, ge=0, description="tokens shown after the marked position")
    per_checkpoint: bool = Field(True, description="also explain and score each checkpoint where the feature is "
                                                   "present (features.csv presence_REV), not only the joint view")
    max_contexts: int | None = Field(4000, ge=1, description="stream at most this many held-out contexts")
    sample_size: int = Field(512, ge=1, description="uniform sample of activations the quantiles are drawn from")
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples of the features for the correlations' CIs")
    seed: int = Field(0, description="seed of the samples, the inactive contexts, the shuffle and the bootstrap")
    device: Device = Field("auto", description="where the crosscoder encodes")
    batch_rows: int = Field(2048, ge=1, description="rows encoded at once")
    llm_backend: Literal["openai", "transformers"] = Field(
        "openai", description="--explainer llm: 'openai' (any OpenAI-compatible endpoint at --llm-url) or "
                              "'transformers' (a local chat model: --llm-model is its saved folder, run on --device)")
    llm_url: str | None = Field(None, description="OpenAI-compatible base URL (--explainer llm)")
    llm_model: str | None = Field(None, description="the model's name at that endpoint, or the folder of a local "
                                                    "transformers chat model (--explainer llm)")
    llm_key_env: str | None = Field("OPENAI_API_KEY", description="environment variable holding the API key "
                                                              "('' : send none, for a local server)")
    llm_concurrency: int = Field(4, ge=1, description="requests in flight at once")
    llm_timeout: float = Field(60.0, gt=0, description="seconds per request")
    llm_price_prompt: float | None = Field(None, ge=0, description="US$ per million prompt tokens (cost recorded; "
                                                                   "not given: cost unknown)")
    llm_price_completion: float | None = Field(None, ge=0, description="US$ per million completion tokens")

    @field_validator("llm_key_env")
    @classmethod
    def _no_key(cls, value: str | None) -> str | None:
        return value or None  # '' means no key: a local server (vLLM, Ollama, llama.cpp) takes none

    @model_validator(mode="after")
    def _llm_named(self) -> InterpretConfig:
        if self.explainer != "llm":
            return self
        if self.llm_backend == "transformers":
            if not self.llm_model or self.llm_url:
                raise ValueError("--llm-backend transformers needs --llm-model (the folder save_pretrained wrote: a "
                                 "chat model and its tokenizer) and no --llm-url")
        elif not (self.llm_url and self.llm_model):
            raise ValueError("--explainer llm needs --llm-url (an OpenAI-compatible endpoint, e.g. "
                             "http://127.0.0.1:8000/v1) and --llm-model (the model's name there), or "
                             "--llm-backend transformers --llm-model FOLDER")
        return self

    @field_validator("features")
    @classmethod
    def _known_set(cls, value: str) -> str:
        if value in FEATURE_SETS:
            return value
        try:
            ids = [int(t) for t in value.split(",") if t.strip()]
        except ValueError:
            raise ValueError(f"--features {value!r}: one of {', '.join(FEATURE_SETS)} or feature ids like "
                             "'3,17,42'") from None
        if not ids or min(ids) < 0:
            raise ValueError(f"--features {value!r}: feature ids are 0 or more")
        return ",".join(str(i) for i in ids)

    def feature_ids(self) -> list[int] | None:
        """The ids ``--features`` names (None: a named set)."""
        return None if self.features in FEATURE_SETS else [int(t) for t in self.features.split(",")]
