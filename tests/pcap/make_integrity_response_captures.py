#!/usr/bin/python3
"""Generates the capture of the responses inspection-integrity replay test
(tests/pcap/integrity_response_test.py).

    /usr/bin/python3 tests/pcap/make_integrity_response_captures.py OUTDIR

Writes OUTDIR/{in.pcap, config.yaml, identities.yaml, extra/scanner.yaml, expected.json} in the
format of make_scopes_captures.py (same config, tiers, keys and rules: the shipped rules, whose
sec.private-key.completion blocks a private key header in any tier's answer). Deterministic.

Every session is one chat completion of the free tier on its own connection, answered by a host
that gets a private key header to the client in a way Sluice once did not see (docs/
normalisation.md, "Responses"). Per class of the issue:
- fields: the header in `delta.reasoning_content` (a vLLM/DeepSeek reasoning stream), and in an
  Anthropic message's `tool_use.input` (plain JSON): cut at the segment holding its last `-`.
- choices: a stream of two choices interleaved event by event, the header spelt by choice 0's
  deltas: cut at the segment holding its last `-`; a clean two-choice stream passes intact.
- unreadable: an event stream sent as application/json (read as a stream: cut at the last `-`);
  a JSON body with `NaN` before the content (cut as completion_unreadable at the segment holding
  the `N`); chunk sizes written with 17 hex digits (read: cut at the last `-`); two Content-Type
  fields, JSON and event stream (cut as completion_unreadable at the head's last segment).
  Ollama's /api/chat NDJSON stream (allowed for the tier), the header spelt across lines: read,
  cut at the last `-`.
- hold-back: a TCP segment that ends right after the header's last `-` (before the closing
  quote), in a stream and in a plain JSON answer: that segment is the one cut.
Other boundaries are random (seeded). After a cut the host's remaining segments and the client's
ACK follow in the capture; they must not pass.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_admission_captures as mac  # noqa: E402
import make_captures as mc  # noqa: E402
import make_rules_captures as mrc  # noqa: E402
import make_scopes_captures as msc  # noqa: E402
from make_admission_captures import Request  # noqa: E402
from make_scopes_captures import Case  # noqa: E402

MODEL = mrc.MODEL
TIER = "free"
KEY_RULE = msc.KEY_RULE
HEADER_DELTAS = ["-----BEGIN RSA", " PRIVATE", " KEY", "-----"]
OTHER_DELTAS = ["Sure", ", happy", " to", " help"]
LEAK = ("Here is a key for the test host:\n-----BEGIN RSA PRIVATE KEY-----\n"
        "MIIEpAIBAAKCAQEAfakeEXAMPLE\n-----END RSA PRIVATE KEY-----\nRotate it.")
JSON_HEAD = b"Content-Type: application/json\r\n"
SSE_TYPE = b"Content-Type: text/event-stream\r\n"


def response_head(fields: bytes, chunked: bool, length: int = 0) -> bytes:
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Content-Length: %d\r\n" % length
    return b"HTTP/1.1 200 OK\r\n" + fields + framing + b"\r\n"


def chunked(chunks: list[bytes], size_digits: int = 0) -> bytes:
    out = bytearray()
    for data in chunks:
        out += b"%0*x\r\n" % (size_digits, len(data)) + data + b"\r\n"
    return bytes(out + b"%0*x\r\n\r\n" % (max(size_digits, 1), 0))


def chunk_event(stream_id: str, choices: list[dict], usage: dict | None = None) -> bytes:
    chunk = {"id": stream_id, "object": "chat.completion.chunk", "created": msc.CREATED,
             "model": MODEL, "choices": choices}
    if usage is not None:
        chunk["usage"] = usage
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def delta_event(stream_id: str, index: int, delta: dict) -> bytes:
    return chunk_event(stream_id, [{"index": index, "delta": delta, "finish_reason": None}])


def finish_events(stream_id: str, choices: int, usage: dict) -> list[bytes]:
    return [chunk_event(stream_id, [{"index": i, "delta": {}, "finish_reason": "stop"}
                                    for i in range(choices)], usage), b"data: [DONE]\n\n"]


def last_dash(wire: bytes, after: bytes, start: int = 0) -> int:
    """The offset of the last `-` of the first AFTER from START: AFTER ends with "-----", or with
    "-----\"" (a delta that is the header's last dashes: the dash before the quote)."""
    return wire.index(after, start) + len(after) - (2 if after.endswith(b'"') else 1)


def json_body(rng: random.Random, message: dict, usage: dict, before: str = "") -> bytes:
    body = {"id": "chatcmpl-%012x" % rng.getrandbits(48), "object": "chat.completion",
            "created": msc.CREATED, "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}
    text = json.dumps(body, separators=(",", ":"))
    if before:  # a member the strict reader refuses, written before the choices
        text = text.replace('"choices":', before + ',"choices":', 1)
    return text.encode()


# --------------------------------------------------------------------------------------------
# the sessions: each returns (wire, cuts, what the session must give)
# --------------------------------------------------------------------------------------------

def cut_case(name: str, ends: str, reason: str = "completion_policy_violation") -> Case:
    rules = [KEY_RULE] if reason == "completion_policy_violation" else []
    return Case(name, TIER, "deny", reason, 200, rules, ends, "response", None)


def reasoning_field(rng, usage):
    sid = "chatcmpl-%012x" % rng.getrandbits(48)
    events = [delta_event(sid, 0, {"role": "assistant", "content": ""})]
    events += [delta_event(sid, 0, {"reasoning_content": d}) for d in HEADER_DELTAS]
    events += [delta_event(sid, 0, {"content": "I will not share it."})]
    wire = response_head(SSE_TYPE, True) + chunked(events + finish_events(sid, 1, usage))
    stop = last_dash(wire, b'"reasoning_content":"-----"')
    return wire, msc.random_cuts(rng, 0, stop) + [stop - 20, stop + 30], stop, \
        cut_case("reasoning_field", "stream_end")


def anthropic_tool_input(rng, usage):
    body = json.dumps({"id": "msg_01", "type": "message", "role": "assistant", "model": MODEL,
                       "content": [{"type": "text", "text": "Saving it."},
                                   {"type": "tool_use", "id": "toolu_1", "name": "save_file",
                                    "input": {"path": "/tmp/id_rsa", "text": LEAK}}],
                       "stop_reason": "tool_use",
                       "usage": {"input_tokens": 12, "output_tokens": 40}},
                      separators=(",", ":")).encode()
    wire = response_head(JSON_HEAD, False, len(body)) + body
    stop = last_dash(wire, b"PRIVATE KEY-----")
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, \
        cut_case("anthropic_tool_input", "reset")


def interleaved_choices(rng, usage, leak: bool):
    sid = "chatcmpl-%012x" % rng.getrandbits(48)
    events = [delta_event(sid, i, {"role": "assistant", "content": ""}) for i in range(2)]
    first = HEADER_DELTAS if leak else ["All", " clear", " here", "."]
    for mine, other in zip(first, OTHER_DELTAS):
        events += [delta_event(sid, 0, {"content": mine}), delta_event(sid, 1, {"content": other})]
    wire = response_head(SSE_TYPE, True) + chunked(events + finish_events(sid, 2, usage))
    if not leak:
        return wire, msc.random_cuts(rng, 0, len(wire)), None, \
            Case("two_choices_clean", TIER, "admit", "ok", 200, [], None, "end", usage)
    stop = last_dash(wire, b'"content":"-----"')
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, \
        cut_case("two_choices_interleaved", "stream_end")


def one_character_each(rng, usage, name: str, first: dict | None, mine, other):
    """A chat stream whose one choice streams two texts a client accumulates apart, one character
    each in turn (tests/e2e/fastapi_host.py's shapes): MINE(c) and OTHER(c) build the deltas. The
    header is in MINE's text only; the cut falls on its last dash."""
    sid = "chatcmpl-%012x" % rng.getrandbits(48)
    events = [delta_event(sid, 0, {"role": "assistant", "content": ""})]
    if first is not None:
        events.append(delta_event(sid, 0, first))
    text = "Here: " + "".join(HEADER_DELTAS) + "\nMIIE"
    noise = "abcdefghijklmnopqrstuvwxyz" * 2
    last = len("Here: " + "".join(HEADER_DELTAS)) - 1  # the header's last dash
    stop_event = 0
    for n, (a, b) in enumerate(zip(text, noise)):
        if n == last:
            stop_event = len(events)
        events += [delta_event(sid, 0, mine(a)), delta_event(sid, 0, other(b))]
    head = response_head(SSE_TYPE, True)
    wire = head + chunked(events + finish_events(sid, 1, usage))
    offset = len(head) + sum(len(b"%x\r\n" % len(e)) + len(e) + 2 for e in events[:stop_event])
    offset += len(b"%x\r\n" % len(events[stop_event]))
    stop = wire.index(b'-"', offset)  # the dash, in the delta that holds it
    return wire, msc.random_cuts(rng, 0, stop) + [stop - 20, stop + 30], stop, \
        cut_case(name, "stream_end")


def anthropic_text_and_thinking(rng, usage):
    """One Anthropic block's text_delta and thinking_delta one character each in turn: the SDK
    adds each to its own field; the header is in the text."""
    def event(kind: str, data: dict) -> bytes:
        return (f"event: {kind}\ndata: ".encode() + json.dumps(data, separators=(",", ":")).encode()
                + b"\n\n")
    events = [event("message_start", {"type": "message_start", "message": {
                  "id": "msg_%012x" % rng.getrandbits(48), "type": "message",
                  "role": "assistant", "content": [], "model": MODEL}}),
              event("content_block_start", {"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})]
    text = "Here: " + "".join(HEADER_DELTAS) + "\nMIIE"
    noise = "abcdefghijklmnopqrstuvwxyz" * 2
    last = len("Here: " + "".join(HEADER_DELTAS)) - 1
    stop_event = 0
    for n, (a, b) in enumerate(zip(text, noise)):
        if n == last:
            stop_event = len(events)
        events += [event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "text_delta", "text": a}}),
                   event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                                 "delta": {"type": "thinking_delta",
                                                           "thinking": b}})]
    events += [event("content_block_stop", {"type": "content_block_stop", "index": 0}),
               event("message_stop", {"type": "message_stop"})]
    head = response_head(SSE_TYPE, True)
    wire = head + chunked(events)
    offset = len(head) + sum(len(b"%x\r\n" % len(e)) + len(e) + 2 for e in events[:stop_event])
    offset += len(b"%x\r\n" % len(events[stop_event]))
    stop = wire.index(b'-"', offset)
    return wire, msc.random_cuts(rng, 0, stop) + [stop - 20, stop + 30], stop, \
        cut_case("anthropic_text_and_thinking_stream", "stream_end")


