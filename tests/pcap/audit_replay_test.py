#!/usr/bin/python3
"""The audit trail of a replay: prompt capture (audit.capture) and the hash chain.

    /usr/bin/python3 tests/pcap/audit_replay_test.py --sluice build/src/sluice \
        --sluicectl build/tools/sluicectl --workdir /tmp/audit_replay [-v]

Generates the content-rules capture (make_rules_captures.py: 27 chat requests of three tiers,
clean, flagged and blocked prompts), compiles the shipped rules, and runs `sluice replay --audit
--prompts` with `audit.capture` set to none, flagged and all (capture_bytes 4096), and all with
capture_bytes 64. The --prompts file holds, per request in decision order, the canonical text
the rules scanned; records come in the same order (one request per session, answered before
the next). Checks:
- every replay exits 0, one record per request, and `sluicectl audit verify` says the trail's
  chain holds from the genesis value (`OK: 27 records in 1 file`);
- none: no record has a "prompt" key;
- flagged: the records a rule matched (rules != []) carry "prompt" equal to the scanned text and
  "prompt_truncated": false; the others have no "prompt" key;
- all: every record carries its text;
- all with capture_bytes 64: every prompt is the scanned text's first 64 bytes or less, cut on
  a character boundary, "prompt_truncated" exactly when the text is longer;
- no record is marked "prompt_dropped" (a replay waits for capture slots).
Prints `PASS name` / `FAIL name: details` per check, then `N passed, M failed`; exits 1 on
failure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_captures as mc  # noqa: E402
import make_rules_captures as mrc  # noqa: E402
from admission_test import Checks  # noqa: E402
from rules_replay_test import compile_rules  # noqa: E402


def replay(sluice: str, workdir: str, name: str, audit_yaml: str) -> dict:
    d = os.path.join(workdir, name)
    os.makedirs(d, exist_ok=True)
    config = os.path.join(d, "config.yaml")
    with open(os.path.join(workdir, "config.yaml"), encoding="utf-8") as f:
        base = f.read()
    with open(config, "w", encoding="utf-8") as f:
        # Relative paths in the config are taken from its folder: point them back.
        f.write(base.replace("identities: identities.yaml",
                             f"identities: {os.path.join(workdir, 'identities.yaml')}")
                .replace("rules: rules.db", f"rules: {os.path.join(workdir, 'rules.db')}"))
        f.write(audit_yaml + "\n")
    cmd = [sluice, "replay", "--config", config, "--in", os.path.join(workdir, "in.pcap"),
           "--out-client", os.path.join(d, "to_client.pcap"),
           "--out-server", os.path.join(d, "to_server.pcap"),
           "--audit", os.path.join(d, "audit.jsonl"), "--prompts", os.path.join(d, "prompts.jsonl"),
           "--quiet"]
    out = {"dir": d, "error": None, "records": [], "prompts": []}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        out["error"] = f"`{' '.join(cmd)}` exited {proc.returncode}: {proc.stderr.strip()[-300:]}"
        return out
    with open(os.path.join(d, "audit.jsonl"), encoding="utf-8") as f:
        out["records"] = [json.loads(line) for line in f]
    with open(os.path.join(d, "prompts.jsonl"), encoding="utf-8") as f:
        out["prompts"] = [json.loads(line)["text"] for line in f]
    return out


def cut_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")[:limit]
    return data.decode("utf-8", errors="ignore")


def main() -> int:
    parser = argparse.ArgumentParser(description="Prompt capture and the hash chain, by replay")
    parser.add_argument("--sluice", required=True)
    parser.add_argument("--sluicectl", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    sluice, sluicectl = os.path.abspath(args.sluice), os.path.abspath(args.sluicectl)
    workdir = os.path.abspath(args.workdir)
    checks = Checks(args.verbose)

    expected = mrc.generate(workdir, mc.BASE_TS_US, False)
    error = compile_rules(sluicectl, os.path.join(workdir, "rules.db"))
    checks.report("rules_compile", [error] if error else [])
    if error:
        print(f"{checks.passed} passed, {checks.failed} failed")
        return 1
    count = len(expected["requests"])

    runs = {
        "none": "audit: { capture: none }",
        "flagged": "audit: { capture: flagged }",
        "all": "audit: { capture: all, capture_bytes: 4096 }",
        "all_64": "audit: { capture: all, capture_bytes: 64 }",
    }
    for name, audit_yaml in runs.items():
        run = replay(sluice, workdir, name, audit_yaml)
        if run["error"]:
            checks.report(f"{name}_replay", [run["error"]])
            continue
        records, prompts = run["records"], run["prompts"]
        problems = []
        if len(records) != count or len(prompts) != count:
            problems.append(f"{len(records)} records and {len(prompts)} prompt lines, "
                            f"expected {count}")
        checks.report(f"{name}_one_record_per_request", problems)

        verify = subprocess.run([sluicectl, "audit", "verify", os.path.join(run["dir"], "audit.jsonl")],
                                capture_output=True, text=True, timeout=60)
        checks.report(f"{name}_chain_verifies",
                      [] if verify.returncode == 0 and verify.stdout.startswith(
                          f"OK: {count} records in 1 file, chain from genesis to head ")
                      else [f"exit {verify.returncode}: {verify.stdout.strip()} {verify.stderr.strip()}"])

        problems = []
        for i, (rec, text) in enumerate(zip(records, prompts)):
            where = f"record {i + 1} ({rec.get('reason')}, rules {rec.get('rules')})"
            if "prompt_dropped" in rec:
                problems.append(f"{where}: prompt_dropped")
            selected = name.startswith("all") or (name == "flagged" and rec.get("rules"))
            if not selected:
                if "prompt" in rec:
                    problems.append(f"{where}: has a prompt, expected none")
                continue
            if not text:
                problems.append(f"{where}: the scanner saw no text (test capture broken)")
            limit = 64 if name == "all_64" else 4096
            want = cut_utf8(text, limit)
            cut = len(text.encode("utf-8")) > limit
            if rec.get("prompt") != want:
                problems.append(f"{where}: prompt {rec.get('prompt')!r}, expected {want!r}")
            if rec.get("prompt_truncated") is not cut:
                problems.append(f"{where}: prompt_truncated {rec.get('prompt_truncated')!r}, "
                                f"expected {cut}")
        if name == "flagged":
            with_prompt = sum(1 for r in records if "prompt" in r)
            flagged = sum(1 for r in records if r.get("rules"))
            if not 0 < with_prompt == flagged < count:
                problems.append(f"{with_prompt} records with a prompt, {flagged} flagged of {count}")
        if name == "all_64" and not any(r.get("prompt_truncated") for r in records):
            problems.append("no prompt was cut at 64 bytes (the capture has longer ones)")
        checks.report(f"{name}_prompts", problems)

    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
