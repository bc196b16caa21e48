#!/usr/bin/python3
"""Replays requests that hide a prompt injection in JSON strings a host's chat template renders,
and checks that Sluice reads every one of them (docs/normalisation.md, "JSON request bodies").

    /usr/bin/python3 tests/pcap/integrity_json_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/integrity_json [-v]

Compiles the shipped rules (`sluicectl rules compile <repo>/rules -o WORKDIR/rules.db`),
generates the capture with make_integrity_json_captures.py (29 sessions, one request each: 23
forbidden prompts in an unknown part type, a single-object content, a tool parameter's
description and name, tool_use input, a text document, a Responses reasoning item,
chat_template_kwargs, a response_format schema, a word split across two parts, two messages'
roles, a part's type, a key of a tool and of its function, a tool call's id and a tool_call_id,
the name of an unknown key of a message, of a single-object content and of the root, an escape
inside a tool call's arguments (tool_calls, legacy function_call, Responses item) that the host
decodes twice; a chat_template in the request, refused 400 json_request_chat_template; 5 clean
controls), runs `sluice replay --audit` on it twice and checks, with the checks of
rules_replay_test.py:
- both runs exit 0 with `mbufs_in_use_after_run 0`; byte-identical to_client/to_server, and the
  same audit trail apart from `key_id`;
- requests_content_policy_violation, requests_json_request_chat_template and requests_ok are
  the expected counts (23, 1 and 5);
- every forbidden request is answered by one 403 content_policy_violation segment from Sluice
  (the chat template: one 400 json_request_chat_template),
  the server gets one RST and not the request's last segment; the client frames before it pass;
- every clean request's bytes reach the server intact, with no answer or RST from Sluice;
- the audit trail: one record per request with the expected verdict, status, reason, tier,
  identity and model; rules[0] a `pi.` rule for refusals, `rules == []` for the controls.
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admission_test as at  # noqa: E402
import make_captures as mc  # noqa: E402
import make_integrity_json_captures as mij  # noqa: E402
import rules_replay_test as rrt  # noqa: E402
from admission_test import frames  # noqa: E402


def main() -> int:
    begun = at.start("Sluice reads every string a host renders, through replay")
    if begun is None:
        return 2
    args, sluice, sluicectl, checks, started = begun
    workdir = os.path.abspath(args.workdir)
    expected = mij.generate(workdir, mc.BASE_TS_US)
    error = rrt.compile_rules(sluicectl, os.path.join(workdir, "rules.db"))
    checks.report("rules_compile", [error] if error else [])
    if error:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    inputs = frames(os.path.join(workdir, "in.pcap"))
    if len(inputs) != expected["packets"]:
        checks.report("capture", [f"in.pcap has {len(inputs)} frames, expected {expected['packets']}"])

    first = at.replay_twice(sluice, workdir, checks)
    if first is None:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    counts = expected["request_counts"]
    problems = at.check_counters(first["counters"], counts)
    for name in ("requests_content_policy_violation", "requests_ok"):
        if first["counters"].get(name) != counts.get(name):
            problems.append(f"{name} = {first['counters'].get(name)}, expected {counts.get(name)}")
    checks.report("request_counters", sorted(set(problems)))

    try:
        to_client = frames(os.path.join(first["dir"], "to_client.pcap"))
        to_server = frames(os.path.join(first["dir"], "to_server.pcap"))
    except (OSError, ValueError) as e:
        checks.report("outputs", [str(e)])
    else:
        rrt.check_packets(expected, inputs, to_client, to_server, rrt.rule_ids(), checks)
    records, _, problems = at.read_audit(os.path.join(first["dir"], "audit.jsonl"))
    if problems:
        checks.report("audit_json", problems)
    rrt.check_audit(expected, records, checks)

    if args.verbose:
        print(f"({time.monotonic() - started:.1f} s)")
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