def interleaved_fields(rng, usage):
    return one_character_each(rng, usage, "interleaved_fields_stream", None,
                              lambda c: {"content": c}, lambda c: {"reasoning_content": c})


def two_tool_calls(rng, usage):
    first = {"tool_calls": [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "save_key", "arguments": ""}},
        {"index": 1, "id": "call_2", "type": "function",
         "function": {"name": "search", "arguments": ""}}]}
    return one_character_each(
        rng, usage, "two_tool_calls_stream", first,
        lambda c: {"tool_calls": [{"index": 0, "function": {"arguments": c}}]},
        lambda c: {"tool_calls": [{"index": 1, "function": {"arguments": c}}]})


def stream_sent_as_json(rng, usage):
    sid = "chatcmpl-%012x" % rng.getrandbits(48)
    events = [delta_event(sid, 0, {"role": "assistant", "content": ""})]
    events += [delta_event(sid, 0, {"content": d}) for d in ["Here", " it is:\n"] + HEADER_DELTAS]
    wire = response_head(JSON_HEAD, True) + chunked(events + finish_events(sid, 1, usage))
    stop = last_dash(wire, b'"content":"-----"')
    # The first body segment tells the stream apart; the cut comes in a later one.
    head_end = wire.index(b"\r\n\r\n") + 4
    return wire, [head_end + 60] + msc.random_cuts(rng, head_end + 60, len(wire)), stop, \
        cut_case("stream_sent_as_json", "stream_end")


