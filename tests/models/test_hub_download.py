"""Hugging Face ids download online and load from the cache offline, against a fake Hub on 127.0.0.1.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, at import, and this test session imported
it offline; so each load runs `sdar chat` in a fresh process with its own environment, as a user would.
"""

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sdar.config import load_config
from sdar.models import build_tiny_model, build_tiny_tokenizer, generate_chat
from sdar.models.backends import make_backend

REPO_ID = "sdar-tests/tiny-chat"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PROMPT = "Where is the mug?"


class FakeHub(ThreadingHTTPServer):
    """One model repository on 127.0.0.1, answered as the Hub answers the calls huggingface_hub makes for
    it: files at `/{repo}/resolve/{revision}/{file}` (with the commit and ETag headers it checks), the
    repository's info at `/api/models/{repo}` and its file listing at `/api/models/{repo}/tree/{revision}`;
    404 with the Hub's error code otherwise. Records each request as "METHOD path"."""

    def __init__(self, repo_id, folder):
        self.repo_id, self.folder, self.requests = repo_id, folder, []
        super().__init__(("127.0.0.1", 0), _FakeHubHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.server_address[1]}"

    def files(self, under=""):
        paths = sorted(path for path in self.folder.rglob("*") if path.is_file())
        names = [path.relative_to(self.folder).as_posix() for path in paths]
        return [name for name in names if not under or name.startswith(under.rstrip("/") + "/")]


class _FakeHubHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet: the test reads `server.requests`
        pass

    def do_HEAD(self):
        self._answer(with_body=False)

    def do_GET(self):
        self._answer(with_body=True)

    def _answer(self, with_body):
        hub, path = self.server, self.path.split("?")[0]
        hub.requests.append(f"{self.command} {path}")
        resolve, api = f"/{hub.repo_id}/resolve/", f"/api/models/{hub.repo_id}"
        if path.startswith(resolve) and "/" in path[len(resolve) :]:
            file = hub.folder / path[len(resolve) :].split("/", 1)[1]
            if file.is_file():
                return self._send(file.read_bytes(), with_body)
            return self._send(b"", with_body, status=404, error="EntryNotFound")
        if path in (api, f"{api}/revision/main"):
            siblings = [{"rfilename": name} for name in hub.files()]
            info = {"id": hub.repo_id, "sha": COMMIT, "private": False, "siblings": siblings}
            return self._send(json.dumps(info).encode(), with_body)
        if path.startswith(f"{api}/tree/main"):
            folder = path[len(f"{api}/tree/main") :].strip("/")
            names = hub.files(folder)
            if folder and not names:
                return self._send(b"", with_body, status=404, error="EntryNotFound")
            listing = [
                {"type": "file", "path": name, "size": (hub.folder / name).stat().st_size, "oid": COMMIT}
                for name in names
            ]
            return self._send(json.dumps(listing).encode(), with_body)
        return self._send(b"", with_body, status=404, error="RepoNotFound")

    def _send(self, data, with_body, status=200, error=None):
        self.send_response(status)
        if error is None:
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        else:
            self.send_header("X-Error-Code", error)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)


@pytest.fixture
def hub(tmp_path):
    folder = tmp_path / "served"
    build_tiny_model(seed=5).save_pretrained(folder)
    build_tiny_tokenizer().save_pretrained(folder)
    server = FakeHub(REPO_ID, folder)
    yield server
    server.shutdown()
    server.server_close()


def sdar_chat(model, hub, hf_home, *, offline):
    environment = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    environment.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(hf_home), NO_PROXY="127.0.0.1", HF_TOKEN="")
    if offline:
        environment["HF_HUB_OFFLINE"] = "1"
    command = [sys.executable, "-m", "sdar.cli", "chat", PROMPT, "--model", model, "--max-new-tokens", "8"]
    return subprocess.run(command, env=environment, capture_output=True, text=True, timeout=180)


def expected_reply():
    """What the served model (seed 5) answers, loaded in-process: greedy, so one exact string."""
    model, tokenizer = build_tiny_model(seed=5), build_tiny_tokenizer()
    backend = make_backend(load_config("smoke"), model, tokenizer)
    return generate_chat(backend, tokenizer, PROMPT, max_new_tokens=8)


@pytest.mark.slow  # two `sdar chat` processes: 13-37 s on 2 shared cores
def test_online_a_hub_id_downloads_into_the_cache_then_loads_offline_from_it(hub, tmp_path):
    hf_home = tmp_path / "hf-home"
    online = sdar_chat(REPO_ID, hub, hf_home, offline=False)
    assert online.returncode == 0, online.stderr
    reply = expected_reply()
    assert reply and online.stdout.splitlines()[0] == reply
    downloads = [request for request in hub.requests if request.startswith(f"GET /{REPO_ID}/resolve/")]
    assert any(request.endswith("/model.safetensors") for request in downloads)
    cached = hf_home / "hub" / f"models--{REPO_ID.replace('/', '--')}" / "snapshots" / COMMIT
    assert (cached / "model.safetensors").is_file() and (cached / "tokenizer.json").is_file()

    hub.requests.clear()
    offline = sdar_chat(REPO_ID, hub, hf_home, offline=True)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.splitlines()[0] == reply
    assert hub.requests == []  # offline: nothing asked of the Hub


def test_online_an_id_the_hub_does_not_have_fails_in_one_line_naming_it(hub, tmp_path):
    result = sdar_chat("sdar-tests/absent", hub, tmp_path / "hf-home", offline=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("sdar chat: error: model.name='sdar-tests/absent' could not be loaded from the ")
    assert "is not a valid model identifier" in line  # transformers' reason, kept on the line
    assert any(request.startswith("HEAD /sdar-tests/absent/resolve/") for request in hub.requests)
