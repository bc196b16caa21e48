#!/usr/bin/python3
"""Replays requests that a host reads but Sluice, before issue 12, did not inspect or read
differently (make_integrity_http_captures.py: bodies of any Content-Type, a second
Content-Type, a second Authorization or a key next to one of another scheme, bytes after a
request that closes the connection) and checks every decision.

    /usr/bin/python3 tests/pcap/integrity_http_test.py --sluice build/src/sluice \
        --workdir /tmp/integrity_http [-v]

Runs `sluice replay --audit` twice and checks, with the checks of admission_test.py:
- both runs exit 0 with `mbufs_in_use_after_run 0`, byte-identical captures and audit trails;
- the requests_* counters;
- to_server is exactly the client segments that must pass plus one RST per refused flow,
  to_client exactly the server's segments plus one answer per refused flow (status, OpenAI error
  body naming the reason, FIN); every admitted request reaches the server intact;
- the audit trail: one record per request (none for bytes after a closing request), with the
  expected verdict, reason, identity, tier, model, token reservation (estimate + max_tokens for
  bodies of any Content-Type), usage and charge;
- a segment after a request that closes the connection (`discarded`) reaches neither side and is
  read as no request. Until the TCP tracker implements StreamVerdict::kDiscard (flow kept,
  counted drop_data_after_close) it ends the flow there; the RSTs it then sends on that flow are
  accepted and reported, nothing else from Sluice is.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_integrity_http_captures as mih  # noqa: E402
from admission_test import Checks, flow_of, frames  # noqa: E402


def split_discarded(expected: dict, inputs: list, to_client: list, to_server: list,
                    counters: dict, checks: Checks) -> tuple[list, list]:
    """Checks the discarded segments: none reaches the server, Sluice sends nothing of its own on
    their flows (the flow is kept: no RST), and drop_data_after_close counts each. Returns the
    outputs as they are."""
    ports = {s["client_port"]: s for s in expected["sessions"] if s["discarded"]}
    input_bytes = {f.data for f in inputs}
    for out in (to_client, to_server):
        for f in out:
            if f.data not in input_bytes and flow_of(f)[0] in ports:
                ports[flow_of(f)[0]].setdefault("made", []).append(f)
    for s in ports.values():
        problems = []
        for i in s["discarded"]:
            if any(f.data == inputs[i].data for f in to_server):
                problems.append(f"input frame {i} (after a request that closes the connection) "
                                "reached the server")
        made = s.get("made", [])
        if made:
            problems.append(f"{len(made)} frames from Sluice on the flow: kDiscard must keep it")
        checks.report(f"discarded_{s['name']}", problems)
    want = sum(len(s["discarded"]) for s in ports.values())
    got = counters.get("drop_data_after_close", 0)
    checks.report("drop_data_after_close", [] if got == want else
                  [f"drop_data_after_close = {got}, expected {want}"])
    return to_client, to_server


def main() -> int:
    parser = argparse.ArgumentParser(description="Sluice HTTP-request integrity through replay")
    parser.add_argument("--sluice", required=True, help="path to the sluice binary")
    parser.add_argument("--workdir", required=True, help="where the capture and outputs go")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every problem")
    args = parser.parse_args()
    sluice = os.path.abspath(args.sluice)
    if not os.access(sluice, os.X_OK):
        print(f"sluice binary not found or not executable: {sluice}", file=sys.stderr)
        return 2
    started = time.monotonic()
    checks = Checks(args.verbose)
    workdir = os.path.abspath(args.workdir)
    expected = mih.generate(workdir)
    inputs = frames(os.path.join(workdir, "in.pcap"))
    if len(inputs) != expected["packets"]:
        checks.report("capture", [f"in.pcap has {len(inputs)} frames, expected "
                                  f"{expected['packets']}"])
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
        to_client, to_server = split_discarded(expected, inputs, to_client, to_server,
                                               first["counters"], checks)
        at.check_packets(expected, inputs, to_client, to_server, checks)
    records, _, problems = at.read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    at.check_audit(expected, records, inputs, first, checks)
    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
