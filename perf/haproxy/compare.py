#!/usr/bin/python3
"""The HAProxy side of the Sluice comparison; perf/haproxy/compare.sh runs each step.

  prepare   the request mix (sluice-bench --dump-requests) and rules/*.yaml → the HAProxy
            configs, the key map, the upstream's answer, wrk's request file, the rule report
  probe     each carried rule's own `match` examples through the running admission HAProxy, as
            written and in forms Sluice's canonicaliser folds (JSON escapes, split, fullwidth)
  snapshot  the admission HAProxy's CPU time (/proc) and request counters (stats socket)
  report    both sides side by side: a table, and JSON with --json
  regex-cost  (by hand) what each carried rule costs PCRE2 per request of the mix

Standard library and PyYAML (Debian python3-yaml) only.
"""

import argparse
import http.client
import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

kStatuses = ("200", "401", "403", "429")
# Sluice's rule flags and what they become here. singlematch and som change what Hyperscan
# reports, not whether a text matches, so they have nothing to translate.
kFlagPrefix = {"dotall": "(?s)", "utf8": "(*UTF)", "ucp": "(*UTF)(*UCP)",
               "singlematch": "", "som": ""}
kStickTableKeyBytes = 128


def fail(message):
    sys.exit(f"compare.py: {message}")


def quote(text):
    """HAProxy's strong quoting: nothing inside '…' is interpreted; a ' closes, escapes, reopens."""
    return "'" + text.replace("'", "'\\''") + "'"


def error_body(code, message):
    error = {"message": message, "type": "invalid_request_error", "code": code}
    return json.dumps({"error": error}, separators=(",", ":"))


# ---- the request mix -----------------------------------------------------------------------------


def read_mix(path):
    with open(path, encoding="utf-8") as lines:
        try:
            header = json.loads(next(lines))
        except StopIteration:
            fail(f"{path}: empty request mix")
        requests = [json.loads(line) for line in lines if line.strip()]
    for field in ("profile", "tiers", "response_bytes"):
        if field not in header:
            fail(f"{path}:1: the header line has no '{field}'")
    if not requests:
        fail(f"{path}: no requests after the header line")
    for number, request in enumerate(requests, start=2):
        for field in ("kind", "key", "method", "path", "body"):
            if field not in request:
                fail(f"{path}:{number}: request has no '{field}'")
        if request.get("tier") is not None and request["tier"] not in header["tiers"]:
            fail(f"{path}:{number}: tier '{request['tier']}' is not in the header's tiers")
        if not re.fullmatch(r"[!-~]+", request["key"]):
            fail(f"{path}:{number}: key has whitespace or non-ASCII bytes, a map cannot hold it")
    for tier, limits in header["tiers"].items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", tier):
            fail(f"{path}:1: tier name '{tier}' is not [A-Za-z0-9_.-]{{1,64}}")
        if not (limits.get("requests_per_second", 0) > 0 and limits.get("burst", 0) >= 1):
            fail(f"{path}:1: tier '{tier}': expected requests_per_second > 0 and burst ≥ 1, "
                 f"got {limits}")
    return header, requests


def raw_request(request, port, close):
    body = request["body"].encode("utf-8")
    head = (f"{request['method']} {request['path']} HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {request['key']}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode("ascii") + body


def write_wrk_requests(path, requests, port, close_every):
    """wrk's input, read once by mix.lua: per request `KIND LENGTH\\n` then the raw request.
    close_every N > 0: every Nth request asks to close its connection (wrk then opens another)."""
    longest = 0
    with open(path, "wb") as out:
        for number, request in enumerate(requests, start=1):
            raw = raw_request(request, port, close_every > 0 and number % close_every == 0)
            longest = max(longest, len(raw))
            out.write(f"{request['kind']} {len(raw)}\n".encode("ascii") + raw)
    return longest


def write_key_map(path, requests):
    tiers = {}
    for request in requests:
        if request.get("tier") is not None:
            known = tiers.setdefault(request["key"], request["tier"])
            if known != request["tier"]:
                fail(f"key {request['key']} appears with tiers {known} and {request['tier']}")
    with open(path, "w", encoding="ascii") as out:
        out.writelines(f"{key} {tier}\n" for key, tier in sorted(tiers.items()))
    return tiers


def completion_json(size):
    """An OpenAI chat completion of `size` bytes (the mix's response size), with `usage`."""
    def build(content):
        return json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": 1764000000,
            "model": "small-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 250, "completion_tokens": 120, "total_tokens": 370},
        }, separators=(",", ":"))
    sentence = " The answer follows from the quantities in the question, step by step."
    content = "Answer: 42."
    while len(build(content + sentence)) <= size:
        content += sentence
    return build(content + "." * max(0, size - len(build(content))))


