"""The retrieval server (`sdar retriever serve`) under concurrent load, and its answers to malformed requests.

Serves BM25 over the local Search-QA corpus (Wikipedia passages, ../shared/data/searchqa) on loopback at a
free port: `sdar retriever serve` in its own process, stopped by ^C (SIGINT) at the end, as a user runs it
(`--server thread`: in a thread of this process instead, as the tests run it). Load: CLIENTS threads start
together, each sends REQUESTS `POST /retrieve` requests (one NQ question each, topk 3), each on a new
connection (as `HttpRetriever` does). Counted: answers 200, connection resets (refused, reset or closed
without an answer), other errors; latency p50/p99/max over all requests. Then one malformed request of each
kind: the status and whether the body is a JSON `{"error"}`.

    python benchmarks/retriever_load.py --data-dir ../shared/data/searchqa [--clients 50 --requests 20]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from sdar.envs.search_qa.corpus import build_corpus
from sdar.envs.search_qa.datasets import load_dataset, resolve_data_dir
from sdar.retrieval import make_retriever
from sdar.retrieval.server import ServerLimits, make_server, start_in_thread

RESETS = (ConnectionResetError, ConnectionRefusedError, BrokenPipeError, http.client.RemoteDisconnected)


def post(port: int, body: bytes, headers: dict | None = None, timeout_s: float = 60.0) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request(
            "POST", "/retrieve", body=body, headers=headers or {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def load(port: int, queries: list[str], clients: int, requests: int) -> dict:
    """CLIENTS threads x REQUESTS requests, started together: outcome counts and latencies (ms)."""
    latencies, outcomes, guard = [], {"ok": 0, "reset": 0, "error": 0}, threading.Lock()
    errors: list[str] = []
    start = threading.Barrier(clients)

    def client(number: int) -> None:
        start.wait()
        for index in range(requests):
            query = queries[(number * requests + index) % len(queries)]
            body = json.dumps({"queries": [query], "topk": 3, "return_scores": True}).encode()
            began = time.perf_counter()
            try:
                status, answer = post(port, body)
                kind = "ok" if status == 200 and len(json.loads(answer)["result"]) == 1 else "error"
                detail = f"status {status}: {answer[:120]!r}"
            except RESETS as error:
                kind, detail = "reset", f"{type(error).__name__}: {error}"
            except (OSError, ValueError, KeyError) as error:
                kind, detail = "error", f"{type(error).__name__}: {error}"
            with guard:
                latencies.append(1000 * (time.perf_counter() - began))
                outcomes[kind] += 1
                if kind != "ok" and len(errors) < 5:
                    errors.append(detail)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    ordered = sorted(latencies)
    return {
        **outcomes,
        "wall_s": wall,
        "p50_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": ordered[-1],
        "first_errors": errors,
    }


def raw_exchange(port: int, head: bytes, body: bytes = b"") -> tuple[int | None, bytes]:
    """Send the bytes as they are (no client-side checks): the answer's status (None if none) and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # a server may answer and close before reading a large body: read what it said
        with contextlib.suppress(OSError):
            sock.sendall(head + body)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except OSError:
            pass
    if not received.startswith(b"HTTP/"):
        return None, received
    header, _, answer = received.partition(b"\r\n\r\n")
    return int(header.split()[1]), answer


