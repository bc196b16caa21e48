#!/usr/bin/python3
"""Runs Sluice's golden pcap cases through `sluice replay` and compares the outputs.

    /usr/bin/python3 tests/pcap/golden_test.py --sluice build/src/sluice --workdir /tmp/golden \
        [--case NAME]... [--jobs N] [-v]

Generates every case into WORKDIR (make_captures.py), runs each one twice (the two runs must
write byte-identical files), and compares both output captures packet by packet with the
expected ones (bytes, order, timestamps to the microsecond), and the summary counters with the
expected values. Prints `PASS name` or `FAIL name: <first difference>` per case, then
`N passed, M failed`; exits 1 when anything failed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_captures  # noqa: E402

COUNTER_LINE = re.compile(r"^\s*([a-z][a-z0-9_]*)\s+(\d+)\s*$")
SIDES = ("to_client", "to_server")


def hexdump_excerpt(data: bytes, at: int, width: int = 16, rows: int = 2) -> str:
    start = max(0, (at // width) * width - width * (rows // 2))
    chunk = data[start:start + width * rows]
    return f"@{start:#06x}: {chunk.hex(' ')}" if chunk else f"@{start:#06x}: <end>"


def describe(data: bytes) -> str:
    try:
        from scapy.layers.l2 import Ether
        return Ether(data).summary()
    except Exception:  # noqa: BLE001 - a summary is a courtesy
        return f"{len(data)} bytes"


def first_difference(side: str, expected, actual, sources) -> tuple[int, str] | None:
    """The first difference as (input packet index it concerns, description), or None."""
    for index, ((ets, edata), (ats, adata)) in enumerate(zip(expected, actual)):
        where = f"{side} packet {index} (input packet {sources[index]})"
        if edata != adata:
            at = next((i for i, (a, b) in enumerate(zip(edata, adata)) if a != b),
                      min(len(edata), len(adata)))
            return sources[index], (
                f"{where} differs at byte {at} (lengths {len(edata)} expected, {len(adata)} "
                f"actual): expected [{describe(edata)}] {hexdump_excerpt(edata, at)} | "
                f"actual [{describe(adata)}] {hexdump_excerpt(adata, at)}")
        if ets != ats:
            return sources[index], (f"{where} timestamp {ets / 1e6:.6f} expected, "
                                    f"{ats / 1e6:.6f} actual")
    if len(expected) != len(actual):
        n = min(len(expected), len(actual))
        if len(expected) > n:
            key, extra = sources[n], f"first missing: input packet {sources[n]} [{describe(expected[n][1])}]"
        else:
            key, extra = (sources[-1] + 1 if sources else 0), f"first extra: [{describe(actual[n][1])}]"
        return key, f"{side} packet count {len(expected)} expected, {len(actual)} actual; {extra}"
    return None


def parse_counters(stdout: str) -> dict[str, int]:
    counters = {}
    for line in stdout.splitlines():
        m = COUNTER_LINE.match(line)
        if m:
            counters[m.group(1)] = int(m.group(2))
    return counters


def check_counters(meta: dict, counters: dict[str, int]) -> list[str]:
    problems = []
    expected = meta["counters"]
    for name, want in expected.items():
        parts = name.split("+")
        # The summary leaves out drop counters that are zero.
        missing = [p for p in parts if p not in counters and not p.startswith("drop_")]
        if missing:
            problems.append(f"counter {', '.join(missing)} not reported")
            continue
        got = sum(counters.get(p, 0) for p in parts)
        if got != want:
            problems.append(f"counter {name} = {got}, expected {want}")
    if meta.get("check_drop_totals", True):
        named = {p for name in expected for p in name.split("+")}
        for name, value in sorted(counters.items()):
            if name.startswith("drop_") and name not in named and value != 0:
                problems.append(f"counter {name} = {value}, expected 0")
        total = sum(v for k, v in counters.items() if k.startswith("drop_"))
        if total != meta["dropped"]:
            problems.append(f"drop_* counters add up to {total}, expected {meta['dropped']} "
                            f"dropped packets")
    return problems


def run_once(sluice: str, case_dir: str, tag: str, extra: list[str], meta: dict):
    out = {side: os.path.join(case_dir, f"actual_{side}{tag}.pcap") for side in SIDES}
    for path in out.values():
        if os.path.exists(path):
            os.unlink(path)
    cmd = [sluice, "replay", "--config", os.path.join(case_dir, "config.yaml"),
           "--in", os.path.join(case_dir, "in.pcap"),
           "--out-client", out["to_client"], "--out-server", out["to_server"],
           *meta["args"], *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return None, "sluice replay ran over 60 s", out
    with open(os.path.join(case_dir, f"stdout{tag}.txt"), "w") as f:
        f.write(proc.stdout)
    with open(os.path.join(case_dir, f"stderr{tag}.txt"), "w") as f:
        f.write(proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return None, f"sluice replay exited {proc.returncode}: {' / '.join(tail)}", out
    return proc, None, out


def run_case(sluice: str, workdir: str, name: str, extra: list[str], verbose: bool) -> tuple[bool, str]:
    case_dir = os.path.join(workdir, name)
    with open(os.path.join(case_dir, "case.json")) as f:
        meta = json.load(f)
    proc, error, out = run_once(sluice, case_dir, "", extra, meta)
    if error:
        return False, error
    problems, diffs = [], []
    for side in SIDES:
        if not os.path.exists(out[side]):
            problems.append(f"{side}: no output file written")
            continue
        _, expected = make_captures.read_pcap(os.path.join(case_dir, f"expected_{side}.pcap"))
        try:
            linktype, actual = make_captures.read_pcap(out[side])
        except ValueError as e:
            problems.append(str(e))
            continue
        if linktype != 1:
            problems.append(f"{side}: linktype {linktype}, expected 1 (Ethernet)")
        diff = first_difference(side, expected, actual, meta["sources"][side])
        if diff:
            diffs.append(diff)
    # The difference caused by the earliest input packet first.
    problems += [text for _, text in sorted(diffs)]
    counters = parse_counters(proc.stdout)
    problems += check_counters(meta, counters)
    # Determinism: the same case again gives byte-identical files.
    proc2, error2, out2 = run_once(sluice, case_dir, ".run2", extra, meta)
    if error2:
        problems.append(f"second run: {error2}")
    else:
        for side in SIDES:
            try:
                same = open(out[side], "rb").read() == open(out2[side], "rb").read()
            except OSError:
                continue
            if not same:
                problems.append(f"{side}: second run wrote a different file (not deterministic)")
        if parse_counters(proc2.stdout) != counters:
            problems.append("second run reported different counters")
    if problems:
        detail = problems if verbose else problems[:1]
        more = f" (+{len(problems) - 1} more, -v shows all)" if len(problems) > 1 and not verbose else ""
        return False, "; ".join(detail) + more
    return True, ""


def main() -> int:
    parser = argparse.ArgumentParser(description="Sluice golden pcap cases")
    parser.add_argument("--sluice", required=True, help="path to the sluice binary")
    parser.add_argument("--workdir", required=True, help="where cases and outputs are written")
    parser.add_argument("--case", action="append", help="a case or its variants (NAME_*); repeatable")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="cases run in parallel (default: 2)")
    parser.add_argument("--sluice-arg", action="append", default=[],
                        help="an extra argument appended to every replay command; repeatable")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every difference")
    args = parser.parse_args()

    sluice = os.path.abspath(args.sluice)
    if not os.access(sluice, os.X_OK):
        print(f"sluice binary not found or not executable: {sluice}", file=sys.stderr)
        return 2
    os.makedirs(args.workdir, exist_ok=True)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        # Each case runs as soon as it is generated, while the next one is being built.
        names, futures = [], {}
        for make in make_captures.select(args.case):
            case = make()
            make_captures.write_case(case, args.workdir)
            names.append(case.name)
            futures[case.name] = pool.submit(run_case, sluice, args.workdir, case.name,
                                             args.sluice_arg, args.verbose)
        generated = time.monotonic() - started
        results = []
        for n in names:  # report in case order
            try:
                ok, why = futures[n].result()
            except Exception as e:  # noqa: BLE001 - a broken case must not hide the others
                ok, why = False, f"test harness error: {type(e).__name__}: {e}"
            results.append(ok)
            print(f"PASS {n}" if ok else f"FAIL {n}: {why}", flush=True)
    passed = sum(results)
    failed = len(results) - passed
    if args.verbose:
        print(f"(generation {generated:.1f} s, total {time.monotonic() - started:.1f} s)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
