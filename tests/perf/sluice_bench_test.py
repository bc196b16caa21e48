#!/usr/bin/python3
"""sluice-bench runs every shipped profile and its figures add up (meson test sluice_bench).

    /usr/bin/python3 tests/perf/sluice_bench_test.py BUILD/perf/sluice-bench REPO_ROOT

Short runs (about a second each, after the warm-up laps); what is checked is not speed but that
the bench measures what it says:
- every profile runs to the end with exit status 0: no frame of the workload was dropped as
  malformed, out of window or midstream, none was held, no mbuf leaked (the bench's own
  self-checks, which also prove the per-lap rewrite of ports and keys keeps checksums valid);
- the JSON report has the fields the issue asks for, with sane values;
- the verdicts match the profile's mix: per timed lap, every unknown key is a 401, every attack
  a 403, most over-limit requests a 429, every other request admitted;
- the stage breakdown (sluice-bench-staged) covers every stage, its shares sum to 1, and the
  stages a profile exercises are the ones that cost (scan and canonicalise for chat, none of
  the L7 stages for acks-only);
- --dump-requests writes the lap's request mix; a bad profile is refused naming FILE:LINE:COL;
- --plot draws a PNG;
- SIGINT ends a long run early with its report.
"""

import json
import os
import subprocess
import sys
import signal
import tempfile
import time

FAILURES = []


def check(condition, message):
    print(("ok   " if condition else "FAIL ") + message)
    if not condition:
        FAILURES.append(message)


def bench(binary, *args, expect=0):
    result = subprocess.run([binary, *args], capture_output=True, text=True, timeout=600)
    if result.returncode != expect:
        print(result.stdout[-3000:])
        print(result.stderr[-3000:])
    check(result.returncode == expect,
          f"sluice-bench {' '.join(args)}: exit status {result.returncode} (expected {expect})")
    return result


def run_profile(binary, profile, *extra):
    result = bench(binary, "--profile", profile, "--seconds", "1", "--scan-seconds", "0.3",
                   "--json", "--quiet", *extra)
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        check(False, f"{profile}: the output is one JSON object")
        return None


def check_common(name, report):
    for field in ("profile", "workers", "mpps", "gbps", "requests_per_second", "ns_per_packet",
                  "cycles_per_packet", "scan_only_requests_per_second", "verdicts", "runs"):
        check(field in report, f"{name}: the report has '{field}'")
    check(report["profile"] == name, f"{name}: profile is named")
    check(report["packets"] > 0 and report["mpps"] > 0 and report["gbps"] > 0,
          f"{name}: packets went through ({report['packets']}, {report['mpps']:.3f} Mpps)")
    check(report["laps"] >= 1, f"{name}: at least one timed lap ({report['laps']})")
    check(0 < report["ns_per_packet"] < 1e6, f"{name}: ns per packet {report['ns_per_packet']:.0f}")
    allowed = {"drop_tcp_killed_flow", "drop_request_refused"}
    check(set(report["drops"]) <= allowed,
          f"{name}: only frames after a refusal are dropped ({report['drops']})")
    check(report["frames_skipped_held"] == 0 and report["mbufs_leaked"] == 0,
          f"{name}: no frame held, no mbuf leaked")


def between(name, what, value, laps, per_lap, low_share=1.0):
    low = int(laps * per_lap * low_share)
    high = (laps + 1) * per_lap
    check(low <= value <= high, f"{name}: {what} {value} within [{low}, {high}] "
          f"({laps} timed laps × {per_lap} per lap)")


def check_chat(name, report):
    check_common(name, report)
    kinds = report["workload"]["requests_by_kind"]
    verdicts = report["verdicts"]
    laps = report["laps"]
    between(name, "401 invalid_api_key", verdicts.get("invalid_api_key", 0), laps,
            kinds["unknown_key"])
    between(name, "403 content_policy_violation", verdicts.get("content_policy_violation", 0),
            laps, kinds["malicious"])
    # Over-limit identities send far beyond 1 request/s: nearly all refused; a few get through.
    between(name, "429 rate_limited_requests", verdicts.get("rate_limited_requests", 0), laps,
            kinds["over_limit"], 0.8)
    admitted = verdicts.get("ok", 0)
    between(name, "admitted", admitted, laps, kinds["ok"])
    unexpected = set(verdicts) - {"ok", "invalid_api_key", "content_policy_violation",
                                  "rate_limited_requests"}
    check(not unexpected, f"{name}: no other verdicts ({sorted(unexpected)})")
    check(report["requests"] == sum(verdicts.values()), f"{name}: requests = sum of verdicts")
    check(report["scan_only_requests_per_second"] > 0 and 0 < report["scan_bound_fraction"] < 1.5,
          f"{name}: scan-only reference {report['scan_only_requests_per_second']:.0f} requests/s, "
          f"pipeline at {report['scan_bound_fraction']:.2f} of it")
    check(report["cpu_us_per_request"] > 0, f"{name}: CPU µs per request")
    check(report["audit_records_written"] + report["audit_records_dropped"] >= report["requests"],
          f"{name}: every decision audited ({report['audit_records_written']} written, "
          f"{report['audit_records_dropped']} dropped)")