def malformed_requests(max_body_bytes: int) -> list[tuple[str, bytes, bytes]]:
    """(what, request head, body) of each malformed request."""

    def request(
        body: bytes, path: str = "/retrieve", method: str = "POST", length: int | None = None
    ) -> bytes:
        length = len(body) if length is None else length
        return (
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        ).encode()

    def case(what: str, body: bytes, **options) -> tuple[str, bytes, bytes]:
        return what, request(body, **options), body

    oversize = b'{"queries": ["' + b"a" * max_body_bytes + b'"]}'
    return [
        case("bad JSON", b"{not json"),
        case("not UTF-8", b'{"queries": ["\xff\xfe"]}'),
        case("a JSON array, not an object", b"[1, 2]"),
        case("queries: a string", b'{"queries": "red"}'),
        case("queries: a number inside", b'{"queries": ["red", 3]}'),
        case("topk: a string", b'{"queries": ["red"], "topk": "3"}'),
        case("topk: true", b'{"queries": ["red"], "topk": true}'),
        case("topk: 1e9", b'{"queries": ["red"], "topk": 1000000000}'),
        case("topk: 5,000 digits", b'{"queries": ["red"], "topk": ' + b"9" * 5000 + b"}"),
        case("return_scores: a string", b'{"queries": ["red"], "return_scores": "yes"}'),
        case("nested JSON, depth 100,000", b'{"queries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        case("a query of 10,000 characters", json.dumps({"queries": ["a" * 10_000]}).encode()),
        case("1,000 queries", json.dumps({"queries": ["a"] * 1_000}).encode()),
        case(f"body over {max_body_bytes:,} bytes", oversize),
        case("Content-Length 10^12, no body", b"", length=10**12),
        (
            "no Content-Length",
            b"POST /retrieve HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            b"",
        ),
        case("unknown path", b"{}", path="/search"),
        case("GET /retrieve", b"", method="GET"),
    ]


@contextlib.contextmanager
def server_process(data_dir: str | None):
    """`sdar retriever serve` (BM25, port 0) in its own process: yields its port; ^C stops it (timed)."""
    command = [sys.executable, "-m", "sdar.cli", "retriever", "serve", "--port", "0"]
    command += ["--data-dir", data_dir] if data_dir else []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/retrieve", line)
        if not found:
            raise SystemExit(f"the server did not start: {line!r} (exit status {process.wait()})")
        print(line.strip())
        yield int(found.group(1))
        began = time.perf_counter()
        process.send_signal(signal.SIGINT)
        status = process.wait(timeout=60)
        print(f"\n^C: the server process ended in {time.perf_counter() - began:.2f} s, exit status {status}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.contextmanager
def server_thread(folder):
    """The server in a thread of this process (as the tests run it): its port."""
    documents = list(build_corpus(folder).documents)
    server = make_server(make_retriever("bm25", documents), "127.0.0.1", 0, document_count=len(documents))
    start_in_thread(server)
    print(f"serving bm25 over {len(documents)} passages in a thread of the benchmark's process")
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=None, help="default: $SEARCHQA_DATA")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=20, help="per client")
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="process: `sdar retriever serve` on its own (default); thread: in this process, whose client "
        "threads then share its interpreter lock",
    )
    args = parser.parse_args()
    if not (1 <= args.clients <= 200 and 1 <= args.requests <= 200):
        parser.error("--clients and --requests: 1 to 200 each (this is a loopback load test, not a flood)")
    folder = resolve_data_dir(args.data_dir)
    queries = [item.question for item in load_dataset("nq", folder)]
    print(f"{os.cpu_count()} CPU(s); {len(queries)} NQ questions as queries")
    serving = server_process(args.data_dir) if args.server == "process" else server_thread(folder)
    with serving as port:
        post(port, json.dumps({"queries": ["warm up"]}).encode())
        figures = load(port, queries, args.clients, args.requests)
        print(
            f"\nload: {args.clients} clients x {args.requests} requests = {args.clients * args.requests}, "
            f"{figures['wall_s']:.1f} s wall"
        )
        print(
            f"  answered 200: {figures['ok']}, resets: {figures['reset']}, other errors: {figures['error']}"
        )
        p50, p99, most = figures["p50_ms"], figures["p99_ms"], figures["max_ms"]
        print(f"  latency ms: p50 {p50:.0f}, p99 {p99:.0f}, max {most:.0f}")
        for detail in figures["first_errors"]:
            print(f"  e.g. {detail}")
        print("\nmalformed requests (status, JSON error body?):")
        for what, head, body in malformed_requests(ServerLimits().max_body_bytes):
            status, answer = raw_exchange(port, head, body)
            try:
                is_json_error = "error" in json.loads(answer)
            except ValueError:
                is_json_error = False
            shown = (
                "no answer (connection closed)" if status is None else f"{status}, JSON error {is_json_error}"
            )
            reason = json.loads(answer)["error"][:70] if is_json_error else answer[:70]
            print(f"  {what:34s} {shown:30s} {reason}")


if __name__ == "__main__":
    main()
