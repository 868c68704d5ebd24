"""The settings documents add to `config.Settings`, and the production checks they need."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from .._project import PROJECT_SLUG
from ..ai_provider import ProviderSettings

MIB = 1024 * 1024


class DocumentsSettings(ProviderSettings):
    embedding_model: str = "text-embedding-3-small"
    embedding_dimensions: int = Field(default=512, ge=8, le=4096)

    document_max_bytes: int = Field(default=10 * MIB, ge=1024, le=512 * MIB)
    document_quota_documents: int = Field(default=200, ge=1)
    document_quota_bytes: int = Field(default=200 * MIB, ge=1024)
    document_max_chunks: int = Field(default=2000, ge=1)
    document_extract_timeout_seconds: float = Field(default=30, gt=0, le=600)
    document_extract_memory_mib: int = Field(default=512, ge=64)
    document_extract_concurrency: int = Field(default=2, ge=1, le=64)

    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None
    qdrant_path: str = "./data/qdrant"
    qdrant_collection: str = Field(default=f"{PROJECT_SLUG}-chunks", pattern=r"^[A-Za-z0-9_.-]+$")
    qdrant_timeout_seconds: float = Field(default=5, gt=0, le=120)
    # Worker processes serving this app (uvicorn's and most process managers' convention).
    web_concurrency: int = Field(default=1, ge=1)
    # Set by Kubernetes in every pod: replicas and ephemeral disks, so never embedded Qdrant.
    kubernetes_service_host: str | None = None

    @property
    def qdrant_embedded(self) -> bool:
        return not self.qdrant_url

    @model_validator(mode="after")
    def _refuse_shared_embedded_store(self) -> Self:
        """Embedded Qdrant's lock holds for one process on one disk: refuse it where several
        processes or replicas would need it."""
        if self.qdrant_embedded and self.web_concurrency > 1:
            raise ValueError(
                "embedded Qdrant (QDRANT_PATH) serves one process, but WEB_CONCURRENCY="
                f"{self.web_concurrency}; set QDRANT_URL to a Qdrant server"
            )
        if self.qdrant_embedded and self.kubernetes_service_host:
            raise ValueError(
                "embedded Qdrant (QDRANT_PATH) cannot be shared by Kubernetes replicas; "
                "set QDRANT_URL to a Qdrant server"
            )
        return self
