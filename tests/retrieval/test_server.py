"""The retrieval server over loopback: Search-R1 answers, concurrent clients, refused requests, the client."""

import http.client
import json
import socket
import threading
import time

import pytest

from sdar.errors import ActionableError, ConfigError
from sdar.retrieval.base import Document, Hit
from sdar.retrieval.http import HttpRetriever, RetrieverServerError
from sdar.retrieval.server import ServerLimits, make_server, parse_retrieve_request, start_in_thread

pytest.importorskip("fastapi", reason="the retrieval server needs the search extra (fastapi, uvicorn)")
pytest.importorskip("uvicorn", reason="the retrieval server needs the search extra (fastapi, uvicorn)")


class KeywordRetriever:
    """A deterministic stand-in: documents whose contents contain the query's first word, in order."""

    def __init__(self, documents):
        self.documents = documents
        self.calls = 0

    def search(self, queries, topk):
        self.calls += 1
        results = []
        for query in queries:
            word = query.split()[0].lower() if query.split() else ""
            found = [d for d in self.documents if word and word in d.contents.lower()][:topk]
            results.append([Hit(d, float(len(found) - rank)) for rank, d in enumerate(found)])
        return results


DOCUMENTS = [Document(str(n), f'"Title {n}"\ncolor {"red" if n % 2 else "blue"} item {n}') for n in range(10)]
LIMITS = ServerLimits(max_body_bytes=2_000, max_queries=4, max_query_chars=100, max_topk=5, default_topk=3)


@pytest.fixture
def server():
    instance = make_server(KeywordRetriever(DOCUMENTS), "127.0.0.1", 0, LIMITS, document_count=len(DOCUMENTS))
    start_in_thread(instance)
    yield instance
    instance.shutdown()
    instance.server_close()


