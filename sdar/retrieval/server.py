"""A Search-R1-compatible retrieval server over any local retriever (`sdar retriever serve`), on FastAPI.

`POST /retrieve` with `{"queries": [str, ...], "topk": int (optional), "return_scores": bool (optional)}`
answers `{"result": [...]}`: per query a list of `{"document": {"id", "contents"}, "score": s}` when
return_scores, else a list of `{"id", "contents"}` (Search-R1's two shapes). `GET /health` answers
`{"status": "ok", "documents": n}`. It binds 127.0.0.1 unless told otherwise (it has no authentication).

Requests are bounded (`ServerLimits`) and validated by a pydantic model in strict mode (pydantic-core's JSON
parser: nesting depth and integer size are bounded there, so a deeply nested body or a topk of thousands of
digits is a malformed request, not a crash). Every refusal is a JSON `{"error": reason}` with a 4xx status:
400 malformed JSON or fields, 404 unknown path, 405 wrong method, 408 body not sent in time, 411 no
Content-Length (chunked bodies included), 413 too large (body, queries per request or characters per query;
the body size is checked from Content-Length before any of it is kept). A failing retriever answers 500.
Bytes that are not HTTP at all get uvicorn's own plain-text 400.

Concurrency: one asyncio event loop (uvicorn) accepts and parses every connection, with a listen backlog of
LISTEN_BACKLOG, so a burst of clients waits in the kernel's queue instead of being reset. The search
(CPU-bound) and the encoding of its answer run on one worker thread (`loop.run_in_executor`): requests
queue for it in arrival order, the retriever never sees two calls at once (it need not be thread-safe), and
the event loop stays free to accept, validate and refuse requests and to answer /health while a search
runs. More search threads would not help: BM25 scoring and a dense encoder hold the GIL or use every core
already.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) at runtime.

import asyncio
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Annotated

from sdar.errors import ActionableError, ConfigError
from sdar.retrieval.base import Retriever

DEFAULT_HOST = "127.0.0.1"
LISTEN_BACKLOG = 2048  # uvicorn's default; the kernel caps it at net.core.somaxconn
GRACEFUL_SHUTDOWN_S = 5.0  # shutdown() lets requests in flight finish for this long, then cancels them
INSTALL_HINT = "pip install 'sdar[search]' (or pip install fastapi uvicorn)"
# A body declared this far over the limit is read and dropped before the 413 (Go's net/http drains 256 KiB
# likewise), so the client reads the answer; a larger one is refused unread and its connection closed.
DISCARD_BYTES = 256 * 1024
FIELD_ORDER = ("queries", "topk", "return_scores")  # the first bad field is the one reported


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 1_000_000
    max_queries: int = 256
    max_query_chars: int = 2_000
    max_topk: int = 50
    default_topk: int = 3
    socket_timeout_s: float = 30.0  # a client that stops sending its body mid-request is answered 408

    def __post_init__(self):
        for field in fields(self):
            value, kind = getattr(self, field.name), "integer" if field.type is int else "number"
            allowed = int if field.type is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, allowed) or not value > 0:
                raise ConfigError(
                    f"retriever server limit {field.name}={value!r}: it must be a positive {kind}"
                )
        if self.default_topk > self.max_topk:
            raise ConfigError(
                f"retriever server default topk {self.default_topk} exceeds max topk {self.max_topk}: "
                "raise --max-topk or lower --topk"
            )


class RequestError(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@lru_cache(maxsize=16)
def request_model(limits: ServerLimits):
    """The pydantic model of a /retrieve body under these limits (Search-R1's fields; others are ignored)."""
    try:
        from pydantic import ConfigDict, Field, StringConstraints, create_model
    except ImportError as error:
        raise ImportError(f"the retrieval server needs pydantic: {INSTALL_HINT}") from error
    query = Annotated[str, StringConstraints(max_length=limits.max_query_chars)]
    return create_model(
        "RetrieveRequest",
        __config__=ConfigDict(strict=True, extra="ignore"),
        queries=(Annotated[list[query], Field(max_length=limits.max_queries)], ...),
        topk=(Annotated[int, Field(ge=1, le=limits.max_topk)] | None, None),
        return_scores=(bool, False),
    )


def _brief(value) -> str:
    """repr of a client's value, cut to a readable length (a topk can have thousands of digits)."""
    try:
        text = repr(value)
    except ValueError:  # an int past Python's digit limit for str()
        return "a very large integer"
    return text if len(text) <= 60 else f"{text[:50]}... ({len(text)} characters)"


def _request_error(errors: list[dict], limits: ServerLimits) -> RequestError:
    """pydantic's errors -> the refusal reported: the first bad field, a type error before a size error."""

    def rank(error):
        field = error["loc"][0] if error["loc"] else None
        order = FIELD_ORDER.index(field) + 1 if field in FIELD_ORDER else 0
        return order, error["type"] in ("too_long", "string_too_long"), error["type"] == "string_too_long"

    first = min(errors, key=rank)
    kind, field = first["type"], (first["loc"][0] if first["loc"] else None)
    if kind == "json_invalid":
        return RequestError(400, f"malformed JSON: {first.get('ctx', {}).get('error', first['msg'])}")
    if field not in FIELD_ORDER:
        return RequestError(400, "the body must be a JSON object with 'queries'")
    if field == "queries":
        if kind == "too_long":
            count = first["ctx"]["actual_length"]
            return RequestError(413, f"{count} queries in one request; the limit is {limits.max_queries}")
        if kind == "string_too_long":
            longest = max(len(e["input"]) for e in errors if e["type"] == "string_too_long")
            return RequestError(
                413, f"a query has {longest} characters; the limit is {limits.max_query_chars}"
            )
        return RequestError(400, "'queries' must be a list of strings")
    if field == "topk":
        if kind == "less_than_equal":
            return RequestError(400, f"'topk' {_brief(first['input'])} exceeds the limit {limits.max_topk}")
        return RequestError(400, f"'topk' must be a positive integer, got {_brief(first['input'])}")
    return RequestError(400, f"'return_scores' must be true or false, got {_brief(first['input'])}")


def parse_retrieve_request(body: bytes, limits: ServerLimits) -> tuple[list[str], int, bool]:
    """Validate a /retrieve body -> (queries, topk, return_scores); raises RequestError with the reason."""
    from pydantic import ValidationError

    try:
        request = request_model(limits).model_validate_json(body)
    except ValidationError as error:
        raise _request_error(error.errors(include_url=False), limits) from None
    topk = limits.default_topk if request.topk is None else request.topk
    return list(request.queries), topk, request.return_scores


def _search_answer(retriever: Retriever, queries: list[str], topk: int, return_scores: bool) -> bytes:
    """The /retrieve answer body (runs on the search thread: the search and its encoding are the CPU work)."""
    results = retriever.search(queries, topk) if queries else []
    if return_scores:
        answer = [[{"document": h.document.as_dict(), "score": h.score} for h in hits] for hits in results]
    else:
        answer = [[h.document.as_dict() for h in hits] for hits in results]
    return json.dumps({"result": answer}).encode()


async def _discard_body(request, timeout_s: float) -> None:
    """Read and drop a refused body: closing a socket with unread input sends a reset, which can destroy the
    answer before a client that is still sending reads it."""
    import anyio

    with anyio.move_on_after(timeout_s):
        async for _ in request.stream():
            pass


async def _read_body(request, limits: ServerLimits) -> bytes:
    """The body, once its declared length is within the limit (else 413); 408 if it arrives too slowly."""
    import anyio

    length_header = request.headers.get("content-length")
    if length_header is None:
        raise RequestError(411, "a Content-Length header is required")
    if not (length_header.isascii() and length_header.isdigit()):  # uvicorn refuses most before this
        raise RequestError(400, f"bad Content-Length {length_header!r}")
    length = int(length_header)
    if length > limits.max_body_bytes:
        if length <= limits.max_body_bytes + DISCARD_BYTES:
            await _discard_body(request, limits.socket_timeout_s)
        raise RequestError(413, f"body of {length} bytes; the limit is {limits.max_body_bytes}")
    try:
        with anyio.fail_after(limits.socket_timeout_s):
            return await request.body()
    except TimeoutError:
        raise RequestError(408, f"the body did not arrive within {limits.socket_timeout_s:g} s") from None


def build_app(retriever: Retriever, limits: ServerLimits, document_count: int | None, executor):
    """The FastAPI application: /retrieve, /health and JSON refusals (searches run on `executor`)."""
    try:
        from fastapi import FastAPI, Request, Response
        from starlette.exceptions import HTTPException
    except ImportError as error:
        raise ImportError(f"the retrieval server needs fastapi: {INSTALL_HINT}") from error

    def answer(status: int, payload: dict) -> Response:
        return Response(json.dumps(payload), status_code=status, media_type="application/json")

    app = FastAPI(
        title="sdar retriever", docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False
    )

    @app.exception_handler(RequestError)
    async def refuse(request: Request, error: RequestError) -> Response:
        return answer(error.status, {"error": error.reason})

    @app.exception_handler(HTTPException)  # routing: unknown path, wrong method
    async def refuse_route(request: Request, error: HTTPException) -> Response:
        path = request.url.path
        if error.status_code == 405:
            reason = "use GET /health" if path.rstrip("/") == "/health" else "use POST /retrieve"
        elif error.status_code == 404:
            reason = f"unknown path {path}; use POST /retrieve or GET /health"
        else:
            reason = str(error.detail)
        return answer(error.status_code, {"error": reason})

    async def health() -> Response:
        return answer(200, {"status": "ok", "documents": document_count})

    async def retrieve(request: Request) -> Response:
        queries, topk, return_scores = parse_retrieve_request(await _read_body(request, limits), limits)
        loop = asyncio.get_running_loop()
        try:
            body = await loop.run_in_executor(
                executor, _search_answer, retriever, queries, topk, return_scores
            )
        except Exception as error:  # the retriever failed: report it, keep serving
            return answer(500, {"error": f"retrieval failed: {type(error).__name__}: {error}"})
        return Response(body, media_type="application/json")

    for path in ("/health", "/health/"):
        app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
    for path in ("/retrieve", "/retrieve/"):
        app.add_api_route(path, retrieve, methods=["POST"], include_in_schema=False)
    return app


def _listening_socket(host: str, port: int) -> socket.socket:
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
        return socket.create_server((host, port), family=family, backlog=LISTEN_BACKLOG)
    except OSError as error:
        raise ActionableError(
            f"the retrieval server cannot listen on {host}:{port}: {error.strerror or error}; "
            "choose another --host/--port (--port 0 takes any free port)"
        ) from None


class RetrieverServer:
    """uvicorn serving `build_app` on a socket bound at construction (port 0: read `server_address`).

    serve_forever() blocks (in the main thread ^C / SIGTERM stop it gracefully, then KeyboardInterrupt is
    raised); shutdown() from another thread stops it and returns when it has; server_close() closes the socket
    and joins the search thread. The same three calls as the standard library's socketserver."""

    def __init__(self, retriever: Retriever, host: str, port: int, limits: ServerLimits, document_count=None):
        try:
            import uvicorn
        except ImportError as error:
            raise ImportError(f"the retrieval server needs uvicorn: {INSTALL_HINT}") from error
        self.limits = limits
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sdar-retriever-search")
        app = build_app(retriever, limits, document_count, self._executor)
        self._socket = _listening_socket(host, port)
        self.server_address = self._socket.getsockname()
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the process's logging configuration alone
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=LISTEN_BACKLOG,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        self._uvicorn = uvicorn.Server(config)
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def started(self) -> bool:
        """True once the event loop accepts connections."""
        return self._uvicorn.started

    def serve_forever(self) -> None:
        if self._serving.is_set():
            raise RuntimeError("this retrieval server was already started; make a new one")
        self._serving.set()
        try:
            self._uvicorn.run(sockets=[self._socket])
        finally:
            self._stopped.set()

    def shutdown(self) -> None:
        """Stop serving (requests in flight get up to GRACEFUL_SHUTDOWN_S) and wait until it has stopped."""
        self._uvicorn.should_exit = True
        if self._serving.is_set():
            self._stopped.wait()

    def server_close(self) -> None:
        self._socket.close()
        self._executor.shutdown(wait=True)


def make_server(
    retriever: Retriever,
    host: str = DEFAULT_HOST,
    port: int = 8000,
    limits: ServerLimits | None = None,
    document_count: int | None = None,
) -> RetrieverServer:
    """A ready server, its socket bound (port 0 = any free port; read `server.server_address`)."""
    return RetrieverServer(retriever, host, port, limits or ServerLimits(), document_count)


def start_in_thread(server: RetrieverServer, timeout_s: float = 30.0) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks) and return once it accepts connections; stop with
    server.shutdown(); server.server_close()."""
    thread = threading.Thread(target=server.serve_forever, name="sdar-retriever", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the retrieval server stopped while starting (see the log above)")
        if time.monotonic() > deadline:
            server.shutdown()
            raise RuntimeError(f"the retrieval server did not start within {timeout_s:g} s")
        time.sleep(0.005)
    return thread
