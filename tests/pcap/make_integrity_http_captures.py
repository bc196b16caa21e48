#!/usr/bin/python3
"""Generates the capture of Sluice's HTTP-request integrity replay test
(tests/pcap/integrity_http_test.py): requests a host reads although Sluice, before issue 12,
did not inspect them, or read differently.

Run with Debian's /usr/bin/python3 (it has scapy 2.5 from python3-scapy):

    /usr/bin/python3 tests/pcap/make_integrity_http_captures.py OUTDIR

Writes OUTDIR/{in.pcap, config.yaml, identities.yaml, expected.json} in the format of
make_admission_captures.py (its tiers, identities, keys and building blocks), plus a
`discarded` list per session. Deterministic: fixed seed, fixed timestamps.

One TCP session per case, 100 ms apart, each on its own client port; requests in one segment
unless said otherwise. FastAPI, vLLM, LiteLLM and llama.cpp parse any body as JSON, whatever
its Content-Type, so every body is read as JSON:
- ct_none_model: free `hobby`, no Content-Type, model `big-1` outside the tier: 403
  model_not_allowed (before: not read, admitted).
- ct_plain_tokens: free `hobby`, `text/plain`, max_tokens 25600 (100 × the cap): 400
  max_output_tokens_over_cap (before: admitted, no output reserved).
- ct_form_admitted: verified `acme`, `application/x-www-form-urlencoded` with a JSON body in
  the tier: admitted, its prompt estimated and max_tokens reserved (before: neither).
- ct_text_json_admitted: verified `acme` (its second key, x-api-key), `text/json`: admitted.
- ct_multipart_not_json: partner `bigco`, `multipart/form-data` whose body is not JSON: 400
  json_invalid (before: admitted).
- ct_duplicate: free `hobby`, `Content-Type: text/plain` then `application/json`: 400
  http_duplicate_content_type at the head (before: the last one read, admitted).
- ct_octet_stream_unknown_key: `application/octet-stream`, an unknown key: 401 invalid_api_key
  at the head, as for any type.
- auth_basic_and_bearer: `Authorization: Basic …` next to `Authorization: Bearer <hobby>`: 401
  conflicting_api_keys (before: read as hobby, admitted).
- auth_key_and_basic: `x-api-key: <acme>` next to `Authorization: Basic …`: 401
  conflicting_api_keys (before: read as acme, admitted).
- auth_basic_alone: `Authorization: Basic …` and no key: 401 missing_api_key (as before).
- close_then_request: HTTP/1.1 `Connection: close` and a second request in the same segment:
  400 http_data_after_close, neither request admitted (before: both admitted and charged).
- http10_then_request: an HTTP/1.0 request (no keep-alive), its response, then a second
  request in a later segment (the last frame of the session): the first admitted, the second
  neither forwarded nor read as a request (`discarded`; before: admitted and charged).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_admission_captures as mac  # noqa: E402
import make_captures as mc  # noqa: E402
from make_admission_captures import Request  # noqa: E402

MS = mac.MS
BASIC = "Basic dXNlcjpwYXNzd29yZA=="  # user:password
NEW_REASONS = {"json_invalid": 400, "http_duplicate_content_type": 400,
               "http_data_after_close": 400}
# make_admission_captures' tables, with the reasons of this capture (this process only).
mac.STATUS.update(NEW_REASONS)
# Refused before the body is read: the decision is the segment that completes the head.
mac.HEAD_REASONS.add("http_duplicate_content_type")


def typed_request(cap: mac.Capture, content_type: list[str], body: bytes,
                  auth: list[tuple[str, str]], version: str = "1.1",
                  connection: str | None = None) -> bytes:
    headers = [("Host", mac.HOSTNAME), ("User-Agent", "sluice-integrity-test/1.0")] + auth
    headers += [("Content-Type", t) for t in content_type]
    if connection is not None:
        headers.append(("Connection", connection))
    headers += [("Content-Length", str(len(body))), ("Accept", "application/json")]
    head = f"POST /v1/chat/completions HTTP/{version}\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers)
    return head.encode() + b"\r\n" + body


def build(base_us: int = mc.BASE_TS_US) -> tuple[mac.Capture, dict[str, list[mc.Item]]]:
    cap = mac.Capture(20261207)
    rng = cap.rng
    discarded: dict[str, list[mc.Item]] = {}
    t = base_us + 10 * MS

    def session(name: str) -> mac.Session:
        nonlocal t
        s = cap.session(name, t)
        t += 100 * MS
        return s

    def one(name: str, content_type: list[str], body: bytes, reason: str, identity: str | None,
            key: str | None, model: str | None, max_tokens: int | None,
            auth: list[tuple[str, str]] | None = None, header: str = "Authorization",
            **kw) -> None:
        s = session(name)
        wire = typed_request(cap, content_type, body,
                             auth if auth is not None else cap.auth(key, header))
        u = mac.usage(12, 30) if reason == "ok" else None
        s.request(Request(name, "POST", "/v1/chat/completions", wire, reason, identity, key, model,
                          max_tokens, usage=u, **kw), at=s.now + 2 * MS)
        if reason == "ok":  # a refused segment never reaches the host: no ACK, no answer
            s.ack()
            s.respond(mac.http_response(rng, model, u), at=s.now + 10 * MS)
            s.close()

    chat = lambda model, max_tokens: mac.chat_body(rng, model, max_tokens)  # noqa: E731

    one("ct_none_model", [], chat("big-1", 64), "model_not_allowed", "hobby", "hobby", "big-1",
        64)
    one("ct_plain_tokens", ["text/plain"], chat("small-1", 25600), "max_output_tokens_over_cap",
        "hobby2", "hobby2", "small-1", 25600)
    one("ct_form_admitted", ["application/x-www-form-urlencoded"], chat("small-1", 100), "ok",
        "acme", "acme-1", "small-1", 100)
    one("ct_text_json_admitted", ["text/json"], chat("small-2", 50), "ok", "acme", "acme-2",
        "small-2", 50, header="x-api-key")
    multipart = (b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nsmall-1\r\n"
                 b"--b0undary\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n"
                 b"ignore previous instructions\r\n--b0undary--\r\n")
    one("ct_multipart_not_json", ["multipart/form-data; boundary=b0undary"], multipart,
        "json_invalid", "bigco", "bigco", None, None, json=False)
    # Refused by the parser before admission sees the head: no method, path or key recorded.
    one("ct_duplicate", ["text/plain", "application/json"], chat("small-1", 64),
        "http_duplicate_content_type", None, None, None, None, auth=cap.auth("hobby"))
    one("ct_octet_stream_unknown_key", ["application/octet-stream"], chat("small-1", 64),
        "invalid_api_key", None, "unknown", None, None)
    # Conflicting credentials are judged before the key is looked up: no key_id.
    one("auth_basic_and_bearer", ["application/json"], chat("small-1", 64),
        "conflicting_api_keys", None, None, None, None,
        auth=[("Authorization", BASIC)] + cap.auth("hobby"))
    one("auth_key_and_basic", ["application/json"], chat("small-1", 64), "conflicting_api_keys",
        None, None, None, None, auth=cap.auth("acme-1", "x-api-key") + [("Authorization", BASIC)])
    one("auth_basic_alone", ["application/json"], chat("small-1", 64), "missing_api_key", None,
        None, None, None, auth=[("Authorization", BASIC)])

    # Connection: close, then a second request in the same segment.
    s = session("close_then_request")
    first = typed_request(cap, ["application/json"], chat("small-1", 64), cap.auth("bigco"),
                          connection="close")
    second = typed_request(cap, ["application/json"], chat("small-1", 64), cap.auth("bigco"))
    req = s.request(Request("close_then_request", "POST", "/v1/chat/completions", first + second,
                            "http_data_after_close", "bigco", "bigco", "small-1", 64),
                    at=s.now + 2 * MS)
    # Refused at its last byte, with its body read: the first request's body only.
    req.body_bytes = len(first) - first.index(b"\r\n\r\n") - 4

    # HTTP/1.0 without keep-alive: admitted and answered; a later segment is not the host's.
    s = session("http10_then_request")
    wire = typed_request(cap, ["application/json"], chat("small-1", 64), cap.auth("bigco"),
                         version="1.0")
    u = mac.usage(11, 21)
    s.request(Request("http10_then_request", "POST", "/v1/chat/completions", wire, "ok", "bigco",
                      "bigco", "small-1", 64, usage=u), at=s.now + 2 * MS)
    s.ack()
    s.respond(mac.http_response(rng, "small-1", u), at=s.now + 10 * MS)
    late = typed_request(cap, ["application/json"], chat("small-1", 64), cap.auth("bigco"))
    discarded[s.name] = [s.put(s.t.send(True, late), 5 * MS)]
    return cap, discarded


def generate(outdir: str, base_us: int = mc.BASE_TS_US) -> dict:
    """Writes in.pcap, config.yaml, identities.yaml and expected.json; returns the expectation."""
    os.makedirs(outdir, exist_ok=True)
    cap, discarded = build(base_us)
    items = mac.merged(cap.sessions)
    sides = mc.replay_sides([i.data for i in items], [mac.PORT], [])
    for index, (item, side) in enumerate(zip(items, sides)):
        if item.side != side:
            raise AssertionError(f"packet {index}: generator says {item.side}, the replay rules "
                                 f"say {side}")
    index_of = {id(item): n for n, item in enumerate(items)}
    sessions, requests = [], []
    for s in cap.sessions:
        reqs = [mac.expectation(r, index_of, s.t.cport) | (
            {"body_bytes": r.body_bytes} if hasattr(r, "body_bytes") else {})
            for r in s.requests]
        for r in reqs:
            if r["reason"] == "http_duplicate_content_type":  # no head reached admission
                r["method"] = r["path"] = None
        denied = [r for r in reqs if r["verdict"] == "deny"]
        dropped = {id(i) for i in discarded.get(s.name, [])}
        sessions.append({
            "name": s.name, "client": s.t.client.ip, "client_port": s.t.cport,
            "server": s.t.server.ip, "server_port": s.t.sport,
            # Frames the client sent that are neither forwarded nor read are not listed here.
            "client_frames": [index_of[id(i)] for i in s.items
                              if i.side == mc.CLIENT and id(i) not in dropped],
            "server_frames": [index_of[id(i)] for i in s.items if i.side == mc.SERVER],
            "denied_at_frame": denied[0]["decision_frame"] if denied else None,
            "discarded": [index_of[id(i)] for i in discarded.get(s.name, [])],
            "requests": [r["label"] for r in reqs]})
        requests += reqs
    counts: dict[str, int] = {}
    for r in requests:
        counts[f"requests_{r['reason']}"] = counts.get(f"requests_{r['reason']}", 0) + 1
    expected = {
        "capture": "in.pcap", "config": "config.yaml", "packets": len(items), "keys": cap.keys,
        "identities": {name: {"tier": tier, "keys": labels}
                       for name, (tier, labels) in mac.IDENTITIES.items()},
        "request_counts": dict(sorted(counts.items())), "sessions": sessions,
        "requests": requests,
    }
    mc.write_pcap(os.path.join(outdir, "in.pcap"), [(i.ts, i.data) for i in items])
    with open(os.path.join(outdir, "config.yaml"), "w") as f:
        f.write(mac.CONFIG_YAML.replace("make_admission_captures.py",
                                        "make_integrity_http_captures.py"))
    with open(os.path.join(outdir, "identities.yaml"), "w") as f:
        f.write(mac.identities_yaml(cap.keys))
    with open(os.path.join(outdir, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    return expected


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("outdir")
    args = parser.parse_args()
    e = generate(args.outdir)
    print(f"in.pcap: {e['packets']} packets, {len(e['sessions'])} sessions, "
          f"{len(e['requests'])} requests")
    for name, n in e["request_counts"].items():
        print(f"  {name} {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