def request(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        payload = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(
            method, path, body=payload, headers=headers or {"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_binds_loopback_and_reports_health(server):
    assert server.server_address[0] == "127.0.0.1"
    assert request(server, "GET", "/health") == (200, {"status": "ok", "documents": 10})


def test_retrieve_answers_both_search_r1_shapes(server):
    status, body = request(
        server, "POST", "/retrieve", {"queries": ["red", "blue thing"], "topk": 2, "return_scores": True}
    )
    assert status == 200 and len(body["result"]) == 2
    assert body["result"][0] == [
        {"document": {"id": "1", "contents": '"Title 1"\ncolor red item 1'}, "score": 2.0},
        {"document": {"id": "3", "contents": '"Title 3"\ncolor red item 3'}, "score": 1.0},
    ]
    status, body = request(server, "POST", "/retrieve", {"queries": ["blue"]})  # default topk 3, no scores
    assert status == 200 and [doc["id"] for doc in body["result"][0]] == ["0", "2", "4"]
    assert request(server, "POST", "/retrieve", {"queries": []}) == (200, {"result": []})


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json", 400, "malformed JSON"),
        ([1, 2], 400, "JSON object with 'queries'"),
        ({"query": "red"}, 400, "'queries' must be a list of strings"),
        ({"queries": ["red", 3]}, 400, "'queries' must be a list of strings"),
        ({"queries": ["a"] * 5}, 413, "5 queries in one request; the limit is 4"),
        ({"queries": ["a" * 101]}, 413, "101 characters; the limit is 100"),
        ({"queries": ["red"], "topk": 0}, 400, "positive integer"),
        ({"queries": ["red"], "topk": True}, 400, "positive integer"),
        ({"queries": ["red"], "topk": 6}, 400, "'topk' 6 exceeds the limit 5"),
        ({"queries": ["red"], "return_scores": "yes"}, 400, "'return_scores' must be true or false"),
        ({"queries": ["x" * 50] * 4, "pad": "y" * 2_000}, 413, "the limit is 2000"),
    ],
)
def test_bad_requests_get_a_4xx_json_reason(server, body, status, reason):
    got_status, got = request(server, "POST", "/retrieve", body)
    assert got_status == status and reason in got["error"]


def test_wrong_path_method_and_missing_length(server):
    assert request(server, "POST", "/search", {"queries": []})[0] == 404
    assert request(server, "GET", "/retrieve")[0] == 405
    assert request(server, "PUT", "/retrieve", {"queries": []})[0] == 405
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.putrequest("POST", "/retrieve")
    connection.endheaders()  # no body, no Content-Length
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()


def test_concurrent_clients_each_get_their_own_answers(server):
    errors, answers = [], {}

    def client(number):
        try:
            word = "red" if number % 2 else "blue"
            retriever = HttpRetriever(
                f"http://127.0.0.1:{server.server_address[1]}", max_queries_per_request=4
            )
            for _ in range(10):
                results = retriever.search([word] * 6, topk=2)  # 6 queries: split into requests of 4 and 2
                answers.setdefault(number, set()).update(
                    h.document.passage_id for hits in results for h in hits
                )
        except Exception as error:  # noqa: BLE001 - collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    for number in range(8):
        assert answers[number] == ({"1", "3"} if number % 2 else {"0", "2"})


def test_client_reports_server_refusals_and_unreachable_servers(server):
    client = HttpRetriever(f"http://127.0.0.1:{server.server_address[1]}/retrieve")
    with pytest.raises(RetrieverServerError, match="answered 400: .*exceeds the limit 5"):
        client.search(["red"], topk=9)
    closed = make_server(KeywordRetriever(DOCUMENTS), "127.0.0.1", 0)
    port = closed.server_address[1]
    closed.server_close()
    with pytest.raises(RetrieverServerError, match="unreachable"):
        HttpRetriever(f"http://127.0.0.1:{port}", timeout_s=2).search(["red"], topk=1)


def test_parse_request_defaults():
    assert parse_retrieve_request(b'{"queries": ["q"]}', LIMITS) == (["q"], 3, False)
    assert parse_retrieve_request(b'{"queries": ["q"], "topk": null}', LIMITS) == (["q"], 3, False)


def test_env_retrieves_through_the_server(server):
    pytest.importorskip("bm25s")
    from sdar.envs.search_qa import QuestionBank, SearchQAEnv
    from sdar.envs.search_qa.datasets import QAItem

    retriever = HttpRetriever(f"http://127.0.0.1:{server.server_address[1]}")
    env = SearchQAEnv(QuestionBank([QAItem("1", "Which color?", ("red",), "nq")], retriever=retriever))
    env.reset("nq/1")
    result = env.step("<search>red items</search>")
    assert result.observation == (
        "<information>Doc 1(Title: Title 1) color red item 1\nDoc 2(Title: Title 3) color red item 3\n"
        "Doc 3(Title: Title 5) color red item 5</information>"
    )
    server.shutdown()  # the server goes away: the episode ends with the error recorded, no exception
    server.server_close()
    failed = env.step("<search>red</search>")
    assert failed.done and "retrieval failed" in failed.info["error"]


# ---- load, hostile requests, the event loop and shutdown --------------------------------------------------
def running(retriever, limits=LIMITS):
    instance = make_server(retriever, "127.0.0.1", 0, limits, document_count=len(DOCUMENTS))
    start_in_thread(instance)
    return instance


@pytest.fixture
def default_server():
    """The limits `sdar retriever serve` runs with (1 MB bodies: room for hostile payloads)."""
    instance = running(KeywordRetriever(DOCUMENTS), ServerLimits())
    yield instance
    instance.shutdown()
    instance.server_close()


def exchange(server, raw: bytes, timeout_s: float = 10.0) -> tuple[int, dict]:
    """Send raw bytes (no client-side checks) and read the whole answer: (status, JSON body)."""
    with socket.create_connection(server.server_address[:2], timeout=timeout_s) as sock:
        sock.sendall(raw)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), received[:300]
    return int(head.split()[1]), json.loads(body)


def post_raw(
    body: bytes, *, path: str = "/retrieve", method: str = "POST", length: int | None = None
) -> bytes:
    length = len(body) if length is None else length
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    return head.encode() + body


