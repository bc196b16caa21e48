#!/usr/bin/python3
"""Replays chat requests sent the easy way and the hard way and compares what Sluice extracts.

    /usr/bin/python3 tests/pcap/prompt_test.py --sluice build/src/sluice --workdir /tmp/prompts [-v]

Generates three captures into WORKDIR (make_prompt_captures.py): `reference` (13 requests, each
alone on its own connection, one segment each), `hard` (the same requests pipelined, chunked
with odd sizes, gzip, gzip+chunked, one byte per segment, cut at awkward places, out of order)
and `negative` (four requests Sluice must refuse, then a good one). Runs
`sluice replay --prompts` on each and checks:
- the captures themselves: an independent reassembly and HTTP decoding of `hard` and
  `reference` gives the same requests and bodies (so a difference below is Sluice's);
- every request of `reference` and `hard` has a line with reason ok, and the lines of each
  connection number its requests 0, 1, ...;
- per request, `hard` gives the same (text, model, method, target, tokens_estimate,
  body_bytes) as `reference`; texts are matched by order of requests within each connection
  and connections in order of their SYN (flow ids are slot numbers, not compared);
- the canonical text of `reference` holds what the canonicaliser's contract implies (tags,
  NFKC, homoglyph folding, removed format characters, no image data);
- each refused request has one line with the right reason and status, nothing of its body
  appears in later lines (and the parts after the refusal point in no line), the request
  pipelined after it is never read nor forwarded, and its flow is reset;
- `mbufs_in_use_after_run 0` and the requests_* counters of every run.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_captures as mc  # noqa: E402
import make_prompt_captures as mpc  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COUNTER_LINE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s+(\d+)\s*$")
COMPARED = ("text", "model", "method", "target", "tokens_estimate", "body_bytes")


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


def show(s) -> str:
    """A string with every non-ASCII or invisible character escaped, for reports."""
    return json.dumps(s, ensure_ascii=True)


def text_diff(a: str, b: str) -> str:
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    lo = max(0, at - 30)
    return (f"first difference at character {at}: reference …{show(a[lo:at + 40])}… "
            f"hard …{show(b[lo:at + 40])}…")


def reason_statuses() -> dict[str, int]:
    """name → status from include/sluice/request_reason.hpp (empty when not found)."""
    path = os.path.join(REPO, "include", "sluice", "request_reason.hpp")
    try:
        src = open(path, encoding="utf-8").read()
    except OSError:
        return {}
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"X\((\w+),\s*(\d+),", src)}


# --------------------------------------------------------------------------------------------
# an independent reading of the captures: TCP reassembly and HTTP/1.1 decoding
# --------------------------------------------------------------------------------------------

def client_streams(path: str) -> list[bytes]:
    """The client→server byte stream of each TCP connection, in order of their SYN."""
    _, records = mc.read_pcap(path)
    conns: dict[tuple, dict] = {}
    order = []
    for _, frame in records:
        p = mc.parse_frame(frame)
        if not p.tcp:
            continue
        key = (p.src, p.sport, p.dst, p.dport)
        if p.flags & 0x12 == 0x02:
            conns[key] = {"isn": p.seq, "segs": {}}
            order.append(key)
            continue
        if key in conns and p.payload_len:
            c = conns[key]
            off = (p.seq - c["isn"] - 1) % mc.MOD32
            payload = frame[len(frame) - p.payload_len:]  # these captures are not padded
            old = c["segs"].get(off)
            if old is not None and old != payload:
                raise ValueError(f"{path}: conflicting retransmission in {key}")
            c["segs"][off] = payload
    out = []
    for key in order:
        data = bytearray()
        for off in sorted(conns[key]["segs"]):
            seg = conns[key]["segs"][off]
            if off > len(data):
                raise ValueError(f"{path}: hole in {key} at {len(data)}")
            data += seg[len(data) - off:]
        out.append(bytes(data))
    return out


def parse_requests(stream: bytes) -> list[tuple[str, str, bytes | None]]:
    """(method, target, decoded body or None) for each request in a client byte stream."""
    out, pos = [], 0
    while pos < len(stream):
        end = stream.index(b"\r\n\r\n", pos)
        lines = stream[pos:end].decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        pos = end + 4
        body = None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                eol = stream.index(b"\r\n", pos)
                size = int(stream[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    assert stream[pos:pos + 2] == b"\r\n"
                    pos += 2
                    break
                body += stream[pos:pos + size]
                assert stream[pos + size:pos + size + 2] == b"\r\n"
                pos += size + 2
        elif "content-length" in headers:
            n = int(headers["content-length"])
            body = stream[pos:pos + n]
            pos += n
        enc = headers.get("content-encoding", "").lower()
        if body is not None and enc == "gzip":
            body = gzip.decompress(body)
        elif body is not None and enc == "deflate":
            body = zlib.decompress(body)
        out.append((method, target, body))
    return out


def selfcheck(workdir: str, manifest: dict) -> list[str]:
    problems = []
    views = {}
    for name in ("reference", "hard"):
        try:
            conns = [parse_requests(s) for s in client_streams(os.path.join(workdir, f"{name}.pcap"))]
        except (ValueError, AssertionError) as e:
            problems.append(f"{name}: cannot read back: {e}")
            continue
        shape = [len(c) for c in conns]
        want = [len(c["requests"]) for c in manifest["captures"][name]["connections"]]
        if shape != want:
            problems.append(f"{name}: requests per connection {shape}, generator says {want}")
        views[name] = [r for c in conns for r in c]
    if len(views) == 2 and views["reference"] != views["hard"]:
        problems.append("reference and hard do not carry the same requests")
    for (method, target, body), req in zip(views.get("reference", []), manifest["requests"]):
        if (method, target) != (req["method"], req["target"]) or \
                (len(body) if body is not None else 0) != req["body_bytes"]:
            problems.append(f"{req['name']}: read back as {method} {target} with a different body")
    return problems


# --------------------------------------------------------------------------------------------
# running sluice
# --------------------------------------------------------------------------------------------

def replay(sluice: str, workdir: str, name: str, extra: list[str]):
    """Returns (lines, counters, error)."""
    paths = {k: os.path.join(workdir, f"{name}.{k}") for k in ("client.pcap", "server.pcap", "prompts.jsonl")}
    for p in paths.values():
        if os.path.exists(p):
            os.unlink(p)
    cmd = [sluice, "replay", "--in", os.path.join(workdir, f"{name}.pcap"),
           "--out-client", paths["client.pcap"], "--out-server", paths["server.pcap"],
           "--prompts", paths["prompts.jsonl"], *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, {}, "sluice replay ran over 60 s"
    with open(os.path.join(workdir, f"{name}.stdout.txt"), "w") as f:
        f.write(proc.stdout)
    with open(os.path.join(workdir, f"{name}.stderr.txt"), "w") as f:
        f.write(proc.stderr)
    counters = {}
    for line in proc.stdout.splitlines():
        m = COUNTER_LINE.match(line)
        if m:
            counters[m.group(1)] = int(m.group(2))
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return None, counters, f"`{' '.join(cmd)}` exited {proc.returncode}: {' / '.join(tail)}"
    lines = []
    try:
        with open(paths["prompts.jsonl"], encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                if raw.strip():
                    try:
                        lines.append(json.loads(raw))
                    except json.JSONDecodeError as e:
                        return None, counters, f"{name}.prompts.jsonl line {n}: not JSON ({e})"
    except OSError as e:
        return None, counters, f"no prompts file: {e}"
    except UnicodeDecodeError as e:
        return None, counters, f"{name}.prompts.jsonl is not UTF-8: {e}"
    return lines, counters, None


def group(lines: list[dict], manifest_cap: dict, numbers: bool = True) -> tuple[list, list[str]]:
    """Assigns the lines to connections: a line with request 0 (or on a flow not seen yet)
    starts a connection on its flow id; later lines of the flow belong to it. A connection's
    lines are written when its first request completes, so the groups come in the order the
    connections' first requests completed (known from the generator); they are mapped back to
    the connections in SYN order. Returns ([per connection in SYN order: its lines], problems)."""
    groups, current = [], {}
    for line in lines:
        flow = line.get("flow")
        if line.get("request") == 0 or flow not in current:
            current[flow] = len(groups)
            groups.append([])
        groups[current[flow]].append(line)
    conns = manifest_cap["connections"]
    problems = []
    if len(groups) != len(conns):
        problems.append(f"{len(lines)} lines in {len(groups)} connections, expected "
                        f"{sum(len(c['requests']) for c in conns)} lines in {len(conns)} "
                        f"connections")
        return [], problems
    by_completion = sorted(range(len(conns)), key=lambda i: conns[i]["completed_ts"][0])
    out = [None] * len(conns)
    for g, ci in zip(groups, by_completion):
        out[ci] = g
    for ci, (c, g) in enumerate(zip(conns, out)):
        got = [line.get("request") for line in g]
        if numbers and got != list(range(len(c["requests"]))):
            problems.append(f"connection {ci} (client port {c['client_port']}): request numbers "
                            f"{got}, expected {list(range(len(c['requests'])))}")
    return out, problems


def per_request(grouped: list, manifest_cap: dict) -> dict[int, dict]:
    out = {}
    for c, g in zip(manifest_cap["connections"], grouped):
        for index, line in zip(c["requests"], g):
            out[index] = line
    return out


def check_statuses(lines: list[dict], statuses: dict[str, int]) -> list[str]:
    problems = []
    for n, line in enumerate(lines):
        reason = line.get("reason")
        if statuses and reason not in statuses:
            problems.append(f"line {n}: unknown reason {reason!r}")
        elif statuses and line.get("status") != statuses[reason]:
            problems.append(f"line {n}: reason {reason} with status {line.get('status')}, "
                            f"request_reason.hpp says {statuses[reason]}")
    return problems


def check_counters(counters: dict, want: dict[str, int]) -> list[str]:
    problems = []
    if counters.get("mbufs_in_use_after_run") != 0:
        problems.append(f"mbufs_in_use_after_run = {counters.get('mbufs_in_use_after_run')}")
    for name, value in counters.items():
        if name.startswith("requests_") and counters[name] != want.get(name, 0):
            problems.append(f"{name} = {value}, expected {want.get(name, 0)}")
    for name, value in want.items():
        if name not in counters and value != 0:
            problems.append(f"{name} not reported, expected {value}")
    return problems


# --------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description="Sluice prompt extraction across transports")
    parser.add_argument("--sluice", required=True, help="path to the sluice binary")
    parser.add_argument("--workdir", required=True, help="where captures and outputs are written")
    parser.add_argument("--config", help="a config file passed to every replay")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every problem")
    args = parser.parse_args()

    sluice = os.path.abspath(args.sluice)
    if not os.access(sluice, os.X_OK):
        print(f"sluice binary not found or not executable: {sluice}", file=sys.stderr)
        return 2
    extra = ["--config", args.config] if args.config else []
    started = time.monotonic()
    checks = Checks(args.verbose)
    statuses = reason_statuses()

    manifest = mpc.generate(args.workdir)
    reqs = manifest["requests"]
    checks.report("captures_selfcheck", selfcheck(args.workdir, manifest))

    runs = {}
    for name in ("reference", "hard", "negative"):
        lines, counters, error = replay(sluice, args.workdir, name, extra)
        runs[name] = (lines, counters)
        if error:
            checks.report(f"{name}_replay", [error])
    n_ok = len(reqs)

    # ---- reference and hard: all ok, grouped per connection ----
    per = {}
    for name in ("reference", "hard"):
        lines, counters = runs[name]
        if lines is None:
            continue
        problems = check_statuses(lines, statuses)
        not_ok = [f"line {n} ({show(line.get('target'))}): reason {line.get('reason')}"
                  for n, line in enumerate(lines) if line.get("reason") != "ok"]
        problems += not_ok
        grouped, gp = group(lines, manifest["captures"][name])
        problems += gp
        checks.report(f"{name}_all_ok", problems)
        checks.report(f"{name}_counters", check_counters(counters, {"requests_ok": n_ok}))
        if grouped:
            per[name] = per_request(grouped, manifest["captures"][name])

    # ---- hard == reference, per request ----
    if "reference" in per and "hard" in per:
        for index, req in enumerate(reqs):
            a, b = per["reference"].get(index), per["hard"].get(index)
            if a is None or b is None:
                checks.report(f"same_{req['name']}", ["no line in " + ("reference" if a is None else "hard")])
                continue
            problems = []
            for k in COMPARED:
                if a.get(k) != b.get(k):
                    if k == "text" and isinstance(a.get(k), str) and isinstance(b.get(k), str):
                        problems.append(f"text differs ({len(a[k])} vs {len(b[k])} characters): "
                                        f"{text_diff(a[k], b[k])}")
                    else:
                        problems.append(f"{k}: reference {show(a.get(k))}, hard {show(b.get(k))}")
            checks.report(f"same_{req['name']}", problems)

    # ---- reference: the canonical text means something (so equality is not vacuous) ----
    if "reference" in per:
        problems = []
        for index, req in enumerate(reqs):
            line = per["reference"].get(index, {})
            text = line.get("text", "")
            if req["json"]:
                if not text:
                    problems.append(f"{req['name']}: empty text")
                if line.get("body_bytes") != req["body_bytes"]:
                    problems.append(f"{req['name']}: body_bytes {line.get('body_bytes')}, "
                                    f"body is {req['body_bytes']} bytes")
                if not line.get("model"):
                    problems.append(f"{req['name']}: no model")
                if not line.get("tokens_estimate"):
                    problems.append(f"{req['name']}: tokens_estimate {line.get('tokens_estimate')}")
            elif text or line.get("body_bytes"):
                problems.append(f"{req['name']}: a request without a body has text {show(text)}")
            for want in req["expect_in"]:
                if want not in text:
                    problems.append(f"{req['name']}: {show(want)} not in text {show(text[:400])}")
            for unwanted in req["expect_not_in"]:
                if unwanted in text:
                    problems.append(f"{req['name']}: {show(unwanted)} in text {show(text[:400])}")
        checks.report("reference_canonical_text", problems)

    # ---- hard: the transport really was hard ----
    lines, counters = runs["hard"]
    if counters:
        problems = []
        if counters.get("tcp_out_of_order_held", 0) < 2:
            problems.append(f"tcp_out_of_order_held = {counters.get('tcp_out_of_order_held')}, "
                            f"expected at least 2")
        for name in ("tcp_flows_killed", "rst_sent"):
            if counters.get(name, 0) != 0:
                problems.append(f"{name} = {counters.get(name)}, expected 0")
        checks.report("hard_tcp", problems)

    # ---- negative ----
    lines, counters = runs["negative"]
    negs = manifest["negatives"]
    if lines is not None:
        # One line per connection: the refused request's, then the good request's.
        grouped, gp = group(lines, manifest["captures"]["negative"], numbers=False)
        checks.report("negative_lines", check_statuses(lines, statuses) + gp)
        position = {id(line): k for k, line in enumerate(lines)}
        for n, neg in enumerate(negs):
            mine = grouped[n] if grouped else [line for line in lines if line.get("reason") == neg["reason"]]
            if not mine:
                checks.report(neg["name"], ["no line"])
                continue
            line, problems = mine[0], []
            if len(mine) != 1:
                problems.append(f"{len(mine)} lines for the refused connection, expected 1: "
                                + ", ".join(f"request {x.get('request')} {show(x.get('method'))} "
                                            f"{show(x.get('target'))} {x.get('reason')}" for x in mine))
            if line.get("reason") != neg["reason"]:
                problems.append(f"reason {line.get('reason')}, expected {neg['reason']}")
            if statuses and line.get("status") != statuses.get(neg["reason"]):
                problems.append(f"status {line.get('status')}, expected {statuses.get(neg['reason'])}")
            first = position[id(line)]
            for k, other in enumerate(lines):
                text = other.get("text", "")
                for marker in neg["hidden"] + [neg["followup"]]:
                    if marker in text:
                        problems.append(f"{marker} appears in line {k}")
                if k > first:
                    for marker in neg["visible"]:
                        if marker in text:
                            problems.append(f"{marker} (refused request) appears in later line {k}")
            checks.report(neg["name"], problems)
        if grouped:
            last = grouped[-1][0]
            a = per.get("reference", {}).get(0)
            problems = []
            if last.get("reason") != "ok":
                problems.append(f"reason {last.get('reason')}")
            if a is not None and last.get("text") != a.get("text"):
                problems.append(f"text differs from the reference: {text_diff(a.get('text', ''), last.get('text', ''))}")
            checks.report("negative_then_good", problems)
    if counters:
        want = {"requests_ok": 1}
        for neg in negs:
            want[f"requests_{neg['reason']}"] = want.get(f"requests_{neg['reason']}", 0) + 1
        problems = check_counters(counters, want)
        if "tcp_flows_killed" in counters and counters["tcp_flows_killed"] != len(negs):
            problems.append(f"tcp_flows_killed = {counters['tcp_flows_killed']}, expected {len(negs)}")
        # Each refusal: a RST to the server and the HTTP error (with FIN) to the client.
        if counters.get("rst_sent") != len(negs):
            problems.append(f"rst_sent = {counters.get('rst_sent')}, expected {len(negs)}")
        if counters.get("denials_sent") != len(negs):
            problems.append(f"denials_sent = {counters.get('denials_sent')}, expected {len(negs)}")
        # The pipelined request after a refused one must never reach the server.
        try:
            _, out = mc.read_pcap(os.path.join(args.workdir, "negative.server.pcap"))
            forwarded = b"".join(frame for _, frame in out)
            for neg in negs:
                if neg["followup"].encode() in forwarded:
                    problems.append(f"{neg['followup']} forwarded to the server")
        except (OSError, ValueError) as e:
            problems.append(f"negative.server.pcap: {e}")
        checks.report("negative_counters", problems)

        # The client of each refused request gets the HTTP error of its reason, OpenAI-shaped.
        problems = []
        try:
            _, out = mc.read_pcap(os.path.join(args.workdir, "negative.client.pcap"))
            answered = b"".join(frame for _, frame in out)
            for neg in negs:
                status = reason_statuses().get(neg["reason"])
                code = f'"code":"{neg["reason"]}"'.encode()
                if answered.count(code) < 1 or f"HTTP/1.1 {status} ".encode() not in answered:
                    problems.append(f"{neg['name']}: no HTTP {status} answer with {code!r} to the client")
        except (OSError, ValueError) as e:
            problems.append(f"negative.client.pcap: {e}")
        checks.report("negative_answers", problems)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
