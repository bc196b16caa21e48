#!/usr/bin/python3
"""Replays answers that once got a private key header past Sluice's completion rules.

    /usr/bin/python3 tests/pcap/integrity_response_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/integrity_response [-v]

Generates the capture with make_integrity_response_captures.py (16 sessions, free tier: fields a
client shows that were not read, interleaved choices, answers Sluice cannot read, a segment that
ends right after the header's last letter), compiles the shipped rules (as scopes_replay_test.py
does), runs `sluice replay --audit` twice and checks, with scopes_replay_test.py's checks:
- determinism, the requests_* counters (a cut is counted under its reason);
- to_server / to_client are exactly the frames that must pass: each flow stops at its deciding
  server segment (the one that completes the header, or the first Sluice cannot read), which
  does not pass, nor anything after it; one RST to the server at its RCV.NXT;
- a cut stream: one FIN|PSH|ACK segment from Sluice; appended to what the client got, a
  well-formed chunked body whose events all parse, the last `event: error` with the reason's
  code; the text a client accumulates apart (per choice, per field — content,
  reasoning_content, … — and per tool call) never holds a whole private key header;
- a cut plain answer: a bare RST to the client, and the body bytes it got never hold the header;
- the audit trail: one record per request with the expected verdict, reason, status, rules.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_integrity_response_captures as mir  # noqa: E402
import make_scopes_captures as msc  # noqa: E402
import rules_replay_test as rrt  # noqa: E402
import scopes_replay_test as srt  # noqa: E402
from admission_test import frames, flow_of  # noqa: E402

SHOWN = ("content", "text", "delta", "reasoning_content", "reasoning", "arguments",
         "partial_json", "thinking", "refusal")


def shown_texts(value, key: str, index: int, texts: dict, path: str = "") -> None:
    """Adds the strings a client shows to texts[(choice index, field path)]: what it accumulates
    apart (the openai SDK: per choice, per delta field, per tool_calls[].index)."""
    if isinstance(value, str):
        if key in SHOWN:
            texts[(index, path)] = texts.get((index, path), "") + value
    elif isinstance(value, dict):
        numbered = isinstance(value.get("index"), int)
        if numbered and path == "":
            index = value["index"]  # a choice, or an Anthropic block
        elif numbered:
            path += f"[{value['index']}]"  # a tool call
        for name, member in value.items():
            wrapper = path == "" and name in ("delta", "message", "content_block")
            shown_texts(member, name, index, texts, path if wrapper else f"{path}.{name}")
    elif isinstance(value, list):
        for position, member in enumerate(value):
            if key == "choices":
                shown_texts(member, key, position, texts, "")
            else:
                shown_texts(member, key, index, texts, path)


# The error codes of a cut stream (the case's own reason is checked in its audit record).
CUT_CODES = ("completion_policy_violation", "completion_unreadable")


def check_stream_end(got: bytes, sluice: bytes) -> list[str]:
    """The response a cut stream's client ends up with: GOT + SLUICE (its last segment)."""
    head, sep, body = (got + sluice).partition(b"\r\n\r\n")
    if not sep or b"transfer-encoding: chunked" not in head.lower():
        return ["the client did not get a chunked response head"]
    data, problems = srt.dechunk(body)
    if problems:
        return problems
    try:
        events, problems = srt.parse_sse(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        return [f"the event stream is not UTF-8: {e}"]
    texts: dict = {}
    for n, (kind, payload) in enumerate(events):
        if payload == "[DONE]":
            problems.append(f"event {n}: [DONE] before the cut")
            continue
        try:
            obj = json.loads(payload)
        except ValueError as e:
            problems.append(f"event {n} ({kind}): data {payload[:80]!r} is not JSON ({e})")
            continue
        if n == len(events) - 1:
            error = obj.get("error") if isinstance(obj, dict) else None
            if kind != "error" or not isinstance(error, dict) or \
                    error.get("code") not in CUT_CODES:
                problems.append(f"the last event is {kind!r} {payload[:100]!r}, expected the error")
        else:
            shown_texts(obj, "", 0, texts, "")
    for (index, path), text in sorted(texts.items()):
        if msc.KEY_HEADER.search(text):
            problems.append(f"choice {index} {path} shows a whole private key header: "
                            f"{text[-80:]!r}")
    if len(events) < 2:
        problems.append(f"{len(events)} events, expected the host's first ones and the error")
    return problems


def check_plain_bodies(expected: dict, inputs: list, to_client: list, checks: at.Checks) -> None:
    """A reset plain answer: the body bytes the client got never hold a whole header."""
    index_of = {f.data: n for n, f in enumerate(inputs)}
    problems = []
    for s in expected["sessions"]:
        if s["ends"] != "reset":
            continue
        got = b"".join(f.payload for f in to_client
                       if flow_of(f) == (s["client_port"], "to_client") and f.data in index_of)
        _, _, body = got.partition(b"\r\n\r\n")
        if msc.KEY_HEADER.search(body.decode("latin-1")):
            problems.append(f"{s['name']}: the client got the whole header")
    checks.report("reset_answers_never_hold_the_header", problems)


def main() -> int:
    begun = at.start("Sluice's reading of answers (inspection integrity), through replay")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = mir.generate(workdir, mc.BASE_TS_US)
    error = rrt.compile_rules(sluicectl, os.path.join(workdir, "rules.db"),
                              os.path.join(workdir, "extra", "scanner.yaml"))
    if not checks.report("rules_compile", [error] if error else []):
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    inputs = frames(os.path.join(workdir, "in.pcap"))
    first = at.replay_twice(sluice, workdir, checks)
    if first is None:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    checks.report("request_counters", at.check_counters(first["counters"],
                                                        expected["request_counts"]))
    try:
        to_client = frames(os.path.join(first["dir"], "to_client.pcap"))
        to_server = frames(os.path.join(first["dir"], "to_server.pcap"))
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        srt.check_stream_end = check_stream_end  # this capture's streams, choices and fields
        srt.check_packets(expected, inputs, to_client, to_server,
                          rrt.rule_ids() | {msc.SCANNER_RULE}, checks)
        check_plain_bodies(expected, inputs, to_client, checks)
    records, _, problems = at.read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    srt.check_audit(expected, records, inputs, checks)
    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
