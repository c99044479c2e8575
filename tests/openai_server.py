"""A real local OpenAI-compatible HTTP server for tests: the real `openai` client talks to it over real HTTP.

It answers what selfmodel asks of an endpoint:

    POST /v1/chat/completions        a chat completion (the reply's content is what the test scripts)
    POST /v1/files                   upload a file (multipart, purpose=batch)
    GET  /v1/files/{id}/content      a file's bytes (a batch's input or output)
    POST /v1/batches                 create a batch over an uploaded JSONL file of chat requests
    GET  /v1/batches/{id}            a batch (completed after `batch_polls_before_done` polls)

and records every request (`requests`; `sent_text()` is everything that reached it, uploaded files included),
so a test can count requests and assert that some text never arrived. A test scripts it:

    server.reply = lambda body: {"role": ...}     # request body -> reply content: a dict / list / pydantic
                                                  # model (sent as JSON) or a str (sent verbatim: malformed JSON)
    server.usage = (120, 30)                      # prompt and completion tokens of every reply (or a callable)
    server.fail_next(429, times=1)                # the next chat request(s) get this status (Retry-After 1 ms)
    server.delay_next(0.5, times=1)               # the next chat request(s) answer only after this long
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from pydantic import BaseModel

Reply = Callable[[dict], Any]


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Failure:
    status: int
    retry_after_ms: int | None


@dataclass
class OpenAIServer:
    reply: Reply = lambda body: {}
    usage: tuple[int, int] | Callable[[dict], tuple[int, int]] = (100, 20)
    batch_polls_before_done: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    files: dict[str, dict] = field(default_factory=dict)
    batches: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._failures: deque[_Failure] = deque()
        self._delays: deque[float] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._polls: dict[str, int] = {}
        self._server: ThreadingHTTPServer | None = None

    # --- scripting ------------------------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, retry_after_ms: int | None = 1) -> None:
        """The next `times` chat requests get `status` (429, 500, 503...) with an error body."""
        self._failures.extend(_Failure(status, retry_after_ms) for _ in range(times))

    def delay_next(self, seconds: float, times: int = 1) -> None:
        """The next `times` chat requests are answered only after `seconds` (a client timeout shorter than that
        gives up on them first)."""
        self._delays.extend([seconds] * times)

    # --- what reached it ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    @property
    def chat_requests(self) -> list[dict]:
        """The bodies of the direct chat completion requests, in arrival order."""
        return [r.json() for r in self.requests_to("POST", "/v1/chat/completions")]

    def sent_text(self) -> str:
        """Everything clients sent: request bodies (uploaded batch files included) and headers but the key's."""
        parts = []
        for request in self.requests:
            parts.append(" ".join(f"{k}: {v}" for k, v in request.headers.items() if k != "authorization"))
            parts.append(request.body.decode("utf-8", errors="replace"))
        return "\n".join(parts)

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self) -> "OpenAIServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = RecordedRequest(self.command, self.path, headers, body)
                with server._lock:
                    server.requests.append(request)
                status, headers, payload = server._route(request)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"content-type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout): fine
                    pass

            do_GET = do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the endpoints --------------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest) -> tuple[int, dict, Any]:
        path = request.path.split("?")[0]
        if request.method == "POST" and path == "/v1/chat/completions":
            return self._chat(request.json())
        if request.method == "POST" and path == "/v1/files":
            return 200, {}, self._upload(request)
        if request.method == "GET" and path.startswith("/v1/files/") and path.endswith("/content"):
            file_id = path[len("/v1/files/"):-len("/content")]
            if file_id not in self.files:
                return 404, {}, _error("no such file", "not_found")
            return 200, {"content-type": "application/octet-stream"}, self.files[file_id]["content"]
        if request.method == "POST" and path == "/v1/batches":
            return 200, {}, self._create_batch(request.json())
        if request.method == "GET" and path.startswith("/v1/batches/"):
            batch_id = path[len("/v1/batches/"):]
            if batch_id not in self.batches:
                return 404, {}, _error("no such batch", "not_found")
            return 200, {}, self._poll_batch(batch_id)
        return 404, {}, _error(f"no route {request.method} {path}", "not_found")

    def _chat(self, body: dict) -> tuple[int, dict, Any]:
        with self._lock:
            failure = self._failures.popleft() if self._failures else None
            delay = self._delays.popleft() if self._delays else 0.0
        if delay:
            time.sleep(delay)
        if failure is not None:
            headers = {} if failure.retry_after_ms is None else {"retry-after-ms": str(failure.retry_after_ms)}
            kind = "rate_limit_exceeded" if failure.status == 429 else "server_error"
            return failure.status, headers, _error(f"scripted {failure.status}", kind)
        return 200, {}, self.completion(body)

    def completion(self, body: dict) -> dict:
        """The chat completion answering `body` (also what a batch's output lines hold)."""
        content = self.reply(body)
        if isinstance(content, BaseModel):
            content = content.model_dump_json()
        elif not isinstance(content, str):
            content = json.dumps(content)
        prompt_tokens, completion_tokens = self.usage(body) if callable(self.usage) else self.usage
        return {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def _upload(self, request: RecordedRequest) -> dict:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n"
        message = BytesParser(policy=HTTP).parsebytes(head.encode() + request.body)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        file_part = fields["file"]
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = {"content": file_part.get_payload(decode=True),
                               "purpose": fields["purpose"].get_payload(decode=True).decode(),
                               "filename": file_part.get_filename() or "upload.jsonl"}
        return self._file_object(file_id)

    def _file_object(self, file_id: str) -> dict:
        stored = self.files[file_id]
        return {"id": file_id, "object": "file", "bytes": len(stored["content"]), "created_at": int(time.time()),
                "filename": stored["filename"], "purpose": stored["purpose"], "status": "processed"}

    def _create_batch(self, body: dict) -> dict:
        batch_id = f"batch_{next(self._ids)}"
        self.batches[batch_id] = {
            "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"], "status": "validating", "created_at": int(time.time()),
            "output_file_id": None, "error_file_id": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
        }
        self._polls[batch_id] = 0
        return self.batches[batch_id]

    def _poll_batch(self, batch_id: str) -> dict:
        batch = self.batches[batch_id]
        self._polls[batch_id] += 1
        if batch["status"] != "completed" and self._polls[batch_id] > self.batch_polls_before_done:
            self._run_batch(batch)
        elif batch["status"] == "validating":
            batch["status"] = "in_progress"
        return batch

    def _run_batch(self, batch: dict) -> None:
        lines = self.files[batch["input_file_id"]]["content"].decode().splitlines()
        output = []
        for line in filter(None, lines):
            request = json.loads(line)
            output.append(json.dumps({
                "id": f"batch_req_{next(self._ids)}", "custom_id": request["custom_id"], "error": None,
                "response": {"status_code": 200, "request_id": f"req_{next(self._ids)}",
                             "body": self.completion(request["body"])},
            }))
        file_id = f"file-{next(self._ids)}"
        self.files[file_id] = {"content": ("\n".join(output) + "\n").encode(), "purpose": "batch_output",
                               "filename": "output.jsonl"}
        batch.update(status="completed", output_file_id=file_id,
                     request_counts={"total": len(output), "completed": len(output), "failed": 0})


def _error(message: str, kind: str) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}
