#!/usr/bin/python3
"""Differential test of Sluice's HTTP/1.1 request framing against h11 (python3-h11, Debian).

Generates request streams (seeded): valid ones — several methods, targets, header spellings,
optional whitespace, Content-Length and chunked bodies with odd chunk sizes and extensions,
trailers, pipelining, HTTP/1.0, `Connection: close` (so requests after one that closes the
connection), credentials in Authorization (Bearer, Basic), x-api-key and api-key alone and
together — and mutated ones (bare CR/LF, obs-fold, space before colon, conflicting or signed
Content-Length, a second Content-Type, bad chunk sizes, control characters, truncation,
HTTP/0.9, bad versions). Each stream goes to both parsers:
  * h11 accepts and Sluice accepts: the requests (method, target, body) must be identical, and
    each request's key status must be what an oracle written from h11's header list says (a
    second Authorization or a key next to a non-Bearer Authorization is a conflict);
  * h11 serves a request that closes the connection (MUST_CLOSE) and holds bytes after it,
    which it never reads: Sluice must refuse that request (http_data_after_close), having
    completed the same ones before it; with no bytes after it Sluice must be closed;
  * h11 refuses: Sluice must refuse too (or, for a truncated stream, not be idle);
  * Sluice refuses what h11 accepts: only for the rules Sluice is deliberately stricter on,
    listed in STRICTER (counted and printed).
Usage: http_differential_test.py PATH_TO_http_parse_tool [COUNT]
"""
import json
import random
import subprocess
import sys

import h11

# Rules on which Sluice is stricter than h11 by design (see include/sluice/request_reason.hpp).
STRICTER = {
    "http_bare_lf",  # h11 accepts LF-only line ends; RFC 9112 §2.2 allows refusing them
    "http_bare_cr",
    "http_content_length_and_transfer_encoding",  # h11 lets chunked win; smuggling ground
    "http_conflicting_content_length",
    "http_method_not_allowed",  # a configured set
    "http_upgrade",
    "http_connect",
    "content_unsupported_encoding",
    "content_unsupported_charset",
    "http_missing_host",
    "http_duplicate_host",
    "http_bad_header",  # e.g. an empty Bearer key, over-long key values
    "http_uri_too_long",
    "http_header_too_large",
    "http_too_many_headers",
    "http_body_too_large",
    "http_unsupported_transfer_encoding",
    "http_bad_chunk_size",  # chunk extensions over 256 bytes, whitespace after the size
    "http_obs_fold",
    "http_control_character",  # h11 refuses most; Sluice names them
    "http_09_request",
    "http_bad_version",  # h11 takes any HTTP/x.y request line; Sluice only 1.0 and 1.1
    "http_duplicate_content_type",  # h11 keeps both; Starlette reads the first
}
KEYS = ["sk-a", "sk-b"]

METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]
TARGETS = ["/", "/v1/chat/completions", "/v1/completions?x=1&y=%20", "/v1/models/gpt-4o", "*",
           "http://h/v1/responses"]


def random_text(rng, n):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 {}\":,[]\\é€😀\n\t"
    return "".join(rng.choice(alphabet) for _ in range(n)).encode("utf-8")


def header_name(rng, name):
    return "".join(c.upper() if rng.random() < 0.3 else c for c in name)


def ows(rng):
    return rng.choice(["", " ", "  ", "\t", " \t"])


def credentials(rng):
    """None, one or several key-carrying fields, from a pool of two keys so that the same key
    twice, two keys and a key next to Basic all occur."""
    roll = rng.random()
    if roll < 0.3:
        return []
    if roll < 0.6:
        return [("authorization", "Bearer sk-" + str(rng.randint(1, 10**9)))]
    pool = [("authorization", "Bearer {}"), ("authorization", "bearer  {}"),
            ("authorization", "Basic dXNlcjpwYXNz"), ("x-api-key", "{}"), ("api-key", "{}")]
    return [(name, value.format(rng.choice(KEYS))) for name, value in
            (rng.choice(pool) for _ in range(rng.randint(1, 3)))]