def check_stages(name, report, costly, idle):
    check("stages" in report, f"{name}: the report has the stage breakdown")
    if "stages" not in report:
        return
    stages = report["stages"]["stages"]
    expected = ["other", "classify", "flow", "tcp", "http", "identity", "limit", "canonicalise",
                "scan", "enforce"]
    check(sorted(stages) == sorted(expected), f"{name}: every stage reported ({sorted(stages)})")
    total = sum(s["share"] for s in stages.values())
    check(abs(total - 1) < 1e-6, f"{name}: shares sum to 1 ({total:.6f})")
    for stage in costly:
        check(stages[stage]["share"] > 0.02, f"{name}: {stage} costs ({stages[stage]['share']:.3f})")
    for stage in idle:
        check(stages[stage]["entries_per_packet"] == 0,
              f"{name}: {stage} never entered ({stages[stage]['entries_per_packet']})")


def main(argv):
    binary, root = argv[1], argv[2]
    profiles = os.path.join(root, "perf", "profiles")

    chat = run_profile(binary, "chat-1k")
    if chat:
        check_chat("chat-1k", chat)
        check_stages("chat-1k", chat, ["http", "canonicalise", "scan"], [])
    chat4 = run_profile(binary, "chat-4k", "--no-breakdown")
    if chat4:
        check_chat("chat-4k", chat4)
    acks = run_profile(binary, "acks-only")
    if acks:
        check_common("acks-only", acks)
        check(acks["requests"] == 0 and acks["verdicts"] == {}, "acks-only: no requests")
        check(acks["cpu_us_per_request"] is None, "acks-only: no CPU per request")
        check(not acks["drops"], f"acks-only: nothing dropped ({acks['drops']})")
        check_stages("acks-only", acks, ["flow"], ["http", "identity", "canonicalise", "scan"])
    flood = run_profile(binary, "unknown-key-flood", "--workers", "2", "--no-breakdown")
    if flood:
        check_common("unknown-key-flood", flood)
        check(flood["workers"] == 2, "unknown-key-flood: two workers")
        verdicts = flood["verdicts"]
        check(set(verdicts) == {"invalid_api_key"} and verdicts["invalid_api_key"] > 0,
              f"unknown-key-flood: every request 401 ({verdicts})")
        per_lap = flood["workload"]["requests_by_kind"]["unknown_key"]
        check(verdicts.get("invalid_api_key", 0) >= flood["laps"] * per_lap,
              "unknown-key-flood: every request of every timed lap decided")

    # Ctrl-C ends a long run early and reports it (or, before any run began, exits 130).
    process = subprocess.Popen([binary, "--profile", "acks-only", "--seconds", "120", "--json",
                                "--quiet", "--no-breakdown"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(10)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    check(time.monotonic() - started < 60, "SIGINT: the run stops long before its 120 s")
    check(process.returncode in (0, 130), f"SIGINT: a clean exit ({process.returncode}: {err[-300:]})")
    if process.returncode == 0:
        report = json.loads(out)
        check(report.get("interrupted") is True and report["seconds"] < 60,
              f"SIGINT: the report says interrupted after {report['seconds']:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        dump = os.path.join(tmp, "mix.jsonl")
        bench(binary, "--profile", "chat-1k", "--dump-requests", dump)
        with open(dump, encoding="utf-8") as f:
            lines = [json.loads(line) for line in f]
        header, requests = lines[0], lines[1:]
        check(header["profile"] == "chat-1k" and header["requests"] == len(requests),
              f"--dump-requests: header and {len(requests)} requests")
        kinds = {}
        for q in requests:
            kinds[q["kind"]] = kinds.get(q["kind"], 0) + 1
        if chat:
            check(kinds == {k: v for k, v in chat["workload"]["requests_by_kind"].items() if v},
                  f"--dump-requests: the same mix as the run ({kinds})")
        check(all(q["key"].startswith("sk-") and json.loads(q["body"])["messages"]
                  for q in requests), "--dump-requests: every request has a key and a chat body")

        bad = os.path.join(tmp, "bad.yaml")
        with open(bad, "w", encoding="utf-8") as f:
            f.write(f"config: {profiles}/sluice.yaml\nsessions: 10\nshares: {{ unknown_key: 2 }}\n")
        result = bench(binary, "--profile", bad, "--seconds", "1", expect=1)
        check(f"{bad}:3:" in result.stderr and "unknown_key" in result.stderr,
              f"a bad profile is refused with FILE:LINE:COL ({result.stderr.strip()})")
        result = bench(binary, "--profile", "chat-1k", "--workers", "0", expect=1)
        check("--workers" in result.stderr, "a bad --workers is refused")

        png = os.path.join(tmp, "bench.png")
        bench(binary, "--profile", "acks-only", "--seconds", "0.5", "--quiet", "--plot", png)
        with open(png, "rb") as f:
            check(f.read(8) == b"\x89PNG\r\n\x1a\n", "--plot writes a PNG")

    print(f"\n{len(FAILURES)} failed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
