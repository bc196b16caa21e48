#!/usr/bin/python3
"""Replays three tiers' worth of traffic through Sluice's admission and checks every decision.

    /usr/bin/python3 tests/pcap/admission_test.py --sluice build/src/sluice --workdir /tmp/adm [-v]
        [--start UNIX_SECONDS]

Generates one capture with make_admission_captures.py (25 sessions, 45 requests of the
identities acme/verified, hobby and hobby2/free, bigco/partner, and unknown, missing and
conflicting keys), with its config.yaml, identities.yaml and expected.json, runs
`sluice replay --audit` on it twice and checks:
- both runs exit 0 with `mbufs_in_use_after_run 0`; the two runs write byte-identical
  to_client/to_server captures, and the same audit trail once `key_id` is removed (key ids are
  keyed with a per-process secret), with the same `ts` values and the same grouping of records
  by key id;
- the summary's requests_* counters are the expected counts per reason;
- every refused request is answered to the client by exactly one segment that Sluice made:
  FIN|PSH|ACK, in the client's sequence space, with the expected status line, headers
  (content-type, content-length, connection: close; for a 429 retry-after within the expected
  bounds, retry-after-ms agreeing with it, and the x-ratelimit-limit/remaining/reset of the
  bucket that denied) and the OpenAI error body naming the reason; the server side gets one RST
  for that flow, and neither the segment that decided the refusal nor anything after it; that
  RST carries the server's RCV.NXT (the deciding segment's seq), so the server accepts it;
- to_server is exactly the client segments that must pass (in input order) plus those RSTs;
  to_client exactly the server's segments (in input order) plus the answers; every admitted
  request's bytes reach the server intact;
- the audit trail: one record per request, matched by flow (client port) and order within the
  flow, with the expected verdict, status, reason, identity, tier, method, path, model, token
  fields (reservation = estimate + requested output or the tier's cap; the response's usage and
  the charge taken from it), `ts` the time of the segment that completed the head, records in
  the order of the decisions (denials when decided, admissions when their response ended);
  key ids of 12 hex digits, the same for the same key and different for different keys;
- no clear-text API key anywhere in the audit trail, in sluice's output or in the answers.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_admission_captures as mac  # noqa: E402
import make_captures as mc  # noqa: E402

COUNTER_LINE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s+(\d+)\s*$")
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
OUTPUTS = ("to_client.pcap", "to_server.pcap")
ERROR_TYPE = {"rate_limited_requests": "requests", "concurrency_limited": "requests",
              "rate_limited_tokens": "tokens"}


class Checks:
    def __init__(self, verbose: bool):
        self.passed = self.failed = 0
        self.verbose = verbose

    def report(self, name: str, problems: list[str]) -> bool:
        if problems:
            self.failed += 1
            shown = problems if self.verbose else problems[:3]
            more = f" (+{len(problems) - len(shown)} more, -v shows all)" if len(problems) > len(shown) else ""
            print(f"FAIL {name}: " + "; ".join(shown) + more, flush=True)
            return False
        self.passed += 1
        print(f"PASS {name}", flush=True)
        return True


# --------------------------------------------------------------------------------------------
# running sluice
# --------------------------------------------------------------------------------------------

def replay(sluice: str, workdir: str, run: str, extra: list[str] | None = None) -> dict:
    """Runs one replay into WORKDIR/RUN, with EXTRA arguments after the others; returns
    {rc, counters, error, dir, stdout, stderr}."""
    d = os.path.join(workdir, run)
    os.makedirs(d, exist_ok=True)
    for name in OUTPUTS + ("audit.jsonl",):
        if os.path.exists(os.path.join(d, name)):
            os.unlink(os.path.join(d, name))
    cmd = [sluice, "replay", "--config", os.path.join(workdir, "config.yaml"),
           "--in", os.path.join(workdir, "in.pcap"),
           "--out-client", os.path.join(d, "to_client.pcap"),
           "--out-server", os.path.join(d, "to_server.pcap"),
           "--audit", os.path.join(d, "audit.jsonl")] + (extra or [])
    out = {"dir": d, "counters": {}, "error": None, "stdout": "", "stderr": ""}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        out["error"] = "sluice replay ran over 120 s"
        return out
    out["stdout"], out["stderr"] = proc.stdout, proc.stderr
    with open(os.path.join(d, "stdout.txt"), "w") as f:
        f.write(proc.stdout)
    with open(os.path.join(d, "stderr.txt"), "w") as f:
        f.write(proc.stderr)
    for line in proc.stdout.splitlines():
        m = COUNTER_LINE.match(line)
        if m:
            out["counters"][m.group(1)] = int(m.group(2))
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        out["error"] = f"`{' '.join(cmd)}` exited {proc.returncode}: {' / '.join(tail)}"
    elif out["counters"].get("mbufs_in_use_after_run") != 0:
        out["error"] = f"mbufs_in_use_after_run = {out['counters'].get('mbufs_in_use_after_run')}"
    return out


def read_audit(path: str) -> tuple[list[dict], list[str], list[str]]:
    """(records, raw lines, problems)."""
    records, lines, problems = [], [], []
    try:
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                lines.append(raw)
                try:
                    records.append(json.loads(raw))
                except json.JSONDecodeError as e:
                    problems.append(f"line {n}: not JSON ({e})")
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path}: {e}")
    return records, lines, problems


# --------------------------------------------------------------------------------------------
# packets
# --------------------------------------------------------------------------------------------

class Frame:
    def __init__(self, ts: int, data: bytes):
        self.ts, self.data = ts, data
        self.p = mc.parse_frame(data)
        self.payload = data[len(data) - self.p.payload_len:] if self.p.payload_len else b""

    @property
    def ack(self) -> int:
        # Sluice's frames and the generator's are plain: Ethernet, 20-byte IPv4, TCP.
        return int.from_bytes(self.data[14 + 20 + 8:14 + 20 + 12], "big")


def frames(path: str) -> list[Frame]:
    _, records = mc.read_pcap(path)
    return [Frame(ts, data) for ts, data in records]


def flow_of(f: Frame) -> tuple:
    """(client port, direction): the client's port whichever way the frame goes."""
    if f.p.dport == mac.PORT:
        return f.p.sport, "to_server"
    return f.p.dport, "to_client"


