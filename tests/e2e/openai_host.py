#!/usr/bin/python3
"""A small OpenAI-compatible inference host for Sluice's end-to-end tests (standard library only).

    /usr/bin/python3 tests/e2e/openai_host.py --bind 198.18.203.2 --port 8000 --log host.jsonl

Answers, deterministically and without any model:
- POST /v1/chat/completions: `chat.completion`, or with "stream": true a `text/event-stream`
  sent with chunked transfer encoding: one `chat.completion.chunk` per completion token
  (content "tok "), then a chunk with "choices": [] and "usage" (always, as if
  stream_options.include_usage were set), then `data: [DONE]`.
- POST /v1/completions: `text_completion` (streamed the same way when asked).
- POST /v1/embeddings: one embedding of 8 floats per input string ("encoding_format": "base64"
  gives them as base64 of little-endian float32, as the official SDKs ask by default).
- GET /v1/models: a list of two models.
- anything else: 404 with the OpenAI error JSON; a bad body: 400 likewise.

A chat whose last message starts with "e2e-echo-rot13:" is answered with the ROT13 of the rest
instead of "tok " tokens, in deltas of 6 characters when streamed (completion_tokens = deltas):
a way for tests to make the host say something (a private key, say) whose prompt does not.

Usage is fixed by the request: prompt_tokens = whitespace-separated words over all message
contents + 3 per message (chat), words of the prompt (completions) or of the inputs
(embeddings); completion_tokens = min(max_tokens or max_completion_tokens (default 16), 16).

HTTP/1.1 with keep-alive: every response has a Content-Length or is chunked. The host checks
no API key (Sluice does). Each request served adds one JSON line to --log: method, path,
status, model, stream, prompt_tokens, completion_tokens.
"""

from __future__ import annotations

import argparse
import base64
import codecs
import hashlib
import http.server
import json
import struct
import sys
import threading
import time
import uuid

MAX_COMPLETION_TOKENS = 16
MAX_BODY_BYTES = 16 << 20
MODELS = ("small-1", "big-1")


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.param = param
        self.code = code


def words(text: str) -> int:
    return len(text.split())


def content_text(content) -> str:
    """The text of a message's content: a string, or a list of parts of which text ones count."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return " ".join(texts)
    raise BadRequest("'content' must be a string or a list of parts", "messages")


def completion_tokens(body: dict) -> tuple[int, str]:
    """How many tokens to answer with, and the finish_reason: "length" when the request's own
    limit cut the answer short, "stop" when the host's answer (16 tokens) ended first."""
    requested = body.get("max_completion_tokens")
    if requested is None:
        requested = body.get("max_tokens")
    if requested is None:
        return MAX_COMPLETION_TOKENS, "stop"
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise BadRequest("'max_tokens' must be a non-negative integer", "max_tokens")
    if requested <= MAX_COMPLETION_TOKENS:
        return requested, "length"
    return MAX_COMPLETION_TOKENS, "stop"


ECHO_PREFIX = "e2e-echo-rot13:"


def echo_pieces(messages: list) -> list[str] | None:
    """The deltas of an echo answer (see the module doc), or None for an ordinary one."""
    last = messages[-1] if messages and isinstance(messages[-1], dict) else {}
    text = content_text(last.get("content"))
    if not text.startswith(ECHO_PREFIX):
        return None
    answer = codecs.encode(text[len(ECHO_PREFIX):].strip(), "rot13")
    return [answer[i:i + 6] for i in range(0, len(answer), 6)] or [""]