def nan_before_content(rng, usage):
    body = json_body(rng, {"role": "assistant", "content": LEAK}, usage, before='"score":NaN')
    wire = response_head(JSON_HEAD, False, len(body)) + body
    stop = wire.index(b"NaN")
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, \
        cut_case("nan_before_content", "reset", "completion_unreadable")


def long_chunk_sizes(rng, usage):
    body = json_body(rng, {"role": "assistant", "content": LEAK}, usage)
    pieces = [body[i:i + 90] for i in range(0, len(body), 90)]
    wire = response_head(JSON_HEAD, True) + chunked(pieces, size_digits=17)
    # The header's last `-` as the client reads it: in the chunk data, after a size line.
    at = body.index(b"PRIVATE KEY-----") + len(b"PRIVATE KEY-----") - 1
    head = len(response_head(JSON_HEAD, True))
    stop = head + (at // 90 + 1) * (17 + 2) + (at // 90) * 2 + at
    if wire[stop] != ord("-") or wire[stop - 15:stop + 1] != b"PRIVATE KEY-----"[-16:]:
        raise AssertionError("long_chunk_sizes: the header's end is not where it was computed")
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, \
        cut_case("long_chunk_sizes", "reset")


def two_content_types(rng, usage):
    body = json_body(rng, {"role": "assistant", "content": LEAK}, usage)
    wire = response_head(JSON_HEAD + SSE_TYPE, False, len(body)) + body
    head_end = wire.index(b"\r\n\r\n") + 4
    return wire, [head_end] + msc.random_cuts(rng, head_end, len(wire)), head_end - 1, \
        cut_case("two_content_types", "reset", "completion_unreadable")


def ollama_ndjson(rng, usage):
    """Ollama's /api/chat stream: one JSON object per line, each a delta of the message."""
    lines = [json.dumps({"model": MODEL, "created_at": "2026-12-07T10:00:00Z",
                         "message": {"role": "assistant", "content": d}, "done": False},
                        separators=(",", ":")).encode() + b"\n"
             for d in ["Here", " it is:\n"] + HEADER_DELTAS + ["\nMIIEfake"]]
    lines.append(json.dumps({"model": MODEL, "created_at": "2026-12-07T10:00:01Z",
                             "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": "stop", "prompt_eval_count": 14, "eval_count": 30},
                            separators=(",", ":")).encode() + b"\n")
    wire = response_head(b"Content-Type: application/x-ndjson\r\n", True) + chunked(lines)
    stop = last_dash(wire, b'"content":"-----"')
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, cut_case("ollama_ndjson", "reset")


def ollama_content_and_thinking(rng, usage):
    """Ollama's /api/chat stream with message.content and message.thinking one character each in
    turn: its clients accumulate each apart; the header is in the content."""
    def line(message: dict) -> bytes:
        return json.dumps({"model": MODEL, "created_at": "2026-12-07T10:00:00Z",
                           "message": {"role": "assistant", **message}, "done": False},
                          separators=(",", ":")).encode() + b"\n"
    text = "Here: " + "".join(HEADER_DELTAS) + "\nMIIE"
    noise = "abcdefghijklmnopqrstuvwxyz" * 2
    last = len("Here: " + "".join(HEADER_DELTAS)) - 1  # the header's last dash
    lines, stop_line = [], 0
    for n, (a, b) in enumerate(zip(text, noise)):
        if n == last:
            stop_line = len(lines)
        lines += [line({"content": a}), line({"content": "", "thinking": b})]
    lines.append(json.dumps({"model": MODEL, "created_at": "2026-12-07T10:00:01Z",
                             "message": {"role": "assistant", "content": ""}, "done": True,
                             "done_reason": "stop"}, separators=(",", ":")).encode() + b"\n")
    head = response_head(b"Content-Type: application/x-ndjson\r\n", True)
    wire = head + chunked(lines)
    offset = len(head) + sum(len(b"%x\r\n" % len(e)) + len(e) + 2 for e in lines[:stop_line])
    offset += len(b"%x\r\n" % len(lines[stop_line]))
    stop = wire.index(b'-"', offset)  # the dash, in the line that holds it
    return wire, msc.random_cuts(rng, 0, stop) + [stop - 20, stop + 30], stop, \
        cut_case("ollama_content_and_thinking", "reset")


def responses_part_comes_back(rng, usage):
    """A Responses stream whose item's content part 0 comes back after part 1 began: a client
    keeps the parts apart (the header is whole in part 0), Sluice reads the item as one text."""
    def event(data: dict) -> bytes:
        return (f"event: {data['type']}\ndata: ".encode()
                + json.dumps(data, separators=(",", ":")).encode() + b"\n\n")
    def delta(part: int, text: str) -> bytes:
        return event({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                      "content_index": part, "delta": text})
    events = [delta(0, "Here: -----BEGIN RSA "), delta(1, "zz"), delta(0, "PRIVATE KEY-----"),
              delta(0, "\nMIIEfake"), event({"type": "response.completed"})]
    wire = response_head(SSE_TYPE, True) + chunked(events)
    # The part comes back at the byte that ends its content_index.
    stop = wire.index(b'"content_index":0,', wire.index(b'"zz"')) + len(b'"content_index":0')
    return wire, msc.random_cuts(rng, 0, len(wire)), stop, \
        cut_case("responses_part_comes_back_stream", "stream_end", "completion_unreadable")


def held_back_stream(rng, usage):
    sid = "chatcmpl-%012x" % rng.getrandbits(48)
    events = [delta_event(sid, 0, {"role": "assistant", "content": ""})]
    events += [delta_event(sid, 0, {"content": d}) for d in ["Here", " it is:\n"] + HEADER_DELTAS]
    events += [delta_event(sid, 0, {"content": "\nMIIEfake"})]
    wire = response_head(SSE_TYPE, True) + chunked(events + finish_events(sid, 1, usage))
    stop = last_dash(wire, b'"content":"-----"')
    # A segment ends right after the last `-`, before the string's closing quote.
    return wire, msc.random_cuts(rng, 0, stop - 40) + [stop - 40, stop + 1], stop, \
        cut_case("held_back_stream", "stream_end")


def held_back_json(rng, usage):
    body = json_body(rng, {"role": "assistant", "content": LEAK}, usage)
    wire = response_head(JSON_HEAD, False, len(body)) + body
    stop = last_dash(wire, b"PRIVATE KEY-----")
    return wire, msc.random_cuts(rng, 0, stop - 30) + [stop - 30, stop + 1], stop, \
        cut_case("held_back_json", "reset")


SESSIONS = [
    ("fields", reasoning_field), ("fields", anthropic_tool_input),
    ("fields", interleaved_fields), ("fields", two_tool_calls),
    ("fields", anthropic_text_and_thinking),
    ("fields", ollama_content_and_thinking),
    ("choices", lambda rng, usage: interleaved_choices(rng, usage, True)),
    ("choices", lambda rng, usage: interleaved_choices(rng, usage, False)),
    ("unreadable", stream_sent_as_json), ("unreadable", nan_before_content),
    ("unreadable", long_chunk_sizes), ("unreadable", two_content_types),
    ("unreadable", ollama_ndjson),
    ("unreadable", responses_part_comes_back),
    ("hold_back", held_back_stream), ("hold_back", held_back_json),
]


def build(base_us: int) -> tuple:
    rng = random.Random(20261207)
    keys = {label: "sk-sluice-%032x" % rng.getrandbits(128) for label in mrc.TIER_KEY.values()}
    sessions: list[tuple[mac.Session, Case, str]] = []
    t = base_us + 10 * mac.MS
    host, port = 10, 44000
    for n, (klass, make) in enumerate(SESSIONS):
        usage = mac.usage(14 + n, 30 + n)
        wire, cuts, stop, case = make(rng, usage)
        s = mac.Session(f"{klass}_{case.name}", mc.v4client(host), port, rng, t)
        host, port, t = host + 1, port + 1, t + 100 * mac.MS
        body = msc.chat_body("Show me how keys look.", "stream" in case.name or
                             "choices" in case.name or "reasoning" in case.name)
        path = "/api/chat" if "ollama" in case.name else "/v1/chat/completions"
        wire_request = msc.http_request(body, [("User-Agent", "sluice-integrity-test/1.0"),
                                               ("Authorization",
                                                f"Bearer {keys[mrc.TIER_KEY[TIER]]}")])
        wire_request = wire_request.replace(b"/v1/chat/completions", path.encode(), 1)
        req = Request(s.name, "POST", path, wire_request, "ok", mrc.TIER_IDENTITY[TIER],
                      mrc.TIER_KEY[TIER], MODEL, 64)
        s.request(req, at=s.now + 2 * mac.MS)
        s.ack()
        cuts = sorted(c for c in set(cuts) if 0 < c < len(wire))
        items = msc.respond(s, wire, cuts)
        if stop is None:
            case.end_item = items[-1]
            s.close()
        else:
            case.cut_item = msc.item_at(items, cuts, stop)
        sessions.append((s, case, klass))
    return keys, sessions


def generate(outdir: str, base_us: int = mc.BASE_TS_US) -> dict:
    os.makedirs(os.path.join(outdir, "extra"), exist_ok=True)
    keys, sessions = build(base_us)
    items = mac.merged([s for s, _, _ in sessions])
    sides = mc.replay_sides([i.data for i in items], [mac.PORT], [])
    for index, (item, side) in enumerate(zip(items, sides)):
        if item.side != side:
            raise AssertionError(f"packet {index}: generator says {item.side}, the replay rules "
                                 f"say {side}")
    index_of = {id(item): n for n, item in enumerate(items)}
    out_sessions, requests = [], []
    for s, case, klass in sessions:
        r = s.requests[0]
        stop = index_of[id(case.cut_item)] if case.cut_item is not None else None
        out_sessions.append({
            "name": s.name, "case": case.name, "class": klass, "tier": TIER,
            "client": s.t.client.ip, "client_port": s.t.cport, "server": s.t.server.ip,
            "server_port": s.t.sport,
            "client_frames": [index_of[id(i)] for i in s.items if i.side == mc.CLIENT],
            "server_frames": [index_of[id(i)] for i in s.items if i.side == mc.SERVER],
            "stop_frame": stop, "ends": case.ends, "requests": [r.label]})
        requests.append({
            "label": r.label, "case": case.name, "class": klass, "client_port": s.t.cport,
            "tier": TIER, "identity": r.identity, "key": r.key, "verdict": case.verdict,
            "reason": case.reason, "status": case.status, "rules": case.rules,
            "decided_at": case.decided_at, "model": MODEL, "max_output_tokens": 64,
            "usage": case.usage, "frames": [index_of[id(i)] for i in r.items],
            "head_frame": index_of[id(r.head)],
            "record_frame": stop if stop is not None else index_of[id(case.end_item)]})
    counts: dict[str, int] = {}
    for r in requests:
        for name in ["requests_ok"] + (["requests_" + r["reason"]] if r["verdict"] == "deny"
                                       else []):
            counts[name] = counts.get(name, 0) + 1
    expected = {"capture": "in.pcap", "config": "config.yaml", "packets": len(items),
                "keys": keys, "request_counts": dict(sorted(counts.items())),
                "sessions": out_sessions, "requests": requests}
    mc.write_pcap(os.path.join(outdir, "in.pcap"), [(i.ts, i.data) for i in items])
    with open(os.path.join(outdir, "config.yaml"), "w") as f:
        # The free tier also allows Ollama's /api/chat (its answers are NDJSON).
        f.write(msc.CONFIG_YAML.replace("make_scopes_captures.py",
                                        "make_integrity_response_captures.py")
                .replace("  free:      { ", "  free:      { paths: [/v1/chat/completions, /api/chat],\n"
                         "               ", 1))
    with open(os.path.join(outdir, "extra", "scanner.yaml"), "w") as f:
        f.write(msc.SCANNER_YAML)
    with open(os.path.join(outdir, "identities.yaml"), "w") as f:
        lines = ["# generated by tests/pcap/make_integrity_response_captures.py", "identities:"]
        for name, tier in mrc.IDENTITIES.items():
            lines += [f"  - name: {name}", f"    tier: {tier}",
                      f'    keys: ["{mac.digest(keys[name])}"]']
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    args = parser.parse_args()
    e = generate(args.outdir)
    print(f"in.pcap: {e['packets']} packets, {len(e['sessions'])} sessions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