def test_fifty_clients_twenty_requests_each_without_a_reset(server):
    """The load that reset 5-36 of 1,000 requests against a listen backlog of 5: every request answered."""
    port, answers, failures, start = server.server_address[1], [], [], threading.Barrier(50)

    def client(number):
        word, expected = ("red", ["1", "3"]) if number % 2 else ("blue", ["0", "2"])
        start.wait()
        for _ in range(20):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # a new one, as urllib
            try:
                connection.request("POST", "/retrieve", json.dumps({"queries": [word], "topk": 2}))
                response = connection.getresponse()
                body = json.loads(response.read())
                answers.append(response.status == 200 and [d["id"] for d in body["result"][0]] == expected)
            except Exception as error:  # noqa: BLE001 - a reset or refusal: counted and asserted below
                failures.append(f"{type(error).__name__}: {error}")
            finally:
                connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == [] and len(answers) == 1000 and all(answers)


DEEP = b"[" * 100_000 + b"]" * 100_000


CHUNKED = b"POST /retrieve HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        pytest.param(post_raw(b'{"queries": ["red"], "topk": ' + b"9" * 5000 + b"}"), 400, "malformed JSON",
                     id="topk of 5000 digits"),
        pytest.param(post_raw(b'{"queries": ["red"], "topk": ' + b"9" * 4000 + b"}"), 400,
                     "(4000 characters) exceeds the limit 50", id="topk of 4000 digits"),
        pytest.param(post_raw(b'{"queries": ' + DEEP + b"}"), 400, "malformed JSON: recursion limit",
                     id="queries nested 100000 deep"),
        pytest.param(post_raw(b'{"queries": ["red"], "extra": ' + DEEP + b"}"), 400,
                     "malformed JSON: recursion limit", id="unknown field nested 100000 deep"),
        pytest.param(post_raw(b'{"queries": ["\xff\xfe"]}'), 400, "malformed JSON", id="not UTF-8"),
        pytest.param(post_raw(b""), 400, "malformed JSON", id="empty body"),
        pytest.param(post_raw(b'{"queries": ["red"]} and more'), 400, "malformed JSON", id="trailing bytes"),
        pytest.param(post_raw(b'{"queries": ["red"], "topk": 3.0}'), 400,
                     "'topk' must be a positive integer, got 3.0", id="topk a float"),
        pytest.param(post_raw(b'{"queries": ["red"], "topk": "3"}'), 400,
                     "'topk' must be a positive integer, got '3'", id="topk a string"),
        pytest.param(post_raw(b'{"queries": ["red"], "topk": -1}'), 400,
                     "'topk' must be a positive integer, got -1", id="topk negative"),
        pytest.param(post_raw(b'{"queries": ["red"], "topk": 1000000000}'), 400,
                     "'topk' 1000000000 exceeds the limit 50", id="topk 1e9"),
        pytest.param(post_raw(b'{"queries": [["red"]]}'), 400, "'queries' must be a list of strings",
                     id="a query that is a list"),
        pytest.param(post_raw(b'{"queries": ["' + b"q" * 3000 + b'"]}'), 413,
                     "3000 characters; the limit is 2000", id="a query too long"),
        pytest.param(post_raw(b"", length=10**12), 413, "body of 1000000000000 bytes; the limit is 1000000",
                     id="Content-Length 1e12, no body"),
        pytest.param(post_raw(b"x" * 1_000_001), 413, "body of 1000001 bytes", id="body over 1 MB, sent"),
        pytest.param(CHUNKED + b"2\r\n{}\r\n0\r\n\r\n", 411, "Content-Length header is required",
                     id="chunked body"),
        pytest.param(post_raw(b"", path="/health"), 405, "use GET /health", id="POST /health"),
        pytest.param(post_raw(b"", path="/", method="GET"), 404, "unknown path /", id="GET /"),
    ],
)  # fmt: skip
def test_hostile_requests_get_a_json_4xx(default_server, raw, status, reason):
    got_status, got = exchange(default_server, raw)
    assert (got_status, reason in got["error"]) == (status, True), got
    assert len(got["error"]) < 200  # a reason, not the payload echoed back