def valid_request(rng):
    method = rng.choice(["POST", "POST", "GET", "PUT", "PATCH", "DELETE"])
    target = rng.choice(TARGETS[:4] + ([TARGETS[5]] if rng.random() < 0.1 else []))
    body = random_text(rng, rng.randint(0, 300)) if method != "GET" or rng.random() < 0.2 else b""
    http10 = rng.random() < 0.08  # closes the connection: no keep-alive
    headers = [] if http10 and rng.random() < 0.5 else [(header_name(rng, "host"),
                                                          "inference.example")]
    if rng.random() < 0.5:
        headers.append((header_name(rng, "content-type"), "application/json"))
    headers += [(header_name(rng, name), value) for name, value in credentials(rng)]
    if not http10 and rng.random() < 0.12:
        headers.append((header_name(rng, "connection"),
                        rng.choice(["close", "Close", "te, close"])))
    for i in range(rng.randint(0, 4)):
        headers.append((f"x-extra-{i}", "v" * rng.randint(0, 30)))
    chunked = body and not http10 and rng.random() < 0.5
    if chunked:
        headers.append((header_name(rng, "transfer-encoding"), "chunked"))
        framed = b""
        i = 0
        while i < len(body):
            n = rng.choice([1, 2, 7, 64, 300])
            piece = body[i:i + n]
            ext = b";e=" + str(rng.randint(0, 9)).encode() if rng.random() < 0.2 else b""
            framed += format(len(piece), "x" if rng.random() < 0.5 else "X").encode() + ext + b"\r\n" + piece + b"\r\n"
            i += n
        framed += b"0\r\n"
        if rng.random() < 0.3:
            framed += b"x-trailer: t\r\n"
        framed += b"\r\n"
        body_bytes = framed
    else:
        if body or rng.random() < 0.5:
            headers.append((header_name(rng, "content-length"), str(len(body))))
        body_bytes = body
    rng.shuffle(headers)
    head = f"{method} {target} HTTP/1.{0 if http10 else 1}\r\n".encode()
    for name, value in headers:
        head += f"{name}:{ows(rng)}{value}{ows(rng)}\r\n".encode()
    return head + b"\r\n" + body_bytes