def buffer_size(longest_request):
    """A power of two that holds the longest request beside HAProxy's 1 KiB rewrite reserve."""
    return max(16384, 1 << math.ceil(math.log2(longest_request + 1024 + 1)))


# ---- rules → HAProxy -----------------------------------------------------------------------------


def load_rules(rules_dir):
    rules = []
    files = sorted(Path(rules_dir).glob("*.yaml"))
    if not files:
        fail(f"{rules_dir}: no *.yaml rule files")
    for path in files:
        with open(path, encoding="utf-8") as text:
            document = yaml.safe_load(text)
        for rule in document.get("rules", []):
            rule["file"] = path.name
            rules.append(rule)
    return rules


def translate(rule):
    """(haproxy condition, None) for a rule HAProxy can carry, else (None, why not)."""
    action, mode = rule.get("action"), rule.get("mode", "enforce")
    scope, flags = rule.get("scope", "prompt"), rule.get("flags") or []
    if mode == "shadow":
        return None, "shadow mode: Sluice matches and audits it but it never decides"
    if action != "block":
        return None, (f"action {action}: admits the request (Sluice audits it"
                      + (" and counts it per identity)" if action == "flag" else ")")
                      + "; nothing to enforce, not carried")
    if scope == "completion":
        return None, "completion scope: this HAProxy setup does not scan response bodies"
    if scope == "prompt":
        fetch = "req.body"
    elif scope == "path":
        fetch = "url"
    elif scope.startswith("header:"):
        fetch = f"req.fhdr({scope.removeprefix('header:')})"
    else:
        return None, f"scope {scope}: unknown"
    prefix, match_options = "", ""
    for flag in flags:
        if flag == "caseless":
            match_options = " -i"
        elif flag == "multiline":
            return None, ("multiline: ^/$ at message-field boundaries, which a raw JSON body "
                          "does not have")
        elif flag in kFlagPrefix:
            prefix += kFlagPrefix[flag]
        else:
            return None, f"flag {flag}: no PCRE2 equivalent here"
    pattern = prefix + rule["pattern"]
    if "\n" in pattern:
        return None, "pattern has a newline, which one HAProxy config line cannot hold"
    condition = f"{{ {fetch} -m reg{match_options} -- {quote(pattern)} }}"
    tiers = rule.get("tiers")
    if tiers:
        condition = f"{{ var(txn.tier) -m str {' '.join(tiers)} }} " + condition
    return condition, None


def deny_line(rule, condition):
    body = error_body("content_policy_violation",
                      "the request was refused by a content policy rule")
    return (f"    # {rule['id']} ({rule['file']})\n"
            f"    http-request deny status 403 content-type application/json string {quote(body)}"
            f" if {condition}")


def haproxy_refusals(haproxy, config_path):
    """Line number → HAProxy's message, for each line `haproxy -c` refuses."""
    result = subprocess.run([haproxy, "-c", "-f", str(config_path)], capture_output=True,
                            text=True, timeout=60)
    if result.returncode == 0:
        return {}
    refused = {}
    for line in (result.stdout + result.stderr).splitlines():
        found = re.search(re.escape(config_path.name) + r":(\d+)\]\s*:?\s*(.*)", line)
        if found:
            refused.setdefault(int(found.group(1)), found.group(2).strip())
    if not refused:
        fail(f"haproxy -c {config_path} failed without naming a line:\n"
             f"{result.stdout}{result.stderr}")
    return refused