def test_a_body_that_never_arrives_gets_408():
    instance = running(KeywordRetriever(DOCUMENTS), ServerLimits(socket_timeout_s=0.5))
    try:
        started = time.perf_counter()
        status, body = exchange(instance, post_raw(b'{"queries"', length=100))
        assert (status, body) == (408, {"error": "the body did not arrive within 0.5 s"})
        assert time.perf_counter() - started < 5
    finally:
        instance.shutdown()
        instance.server_close()


class GatedRetriever(KeywordRetriever):
    """Searches only once `release` is set; records how many searches ever ran at once."""

    def __init__(self, documents):
        super().__init__(documents)
        self.entered, self.release = threading.Event(), threading.Event()
        self.active = self.most_active = 0

    def search(self, queries, topk):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        self.entered.set()
        self.release.wait(timeout=30)
        time.sleep(0.01)
        self.active -= 1
        return super().search(queries, topk)


def test_the_event_loop_answers_while_searches_run_one_at_a_time():
    retriever = GatedRetriever(DOCUMENTS)
    instance = running(retriever)
    try:
        results = []

        def client():
            results.append(request(instance, "POST", "/retrieve", {"queries": ["red"]}))

        clients = [threading.Thread(target=client) for _ in range(4)]
        for client in clients:
            client.start()
        assert retriever.entered.wait(timeout=10)
        started = time.perf_counter()  # a search is blocked: health and refusals still answer at once
        assert request(instance, "GET", "/health") == (200, {"status": "ok", "documents": 10})
        assert request(instance, "POST", "/retrieve", {"queries": ["red"], "topk": 9})[0] == 400
        assert time.perf_counter() - started < 2
        retriever.release.set()
        for client in clients:
            client.join(timeout=30)
        assert [status for status, _ in results] == [200] * 4
        assert retriever.most_active == 1 and retriever.calls == 4  # the retriever never ran twice at once
    finally:
        retriever.release.set()
        instance.shutdown()
        instance.server_close()


class FailingRetriever:
    def search(self, queries, topk):
        raise RuntimeError("index file vanished")


def test_a_failing_retriever_answers_500_json_and_the_server_keeps_serving():
    instance = running(FailingRetriever())
    try:
        for _ in range(2):
            assert request(instance, "POST", "/retrieve", {"queries": ["red"]}) == (
                500,
                {"error": "retrieval failed: RuntimeError: index file vanished"},
            )
        assert request(instance, "GET", "/health")[0] == 200
    finally:
        instance.shutdown()
        instance.server_close()


def test_shutdown_is_prompt_closes_the_port_and_leaves_no_thread():
    before = set(threading.enumerate())
    instance = make_server(KeywordRetriever(DOCUMENTS), "127.0.0.1", 0, LIMITS)
    serving = start_in_thread(instance)
    port = instance.server_address[1]
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # a keep-alive connection left open
    idle.request("POST", "/retrieve", json.dumps({"queries": ["red"]}))
    assert idle.getresponse().read()
    started = time.perf_counter()
    instance.shutdown()
    instance.server_close()
    assert time.perf_counter() - started < 3
    serving.join(timeout=5)
    assert not serving.is_alive() and set(threading.enumerate()) == before
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    idle.close()


def test_limits_are_checked_when_the_server_is_made():
    with pytest.raises(ConfigError, match="max_topk=0: it must be a positive integer"):
        ServerLimits(max_topk=0)
    with pytest.raises(ConfigError, match="max_queries=2.5: it must be a positive integer"):
        ServerLimits(max_queries=2.5)
    with pytest.raises(ConfigError, match="socket_timeout_s=-1: it must be a positive number"):
        ServerLimits(socket_timeout_s=-1)
    assert ServerLimits(socket_timeout_s=2).socket_timeout_s == 2
    with pytest.raises(ConfigError, match="default topk 9 exceeds max topk 5"):
        ServerLimits(max_topk=5, default_topk=9)


def test_a_port_in_use_is_a_one_line_error(server):
    with pytest.raises(
        ActionableError, match=r"cannot listen on 127\.0\.0\.1:\d+: .*--port 0 takes any free port"
    ):
        make_server(KeywordRetriever(DOCUMENTS), "127.0.0.1", server.server_address[1])