def parse_answer(payload: bytes) -> tuple[str, dict, bytes, list[str]]:
    """(status line, headers, body, problems) of an HTTP/1.1 response in one segment."""
    problems = []
    head, sep, body = payload.partition(b"\r\n\r\n")
    if not sep:
        return "", {}, b"", ["no end of header section"]
    lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            problems.append(f"malformed header line {line!r}")
            continue
        if name.lower() in headers:
            problems.append(f"header {name} twice")
        headers[name.lower()] = value.strip()
    return lines[0], headers, body, problems


def rfc3339_ms(ts_us: int) -> str:
    seconds = ts_us // 1_000_000
    t = time.gmtime(seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + ".%03dZ" % (ts_us // 1000 % 1000)


# --------------------------------------------------------------------------------------------
# checks
# --------------------------------------------------------------------------------------------

def check_counters(counters: dict, want: dict[str, int]) -> list[str]:
    problems = []
    for name, value in sorted(counters.items()):
        if name.startswith("requests_") and value != want.get(name, 0):
            problems.append(f"{name} = {value}, expected {want.get(name, 0)}")
    for name, value in sorted(want.items()):
        if name not in counters and value != 0:
            problems.append(f"{name} not reported, expected {value}")
    return problems


def check_determinism(a: dict, b: dict) -> tuple[list[str], list[str]]:
    """(problems with the captures, problems with the audit trails)."""
    pcap_problems = []
    for name in OUTPUTS:
        try:
            x = open(os.path.join(a["dir"], name), "rb").read()
            y = open(os.path.join(b["dir"], name), "rb").read()
        except OSError as e:
            pcap_problems.append(str(e))
            continue
        if x != y:
            at = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), min(len(x), len(y)))
            pcap_problems.append(f"{name} differs between the runs ({len(x)} vs {len(y)} bytes, "
                                 f"first difference at byte {at})")
    ra, _, pa = read_audit(os.path.join(a["dir"], "audit.jsonl"))
    rb, _, pb = read_audit(os.path.join(b["dir"], "audit.jsonl"))
    audit_problems = pa + pb
    if len(ra) != len(rb):
        audit_problems.append(f"{len(ra)} vs {len(rb)} audit records")

    def without(r: dict, *names: str) -> dict:
        return {k: v for k, v in r.items() if k not in names}

    for n, (x, y) in enumerate(zip(ra, rb)):
        # prev: the hash chain's link covers key_id, which differs between processes.
        if without(x, "ts", "key_id", "prev") != without(y, "ts", "key_id", "prev"):
            diff = sorted(k for k in set(x) | set(y)
                          if k not in ("ts", "key_id", "prev") and x.get(k) != y.get(k))
            audit_problems.append(f"record {n} differs in {', '.join(diff)}")
        elif x.get("ts") != y.get("ts"):
            audit_problems.append(f"record {n}: ts {x.get('ts')} vs {y.get('ts')}")
    # Key ids differ between processes, but which records share one must not.
    group_a = [[i for i, r in enumerate(ra) if r.get("key_id") == k] for k in
               dict.fromkeys(r.get("key_id") for r in ra)]
    group_b = [[i for i, r in enumerate(rb) if r.get("key_id") == k] for k in
               dict.fromkeys(r.get("key_id") for r in rb)]
    if group_a != group_b:
        audit_problems.append("the records sharing a key_id differ between the runs")
    return pcap_problems, audit_problems