MUTATIONS = [
    lambda s, rng: s.replace(b"\r\n", b"\n", 1),
    lambda s, rng: s.replace(b"\r\n", b"\r", 1),
    lambda s, rng: s.replace(b"\r\nx-extra-0:", b"\r\n x-extra-0:", 1),
    lambda s, rng: s.replace(b":", b" :", 1),
    lambda s, rng: s.replace(b"HTTP/1.1", b"HTTP/1.2", 1),
    lambda s, rng: s.replace(b"HTTP/1.1", b"HTTP/2.0", 1),
    lambda s, rng: s.replace(b" HTTP/1.1", b"", 1),
    lambda s, rng: s.replace(b"\r\n\r\n", b"\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 1),
    lambda s, rng: s.replace(b"\r\n\r\n", b"\r\nContent-Type: text/plain\r\ncontent-type: text/plain\r\n\r\n", 1),
    lambda s, rng: s.replace(b"\r\n\r\n", b"\r\nContent-Length: -1\r\n\r\n", 1),
    lambda s, rng: s.replace(b"\r\n\r\n", b"\r\nX-Bad: a\x01b\r\n\r\n", 1),
    lambda s, rng: s.replace(b"\r\n\r\n", b"\r\nBad Name: v\r\n\r\n", 1),
    lambda s, rng: s[: rng.randint(0, max(0, len(s) - 1))],
    lambda s, rng: s.replace(b"0\r\n\r\n", b"zz\r\n\r\n", 1),
    lambda s, rng: s.replace(b"POST", b"P\x00ST", 1),
    lambda s, rng: bytes(b ^ (1 << rng.randint(0, 7)) if i == len(s) // 3 else b for i, b in enumerate(s)),
]


def key_status(headers):
    """The oracle: what a request's key-carrying fields amount to, from h11's header list."""
    authorizations = [v.decode("latin-1") for n, v in headers if n == b"authorization"]
    keys = [v.decode("latin-1") for n, v in headers if n in (b"x-api-key", b"api-key")]
    other_scheme = False
    for value in authorizations:
        scheme, _, rest = value.partition(" ")
        if scheme.lower() == "bearer":
            keys.append(rest.strip(" \t"))
        else:
            other_scheme = True
    if len(authorizations) > 1 or (other_scheme and keys) or len(set(keys)) > 1:
        return "conflicting"
    return ["absent", "present"][len(keys)] if len(keys) < 2 else "duplicated"


def h11_parse(data):
    """Returns (accepted, requests, buffered, closed) where requests = [(method, target, body,
    complete, key status)], buffered counts bytes h11 holds without having judged them yet and
    closed is None, or — h11 served a request that closes the connection — the number of bytes
    after it, which h11 never reads."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    requests = []
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Request):
                requests.append([event.method.decode("latin-1"), event.target, b"", False,
                                 key_status(event.headers)])
            elif isinstance(event, h11.Data):
                requests[-1][2] += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                requests[-1][3] = True
                # h11 serves one request at a time: pretend the response went out.
                conn.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is h11.MUST_CLOSE:
                    # uvicorn closes the connection here; the bytes after it are never read.
                    return True, requests, 0, len(conn.trailing_data[0])
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                break
            elif event is h11.PAUSED:
                break
    except h11.RemoteProtocolError:
        return False, requests, 0, None
    except h11.LocalProtocolError:
        return False, requests, 0, None
    return True, requests, len(conn.trailing_data[0]), None


def sluice_parse(tool, data):
    out = subprocess.run([tool], input=data, capture_output=True, check=True).stdout
    result = json.loads(out)
    requests = [[r["method"], bytes.fromhex(r["target"]), bytes.fromhex(r["body"]), r["complete"],
                 r["key_status"]] for r in result["requests"]]
    return result["reason"], requests, result["idle"], result["closed"]


def main():
    tool = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    rng = random.Random(20261128)
    passed = failed = 0
    stricter = {}
    agree_valid = agree_invalid = closed_after = closed_at_end = 0
    key_statuses = {}
    for n in range(count):
        stream = b"".join(valid_request(rng) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.45:
            stream = rng.choice(MUTATIONS)(stream, rng)
        h11_ok, h11_requests, h11_buffered, h11_after_close = h11_parse(stream)
        reason, ours, idle, closed = sluice_parse(tool, stream)
        problem = None
        complete_h11 = [r[:3] for r in h11_requests if r[3]]
        complete_ours = [r[:3] for r in ours if r[3]]
        if h11_ok and h11_after_close and reason not in STRICTER:
            # Bytes after the request that closes the connection: Sluice refuses that request.
            if reason != "http_data_after_close" or complete_ours != complete_h11[:-1]:
                problem = (f"h11 closed with {h11_after_close} bytes unread, Sluice: {reason}\n"
                           f" h11   {complete_h11}\n sluice {complete_ours}")
            else:
                closed_after += 1
        elif h11_ok and reason == "ok":
            keys_h11 = [r[4] for r in h11_requests if r[3]]
            keys_ours = [r[4] for r in ours if r[3]]
            if complete_h11 != complete_ours:
                problem = f"requests differ:\n h11   {complete_h11}\n sluice {complete_ours}"
            elif keys_h11 != keys_ours:
                problem = f"key status differs: oracle {keys_h11}, sluice {keys_ours}"
            elif h11_after_close == 0 and not closed:
                problem = "h11 closed the connection after the last request, Sluice did not"
            else:
                agree_valid += 1
                closed_at_end += h11_after_close == 0
                for status in keys_ours:
                    key_statuses[status] = key_statuses.get(status, 0) + 1
        elif not h11_ok and reason == "ok":
            # h11 refused something Sluice took: only acceptable if Sluice also stopped short of
            # completing the request h11 refused (e.g. a truncated stream h11 flags early).
            done_h11 = sum(1 for r in h11_requests if r[3])
            done_ours = sum(1 for r in ours if r[3])
            if done_ours > done_h11:
                problem = f"h11 refused but Sluice completed {done_ours} request(s) (h11: {done_h11})"
            else:
                agree_invalid += 1
        elif not h11_ok:
            agree_invalid += 1
        else:  # Sluice refused what h11 accepted
            done_h11 = sum(1 for r in h11_requests if r[3])
            done_ours = sum(1 for r in ours if r[3])
            if h11_buffered > 0 and done_ours == done_h11 and reason == "http_bad_request_line":
                # h11 is still waiting for the end of a line Sluice already knows is not a
                # request line: the same verdict, earlier.
                agree_invalid += 1
            elif reason in STRICTER:
                stricter[reason] = stricter.get(reason, 0) + 1
            else:
                problem = f"Sluice refused ({reason}) what h11 accepted"
        if problem:
            failed += 1
            if failed <= 5:
                print(f"FAIL case {n}: {problem}\n stream: {stream[:400]!r}")
        else:
            passed += 1
    print(f"both accepted and agreed: {agree_valid} ({closed_at_end} ending with a request that "
          f"closes the connection); both refused (or stopped short): {agree_invalid}; "
          f"bytes after a closing request, refused: {closed_after}")
    print("key status of the requests both read, as the oracle says: "
          + ", ".join(f"{k}={v}" for k, v in sorted(key_statuses.items())))
    print("Sluice stricter than h11, by reason: " + ", ".join(f"{k}={v}" for k, v in sorted(stricter.items())))
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