def fake_embedding(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [round((b - 127.5) / 127.5, 6) for b in digest[:8]]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-test-host/1"

    def version_string(self) -> str:
        return self.server_version

    # ------------------------------------------------------------------ plumbing
    def log_message(self, format, *args):  # noqa: A002  (the base class's name)
        sys.stderr.write("openai_host: %s %s\n" % (self.address_string(), format % args))

    def record(self, status: int, model=None, stream=False, prompt_tokens=None,
               completion_tokens=None) -> None:
        line = {"ts": round(time.time(), 3), "method": self.command, "path": self.path,
                "status": status, "model": model, "stream": bool(stream),
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        self.server.write_log(line)

    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts, total = [], 0
            while True:
                size_line = self.rfile.readline(1024)
                if not size_line:
                    raise BadRequest("truncated chunked body")
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BadRequest("body too large")
                parts.append(self.rfile.read(size))
                self.rfile.readline(1024)  # CRLF after the chunk
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise BadRequest("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, status: int, obj) -> None:
        data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str, err_type: str, param=None,
                        code=None) -> None:
        self.send_json(status, {"error": {"message": message, "type": err_type,
                                          "param": param, "code": code}})

    def start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def send_chunk(self, data: bytes) -> None:
        # One HTTP chunk per server-sent event: size in hex, CRLF, data, CRLF.
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def send_event(self, obj) -> None:
        payload = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
        self.send_chunk(b"data: " + payload.encode("utf-8") + b"\n\n")

    def end_stream(self) -> None:
        self.send_event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")

    def json_body(self) -> dict:
        raw = self.read_body()
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise BadRequest(f"could not parse the JSON body of your request ({e})") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    # ------------------------------------------------------------------ dispatch
    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        routes = {("POST", "/v1/chat/completions"): self.chat,
                  ("POST", "/v1/completions"): self.completions,
                  ("POST", "/v1/embeddings"): self.embeddings,
                  ("GET", "/v1/models"): self.models}
        handler = routes.get((self.command, path))
        try:
            if handler is None:
                self.read_body()  # keep the connection in step for the next request
                self.record(404)
                self.send_error_json(404, f"Unknown request URL: {self.command} {path}.",
                                     "invalid_request_error", code="unknown_url")
                return
            handler()
        except BadRequest as e:
            self.record(400)
            self.send_error_json(400, str(e), "invalid_request_error", e.param, e.code)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ endpoints
    def chat(self) -> None:
        body = self.json_body()
        model, messages = body.get("model"), body.get("messages")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", "model")
        if not isinstance(messages, list) or not messages:
            raise BadRequest("'messages' must be a non-empty array", "messages")
        prompt = 0
        for message in messages:
            if not isinstance(message, dict):
                raise BadRequest("each message must be an object", "messages")
            prompt += words(content_text(message.get("content"))) + 3
        completion, finish = completion_tokens(body)
        pieces = echo_pieces(messages)
        if pieces is not None:
            completion, finish = len(pieces), "stop"
        else:
            pieces = ["tok "] * completion
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        ident, created = "chatcmpl-" + uuid.uuid4().hex[:24], int(time.time())
        stream = body.get("stream") is True
        self.record(200, model, stream, prompt, completion)
        if not stream:
            self.send_json(200, {
                "id": ident, "object": "chat.completion", "created": created, "model": model,
                "system_fingerprint": None,
                "choices": [{"index": 0, "logprobs": None, "finish_reason": finish,
                             "message": {"role": "assistant", "content": "".join(pieces),
                                         "refusal": None}}],
                "usage": usage})
            return
        self.start_stream()
        base = {"id": ident, "object": "chat.completion.chunk", "created": created,
                "model": model, "system_fingerprint": None}
        for i in range(max(completion, 1)):
            delta = {"content": pieces[i]} if completion else {}
            if i == 0:
                delta = {"role": "assistant", **delta}
            last = i == max(completion, 1) - 1
            self.send_event({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                  "finish_reason": finish if last else None}],
                             "usage": None})
        self.send_event({**base, "choices": [], "usage": usage})
        self.end_stream()

    def completions(self) -> None:
        body = self.json_body()
        model, prompt_in = body.get("model"), body.get("prompt")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", "model")
        if isinstance(prompt_in, list) and all(isinstance(p, str) for p in prompt_in):
            prompt_in = " ".join(prompt_in)
        if not isinstance(prompt_in, str):
            raise BadRequest("'prompt' must be a string or a list of strings", "prompt")
        prompt = words(prompt_in)
        completion, finish = completion_tokens(body)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        ident, created = "cmpl-" + uuid.uuid4().hex[:24], int(time.time())
        stream = body.get("stream") is True
        self.record(200, model, stream, prompt, completion)
        base = {"id": ident, "object": "text_completion", "created": created, "model": model}
        if not stream:
            self.send_json(200, {**base, "choices": [{"index": 0, "text": "tok " * completion,
                                                      "logprobs": None, "finish_reason": finish}],
                                 "usage": usage})
            return
        self.start_stream()
        for i in range(max(completion, 1)):
            last = i == max(completion, 1) - 1
            self.send_event({**base, "choices": [{"index": 0, "text": "tok " if completion else "",
                                                  "logprobs": None,
                                                  "finish_reason": finish if last else None}]})
        self.send_event({**base, "choices": [], "usage": usage})
        self.end_stream()

    def embeddings(self) -> None:
        body = self.json_body()
        model, inputs = body.get("model"), body.get("input")
        if not isinstance(model, str) or not model:
            raise BadRequest("you must provide a model parameter", "model")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or \
                not all(isinstance(i, str) for i in inputs):
            raise BadRequest("'input' must be a string or a non-empty list of strings", "input")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(inputs):
            vector = fake_embedding(text)
            if as_base64:
                packed = struct.pack("<%df" % len(vector), *vector)
                vector = base64.b64encode(packed).decode("ascii")
            data.append({"object": "embedding", "index": index, "embedding": vector})
        prompt = sum(words(t) for t in inputs)
        self.record(200, model, False, prompt, 0)
        self.send_json(200, {"object": "list", "data": data, "model": model,
                             "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})

    def models(self) -> None:
        self.read_body()
        self.record(200)
        self.send_json(200, {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "sluice-test"}
            for m in MODELS]})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, log_path: str | None):
        super().__init__(address, Handler)
        self._log_lock = threading.Lock()
        self._log = open(log_path, "a", encoding="utf-8") if log_path else None

    def write_log(self, line: dict) -> None:
        if self._log is None:
            return
        with self._log_lock:
            self._log.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._log.flush()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bind", default="127.0.0.1", help="address to listen on")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--log", help="JSON Lines file, one line per request served")
    args = ap.parse_args()
    server = Server((args.bind, args.port), args.log)
    print(f"openai_host: listening on {args.bind}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
