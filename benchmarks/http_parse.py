"""CPU of the lean HTTP client's reply parser (``therasim/_internal/http1.py``) for
one typical vLLM reply (uvicorn's head, a ~1 KB chat.completion body), Content-Length
and chunked, a baseline revision's parser against this tree's, in one process:

    python benchmarks/http_parse.py --base 2a1c152

Blocks of 300 replies alternate between the two parsers; the minimum over the
blocks is reported (the figure least disturbed by other load on the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
BODY = (
    b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"'
    + b"x" * 800
    + b'"},"finish_reason":"stop"}],"usage":{"prompt_tokens":500,"completion_tokens":120,"total_tokens":620,"prompt_tokens_details":{"cached_tokens":400}}}'
)
HEAD = b"HTTP/1.1 200 OK\r\ndate: Fri, 27 Nov 2026 04:00:00 GMT\r\nserver: uvicorn\r\n"
REPLIES = {
    "content-length": HEAD + b"content-length: %d\r\ncontent-type: application/json\r\n\r\n%s" % (len(BODY), BODY),
    "chunked": HEAD + b"transfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY),
}


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    m = importlib.util.module_from_spec(spec)
    sys.modules[name] = m
    spec.loader.exec_module(m)
    return m


class _Transport:
    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def per_reply_us(mod: ModuleType, data: bytes, n: int, loop: asyncio.AbstractEventLoop) -> float:
    c = mod._Conn()
    c.transport = _Transport()
    t0 = time.perf_counter()
    for _ in range(n):
        c._reset()
        c.buf.clear()
        c.received = False
        c.waiter = loop.create_future()
        c.data_received(data)
        assert c.waiter.result()[2] == BODY
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="baseline git revision")
    ap.add_argument("--blocks", type=int, default=300)
    a = ap.parse_args()
    old_src = subprocess.run(["git", "-C", str(ROOT), "show", f"{a.base}:therasim/_internal/http1.py"], capture_output=True, check=True).stdout
    tmp = Path(tempfile.mkdtemp()) / "http1_base.py"
    tmp.write_bytes(old_src)
    old, new = load("http1_base", tmp), load("http1_this", ROOT / "therasim" / "_internal" / "http1.py")
    loop = asyncio.new_event_loop()
    print(f"| reply | parse us, {a.base} | this tree | this / base |")
    print("|---|---|---|---|")
    for name, data in REPLIES.items():
        b, t = [], []
        for _ in range(a.blocks):
            b.append(per_reply_us(old, data, 300, loop))
            t.append(per_reply_us(new, data, 300, loop))
        print(f"| {name} | {min(b):.2f} | {min(t):.2f} | {min(t) / min(b):.2f} |")
    loop.close()


if __name__ == "__main__":
    main()
