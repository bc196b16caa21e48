#!/usr/bin/python3
"""A real inference host for Sluice's live integrity test: FastAPI under uvicorn (Debian's
python3-fastapi and python3-uvicorn), OpenAI-shaped, no model.

    /usr/bin/python3 tests/e2e/fastapi_host.py --bind 198.18.211.2 --port 8000 --log host.jsonl

It reads request bodies the way FastAPI apps, LiteLLM and vLLM do, and RECORDS what a model
behind it would read, so that a test can tell whether anything Sluice should have refused got
through:

- POST /v1/chat/completions, /v1/completions, /v1/responses: `await request.json()` whatever the
  Content-Type (Starlette parses any body as JSON: no type, text/plain, a form type ...).
- POST /typed/v1/chat/completions: a pydantic model as the body parameter (vLLM's way): FastAPI
  reads the body as JSON when there is no Content-Type or an application/*json one.
- GET /v1/models.

Each request that reaches a route appends one JSON line to --log, written before the answer:
  {"case": <x-si-case header>, "route", "content_type", "strings": every string value of the
   parsed document in document order, "keys": every object key, "text": the strings joined
   with "\\n" (what a chat template renders, in order; a phrase split over two fields is one
   text here, as it is in Sluice's canonical prompt text), "answer": shape, "secret": kind}
and, after a streamed or written answer, {"case", "answered": shape, "secret", "bytes"}.

Answers: a normal one ("Hello from the FastAPI host.") unless the request header x-si-secret is
`private` (a PEM private-key header, which the shipped completion rule sec.private-key.completion
blocks) or `public` (a PEM public-key header: the control, which no rule blocks). Then the header
x-si-answer picks where and how the host says it (the SHAPES table below): in message content,
in reasoning_content, in tool-call arguments, in the second of two choices, streamed one
character per write (sse*; sse_bytewise: the whole stream one byte per write), interleaved
between two streamed choices, with CR or CRLF line ends, each event's JSON over two data lines,
with a wrong, missing or upper-case Content-Type, gzip-coded, labelled with a coding it does not
have, in an error body ...
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import sys
import threading
import time
import uuid
from typing import Any, List, Optional, Union

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Extra

SECRETS = {
    "private": "-----BEGIN PRIVATE KEY----- MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQfakeEXAMPLE",
    "public": "-----BEGIN PUBLIC KEY----- MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAfakeEXAMPLE",
}
HELLO = "Hello from the FastAPI host."
WRITE_PAUSE_S = 0.002  # between two writes of a streamed answer: each write its own segment
                       # (asyncio sets TCP_NODELAY on every TCP transport)

app = FastAPI()
log_lock = threading.Lock()
log_file = None


def write_log(line: dict) -> None:
    if log_file is None:
        return
    with log_lock:
        log_file.write(json.dumps(line, ensure_ascii=False) + "\n")
        log_file.flush()


def walk(doc: Any, strings: list, keys: list) -> None:
    """Every string value and every object key of a parsed JSON document, in document order."""
    if isinstance(doc, str):
        strings.append(doc)
    elif isinstance(doc, dict):
        for k, v in doc.items():
            keys.append(k)
            walk(v, strings, keys)
    elif isinstance(doc, list):
        for v in doc:
            walk(v, strings, keys)


def record(request: Request, route: str, doc: Any) -> None:
    strings: list = []
    keys: list = []
    walk(doc, strings, keys)
    write_log({"ts": round(time.time(), 3), "case": request.headers.get("x-si-case", ""),
               "route": route, "content_type": request.headers.getlist("content-type"),
               "strings": strings, "keys": keys, "text": "\n".join(strings),
               "answer": request.headers.get("x-si-answer", ""),
               "secret": request.headers.get("x-si-secret", "")})


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error",
                                   "param": None, "code": None}}, status_code=status)


# ---------------------------------------------------------------- answers
def ident(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}


def chat_message(text: str, where: str) -> dict:
    if where == "reasoning":
        return {"role": "assistant", "content": "I cannot share that.", "reasoning_content": text}
    if where == "tool":
        return {"role": "assistant", "content": None, "tool_calls": [{
            "id": "call_si1", "type": "function",
            "function": {"name": "save_key", "arguments": json.dumps({"key": text})}}]}
    return {"role": "assistant", "content": "Sure, here it is: " + text}


def chat_json(model: str, choices: list) -> dict:
    return {"id": ident("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
            "model": model,
            "choices": [{"index": i, "message": m, "logprobs": None, "finish_reason": "stop"}
                        for i, m in enumerate(choices)],
            "usage": USAGE}


def sse(obj: Any) -> bytes:
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    return b"data: " + data.encode() + b"\n\n"


def chunk_event(base: dict, index: int, delta: dict) -> dict:
    return {**base, "choices": [{"index": index, "delta": delta, "logprobs": None,
                                 "finish_reason": None}]}


def chat_events(model: str, text: str, shape: str) -> list:
    """The SSE events of a streamed chat answer, one character of `text` per event."""
    base = {"id": ident("chatcmpl-"), "object": "chat.completion.chunk",
            "created": int(time.time()), "model": model}
    events = [chunk_event(base, 0, {"role": "assistant", "content": ""})]
    if shape == "sse_n2":
        # Two choices, one character each in turn: only per-choice text shows the secret.
        other = "abcdefghijklmnopqrstuvwxyz" * 4
        events.append(chunk_event(base, 1, {"role": "assistant", "content": ""}))
        for a, b in zip(text, other):
            events.append(chunk_event(base, 0, {"content": a}))
            events.append(chunk_event(base, 1, {"content": b}))
    elif shape == "sse_reasoning":
        events += [chunk_event(base, 0, {"reasoning_content": c}) for c in text]
    elif shape == "sse_interleave_fields":
        # One choice; its content and its reasoning_content one character each in turn: a client
        # shows the two apart, so only per-field text shows the secret.
        other = "abcdefghijklmnopqrstuvwxyz" * 4
        for a, b in zip(text, other):
            events.append(chunk_event(base, 0, {"content": a}))
            events.append(chunk_event(base, 0, {"reasoning_content": b}))
    elif shape == "sse_two_tools":
        # One choice, two tool calls whose arguments stream one character each in turn.
        args, other = json.dumps({"key": text}), json.dumps({"q": "abcdefghij" * 10})
        events.append(chunk_event(base, 0, {"tool_calls": [
            {"index": 0, "id": "call_si1", "type": "function",
             "function": {"name": "save_key", "arguments": ""}},
            {"index": 1, "id": "call_si2", "type": "function",
             "function": {"name": "search", "arguments": ""}}]}))
        for a, b in zip(args, other):
            events.append(chunk_event(base, 0, {"tool_calls": [{"index": 0, "function": {"arguments": a}}]}))
            events.append(chunk_event(base, 0, {"tool_calls": [{"index": 1, "function": {"arguments": b}}]}))
    elif shape == "sse_tool":
        args = json.dumps({"key": text})
        events.append(chunk_event(base, 0, {"tool_calls": [{
            "index": 0, "id": "call_si1", "type": "function",
            "function": {"name": "save_key", "arguments": ""}}]}))
        events += [chunk_event(base, 0, {"tool_calls": [{"index": 0, "function": {"arguments": c}}]})
                   for c in args]
    else:
        events += [chunk_event(base, 0, {"content": c}) for c in text]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": USAGE})
    return [sse(e) for e in events] + [sse("[DONE]")]


def responses_json(model: str, text: str) -> dict:
    return {"id": ident("resp_"), "object": "response", "created_at": int(time.time()),
            "status": "completed", "model": model,
            "output": [{"type": "message", "id": ident("msg_"), "status": "completed",
                        "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}}


def responses_events(model: str, text: str, shape: str) -> list:
    kind = "response.reasoning_text.delta" if shape == "sse_reasoning" else \
        "response.output_text.delta"
    rid = ident("resp_")
    events = [{"type": "response.created", "sequence_number": 0, "response": {
        "id": rid, "object": "response", "created_at": int(time.time()), "status": "in_progress",
        "model": model, "output": []}}]
    for n, c in enumerate(text):
        events.append({"type": kind, "sequence_number": n + 1, "item_id": "msg_si1",
                       "output_index": 0, "content_index": 0, "delta": c})
    out = [sse(e).replace(b"data: ", b"event: " + e["type"].encode() + b"\ndata: ", 1)
           for e in events]
    return out + [sse("[DONE]")]


async def paced(pieces: list, request: Request, shape: str, secret: str):
    total = 0
    for piece in pieces:
        yield piece
        total += len(piece)
        await asyncio.sleep(WRITE_PAUSE_S)
    write_log({"case": request.headers.get("x-si-case", ""), "answered": shape,
               "secret": secret, "bytes": total})


def bytewise(pieces: list) -> list:
    data = b"".join(pieces)
    return [data[i:i + 1] for i in range(len(data))]


def answered(request: Request, shape: str, secret: str, body: bytes) -> None:
    write_log({"case": request.headers.get("x-si-case", ""), "answered": shape,
               "secret": secret, "bytes": len(body)})


def answer(request: Request, route: str, model: str) -> Response:
    """The answer the request asks for with x-si-answer / x-si-secret (module doc)."""
    secret_kind = request.headers.get("x-si-secret", "")
    shape = request.headers.get("x-si-answer", "json")
    text = SECRETS.get(secret_kind, HELLO)
    responses = route == "responses"

    if shape.startswith("sse"):
        if responses:
            pieces = responses_events(model, text, shape)
        else:
            pieces = chat_events(model, text, shape)
        media = {"sse_as_json": "application/json", "sse_no_ct": None,
                 "sse_upper_ct": "TEXT/EVENT-STREAM"}.get(shape, "text/event-stream")
        if shape == "sse_bytewise":
            pieces = bytewise(pieces)
        elif shape == "sse_cr":  # WHATWG: CR alone ends a line too
            pieces = [p.replace(b"\n", b"\r") for p in pieces]
        elif shape == "sse_crlf":
            pieces = [p.replace(b"\n", b"\r\n") for p in pieces]
        elif shape == "sse_multiline":  # each event's JSON over two data lines (joined by LF)
            pieces = [p.replace(b',"choices"', b',\ndata: "choices"', 1) for p in pieces]
        elif shape == "sse_nospace":  # "data:" without the optional space
            pieces = [p.replace(b"data: ", b"data:") for p in pieces]
        elif shape == "sse_named_events":  # every event named, with an id and a comment line
            pieces = [b": keep-alive\nevent: chunk\nid: %d\n" % n + p for n, p in enumerate(pieces)]
        return StreamingResponse(paced(pieces, request, shape, secret_kind), media_type=media,
                                 headers={"cache-control": "no-cache"})

    if responses:
        doc = responses_json(model, text)
    elif shape == "json_n2":
        doc = chat_json(model, [chat_message(HELLO, "content"), chat_message(text, "content")])
    elif shape in ("json_reasoning", "json_tool"):
        doc = chat_json(model, [chat_message(text, shape[5:])])
    elif shape in ("error_400", "text_500"):
        doc = {"error": {"message": "Invalid key " + text, "type": "invalid_request_error",
                         "param": None, "code": None}}
    else:
        doc = chat_json(model, [chat_message(text, "content")])
    body = json.dumps(doc).encode()
    if shape == "json_escaped":  # every character of the content's secret as a \u escape
        body = body.replace(text.encode(), "".join("\\u%04x" % ord(c) for c in text).encode())
    status, headers, media = 200, {}, "application/json"
    if shape == "json_text_plain":
        media = "text/plain"
    elif shape == "json_no_ct":
        media = None
    elif shape == "json_as_sse":
        media = "text/event-stream"
    elif shape == "json_gzip":
        body, headers = gzip.compress(body), {"content-encoding": "gzip"}
    elif shape == "json_fake_br":
        headers = {"content-encoding": "br"}  # says brotli, is plain JSON
    elif shape == "json_fake_gzip":
        headers = {"content-encoding": "gzip"}  # says gzip, is plain JSON
    elif shape == "error_400":
        status = 400
    elif shape == "text_500":
        status, media, body = 500, "text/plain", ("Internal error: " + text).encode()
    if shape == "json_chunks":
        # chunked, one character per chunk and per write
        return StreamingResponse(paced(bytewise([body]), request, shape, secret_kind),
                                 media_type=media)
    answered(request, shape, secret_kind, body)
    return Response(body, status_code=status, media_type=media, headers=headers)


# ---------------------------------------------------------------- routes
async def read_json(request: Request, route: str):
    try:
        doc = await request.json()  # whatever the Content-Type, as Starlette does
    except ValueError as e:
        return None, error(400, f"could not parse the JSON body ({e})")
    record(request, route, doc)
    if not isinstance(doc, dict):
        return None, error(400, "the body must be a JSON object")
    return doc, None


@app.post("/v1/chat/completions")
async def chat(request: Request):
    doc, err = await read_json(request, "chat")
    if err is not None:
        return err
    return answer(request, "chat", str(doc.get("model", "")))


@app.post("/v1/completions")
async def completions(request: Request):
    doc, err = await read_json(request, "completions")
    if err is not None:
        return err
    return answer(request, "completions", str(doc.get("model", "")))


@app.post("/v1/responses")
async def responses(request: Request):
    doc, err = await read_json(request, "responses")
    if err is not None:
        return err
    return answer(request, "responses", str(doc.get("model", "")))


class Message(BaseModel):
    role: str
    content: Union[str, List[dict], None] = None
    name: Optional[str] = None

    class Config:
        extra = Extra.allow


class ChatRequest(BaseModel):
    model: str
    messages: List[Message]
    stream: bool = False
    tools: Optional[List[dict]] = None
    chat_template_kwargs: Optional[dict] = None

    class Config:
        extra = Extra.allow


@app.post("/typed/v1/chat/completions")
async def typed_chat(body: ChatRequest, request: Request):
    record(request, "typed_chat", json.loads(body.json()))
    return answer(request, "chat", body.model)


@app.get("/v1/models")
async def models():
    return {"object": "list", "data": [{"id": "small-1", "object": "model",
                                        "created": 1700000000, "owned_by": "sluice-test"}]}


def main() -> int:
    global log_file
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--log", help="JSON Lines file (module doc)")
    args = ap.parse_args()
    if args.log:
        log_file = open(args.log, "a", encoding="utf-8")
    print(f"fastapi_host: uvicorn {uvicorn.__version__} on {args.bind}:{args.port}",
          file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.bind, port=args.port, log_level="warning", access_log=True,
                http="h11", loop="asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
