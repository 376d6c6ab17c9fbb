"""Checkpoint storage grows linearly with turns (append-only transcript in a DeltaChannel)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from therasim.config import CourseSpec
from therasim.context import SimContext
from therasim.graphs import preset
from therasim.graphs.session import initial_session_state, run_session
from therasim.profiles import example_profiles
from therasim.providers import ModelPool
from therasim.testing import FunctionChatModel, client_turn_json


def _reply(msgs, kw):  # type: ignore[no-untyped-def]
    if "CLIENT" in str(msgs[0].content):
        return client_turn_json("I have been sleeping badly and worrying about work and family.", wants_to_end=False)
    return "That sounds hard; tell me more about how the nights have been this week."


async def _bytes(path: Path, turns: int) -> tuple[int, int]:
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        g = preset("minimal").compile(checkpointer=saver)
        ctx = SimContext(models=ModelPool({"default": FunctionChatModel(fn=_reply)}), course=CourseSpec(max_turns=turns))
        st = await run_session(g, initial_session_state(example_profiles()[0]), ctx, thread_id="t")
        snap = await g.aget_state({"configurable": {"thread_id": "t"}})
        assert snap.values["transcript"] == st["transcript"] and len(st["transcript"]) == 2 * turns
    con = sqlite3.connect(path)
    total = con.execute("select coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) from checkpoints").fetchone()[0]
    total += con.execute("select coalesce(sum(length(value)), 0) from writes").fetchone()[0]
    con.close()
    return st["exchange"], int(total)


def test_bytes_per_turn_flat_between_10_and_40(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    n10, b10 = asyncio.run(_bytes(tmp_path / "a.sqlite", 10))
    n40, b40 = asyncio.run(_bytes(tmp_path / "b.sqlite", 40))
    per10, per40 = b10 / n10, b40 / n40
    with capsys.disabled():
        print(f"\n[checkpoints] bytes per exchange: {per10:.0f} at 10, {per40:.0f} at 40 (ratio {per40 / per10:.2f})")
    assert per40 <= 1.25 * per10  # a message list in state would make this ~4x


def test_compressed_serializer_round_trips_and_reads_plain_blobs() -> None:
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim.checkpoint import CompressedSerializer

    s = CompressedSerializer(codec="zstd")
    obj = {"transcript": [{"speaker": "client", "text": "I slept badly again " * 40}], "n": 3}
    typ, data = s.dumps_typed(obj)
    assert s.codec == "zstd" and typ == "zs:msgpack" and data[:4] == b"\x28\xb5\x2f\xfd"  # a zstd frame
    assert len(data) < len(JsonPlusSerializer().dumps_typed(obj)[1]) / 3
    assert s.loads_typed((typ, data)) == obj
    plain = JsonPlusSerializer().dumps_typed(obj)  # written without compression
    assert s.loads_typed(plain) == obj
    small = s.dumps_typed({"a": 1})
    assert not small[0].startswith(("z:", "zs:"))


def test_zlib_blobs_of_older_runs_stay_readable() -> None:
    """``z:`` (zlib) blobs, what every therasim reads (and the default before session 16
    of #17): ``codec="zlib"`` writes them byte for byte as the zlib-only serializer did,
    the default (zstd) one reads them; the two tags never mix up."""
    import zlib

    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim.checkpoint import CompressedSerializer

    obj = {"transcript": [{"speaker": "counselor", "text": "What helped last week? " * 30}], "risk": None}
    typ, raw = JsonPlusSerializer().dumps_typed(obj)
    old = ("z:" + typ, zlib.compress(raw, 3))  # byte for byte what the zlib-only serializer wrote
    assert CompressedSerializer(codec="zstd").loads_typed(old) == obj
    assert CompressedSerializer().loads_typed(old) == obj  # the default reads them
    z = CompressedSerializer(codec="zlib")
    assert z.codec == "zlib" and z.dumps_typed(obj) == old
    assert z.loads_typed(CompressedSerializer(codec="zstd").dumps_typed(obj)) == obj  # and it reads zstd
    with pytest.raises(ValueError, match=r"codec='lz4'.*'zstd' or 'zlib'"):
        CompressedSerializer(codec="lz4")


def test_zstd_level_and_threshold_defaults_read_every_earlier_blob() -> None:
    """Since session 17 of #17 zstd blobs are written at level 1 from 512 bytes (level 3
    from 256 before): a blob under 512 bytes is plain msgpack (what every therasim reads),
    a larger one a zstd frame; blobs of the earlier level and threshold read back the same,
    and zlib keeps level 3 from 256 bytes byte for byte."""
    import zlib

    import zstandard
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    from therasim._internal import checkpoint as ck
    from therasim.checkpoint import CompressedSerializer

    s = CompressedSerializer(codec="zstd")
    assert (s.level, s.min_size) == (ck.ZSTD_LEVEL, ck.ZSTD_MIN_SIZE) == (1, 512)
    mid = {"t": "a counselor's question " * 17}  # 400-odd bytes of msgpack
    typ, raw = JsonPlusSerializer().dumps_typed(mid)
    assert 256 <= len(raw) < 512
    assert s.dumps_typed(mid) == (typ, raw)  # stored plain now
    big = {"t": "a counselor's question " * 40}
    btyp, braw = JsonPlusSerializer().dumps_typed(big)
    out = s.dumps_typed(big)
    assert out[0] == "zs:" + btyp and out[1] == zstandard.ZstdCompressor(level=1).compress(braw)
    for old in (("zs:" + typ, zstandard.ZstdCompressor(level=3).compress(raw)), ("zs:" + btyp, zstandard.ZstdCompressor(level=3).compress(braw))):
        assert s.loads_typed(old) in (mid, big)  # session 16's level-3 blobs, under 512 bytes too
    z = CompressedSerializer(codec="zlib")
    assert (z.level, z.min_size) == (3, 256) and z.dumps_typed(mid) == ("z:" + typ, zlib.compress(raw, 3))
    assert CompressedSerializer(codec="zstd", level=3, min_size=256).dumps_typed(mid)[0] == "zs:" + typ  # explicit values win


def test_the_direct_msgpack_path_writes_what_jsonplus_writes() -> None:
    """CompressedSerializer calls LangGraph's msgpack encoder directly (session 18 of #17):
    for every kind of value (None, bytes, text, numbers, containers, a pydantic model, a
    LangGraph Send, a datetime) the blob is what JsonPlusSerializer.dumps_typed writes,
    then compressed as before; what msgpack refuses goes JsonPlusSerializer's way (its
    pickle fallback when asked for, else its error)."""
    import datetime
    import threading
    import zlib

    import zstandard
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.types import Send
    from pydantic import BaseModel

    from therasim._internal import checkpoint as ck
    from therasim.checkpoint import CompressedSerializer

    class Note(BaseModel):
        text: str
        score: float

    assert ck._MSGPACK is not None  # this langgraph: the direct path is what is tested
    values = [None, b"raw", bytearray(b"raw"), "text", 7, 2.5, True, [1, "a"], {"k": {"n": [None]}},
              {"long": "what helped last week? " * 60}, Note(text="n" * 700, score=0.5), Send("client", {"x": 1}),
              datetime.datetime(2026, 11, 28, 10, 0, tzinfo=datetime.timezone.utc), {1: "int key"}]
    base = JsonPlusSerializer()
    for codec in ("zstd", "zlib"):
        s = CompressedSerializer(codec=codec)
        for v in values:
            typ, raw = base.dumps_typed(v)
            if len(raw) < s.min_size:
                want = (typ, raw)
            elif codec == "zstd":
                want = ("zs:" + typ, zstandard.ZstdCompressor(level=s.level).compress(raw))
            else:
                want = ("z:" + typ, zlib.compress(raw, s.level))
            assert s.dumps_typed(v) == want, v
            assert s.loads_typed(s.dumps_typed(v)) == base.loads_typed((typ, raw))
    lock = {"a lock": threading.Lock()}  # msgpack refuses it
    with pytest.raises(TypeError):
        base.dumps_typed(lock)
    with pytest.raises(TypeError):
        CompressedSerializer().dumps_typed(lock)
    pickled = JsonPlusSerializer(pickle_fallback=True).dumps_typed({"v": 2.5 + 1j})  # msgpack refuses a complex
    assert pickled[0] == "pickle" and CompressedSerializer(pickle_fallback=True).dumps_typed({"v": 2.5 + 1j}) == pickled


def test_a_new_checkpoint_file_has_16k_pages_an_older_file_keeps_its_own(tmp_path: Path) -> None:
    """A new checkpoint file is made with 16 KB pages (session 17 of #17), by the group
    commit saver and the stock one; a file made before, with SQLite's default 4 KB pages,
    keeps them and is read and written as before."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    from therasim.checkpoint import CompressedSerializer, open_checkpointer

    cfg = {"configurable": {"thread_id": "t", "checkpoint_ns": "", "checkpoint_id": "c1"}}

    async def write(path: Path, group: bool) -> None:
        async with open_checkpointer(str(path), group_commit=group) as saver:
            await saver.aput_writes(cfg, [("x", {"n": "v" * 2000})], "task")

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as con:  # what an earlier release made: 4 KB pages, WAL, the tables
        con.execute("PRAGMA journal_mode=WAL")
        SqliteSaver(con).setup()
    for path, group in ((tmp_path / "new.sqlite", True), (tmp_path / "stock.sqlite", False), (old, True)):
        asyncio.run(write(path, group))
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA page_size").fetchone()[0] == (4096 if path == old else 16384)
            rows = con.execute("SELECT channel, type, value FROM writes").fetchall()
        assert len(rows) == 1 and rows[0][0] == "x" and CompressedSerializer().loads_typed(rows[0][1:]) == {"n": "v" * 2000}


def test_the_checkpoint_codec_variable(monkeypatch) -> None:
    from therasim.checkpoint import CompressedSerializer
    from therasim.errors import ConfigError

    monkeypatch.delenv("THERASIM_CHECKPOINT_CODEC", raising=False)
    assert CompressedSerializer().dumps_typed({"t": "x" * 600})[0] == "zs:msgpack"  # the default since session 16 of #17
    monkeypatch.setenv("THERASIM_CHECKPOINT_CODEC", "zlib")
    assert CompressedSerializer().dumps_typed({"t": "x" * 400})[0] == "z:msgpack"  # what every therasim reads
    assert CompressedSerializer(codec="zstd").codec == "zstd"  # an explicit codec wins
    monkeypatch.setenv("THERASIM_CHECKPOINT_CODEC", "brotli")
    with pytest.raises(ConfigError, match="THERASIM_CHECKPOINT_CODEC='brotli': give zstd"):
        CompressedSerializer()


def test_a_bad_codec_variable_is_refused_before_a_run_directory_is_made(monkeypatch, tmp_path) -> None:
    """Review of session 14: a bad THERASIM_CHECKPOINT_CODEC made a whole run directory
    and then failed with a bare ValueError (a traceback from ``therasim run``)."""
    from therasim.config import RunConfig
    from therasim.errors import ConfigError
    from therasim.runner import run

    monkeypatch.setenv("THERASIM_CHECKPOINT_CODEC", "bogus")
    with pytest.raises(ConfigError, match="THERASIM_CHECKPOINT_CODEC='bogus'"):
        run(RunConfig(), out=tmp_path / "r")
    assert not (tmp_path / "r").exists()
