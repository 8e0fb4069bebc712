"""An in-memory Hugging Face Hub on loopback, driven by the real `huggingface_hub` client (no internet).

`FakeHub` is a small threaded HTTP server that implements the endpoints `huggingface_hub` 2.x calls for
creating model repos, committing files (every file is offered the "regular" upload mode, so content travels
base64-encoded inside the NDJSON commit payload: no LFS, no Xet) and downloading them again (`/resolve`, tree
listings, repo info). The `fake_hub` pytest fixture starts one on 127.0.0.1 (random free port), points the
client, `transformers` and `peft` at it, gives them a clean cache and token store, makes retry back-offs
instantaneous and refuses any connection to a non-loopback host.

Typical use::

    def test_publish(fake_hub, tmp_path):
        api = fake_hub.api()  # HfApi(endpoint=fake_hub.url, token=fake_hub.token)
        api.create_repo("test-user/adapter", exist_ok=True)
        api.upload_folder(repo_id="test-user/adapter", folder_path=tmp_path)
        assert fake_hub.files("test-user/adapter") == {...}
        fake_hub.fail_next("/commit/", status=500, times=10)  # every retry of the next commit fails

Repos are stored as commits (40-hex sha) of {path: bytes}; branches point at commits. Writes need
`Authorization: Bearer <token>`; public repos can be read anonymously, private ones need the token.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import ipaddress
import itertools
import json
import socket
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USERNAME = "test-user"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
REPO_NOT_FOUND = "Repository not found"

_TYPE_FROM_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_MAX_TREE_PAGE_WITH_EXPAND = 50
_REPO_ACTIONS = ("revision", "tree", "paths-info", "preupload", "commit", "commits", "refs", "branch")


def git_blob_oid(content: bytes) -> str:
    """The git blob id of `content` (what the Hub reports as a regular file's `oid` / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, bytes]
    title: str
    message: str
    date: datetime


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    commits: dict[str, Commit] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # "main" / "refs/pr/1" -> commit oid
    nb_pull_requests: int = 0


@dataclass
class RecordedRequest:
    method: str
    path: str  # raw path, without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body_size: int
    status: int | None = None

    @property
    def authorized(self) -> bool:
        return self.headers.get("authorization", "").startswith("Bearer ")


@dataclass
class _Failure:
    path_substring: str
    status: int
    method: str | None
    message: str
    headers: dict[str, str]
    remaining: int


class HubError(Exception):
    """Raised by handlers: becomes an HTTP error answer with a JSON `{"error": message}` body."""

    def __init__(
        self, status: int, message: str, *, code: str | None = None, headers: dict | None = None, **extra: Any
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra  # more fields of the JSON body
        self.headers = dict(headers or {})
        if code is not None:
            self.headers["X-Error-Code"] = code


class NetworkAccessBlocked(RuntimeError):
    """Raised (not an OSError, so that no client mistakes it for "offline, use the cache") on a non-loopback
    connection attempt while the `fake_hub` fixture is active."""


class FakeHub:
    """In-memory Hub server. Use `start()`/`stop()` or the `fake_hub` fixture."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        username: str = DEFAULT_USERNAME,
        *,
        host: str = "127.0.0.1",
        tree_page_size: int = 1000,
        initial_gitattributes: bool = False,
    ) -> None:
        self.token = token
        self.username = username
        self.host = host
        self.tree_page_size = tree_page_size
        self.initial_gitattributes = initial_gitattributes
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[tuple[str, str]] = []  # (method, path) of endpoints this fake does not implement
        self.errors: list[str] = []  # tracebacks of bugs in the fake itself (answered with 500)
        self.blocked_connections: list[str] = []  # filled by the fixture's network guard
        self.backoff_sleeps: list[float] = []  # client retry sleeps, skipped by the fixture
        self._repos: dict[tuple[str, str], Repo] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._counter = itertools.count()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        handler = type("_BoundHandler", (_Handler,), {"hub": self})
        self._httpd = ThreadingHTTPServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api(self, token: str | bool | None = None):
        """An `HfApi` bound to this server, with the accepted token unless another one is given."""
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.url, token=self.token if token is None else token)

    # ------------------------------------------------------------------ test helpers

    def fail_next(
        self,
        path_substring: str,
        status: int = 500,
        *,
        times: int = 1,
        method: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next `times` requests whose path contains `path_substring` (and whose method is `method`,
        if given) with `status` and a JSON `{"error": message}` body, before any other processing."""
        with self._lock:
            self._failures.append(
                _Failure(
                    path_substring=path_substring,
                    status=status,
                    method=method.upper() if method else None,
                    message=message or f"Internal Error - injected failure ({status})",
                    headers=dict(headers or {}),
                    remaining=times,
                )
            )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def calls(self, method: str | None = None, contains: str | None = None) -> list[tuple[str, str]]:
        """(method, path) of the recorded requests, optionally filtered."""
        return [
            (r.method, r.path)
            for r in list(self.requests)
            if (method is None or r.method == method.upper()) and (contains is None or contains in r.path)
        ]

    def create_repo(self, repo_id: str, *, private: bool = False, repo_type: str = "model") -> Repo:
        """Create a repo directly (no HTTP), with its initial commit."""
        with self._lock:
            key = (repo_type, repo_id)
            if key in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = Repo(repo_type=repo_type, repo_id=repo_id, private=private, created_at=datetime.now(timezone.utc))
            initial = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}
            self._repos[key] = repo
            self._new_commit(repo, "main", initial if self.initial_gitattributes else {}, "initial commit", "")
            return repo

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | str],
        *,
        message: str = "seed",
        revision: str = "main",
        repo_type: str = "model",
        delete: tuple[str, ...] | list[str] = (),
    ) -> str:
        """Commit `files` (added/overwritten) and `delete` directly on top of `revision`; returns the commit oid."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            tree = dict(repo.commits[repo.refs[revision]].files)
            for path in delete:
                tree.pop(path, None)
            for path, content in files.items():
                tree[path] = content.encode() if isinstance(content, str) else bytes(content)
            return self._new_commit(repo, revision, tree, message, "").oid

    def repo_exists(self, repo_id: str, repo_type: str = "model") -> bool:
        return (repo_type, repo_id) in self._repos

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        return self._get_repo(repo_type, repo_id).private

    def head(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self._resolve(self._get_repo(repo_type, repo_id), revision).oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """{path: content} of `revision` (default: latest commit on main)."""
        with self._lock:
            return dict(self._resolve(self._get_repo(repo_type, repo_id), revision).files)

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[Commit]:
        """Commits reachable from `revision`, newest first (the last one is the repo's initial commit)."""
        with self._lock:
            repo = self._get_repo(repo_type, repo_id)
            return list(self._history(repo, self._resolve(repo, revision)))

    def branches(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        with self._lock:
            return dict(self._get_repo(repo_type, repo_id).refs)

    # ------------------------------------------------------------------ storage internals

    def _get_repo(self, repo_type: str, repo_id: str) -> Repo:
        try:
            return self._repos[(repo_type, repo_id)]
        except KeyError:
            raise KeyError(f"no {repo_type} repo {repo_id!r} on the fake hub") from None

    def _new_commit(self, repo: Repo, ref: str, tree: dict[str, bytes], title: str, message: str) -> Commit:
        parent = repo.refs.get(ref)
        digest = hashlib.sha1()
        for part in (repo.repo_id, ref, parent or "", title, message, str(next(self._counter))):
            digest.update(part.encode() + b"\0")
        for path in sorted(tree):
            digest.update(path.encode() + b"\0" + git_blob_oid(tree[path]).encode())
        commit = Commit(
            oid=digest.hexdigest(),
            parent=parent,
            files=tree,
            title=title,
            message=message,
            date=datetime.now(timezone.utc),
        )
        repo.commits[commit.oid] = commit
        repo.refs[ref] = commit.oid
        return commit

    @staticmethod
    def _resolve(repo: Repo, revision: str) -> Commit:
        oid = repo.refs.get(revision)
        if oid is None and revision.startswith("refs/heads/"):
            oid = repo.refs.get(revision[len("refs/heads/") :])
        if oid is None and revision in repo.commits:
            oid = revision
        if oid is None:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return repo.commits[oid]

    @staticmethod
    def _history(repo: Repo, commit: Commit) -> Iterator[Commit]:
        current: Commit | None = commit
        while current is not None:
            yield current
            current = repo.commits[current.parent] if current.parent else None

    def _last_commit_touching(self, repo: Repo, head: Commit, path: str) -> Commit:
        def snapshot(commit: Commit) -> dict[str, str]:
            return {
                p: git_blob_oid(c)
                for p, c in commit.files.items()
                if p == path or p.startswith(path.rstrip("/") + "/")
            }

        last = head
        for commit in self._history(repo, head):
            parent = repo.commits[commit.parent] if commit.parent else None
            if parent is None or snapshot(parent) != snapshot(commit):
                return commit
            last = parent
        return last

    def _failure_for(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.path_substring in path and failure.method in (None, method):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure
        return None


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    timeout = 60
    server_version = "FakeHub/1.0"

    # --------------------------------------------------------------- plumbing

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _handle(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        self.method = method
        self.raw_path = split.path
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.body = self._read_body()
        self.record = RecordedRequest(
            method=method,
            path=split.path,
            query=self.query,
            headers={k.lower(): v for k, v in self.headers.items()},
            body_size=len(self.body),
        )
        with hub._lock:
            hub.requests.append(self.record)
        failure = hub._failure_for(method, split.path)
        if failure is not None:
            self._send_json(failure.status, {"error": failure.message}, headers=failure.headers)
            return
        try:
            self._route()
        except HubError as error:
            self._send_json(error.status, {"error": error.message, **error.extra}, headers=error.headers)
        except Exception:  # a bug in the fake: answer 500 and let the fixture report it
            text = traceback.format_exc()
            with hub._lock:
                hub.errors.append(text)
            self._send_json(500, {"error": f"Fake hub internal error:\n{text}"})

    def _send(self, status: int, body: bytes, headers: dict[str, str], *, content_length: int | None = None) -> None:
        self.record.status = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        if self.method != "HEAD" and body:
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any, *, headers: dict[str, str] | None = None) -> None:
        all_headers = {"Content-Type": "application/json; charset=utf-8"}
        if status >= 400 and isinstance(payload, dict) and "error" in payload:
            all_headers.setdefault("X-Error-Message", str(payload["error"]).splitlines()[0][:200])
        all_headers.update(headers or {})
        self._send(status, json.dumps(payload).encode(), all_headers)

    def _json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    # --------------------------------------------------------------- auth

    def _authenticated(self) -> bool:
        """True with the accepted token, False without any token; 401 for any other token."""
        header = self.headers.get("Authorization")
        if header is None:
            return False
        if header != f"Bearer {self.hub.token}":
            raise HubError(401, INVALID_CREDENTIALS)
        return True

    def _require_write(self) -> None:
        if not self._authenticated():
            raise HubError(401, INVALID_CREDENTIALS)

    def _repo_for_read(self, repo_type: str, repo_id: str) -> Repo:
        authenticated = self._authenticated()
        repo = self.hub._repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authenticated):
            raise HubError(404 if authenticated else 401, REPO_NOT_FOUND, code="RepoNotFound")
        return repo

    def _repo_for_write(self, repo_type: str, repo_id: str) -> Repo:
        self._require_write()
        return self._repo_for_read(repo_type, repo_id)

    # --------------------------------------------------------------- routing

    def _route(self) -> None:
        segments = [unquote(s) for s in self.raw_path.split("/")[1:]]
        method = self.method
        with self.hub._lock:
            if segments[:1] == ["api"]:
                self._route_api(method, segments[1:])
                return
            repo_type = "model"
            if segments and segments[0] in ("datasets", "spaces"):
                repo_type = _TYPE_FROM_PLURAL[segments[0]]
                segments = segments[1:]
            if method in ("GET", "HEAD"):
                if len(segments) >= 5 and segments[2] == "resolve":
                    repo_id = "/".join(segments[:2])
                    self._resolve_file(repo_type, repo_id, segments[3], "/".join(segments[4:]))
                    return
                if len(segments) >= 4 and segments[1] == "resolve":  # canonical id without namespace: never here
                    self._resolve_file(repo_type, segments[0], segments[2], "/".join(segments[3:]))
                    return
        self._unhandled()

    def _route_api(self, method: str, seg: list[str]) -> None:
        if seg == ["whoami-v2"] and method == "GET":
            return self._whoami()
        if seg == ["agent-harnesses"] and method == "GET":
            return self._send_json(200, {"standardEnvVars": [], "harnesses": {}})
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml()
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if seg == ["repos", "delete"] and method == "DELETE":
            return self._delete_repo()
        if len(seg) >= 3 and seg[0] in _TYPE_FROM_PLURAL:
            repo_type = _TYPE_FROM_PLURAL[seg[0]]
            repo_id, rest = f"{seg[1]}/{seg[2]}", seg[3:]
            if not self.hub.repo_exists(repo_id, repo_type) and seg[2] in _REPO_ACTIONS:
                repo_id, rest = seg[1], seg[2:]  # canonical id without namespace (e.g. "gpt2"): never here
            if not rest and method == "GET":
                return self._repo_info(repo_type, repo_id, "main")
            action, args = (rest[0], rest[1:]) if rest else ("", [])
            if action == "revision" and len(args) == 1 and method == "GET":
                return self._repo_info(repo_type, repo_id, args[0])
            if action == "tree" and len(args) >= 1 and method == "GET":
                return self._tree(repo_type, repo_id, args[0], "/".join(args[1:]))
            if action == "paths-info" and len(args) == 1 and method == "POST":
                return self._paths_info(repo_type, repo_id, args[0])
            if action == "preupload" and len(args) == 1 and method == "POST":
                return self._preupload(repo_type, repo_id, args[0])
            if action == "commit" and len(args) == 1 and method == "POST":
                return self._commit(repo_type, repo_id, args[0])
            if action == "commits" and len(args) == 1 and method == "GET":
                return self._list_commits(repo_type, repo_id, args[0])
            if action == "refs" and not args and method == "GET":
                return self._refs(repo_type, repo_id)
            if action == "branch" and len(args) == 1 and method in ("POST", "DELETE"):
                return self._branch(repo_type, repo_id, args[0])
        self._unhandled()

    def _unhandled(self) -> None:
        with self.hub._lock:
            self.hub.unhandled.append((self.method, self.raw_path))
        raise HubError(404, f"Fake hub does not implement {self.method} {self.raw_path}")

    # --------------------------------------------------------------- endpoints: account & repos

    def _whoami(self) -> None:
        if not self._authenticated():
            raise HubError(401, INVALID_CREDENTIALS)
        hub = self.hub
        self._send_json(
            200,
            {
                "type": "user",
                "id": hashlib.sha1(hub.username.encode()).hexdigest()[:24],
                "name": hub.username,
                "fullname": hub.username,
                "email": f"{hub.username}@example.invalid",
                "canPay": False,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake-hub", "role": "write"}},
            },
        )

    def _validate_yaml(self) -> None:
        content = str(self._json_body().get("content", ""))
        errors = []
        if content.startswith("---"):
            lines = content.splitlines()
            try:
                end = next(i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---")
            except StopIteration:
                end = None
            if end is not None:
                try:
                    import yaml

                    metadata = yaml.safe_load("\n".join(lines[1:end]))
                    if metadata is not None and not isinstance(metadata, dict):
                        errors.append({"message": "YAML metadata must be a mapping"})
                except ImportError:
                    pass
                except Exception as error:  # yaml.YAMLError
                    errors.append({"message": f"Invalid YAML metadata: {error}"})
        self._send_json(400 if errors else 200, {"errors": errors, "warnings": []})

    def _create_repo(self) -> None:
        self._require_write()
        payload = self._json_body()
        name = payload.get("name")
        if not name:
            raise HubError(400, "Missing repo name")
        repo_type = payload.get("type") or "model"
        if repo_type not in _URL_PREFIX:
            raise HubError(400, f"Unsupported repo type {repo_type!r}")
        repo_id = f"{payload.get('organization') or self.hub.username}/{name}"
        url = f"{self.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}"
        if self.hub.repo_exists(repo_id, repo_type):
            # `create_repo(exist_ok=True)` reads the repo URL from this 409 answer.
            raise HubError(409, f"You already created this {repo_type} repo", url=url)
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        self.hub.create_repo(repo_id, private=private, repo_type=repo_type)
        self._send_json(200, {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()[:24]})

    def _delete_repo(self) -> None:
        self._require_write()
        payload = self._json_body()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.hub.username}/{payload.get('name')}"
        self._repo_for_write(repo_type, repo_id)
        del self.hub._repos[(repo_type, repo_id)]
        self._send_json(200, {})

    def _repo_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)
        commit = self.hub._resolve(repo, revision)
        with_blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(commit.files[path]), blobId=git_blob_oid(commit.files[path]))
            siblings.append(sibling)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
            card_data = _card_data(commit.files.get("README.md"))
            if card_data:
                info["cardData"] = card_data
                tags = card_data.get("tags")
                info["tags"] = [tags] if isinstance(tags, str) else list(tags or [])
                if isinstance(card_data.get("library_name"), str):
                    info["library_name"] = card_data["library_name"]
        self._send_json(200, info)

    # --------------------------------------------------------------- endpoints: listing

    def _entry(self, repo: Repo, commit: Commit, path: str, *, expand: bool) -> dict[str, Any]:
        if path in commit.files:
            content = commit.files[path]
            entry: dict[str, Any] = {"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path}
        else:
            prefix = path + "/"
            digest = hashlib.sha1()
            for child in sorted(p for p in commit.files if p.startswith(prefix)):
                digest.update(child.encode() + b"\0" + git_blob_oid(commit.files[child]).encode())
            entry = {"type": "directory", "oid": digest.hexdigest(), "size": 0, "path": path}
        if expand:
            last = self.hub._last_commit_touching(repo, commit, path)
            entry["lastCommit"] = {"id": last.oid, "title": last.title, "date": _iso(last.date)}
        return entry

    @staticmethod
    def _all_paths(commit: Commit) -> set[str]:
        paths = set(commit.files)
        for path in commit.files:
            parts = path.split("/")
            paths.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return paths

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)
        commit = self.hub._resolve(repo, revision)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        all_paths = self._all_paths(commit)
        path = path.strip("/")
        if path and (path not in all_paths or path in commit.files):
            raise HubError(
                404, f"Entry not found: {path}", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid}
            )
        prefix = path + "/" if path else ""
        listed = sorted(p for p in all_paths if p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :]))
        page_size = self.hub.tree_page_size
        if expand:
            page_size = min(page_size, _MAX_TREE_PAGE_WITH_EXPAND)
        start = int(self.query.get("cursor", ["0"])[0] or 0)
        page = listed[start : start + page_size]
        headers = {"X-Repo-Commit": commit.oid}
        if start + page_size < len(listed):
            query = {k: v[-1] for k, v in self.query.items()}
            query["cursor"] = str(start + page_size)
            headers["Link"] = f'<{self.hub.url}{self.raw_path}?{urlencode(query)}>; rel="next"'
        self._send_json(200, [self._entry(repo, commit, p, expand=expand) for p in page], headers=headers)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)
        commit = self.hub._resolve(repo, revision)
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
            form = self._json_body()
            paths, expand = form.get("paths", []), bool(form.get("expand"))
        else:
            form = parse_qs(self.body.decode(), keep_blank_values=True)
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[0].lower() in ("1", "true")
        all_paths = self._all_paths(commit)
        found = [p.strip("/") for p in paths if p.strip("/") in all_paths]
        self._send_json(200, [self._entry(repo, commit, p, expand=expand) for p in found])

    def _list_commits(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)
        head = self.hub._resolve(repo, revision)
        items = [
            {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "date": _iso(c.date),
                "authors": [{"user": self.hub.username}],
            }
            for c in self.hub._history(repo, head)
        ]
        self._send_json(200, items)

    def _refs(self, repo_type: str, repo_id: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)

        def ref(name: str, oid: str) -> dict[str, str]:
            full = name if name.startswith("refs/") else f"refs/heads/{name}"
            return {"name": name, "ref": full, "targetCommit": oid}

        payload: dict[str, Any] = {
            "branches": [ref(n, o) for n, o in repo.refs.items() if not n.startswith("refs/pr/")],
            "converts": [],
            "tags": [],
        }
        if self.query.get("include_prs"):
            payload["pullRequests"] = [ref(n, o) for n, o in repo.refs.items() if n.startswith("refs/pr/")]
        self._send_json(200, payload)

    # --------------------------------------------------------------- endpoints: writing

    def _branch(self, repo_type: str, repo_id: str, branch: str) -> None:
        repo = self._repo_for_write(repo_type, repo_id)
        if self.method == "DELETE":
            if branch not in repo.refs or branch == "main":
                raise HubError(404 if branch not in repo.refs else 403, f"Cannot delete branch {branch}")
            del repo.refs[branch]
            return self._send_json(200, {})
        if branch in repo.refs:
            raise HubError(409, "Reference already exists")
        starting_point = self._json_body().get("startingPoint") or "main"
        repo.refs[branch] = self.hub._resolve(repo, starting_point).oid
        self._send_json(200, {})

    def _preupload(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo_for_write(repo_type, repo_id)
        try:
            current = self.hub._resolve(repo, revision).files
        except HubError:
            if not self.query.get("create_pr"):
                raise
            current = {}
        files = []
        for item in self._json_body().get("files", []):
            existing = current.get(item["path"])
            files.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(existing) if existing is not None else None,
                }
            )
        self._send_json(200, {"files": files, "commitOid": repo.refs.get(revision)})

    def _commit(self, repo_type: str, repo_id: str, revision: str) -> None:
        repo = self._repo_for_write(repo_type, repo_id)
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = bool(self.query.get("create_pr"))
        base = self.hub._resolve(repo, revision)
        if not create_pr and revision not in repo.refs:
            raise HubError(400, f"Cannot commit to {revision}: not a branch")
        parent_commit = header.get("parentCommit")
        if parent_commit and parent_commit != base.oid:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        tree = dict(base.files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            path = str(value.get("path", "")).strip("/")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding for {path}")
                tree[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if path not in tree:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                doomed = [p for p in tree if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
                for p in doomed:
                    del tree[p]
            elif key in ("lfsFile", "deletedEntries"):
                raise HubError(400, f"The fake hub offers no LFS/Xet storage ({key} for {path})")
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        pr_url = None
        ref = revision
        if create_pr:
            repo.nb_pull_requests += 1
            ref = f"refs/pr/{repo.nb_pull_requests}"
            repo.refs[ref] = base.oid
            pr_url = f"{self.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}/discussions/{repo.nb_pull_requests}"
        commit = self.hub._new_commit(repo, ref, tree, header.get("summary", ""), header.get("description", ""))
        self._send_json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub.url}/{_URL_PREFIX[repo_type]}{repo_id}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            },
        )

    # --------------------------------------------------------------- endpoints: download

    def _resolve_file(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo_for_read(repo_type, repo_id)
        commit = self.hub._resolve(repo, revision)
        if path not in commit.files:
            raise HubError(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": commit.oid})
        content = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{git_blob_oid(content)}"',
            "X-Repo-Commit": commit.oid,
        }
        status, body = 200, content
        range_header = self.headers.get("Range")
        if range_header and range_header.startswith("bytes="):
            first, _, last = range_header[len("bytes=") :].split(",")[0].partition("-")
            if first:
                start, end = int(first), int(last) if last else len(content) - 1
            else:  # suffix range: the last N bytes
                start, end = max(len(content) - int(last), 0), len(content) - 1
            if start >= len(content) and len(content) > 0:
                raise HubError(416, "Range Not Satisfiable", headers={"Content-Range": f"bytes */{len(content)}"})
            end = min(end, len(content) - 1)
            status, body = 206, content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
        self._send(status, body, headers)


def _card_data(readme: bytes | None) -> dict | None:
    if not readme or not readme.startswith(b"---"):
        return None
    lines = readme.decode("utf-8", "replace").splitlines()
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        return None
    try:
        import yaml

        data = yaml.safe_load("\n".join(lines[1:end]))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


# ====================================================================== fixture


def _is_loopback_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").split("%")[0]
    if host in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def block_non_loopback_network(monkeypatch: pytest.MonkeyPatch, record: list[str]) -> None:
    """Make name resolution and connections to anything but loopback raise `NetworkAccessBlocked`.

    Covers Python-level sockets (httpx2/httpcore, urllib, requests, asyncio). Native code that opens its own
    sockets (e.g. the Rust `hf_xet` extension) is not covered: the fake hub never hands out Xet/LFS uploads or
    downloads, so that code is never asked to connect anywhere.
    """
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def refuse(what: str) -> NetworkAccessBlocked:
        record.append(what)
        return NetworkAccessBlocked(f"fake_hub fixture: refused non-loopback network access to {what}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_loopback_host(host):
            raise refuse(f"getaddrinfo({host!r})")
        return real_getaddrinfo(host, *args, **kwargs)

    def check_address(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback_host(address[0]):
            raise refuse(f"connect({address!r})")

    def guarded_connect(self, address):
        check_address(self, address)
        return real_connect(self, address)

    def guarded_connect_ex(self, address):
        check_address(self, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)


class _InstantSleep:
    """Stand-in for the `time` module inside huggingface_hub's HTTP helpers: retry back-offs return at once."""

    def __init__(self, real_time: Any, record: list[float]) -> None:
        self._real_time = real_time
        self._record = record

    def sleep(self, seconds: float) -> None:
        self._record.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real_time, name)


# Modules holding a copy of a huggingface_hub constant taken at import time ({module: {attribute: constant}}).
_CONSTANT_COPIES = {
    "huggingface_hub.utils._cache_manager": {"HF_HUB_CACHE": "HF_HUB_CACHE"},
    "huggingface_hub.utils._cache_assets": {"HF_ASSETS_CACHE": "HF_ASSETS_CACHE"},
    "huggingface_hub.utils._git_credential": {"ENDPOINT": "ENDPOINT"},
    "huggingface_hub.cli.auth": {"ENDPOINT": "ENDPOINT"},
}


def point_client_at(hub: FakeHub, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Route huggingface_hub (and transformers/peft, which go through it) to `hub`, with a clean HF home."""
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    home.mkdir(parents=True, exist_ok=True)
    cache = home / "hub"
    url = hub.url

    # Environment: for subprocesses, and for code that reads os.environ lazily.
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HF_OIDC_ID_TOKEN", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HUGGINGFACE_CO_STAGING", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_UPDATE_CHECK", "1")

    # The AI-agent detection behind huggingface_hub's status lines and CLI fetches a registry from the endpoint once
    # per process: pretend it is already loaded (and empty) so that it adds no request to the log.
    detect_agent = importlib.import_module("huggingface_hub.utils._detect_agent")
    monkeypatch.setattr(detect_agent, "_registry", {"standardEnvVars": [], "harnesses": {}})

    # Constants, read at import time by huggingface_hub.
    patched_constants = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {hub.host}),
        "HF_HOME": str(home),
        "default_cache_path": str(cache),
        "default_assets_cache_path": str(home / "assets"),
        "HUGGINGFACE_HUB_CACHE": str(cache),
        "HF_HUB_CACHE": str(cache),
        "HUGGINGFACE_ASSETS_CACHE": str(home / "assets"),
        "HF_ASSETS_CACHE": str(home / "assets"),
        "default_xet_cache_path": str(home / "xet"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_UPDATE_CHECK": True,
        "_staging_mode": False,
    }
    for name, value in patched_constants.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, value)
    if hasattr(huggingface_hub, "HUGGINGFACE_CO_URL_TEMPLATE"):
        monkeypatch.setattr(
            huggingface_hub, "HUGGINGFACE_CO_URL_TEMPLATE", patched_constants["HUGGINGFACE_CO_URL_TEMPLATE"]
        )
    for module_name, attributes in _CONSTANT_COPIES.items():
        module = sys.modules.get(module_name)
        if module is None and not module_name.startswith("huggingface_hub.cli."):  # the CLI is heavy: only if loaded
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
        if module is None:
            continue
        for attribute, constant in attributes.items():
            if hasattr(module, attribute):
                monkeypatch.setattr(module, attribute, patched_constants[constant])

    # Objects that captured the endpoint when they were created.
    hf_api = importlib.import_module("huggingface_hub.hf_api")
    monkeypatch.setattr(hf_api.api, "endpoint", url)  # the instance behind huggingface_hub.create_repo & co
    monkeypatch.setattr(_http, "_HUB_ORIGINS", frozenset(_http._HUB_ORIGINS | {_http._url_origin(url)}))
    transformers_hub = sys.modules.get("transformers.utils.hub")
    if transformers_hub is not None and hasattr(transformers_hub, "_hf_api"):
        monkeypatch.setattr(transformers_hub, "_hf_api", None)  # lazily re-created with the patched endpoint
    hf_file_system = sys.modules.get("huggingface_hub.hf_file_system")
    if hf_file_system is not None:
        hf_file_system.HfFileSystem.clear_instance_cache()
    _http.close_session()  # fresh pooled client

    # Retry back-offs (5xx/429 are retried with 1-8 s sleeps) return immediately; they are recorded instead.
    for module_name in ("huggingface_hub.utils._http", "huggingface_hub.file_download"):
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, "time", _InstantSleep(module.time, hub.backoff_sleeps))


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeHub]:
    """A `FakeHub` on loopback that huggingface_hub/transformers/peft talk to, with a clean HF home
    (`tmp_path / "hf_home"`), no token configured (pass `fake_hub.token` or set `HF_TOKEN`), instant retry
    back-offs, and non-loopback network access refused. Fails the test if a non-loopback connection was
    attempted or the fake itself crashed."""
    hub = FakeHub().start()
    try:
        block_non_loopback_network(monkeypatch, hub.blocked_connections)
        point_client_at(hub, monkeypatch, tmp_path / "hf_home")
        yield hub
    finally:
        hub.stop()
        from huggingface_hub.utils import _http

        _http.close_session()
        hf_file_system = sys.modules.get("huggingface_hub.hf_file_system")
        if hf_file_system is not None:
            hf_file_system.HfFileSystem.clear_instance_cache()
    if hub.blocked_connections:
        pytest.fail(f"fake_hub: non-loopback network access was attempted: {hub.blocked_connections}")
    if hub.errors:
        pytest.fail("fake_hub: the fake server crashed:\n" + "\n".join(hub.errors))