def check_answer(req: dict, answer: Frame, server_next: int, client: str) -> list[str]:
    """The segment Sluice sent to the client in place of the refused request."""
    problems = []
    if answer.p.flags != FIN | PSH | ACK:
        problems.append(f"flags 0x{answer.p.flags:02x}, expected FIN|PSH|ACK (0x19)")
    if answer.p.src != req["server"] or answer.p.dst != client or answer.p.sport != mac.PORT:
        problems.append(f"sent {answer.p.src}:{answer.p.sport} → {answer.p.dst}:{answer.p.dport}")
    if answer.p.seq != server_next:
        problems.append(f"seq {answer.p.seq}, the client expects {server_next}")
    status_line, headers, body, hp = parse_answer(answer.payload)
    problems += hp
    if not status_line.startswith(f"HTTP/1.1 {req['status']} "):
        problems.append(f"status line {status_line!r}, expected HTTP/1.1 {req['status']} …")
    if headers.get("content-type") != "application/json":
        problems.append(f"content-type {headers.get('content-type')!r}")
    if headers.get("connection") != "close":
        problems.append(f"connection {headers.get('connection')!r}, expected close")
    if headers.get("content-length") != str(len(body)):
        problems.append(f"content-length {headers.get('content-length')!r}, body is {len(body)} bytes")
    try:
        error = json.loads(body)["error"]
        want_type = ERROR_TYPE.get(req["reason"], "invalid_request_error")
        if error.get("code") != req["reason"]:
            problems.append(f"body code {error.get('code')!r}, expected {req['reason']!r}")
        if error.get("type") != want_type:
            problems.append(f"body type {error.get('type')!r}, expected {want_type!r}")
        if "param" not in error or error["param"] is not None:
            problems.append(f"body param {error.get('param')!r}, expected null")
        if not isinstance(error.get("message"), str) or not error["message"]:
            problems.append(f"body message {error.get('message')!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        problems.append(f"body {body[:120]!r} is not an OpenAI error object ({e!r})")
    limit = req["ratelimit"]
    if req["status"] == 429:
        lo, hi = req["retry_after"]
        retry, retry_ms = headers.get("retry-after", ""), headers.get("retry-after-ms", "")
        if not retry.isdigit() or not lo <= int(retry) <= hi or int(retry) < 1:
            problems.append(f"retry-after {retry!r}, expected {lo}..{hi} (and >= 1)")
        if not retry_ms.isdigit() or int(retry_ms) < 1:
            problems.append(f"retry-after-ms {retry_ms!r}")
        elif retry.isdigit() and math.ceil(int(retry_ms) / 1000) != int(retry):
            problems.append(f"retry-after {retry} disagrees with retry-after-ms {retry_ms}")
        kind = limit["kind"]
        for field in ("limit", "remaining"):
            got = headers.get(f"x-ratelimit-{field}-{kind}")
            if got != str(limit[field]):
                problems.append(f"x-ratelimit-{field}-{kind} {got!r}, expected {limit[field]}")
        if f"x-ratelimit-reset-{kind}" not in headers:
            problems.append(f"no x-ratelimit-reset-{kind}")
        others = [h for h in headers if h.startswith("x-ratelimit-") and not h.endswith("-" + kind)]
        if others:
            problems.append(f"headers of another bucket: {', '.join(others)}")
    else:
        extra = [h for h in headers if h.startswith("retry-after") or h.startswith("x-ratelimit-")]
        if extra:
            problems.append(f"a {req['status']} with {', '.join(extra)}")
    return problems


def check_packets(expected: dict, inputs: list[Frame], to_client: list[Frame],
                  to_server: list[Frame], checks: Checks) -> None:
    sessions = {s["client_port"]: s for s in expected["sessions"]}
    requests = {r["label"]: r for r in expected["requests"]}
    # What must pass: the client's frames up to (not including) a refusal's deciding frame,
    # and every server frame.
    passing_client, passing_server = [], []
    for s in expected["sessions"]:
        stop = s["denied_at_frame"]
        passing_client += [i for i in s["client_frames"] if stop is None or i < stop]
        passing_server += s["server_frames"]
    passing_client.sort()
    passing_server.sort()
    denied = {s["client_port"]: s for s in expected["sessions"] if s["denied_at_frame"] is not None}

    index_of = {f.data: n for n, f in enumerate(inputs)}

    def split_output(out: list[Frame], want: list[int], name: str):
        """Matches the forwarded frames; returns (frames made by Sluice, problems)."""
        problems, made, got = [], [], []
        for f in out:
            if f.data in index_of:
                got.append(index_of[f.data])
            else:
                made.append(f)
        want_set, got_set = set(want), set(got)

        def ports(indices: list[int]) -> str:
            by_port: dict[int, list[int]] = {}
            for i in indices:
                by_port.setdefault(flow_of(inputs[i])[0], []).append(i)
            return "; ".join(f"client port {p}: frames {', '.join(map(str, v))}"
                             for p, v in sorted(by_port.items()))

        missing = [i for i in want if i not in got_set]
        extra = [i for i in got if i not in want_set]
        if missing:
            problems.append(f"{name}: {len(missing)} input frames not forwarded ({ports(missing)})")
        if extra:
            problems.append(f"{name}: {len(extra)} input frames forwarded that must not pass "
                            f"({ports(extra)})")
        passed = [i for i in got if i in want_set]
        if len(passed) != len(set(passed)):
            problems.append(f"{name}: input frames forwarded twice")
        elif passed != sorted(passed):
            problems.append(f"{name}: input frames forwarded out of order")
        return made, problems

    made_server, ps = split_output(to_server, passing_client, "to_server")
    made_client, pc = split_output(to_client, passing_server, "to_client")
    # Sluice's own frames: one RST per refused flow toward the server, one answer toward the
    # client.
    rsts: dict[int, list[Frame]] = {}
    for f in made_server:
        port, direction = flow_of(f)
        if direction != "to_server" or not f.p.flags & RST or f.p.payload_len:
            ps.append(f"to_server: an unexpected frame from Sluice: {f.p.src}:{f.p.sport} → "
                      f"{f.p.dst}:{f.p.dport} flags 0x{f.p.flags:02x}, {f.p.payload_len} bytes")
        else:
            rsts.setdefault(port, []).append(f)
    answers: dict[int, list[Frame]] = {}
    for f in made_client:
        port, direction = flow_of(f)
        if direction != "to_client" or not f.p.payload_len:
            pc.append(f"to_client: an unexpected frame from Sluice: {f.p.src}:{f.p.sport} → "
                      f"{f.p.dst}:{f.p.dport} flags 0x{f.p.flags:02x}, {f.p.payload_len} bytes")
        else:
            answers.setdefault(port, []).append(f)
    for port in sorted(set(rsts) - set(denied)):
        ps.append(f"to_server: RST for client port {port}, which has no refused request")
    for port in sorted(set(answers) - set(denied)):
        pc.append(f"to_client: an answer to client port {port}, which has no refused request")
    checks.report("to_server_forwarded_exactly", ps)
    checks.report("to_client_forwarded_exactly", pc)

    # Every admitted request reaches the server intact: the client's stream as forwarded.
    problems = []
    for port, s in sessions.items():
        isn = inputs[s["client_frames"][0]].p.seq
        stream = bytearray()
        for f in sorted((f for f in to_server if flow_of(f) == (port, "to_server") and f.payload),
                        key=lambda f: (f.p.seq - isn - 1) % mc.MOD32):
            off = (f.p.seq - isn - 1) % mc.MOD32
            if off > len(stream):
                break
            stream += f.payload[len(stream) - off:]
        pos = 0
        for label in s["requests"]:
            r = requests[label]
            wire = b"".join(inputs[i].payload for i in r["frames"])
            if r["verdict"] == "admit" and bytes(stream[pos:pos + len(wire)]) != wire:
                problems.append(f"{label}: its {len(wire)} bytes did not reach the server intact")
            pos += len(wire)
    checks.report("admitted_requests_reach_server", problems)

    rst_problems = []
    for req in expected["requests"]:
        if req["verdict"] != "deny":
            continue
        port = req["client_port"]
        s = sessions[port]
        problems = []
        # The client expects the server's next sequence number.
        server_next = None
        for i in s["server_frames"]:
            if i < req["decision_frame"]:
                f = inputs[i]
                server_next = (f.p.seq + f.p.payload_len + bool(f.p.flags & (SYN | FIN))) % mc.MOD32
        mine = answers.get(port, [])
        if len(mine) != 1:
            problems.append(f"{len(mine)} answers from Sluice to the client, expected 1")
        if mine:
            problems += check_answer(req | {"server": s["server"]}, mine[0], server_next, s["client"])
        mine_rst = rsts.get(port, [])
        if len(mine_rst) != 1:
            problems.append(f"{len(mine_rst)} RSTs toward the server, expected 1")
        elif mine_rst[0].p.src != s["client"] or mine_rst[0].p.dst != s["server"]:
            problems.append("the RST toward the server is not on the refused flow")
        else:
            # RFC 5961 §3.2: the server resets only on a RST at exactly RCV.NXT (one elsewhere
            # in the window gets a challenge ACK and the connection stays). Everything before
            # the deciding segment was forwarded in order, so RCV.NXT is that segment's seq.
            rst, rcv_nxt = mine_rst[0], inputs[req["decision_frame"]].p.seq
            if rst.p.seq != rcv_nxt or rst.ack != server_next or rst.p.flags != RST | ACK:
                rst_problems.append(
                    f"{req['label']}: RST seq {rst.p.seq} ack {rst.ack} flags 0x{rst.p.flags:02x}, "
                    f"the server's RCV.NXT is {rcv_nxt} (off by {(rst.p.seq - rcv_nxt) % mc.MOD32}), "
                    f"its SND.NXT {server_next}")
        decision = inputs[req["decision_frame"]]
        if any(f.data == decision.data for f in to_server):
            problems.append(f"the deciding segment (input frame {req['decision_frame']}) reached "
                            "the server")
        cut = req["decision_frame"]
        if req["decided_at"] == "head" and len(req["frames"]) > 1:
            later = [i for i in req["frames"] if i > cut]
            if any(f.data == inputs[i].data for i in later for f in to_server):
                problems.append("body segments after the refused head reached the server")
        checks.report(f"answer_{req['label']}", problems)
    checks.report("server_rst_at_rcv_nxt", rst_problems)


def check_audit(expected: dict, records: list[dict], inputs: list[Frame], run: dict,
                checks: Checks) -> None:
    reqs = expected["requests"]
    problems = []
    if len(records) != len(reqs):
        problems.append(f"{len(records)} records, expected {len(reqs)} (one per request)")
    seqs = [r.get("seq") for r in records]
    if seqs != list(range(len(records))):
        problems.append(f"seq values {seqs[:8]}…, expected 0, 1, 2, … in file order")
    checks.report("audit_one_record_per_request", problems)

    by_port: dict[int, list[dict]] = {}
    for rec in records:
        try:
            port = int(str(rec["flow"]["src"]).rsplit(":", 1)[1])
        except (KeyError, TypeError, ValueError, IndexError):
            port = -1
        by_port.setdefault(port, []).append(rec)
    for v in by_port.values():
        v.sort(key=lambda r: r.get("seq", 0))
    matched: dict[str, dict] = {}
    problems = []
    for s in expected["sessions"]:
        got = by_port.pop(s["client_port"], [])
        if len(got) != len(s["requests"]):
            problems.append(f"client port {s['client_port']} ({s['name']}): {len(got)} records, "
                            f"expected {len(s['requests'])}")
        for label, rec in zip(s["requests"], got):
            matched[label] = rec
    for port, recs in sorted(by_port.items()):
        problems.append(f"{len(recs)} records for client port {port}, which the capture does not have")
    checks.report("audit_records_by_flow", problems)

    # Field by field.
    problems = []
    sessions = {s["client_port"]: s for s in expected["sessions"]}
    for req in reqs:
        rec = matched.get(req["label"])
        if rec is None:
            continue
        s = sessions[req["client_port"]]
        p = []

        def expect(name, want, got=None, _rec=rec, _p=p):
            value = _rec.get(name) if got is None else got
            if value != want:
                _p.append(f"{name} {value!r}, expected {want!r}")

        for name in ("verdict", "reason", "identity", "tier", "method", "path", "model",
                     "max_output_tokens"):
            expect(name, req[name])
        expect("status", 200 if req["verdict"] == "admit" else req["status"])
        expect("worker", 0)
        expect("rules", [])
        flow = rec.get("flow") or {}
        expect("flow.src", f"{s['client']}:{s['client_port']}", flow.get("src"))
        expect("flow.dst", f"{s['server']}:{s['server_port']}", flow.get("dst"))
        expect("ts", rfc3339_ms(inputs[req["head_frame"]].ts))
        key_id = rec.get("key_id")
        if req["key"] is None:
            expect("key_id", None)
        elif not (isinstance(key_id, str) and re.fullmatch(r"[0-9a-f]{12}", key_id)):
            p.append(f"key_id {key_id!r}, expected 12 lowercase hex digits")
        est = rec.get("prompt_tokens_est")
        read_body = req["decided_at"] == "end"
        if read_body:
            expect("request_bytes", req["body_bytes"])
            if req["json"] and not (isinstance(est, int) and 1 <= est <= 50):
                p.append(f"prompt_tokens_est {est!r}, expected 1..50 for a short prompt")
            if not req["json"]:
                expect("prompt_tokens_est", 0)
        else:
            expect("request_bytes", 0)
            expect("prompt_tokens_est", 0)
        if req["verdict"] == "admit":
            if isinstance(est, int):
                output = req["max_output_tokens"]
                if output is None:
                    output = req["output_cap"]
                expect("tokens_reserved", est + output)
            expect("usage", req["usage"])
            charged = req["usage"]["total_tokens"] if req["usage"] else rec.get("tokens_reserved")
            expect("tokens_charged", charged)
        else:
            expect("tokens_reserved", 0)
            expect("usage", None)
            expect("tokens_charged", 0)
        if p:
            problems.append(f"{req['label']} (client port {req['client_port']}): " + ", ".join(p))
    checks.report("audit_fields", problems)

    # Records in the order of the decisions: a refusal when decided, an admission when its
    # response ended.
    def event(req: dict) -> int:
        return req["decision_frame"] if req["verdict"] == "deny" else req["response_end_frame"]

    want = [r["label"] for r in sorted(reqs, key=event)]
    label_of = {id(rec): label for label, rec in matched.items()}
    got = [label_of.get(id(rec), "?") for rec in records]
    problems = []
    if got != want:
        at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        problems.append(f"record {at} is {got[at] if at < len(got) else 'missing'}, expected "
                        f"{want[at] if at < len(want) else 'none'}")
    checks.report("audit_order", problems)

    # Key ids: the same key gives the same id, different keys different ids.
    ids: dict[str, set] = {}
    for req in reqs:
        rec = matched.get(req["label"])
        if rec is not None and req["key"] is not None:
            ids.setdefault(req["key"], set()).add(rec.get("key_id"))
    problems = [f"key {k}: key_ids {sorted(map(str, v))}" for k, v in sorted(ids.items()) if len(v) != 1]
    owners: dict = {}
    for k, v in sorted(ids.items()):
        for key_id in v:
            owners.setdefault(key_id, []).append(k)
    problems += [f"key_id {i} shared by keys {', '.join(ks)}" for i, ks in owners.items() if len(ks) > 1]
    if len(ids) < 6:
        problems.append(f"only {len(ids)} keys seen in the records")
    checks.report("audit_key_ids", problems)

    # No clear-text key anywhere people read.
    problems = []
    places = {"audit trail": open(os.path.join(run["dir"], "audit.jsonl"), "rb").read(),
              "sluice stdout": run["stdout"].encode(), "sluice stderr": run["stderr"].encode(),
              "to_client.pcap": open(os.path.join(run["dir"], "to_client.pcap"), "rb").read()}
    for label, key in expected["keys"].items():
        for where, blob in places.items():
            if key.encode() in blob or key[-16:].encode() in blob:
                problems.append(f"key {label} appears in the {where}")
    checks.report("no_clear_text_keys", problems)


# --------------------------------------------------------------------------------------------

def replay_twice(sluice: str, workdir: str, checks: "Checks") -> dict | None:
    """Replays WORKDIR/in.pcap twice (run1, run2), reports replay errors and whether the two runs
    gave identical captures and audit trails; returns the first run, or None when it produced
    nothing to check."""
    runs = [replay(sluice, workdir, name) for name in ("run1", "run2")]
    checks.report("replay", [f"{name}: {r['error']}" for name, r in zip(("run1", "run2"), runs)
                             if r["error"]])
    first = runs[0]
    if first["error"] and not first["counters"]:
        return None
    pcap_problems, audit_problems = check_determinism(*runs)
    checks.report("deterministic_captures", pcap_problems)
    checks.report("deterministic_audit", audit_problems)
    return first


def start(description: str) -> tuple[argparse.Namespace, str, str, "Checks", float] | None:
    """The common start of the rules replay tests: --sluice, --sluicectl, --workdir, -v parsed,
    both binaries checked (a message and None when one is missing), a Checks and the start time."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--sluice", required=True, help="path to the sluice binary")
    parser.add_argument("--sluicectl", required=True, help="path to the sluicectl binary")
    parser.add_argument("--workdir", required=True,
                        help="where the capture and outputs are written")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every problem")
    args = parser.parse_args()
    sluice, sluicectl = os.path.abspath(args.sluice), os.path.abspath(args.sluicectl)
    for exe in (sluice, sluicectl):
        if not os.access(exe, os.X_OK):
            print(f"binary not found or not executable: {exe}", file=sys.stderr)
            return None
    return args, sluice, sluicectl, Checks(args.verbose), time.monotonic()


def main() -> int:
    parser = argparse.ArgumentParser(description="Sluice admission through replay")
    parser.add_argument("--sluice", required=True, help="path to the sluice binary")
    parser.add_argument("--workdir", required=True, help="where the capture and outputs are written")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every problem")
    parser.add_argument("--start", type=int, default=mc.BASE_TS_US // 1_000_000, metavar="UNIX_S",
                        help="the capture's start time in Unix seconds (default 2024-05-01)")
    args = parser.parse_args()

    sluice = os.path.abspath(args.sluice)
    if not os.access(sluice, os.X_OK):
        print(f"sluice binary not found or not executable: {sluice}", file=sys.stderr)
        return 2
    started = time.monotonic()
    checks = Checks(args.verbose)
    workdir = os.path.abspath(args.workdir)
    expected = mac.generate(workdir, args.start * 1_000_000)
    inputs = frames(os.path.join(workdir, "in.pcap"))
    if len(inputs) != expected["packets"]:
        checks.report("capture", [f"in.pcap has {len(inputs)} frames, expected {expected['packets']}"])

    runs = [replay(sluice, workdir, name) for name in ("run1", "run2")]
    checks.report("replay", [f"{name}: {r['error']}" for name, r in zip(("run1", "run2"), runs)
                             if r["error"]])
    first = runs[0]
    if first["error"] and not first["counters"]:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    pcap_problems, audit_problems = check_determinism(*runs)
    checks.report("deterministic_captures", pcap_problems)
    checks.report("deterministic_audit", audit_problems)
    checks.report("request_counters", check_counters(first["counters"], expected["request_counts"]))

    try:
        to_client = frames(os.path.join(first["dir"], "to_client.pcap"))
        to_server = frames(os.path.join(first["dir"], "to_server.pcap"))
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        check_packets(expected, inputs, to_client, to_server, checks)
    records, _, problems = read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    check_audit(expected, records, inputs, first, checks)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