def check_with_haproxy(haproxy, work, bufsize, port, carried):
    """Drops the carried rules whose regex HAProxy (PCRE2) refuses; returns {rule id: message}."""
    refused_rules = {}
    while carried:
        lines = ["global", f"    tune.bufsize {bufsize}", "defaults", "    mode http",
                 "    timeout connect 1s", "    timeout client 1s", "    timeout server 1s",
                 "frontend rulecheck", f"    bind 127.0.0.1:{port}",
                 "    option http-buffer-request"]
        first_rule_line = len(lines) + 1
        lines += [f"    http-request deny if {condition}" for _, condition in carried]
        config = work / "rulecheck.cfg"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        refused = haproxy_refusals(haproxy, config)
        if not refused:
            return refused_rules
        kept = []
        for index, (rule, condition) in enumerate(carried):
            message = refused.get(first_rule_line + index)
            if message is None:
                kept.append((rule, condition))
            else:
                refused_rules[rule["id"]] = message
        if len(kept) == len(carried):
            fail(f"haproxy -c refused lines that are not rules: {refused}")
        carried = kept
    return refused_rules


def prepare(args):
    work = Path(args.work).resolve()  # HAProxy reads a relative socket path as host:port
    template_dir = Path(__file__).resolve().parent
    header, requests = read_mix(args.mix)
    tiers = write_key_map(work / "keys.map", requests)
    longest = write_wrk_requests(work / "requests.bin", requests, args.port, args.close_every)
    bufsize = buffer_size(longest)
    (work / "completion.json").write_text(completion_json(int(header["response_bytes"])),
                                          encoding="utf-8")

    carried, skipped = [], []
    for rule in load_rules(args.rules):
        condition, reason = translate(rule)
        if condition:
            carried.append((rule, condition))
        else:
            skipped.append({"id": rule["id"], "file": rule["file"], "reason": reason})
    refused = check_with_haproxy(args.haproxy, work, bufsize, args.port, carried)
    for rule, _ in carried:
        if rule["id"] in refused:
            reason = f"HAProxy's PCRE2 refuses the pattern: {refused[rule['id']]}"
            skipped.append({"id": rule["id"], "file": rule["file"], "reason": reason})
    carried = [(rule, condition) for rule, condition in carried if rule["id"] not in refused]

    rate_lines, table_lines = [], []
    for tier, limits in header["tiers"].items():
        rate, burst = float(limits["requests_per_second"]), int(limits["burst"])
        period_ms = max(1, round(1000 * burst / rate))
        identities = sum(1 for t in tiers.values() if t == tier)
        on_tier = f"{{ var(txn.tier) -m str {tier} }}"
        body = error_body("rate_limited_requests", "request rate limit reached")
        rate_lines += [
            f"    # {tier}: {limits['requests_per_second']} requests/s, burst {burst}"
            f" → at most {burst} admitted per {period_ms} ms",
            f"    http-request track-sc0 var(txn.key) table tier_{tier} if {on_tier}",
            f"    http-request deny status 429 content-type application/json string {quote(body)}"
            f" if {on_tier} {{ sc_gpc_rate(0,0) ge {burst} }}"]
        table_lines += [
            f"backend tier_{tier}",
            f"    stick-table type string len {kStickTableKeyBytes}"
            f" size {max(1024, 2 * identities)} expire {max(60_000, 2 * period_ms)}ms"
            f" store gpc_rate(1,{period_ms}ms)"]

    fields = {"WORK": str(work), "PORT": str(args.port), "UPSTREAM_PORT": str(args.upstream_port),
              "BUFSIZE": str(bufsize), "RULES": "\n".join(deny_line(r, c) for r, c in carried),
              "RATE_LIMITS": "\n".join(rate_lines), "TIER_TABLES": "\n".join(table_lines)}
    def fill(template, output, **changes):
        text = (template_dir / template).read_text(encoding="utf-8")
        text = re.sub(r"@([A-Z_]+)@", lambda m: {**fields, **changes}[m.group(1)], text)
        (work / output).write_text(text, encoding="utf-8")
    fill("admission.cfg.in", "admission.cfg")
    fill("admission.cfg.in", "admission-without-rules.cfg",
         RULES="    # (left out: this configuration measures the admission without them)")
    fill("upstream.cfg.in", "upstream.cfg")

    mix_tiers = set(header["tiers"])
    report = {
        "profile": header["profile"], "tiers": header["tiers"], "requests": len(requests),
        "identities": len(tiers), "bufsize": bufsize, "longest_request_bytes": longest,
        "carried": [{"id": r["id"], "file": r["file"], "tiers": r.get("tiers"),
                     "applies_to_mix": not r.get("tiers") or bool(mix_tiers & set(r["tiers"])),
                     "scope": r.get("scope", "prompt"), "examples": r.get("examples", {})}
                    for r, _ in carried],
        "skipped": skipped,
    }
    (work / "rules.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print_rule_summary(report, args.rules)


def print_rule_summary(report, rules_dir):
    carried, skipped = report["carried"], report["skipped"]
    print(f"rules: {len(carried)} of {len(carried) + len(skipped)} rules in {rules_dir} carried to "
          f"HAProxy as regex denies (403), {len(skipped)} not")
    by_file = {}
    for rule in carried:
        mark = "" if rule["applies_to_mix"] else "*"
        by_file.setdefault(rule["file"], []).append(rule["id"] + mark)
    for file, ids in by_file.items():
        print(f"  carried from {file} ({len(ids)}): {', '.join(ids)}")
    if any(not rule["applies_to_mix"] for rule in carried):
        print("    * only for tiers this mix does not have: never evaluated here, "
              "and never decide in Sluice")
    by_reason = {}
    for entry in skipped:
        by_reason.setdefault(entry["reason"], []).append(entry["id"])
    for reason, ids in by_reason.items():
        print(f"  not carried ({len(ids)}): {', '.join(ids)}\n    why: {reason}")
    print("  the carried prompt rules run on the raw JSON body: no JSON unescaping, no Unicode "
          "canonicalisation, no joining of messages (README.md)")


# ---- probe: the rules' own examples through HAProxy ----------------------------------------------


def chat_body(user_contents):
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    messages += [{"role": "user", "content": text} for text in user_contents]
    return json.dumps({"model": "small-1", "messages": messages, "max_tokens": 64},
                      ensure_ascii=False, separators=(",", ":"))


def escaped_body(text):
    """The first letter of every word as a JSON \\u escape: the same prompt once JSON is decoded."""
    pieces = []
    for index, char in enumerate(text):
        starts_word = (char.isascii() and char.isalpha()
                       and (index == 0 or not text[index - 1].isalnum()))
        plain = json.dumps(char, ensure_ascii=False)[1:-1]
        pieces.append(f"\\u{ord(char):04x}" if starts_word else plain)
    return chat_body(["@@"]).replace('"@@"', '"' + "".join(pieces) + '"')


def split_body(text):
    """The text over two user messages, cut at the space nearest its middle."""
    spaces = [i for i, char in enumerate(text) if char == " "]
    if not spaces:
        return None
    cut = min(spaces, key=lambda i: abs(i - len(text) // 2))
    return chat_body([text[:cut], text[cut + 1:]])


def fullwidth_body(text):
    """ASCII letters and digits in their fullwidth forms, which NFKC folds back."""
    return chat_body(["".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c
                              for c in text)])


kProbeForms = {
    "as written": lambda text: chat_body([text]),
    "first letter of each word as a JSON \\u escape": escaped_body,
    "split over two messages": split_body,
    "letters and digits fullwidth": fullwidth_body,
}


class Client:
    """One keep-alive connection to the admission HAProxy, reopened if it closes."""

    def __init__(self, port):
        self.port = port
        self.connection = None

    def status(self, key, body):
        for _ in range(2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                self.connection.request("POST", "/v1/chat/completions", body=body.encode("utf-8"),
                                        headers={"Authorization": f"Bearer {key}",
                                                 "Content-Type": "application/json"})
                response = self.connection.getresponse()
                response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.connection.close()
                    self.connection = None
                return response.status
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = None
        fail(f"probe: no answer from 127.0.0.1:{self.port}")


def probe(args):
    work = Path(args.work)
    report = json.loads((work / "rules.json").read_text(encoding="utf-8"))
    key_of_tier = {}
    for line in (work / "keys.map").read_text(encoding="ascii").splitlines():
        key, tier = line.split(" ")
        key_of_tier.setdefault(tier, key)
    client = Client(args.port)
    counts = {form: {"sent": 0, "blocked": 0} for form in kProbeForms}
    near_misses = {"sent": 0, "blocked": 0}
    missed_as_written = []
    for rule in report["carried"]:
        if rule["scope"] != "prompt" or not rule["applies_to_mix"]:
            continue
        tier = next((t for t in key_of_tier if not rule["tiers"] or t in rule["tiers"]), None)
        if tier is None:
            continue  # no key of a tier the rule applies to
        key = key_of_tier[tier]
        examples = rule["examples"] or {}
        for text in examples.get("match", []):
            for form, make in kProbeForms.items():
                body = make(text)
                if body is None:
                    continue
                blocked = client.status(key, body) == 403
                counts[form]["sent"] += 1
                counts[form]["blocked"] += blocked
                if form == "as written" and not blocked:
                    missed_as_written.append({"rule": rule["id"], "example": text})
        for text in examples.get("no_match", []):
            near_misses["sent"] += 1
            near_misses["blocked"] += client.status(key, chat_body([text])) == 403
    result = {"match_examples": counts, "no_match_examples_blocked": near_misses,
              "missed_as_written": missed_as_written}
    (work / "probe.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    print("rule examples through the admission HAProxy (each carried prompt rule's `match` list):")
    for form, count in counts.items():
        print(f"  {form:48} {count['blocked']:4} of {count['sent']:4} blocked")
    print(f"  {'no_match examples, as written':48} {near_misses['blocked']:4} of "
          f"{near_misses['sent']:4} blocked (false positives)")
    for miss in missed_as_written:
        print(f"  missed as written: {miss['rule']}: {miss['example'][:90]}")


# ---- snapshot: CPU time and counters of the admission HAProxy ------------------------------------


def stats_socket_frontend(path, frontend):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(5)
        connection.connect(path)
        connection.sendall(b"show stat\n")
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    lines = data.decode("ascii", "replace").splitlines()
    if not lines or not lines[0].startswith("# "):
        fail(f"{path}: unexpected answer to 'show stat': {lines[:1]}")
    names = lines[0][2:].split(",")
    for line in lines[1:]:
        values = dict(zip(names, line.split(",")))
        if values.get("pxname") == frontend and values.get("svname") == "FRONTEND":
            return {name: int(values[name] or 0) for name in
                    ("req_tot", "hrsp_1xx", "hrsp_2xx", "hrsp_3xx", "hrsp_4xx", "hrsp_5xx",
                     "hrsp_other", "dreq", "ereq", "conn_tot")}
    fail(f"{path}: no FRONTEND row for '{frontend}' in 'show stat'")


def snapshot(args):
    # /proc/PID/stat fields 14 and 15 (utime, stime) in clock ticks; the (name) may hold spaces.
    fields = Path(f"/proc/{args.pid}/stat").read_text().rsplit(")", 1)[1].split()
    result = {"utime_ticks": int(fields[11]), "stime_ticks": int(fields[12]),
              "clock_ticks_per_second": os.sysconf("SC_CLK_TCK"),
              "frontend": stats_socket_frontend(args.socket, "admission")}
    Path(args.out).write_text(json.dumps(result), encoding="utf-8")


# ---- regex-cost: what each carried rule costs PCRE2 on the mix -----------------------------------


def regex_cost(args):
    """Each carried prompt rule, compiled and JIT-compiled as HAProxy compiles it (libpcre2-8, the
    library it links; no capture groups, caseless for -i), matched against every body of the mix:
    CPU-µs per request, most expensive first. HAProxy itself stops at the first deny."""
    import ctypes
    import time
    library = ctypes.CDLL("libpcre2-8.so.0")
    library.pcre2_compile_8.restype = ctypes.c_void_p
    library.pcre2_compile_8.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
                                        ctypes.POINTER(ctypes.c_int),
                                        ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
    library.pcre2_jit_compile_8.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    library.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
    library.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    library.pcre2_match_8.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t,
                                      ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
                                      ctypes.c_void_p]
    kCaseless, kNoAutoCapture, kJitComplete = 0x8, 0x2000, 0x1  # pcre2.h
    header, requests = read_mix(args.mix)
    bodies = [request["body"].encode("utf-8") for request in requests]
    costs, total = [], 0.0
    for rule in load_rules(args.rules):
        condition, _ = translate(rule)
        if condition is None or rule.get("scope", "prompt") != "prompt":
            continue
        flags = rule.get("flags") or []
        pattern = ("".join(kFlagPrefix.get(flag, "") for flag in flags) + rule["pattern"]).encode()
        options = kNoAutoCapture | (kCaseless if "caseless" in flags else 0)
        error, offset = ctypes.c_int(), ctypes.c_size_t()
        code = library.pcre2_compile_8(pattern, len(pattern), options, ctypes.byref(error),
                                       ctypes.byref(offset), None)
        if not code:
            print(f"  {rule['id']}: PCRE2 refuses it (error {error.value} at {offset.value})")
            continue
        library.pcre2_jit_compile_8(code, kJitComplete)
        match_data = library.pcre2_match_data_create_from_pattern_8(code, None)
        started, hits = time.process_time(), 0
        for body in bodies:
            hits += library.pcre2_match_8(code, body, len(body), 0, 0, match_data, None) > 0
        microseconds = (time.process_time() - started) * 1e6 / len(bodies)
        tiers = rule.get("tiers")
        if not tiers or set(tiers) & set(header["tiers"]):
            total += microseconds
        costs.append((microseconds, rule["id"], hits, tiers))
    print(f"PCRE2 JIT, each carried prompt rule over all {len(bodies)} bodies of the mix:")
    for microseconds, rule_id, hits, tiers in sorted(costs, reverse=True):
        note = f"  (tiers {', '.join(tiers)} only: not in this mix, not summed)" if tiers else ""
        print(f"  {microseconds:7.2f} µs/request  {hits:5} bodies matched  {rule_id}{note}")
    print(f"  {total:7.2f} µs/request in all, for the rules that apply to this mix's tiers")


# ---- report --------------------------------------------------------------------------------------


def wrk_result(path):
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("MIX-RESULT "):
            return json.loads(line.removeprefix("MIX-RESULT "))
    fail(f"{path}: no MIX-RESULT line (did wrk run mix.lua?)")


def status_counts(by_status):
    counts = {status: by_status.get(status, 0) for status in kStatuses}
    counts["other"] = sum(n for status, n in by_status.items() if status not in kStatuses)
    return counts


def reason_statuses(header_path):
    """Sluice's verdict names → HTTP status, from the one table that declares them."""
    text = Path(header_path).read_text(encoding="utf-8")
    statuses = {name: status for name, status in re.findall(r"X\((\w+),\s*(\d+),", text)}
    if not statuses:
        fail(f"{header_path}: no X(name, status, text) entries")
    statuses["ok"] = statuses["admitted"] = "200"  # sluice-bench's name for an admitted request
    return statuses


def haproxy_side(work, config, connections):
    """The measured run of one admission configuration (compare.sh's `measure`)."""
    before = json.loads((work / f"{config}.before.json").read_text())
    after = json.loads((work / f"{config}.after.json").read_text())
    load = wrk_result(work / f"{config}.load.out")
    tick_us = 1e6 / after["clock_ticks_per_second"]
    user_us = (after["utime_ticks"] - before["utime_ticks"]) * tick_us
    system_us = (after["stime_ticks"] - before["stime_ticks"]) * tick_us
    counted = {name: count - before["frontend"][name] for name, count in after["frontend"].items()}
    requests = counted["req_tot"]
    if requests <= 0:
        fail(f"{config}: the admission HAProxy counted no requests during the run")
    seconds = load["duration_us"] / 1e6
    statuses = status_counts(load["statuses"])
    # wrk stops with up to one request per connection in flight: HAProxy may have answered those.
    slack = connections + 1
    agree = (abs(requests - load["requests"]) <= slack
             and abs(counted["hrsp_2xx"] - statuses["200"]) <= slack)
    return {
        "requests": requests,
        "seconds": seconds,
        "requests_per_second": requests / seconds,
        "cpu_us_per_request": (user_us + system_us) / requests,
        "requests_per_connection": requests / max(1, counted["conn_tot"]),
        "user_us_per_request": user_us / requests,
        "system_us_per_request": system_us / requests,
        "statuses": statuses,
        "stats_socket": counted,
        "wrk": {"requests": load["requests"], "errors": load["errors"],
                "requests_per_second": load["requests"] / seconds},
        "counts_agree": agree,
    }


def sluice_side(path, reasons_header):
    try:
        result = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        fail(f"{path}: cannot read sluice-bench's JSON: {error}")
    for field in ("cpu_us_per_request", "requests_per_second", "verdicts"):
        if field not in result:
            fail(f"{path}: sluice-bench's JSON has no '{field}'")
    statuses = reason_statuses(reasons_header)
    by_status = {}
    for reason, count in result["verdicts"].items():
        status = statuses.get(reason, f"? {reason}")
        by_status[status] = by_status.get(status, 0) + count
    flows = result.get("pipeline", {}).get("flows_created")
    per_flow = result["requests"] / flows if flows and "requests" in result else None
    return {"requests_per_second": result["requests_per_second"],
            "cpu_us_per_request": result["cpu_us_per_request"],
            "requests_per_connection": per_flow,
            "statuses": status_counts(by_status), "verdicts": result["verdicts"], "bench": result}


def print_table(result):
    haproxy, bare, sluice = result["haproxy"], result["haproxy_without_rules"], result["sluice"]

    def row(name, format_haproxy, format_sluice):
        right = "not run" if sluice is None else format_sluice(sluice)
        print(f"  {name:26} {format_haproxy(haproxy):>18} {format_haproxy(bare):>18}   {right:>22}")

    reuse = (f"closed after every {result['close_every']} requests" if result["close_every"]
             else "kept alive")
    print(f"\nprofile {result['profile']}, {result['seconds']} s per run, one HAProxy thread / one "
          f"Sluice worker; wrk: 1 thread, {result['connections']} connections {reuse}, 127.0.0.1")
    print(f"  {'':26} {'HAProxy ' + result['haproxy_version'].split('-')[0]:>18} "
          f"{'without the rules':>18}   {'Sluice (sluice-bench)':>22}")
    row("requests/s", lambda side: f"{side['requests_per_second']:,.0f}",
        lambda side: f"{side['requests_per_second']:,.0f}")
    row("CPU-µs per request", lambda side: f"{side['cpu_us_per_request']:.1f}",
        lambda side: f"{side['cpu_us_per_request']:.2f}")
    row("  user / kernel", lambda side: f"{side['user_us_per_request']:.1f} / "
        f"{side['system_us_per_request']:.1f}", lambda side: "no kernel")
    row("requests per connection", lambda side: f"{side['requests_per_connection']:,.1f}",
        lambda side: "?" if side["requests_per_connection"] is None
        else f"{side['requests_per_connection']:,.1f} (per flow)")
    for status in (*kStatuses, "other"):
        row(f"status {status}", lambda side: f"{side['statuses'][status]:,}",
            lambda side: f"{side['statuses'][status]:,}")
    for name, side in (("HAProxy", haproxy), ("HAProxy without the rules", bare)):
        if not side["counts_agree"]:
            print(f"  warning: {name}: the stats socket and wrk disagree on the counts "
                  "(see the JSON)")
    print("\n  HAProxy per request kind (one pass over the mix, one connection):")
    for kind, by_status in sorted(haproxy["by_kind"].items()):
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(by_status.items()))
        print(f"    {kind:12} {statuses}")
    print("\n  Indicative, not like-for-like: HAProxy terminates TCP through the kernel's "
          "loopback (its kernel time is in its figure);\n  sluice-bench runs Sluice's pipeline "
          "on frames from memory, with no NIC and no kernel. perf/haproxy/README.md says what "
          "each side does.")


def report(args):
    work = Path(args.work)
    rules = json.loads((work / "rules.json").read_text(encoding="utf-8"))
    probe_path = work / "probe.json"
    version = subprocess.run([args.haproxy, "-v"], capture_output=True, text=True,
                             timeout=10).stdout
    result = {
        "profile": rules["profile"],
        "seconds": args.seconds,
        "connections": args.connections,
        "close_every": args.close_every,
        "haproxy_version": version.split()[2] if version.startswith("HAProxy version") else "?",
        "haproxy": haproxy_side(work, "admission", args.connections),
        "haproxy_without_rules": haproxy_side(work, "admission-without-rules", args.connections),
        "sluice": sluice_side(args.sluice, args.reasons) if args.sluice else None,
        "rules": {"carried": [{"id": r["id"], "tiers": r["tiers"]} for r in rules["carried"]],
                  "not_carried": rules["skipped"]},
        "rule_examples": json.loads(probe_path.read_text()) if probe_path.exists() else None,
        "processes": [int(pid) for pid in args.pids.split()],
    }
    verify = wrk_result(work / "verify.out")
    result["haproxy"]["by_kind"] = verify["by_kind"]
    result["haproxy"]["by_kind_requests"] = verify["requests"]
    print_table(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("prepare")
    command.add_argument("--mix", required=True)
    command.add_argument("--rules", required=True)
    command.add_argument("--work", required=True)
    command.add_argument("--port", type=int, required=True)
    command.add_argument("--upstream-port", type=int, required=True)
    command.add_argument("--haproxy", default="haproxy")
    command.add_argument("--close-every", type=int, default=0)
    command.set_defaults(run=prepare)
    command = commands.add_parser("probe")
    command.add_argument("--work", required=True)
    command.add_argument("--port", type=int, required=True)
    command.set_defaults(run=probe)
    command = commands.add_parser("snapshot")
    command.add_argument("--pid", required=True)
    command.add_argument("--socket", required=True)
    command.add_argument("--out", required=True)
    command.set_defaults(run=snapshot)
    command = commands.add_parser("regex-cost")
    command.add_argument("--mix", required=True)
    command.add_argument("--rules", required=True)
    command.set_defaults(run=regex_cost)
    command = commands.add_parser("report")
    command.add_argument("--work", required=True)
    command.add_argument("--seconds", type=int, required=True)
    command.add_argument("--connections", type=int, required=True)
    command.add_argument("--close-every", type=int, default=0)
    command.add_argument("--haproxy", default="haproxy")
    command.add_argument("--sluice", help="sluice-bench's JSON; absent: the HAProxy side only")
    command.add_argument("--reasons", help="include/sluice/request_reason.hpp")
    command.add_argument("--pids", default="")
    command.add_argument("--json")
    command.set_defaults(run=report)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
