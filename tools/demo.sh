#!/usr/bin/env bash
# Sluice demo: the whole thing, end to end, on one Debian 12 machine (as root).
#
#   bash tools/demo.sh
#
# 1. installs packages (tools/setup.sh) and builds (meson + ninja);
# 2. builds the test topology (tools/topology.sh): client and server namespaces
#    joined only through Sluice, which bridges two veth ends with DPDK af_packet;
# 3. starts a small HTTP server (static files + a fake chat-completions API) and a
#    UDP sink on the server side, and Sluice (embedded default config) in between,
#    its live stats shown on this terminal;
# 4. drives a bounded traffic mix from the client side for about 15-20 s: GETs of
#    various sizes, JSON POSTs (plain and chunked), keep-alive multi-request
#    connections, ping, UDP datagrams;
# 5. stops Sluice with SIGINT (it prints its summary), prints a recap, and removes
#    everything it created, also on Ctrl-C.
#
# Network rules: addresses only from 198.18.0.0/15 (198.18.0.1 client,
# 198.18.0.2 server), only in the namespaces sldemo-cli/-mid/-srv created here;
# every traffic loop is bounded in count and time.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

say() { echo "demo: $*"; }

if [[ $(id -u) -ne 0 ]]; then
  say "must run as root (installs packages, creates network namespaces)"
  exit 1
fi

prefix=sldemo
net=0
cli_ns="${prefix}-cli"
mid_ns="${prefix}-mid"
srv_ns="${prefix}-srv"
server_ip="198.18.${net}.2"
base_url="http://${server_ip}:8000"
py=/usr/bin/python3 # Debian's python, whatever else is first on PATH
sluice="$repo/build/src/sluice"

work=""
sluice_pid=""
tail_pid=""
bg_pids=() # servers and traffic loops started here

stop_pid() {
  # Ends one process this script started: TERM, a bounded wait, then KILL.
  local pid=$1
  if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then return 0; fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [[ -n $sluice_pid ]] && kill -0 "$sluice_pid" 2>/dev/null; then
    # Interrupted mid-run: still let Sluice stop cleanly and print its summary.
    kill -INT "$sluice_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      kill -0 "$sluice_pid" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$sluice_pid"
  fi
  local pid
  for pid in "${bg_pids[@]}"; do stop_pid "$pid"; done
  if [[ -n $tail_pid ]]; then
    # tail leaves by itself about a second after sluice: let it print the summary.
    for _ in $(seq 1 20); do
      kill -0 "$tail_pid" 2>/dev/null || break
      sleep 0.1
    done
    stop_pid "$tail_pid"
  fi
  # Also ends anything still running inside the namespaces (in-flight curls).
  bash "$repo/tools/topology.sh" down "$prefix" >/dev/null 2>&1 || true
  [[ -z $work ]] || rm -rf "$work"
  say "cleaned up (namespaces $prefix-*, background processes)"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; say "interrupted"; exit 130' INT TERM

# ------------------------------------------------------------------ setup, build
say "installing packages (tools/setup.sh)"
bash tools/setup.sh
if [[ ! -f build/build.ninja ]]; then
  say "configuring build/ (meson setup build)"
  meson setup build
fi
say "building (ninja -C build)"
ninja -C build
[[ -x $sluice ]] || { say "build produced no $sluice"; exit 1; }

# ------------------------------------------------------------------ topology
bash tools/topology.sh up "$prefix" "$net" | sed 's/^/demo: /'

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
www="$work/www"
res="$work/results"
mkdir -p "$www/v1" "$res"

# ------------------------------------------------------------------ server side
# A small site of different sizes, plus something JSON-ish.
cat >"$www/index.html" <<'EOF'
<!doctype html>
<html><head><title>sluice demo</title></head>
<body><h1>behind sluice</h1><p>static files and a fake /v1/chat/completions</p></body></html>
EOF
head -c 600 /dev/urandom | base64 >"$www/small.txt"
head -c 65536 /dev/urandom >"$www/medium.bin"
head -c 1048576 /dev/urandom >"$www/large.bin"
cat >"$www/v1/models.json" <<'EOF'
{"object":"list","data":[
 {"id":"demo-small","object":"model","owned_by":"sluice-demo"},
 {"id":"demo-large","object":"model","owned_by":"sluice-demo"}]}
EOF

# Static files from $www, and POST /v1/chat/completions answering an
# OpenAI-shaped completion. HTTP/1.1 so keep-alive connections are reused;
# understands chunked request bodies as well as Content-Length ones.
cat >"$work/server.py" <<'EOF'
import functools, json, sys, time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def reply(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.read_body()
        if self.path != "/v1/chat/completions":
            return self.reply(404, {"error": {"message": "no such endpoint", "type": "invalid_request_error"}})
        try:
            req = json.loads(body)
            prompt = " ".join(m.get("content", "") for m in req.get("messages", []))
        except (ValueError, AttributeError, TypeError):
            return self.reply(400, {"error": {"message": "bad JSON", "type": "invalid_request_error"}})
        words = prompt.split()
        self.reply(200, {
            "id": "chatcmpl-demo-%d" % time.monotonic_ns(),
            "object": "chat.completion",
            "model": req.get("model", "demo-small"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant",
                                     "content": "You said %d words." % len(words)}}],
            "usage": {"prompt_tokens": len(words), "completion_tokens": 4,
                      "total_tokens": len(words) + 4},
        })

handler = functools.partial(Handler, directory=sys.argv[2])
server = ThreadingHTTPServer((sys.argv[1], 8000), handler)
server.daemon_threads = True
server.serve_forever()
EOF

# Counts UDP datagrams into a file; gives up on its own after 60 s.
cat >"$work/udp_sink.py" <<'EOF'
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 9999))
deadline, got = time.monotonic() + 60, 0
while (left := deadline - time.monotonic()) > 0:
    sock.settimeout(left)
    try:
        sock.recv(2048)
    except socket.timeout:
        break
    got += 1
    with open(sys.argv[2], "w") as f:
        f.write("%d\n" % got)
EOF
echo 0 >"$res/udp_received"

# "ip netns exec" directly (not in a function) so that $! is the process itself.
ip netns exec "$srv_ns" "$py" "$work/server.py" "$server_ip" "$www" >"$work/server.log" 2>&1 &
bg_pids+=("$!")
ip netns exec "$srv_ns" "$py" "$work/udp_sink.py" "$server_ip" "$res/udp_received" >/dev/null 2>&1 &
bg_pids+=("$!")

up=0
for _ in $(seq 1 50); do
  # Checked from inside the server namespace: Sluice is not running yet.
  if ip netns exec "$srv_ns" curl -s --max-time 1 -o /dev/null "$base_url/index.html"; then
    up=1
    break
  fi
  sleep 0.2
done
((up == 1)) || { say "HTTP server did not start"; cat "$work/server.log"; exit 1; }
say "server side: HTTP on $base_url (files + /v1/chat/completions), UDP sink on ${server_ip}:9999"

# ------------------------------------------------------------------ sluice
log="$work/sluice.log"
say "starting sluice in $mid_ns (embedded default config): ip netns exec $mid_ns build/src/sluice --stats-interval 1"
ip netns exec "$mid_ns" "$sluice" --stats-interval 1 >"$log" 2>&1 &
sluice_pid=$!
# Show its output live; tail exits by itself shortly after sluice does.
tail -n +1 -f --pid "$sluice_pid" "$log" &
tail_pid=$!

ready=0
for _ in $(seq 1 300); do # 30 s
  if grep -q '^sluice: ready' "$log"; then
    ready=1
    break
  fi
  kill -0 "$sluice_pid" 2>/dev/null || break
  sleep 0.1
done
if ((ready == 0)); then
  say "sluice did not become ready within 30 s"
  exit 1
fi

# ------------------------------------------------------------------ traffic
# Every loop has a fixed count, per-request timeouts, and stops issuing new
# requests once the shared deadline has passed.
deadline=$((SECONDS + 20))

ccurl() { ip netns exec "$cli_ns" curl -sS --connect-timeout 3 --max-time 8 "$@"; }

# record FILE KIND CODE: one line per request; 2xx counts as ok.
record() { echo "$2 $3" >>"$1"; }

gets_loop() { # small and JSON-ish objects, one connection each
  local out="$res/get_small" paths=(index.html small.txt v1/models.json) i code
  for i in $(seq 1 40); do
    ((SECONDS < deadline)) || break
    code=$(ccurl -o /dev/null -w '%{http_code}' "$base_url/${paths[i % 3]}" 2>/dev/null) || true
    record "$out" GET "${code:-000}"
    sleep 0.3
  done
}

bulk_loop() { # 64 KB and 1 MB downloads, checked byte for byte
  local out="$res/get_bulk" names=(medium.bin large.bin) i name code
  for i in $(seq 1 16); do
    ((SECONDS < deadline)) || break
    name=${names[i % 2]}
    code=$(ccurl -o "$work/dl.$name" -w '%{http_code}' "$base_url/$name" 2>/dev/null) || true
    if [[ ${code:-000} == 200 ]] && ! cmp -s "$work/dl.$name" "$www/$name"; then
      code=corrupt
    fi
    record "$out" GET "${code:-000}"
    sleep 0.8
  done
}

posts_loop() { # chat completions with JSON bodies of growing size; every third chunked
  local out="$res/post" i words body code extra
  for i in $(seq 1 30); do
    ((SECONDS < deadline)) || break
    words=$(printf 'token%d ' $(seq 1 $((i * 40))))
    body=$(printf '{"model":"demo-small","messages":[{"role":"user","content":"request %d: %s"}],"max_tokens":16}' "$i" "$words")
    extra=()
    ((i % 3 != 0)) || extra=(-H 'Transfer-Encoding: chunked')
    code=$(ccurl -o /dev/null -w '%{http_code}' -H 'Expect:' \
      -H 'Content-Type: application/json' -H "Authorization: Bearer sk-demo-$((i % 4))" \
      "${extra[@]}" --data-binary "$body" "$base_url/v1/chat/completions" 2>/dev/null) || true
    record "$out" POST "${code:-000}"
    sleep 0.5
  done
}

keepalive_loop() { # several requests per connection (one curl, many URLs)
  local out="$res/keepalive" i args line p
  for i in $(seq 1 8); do
    ((SECONDS < deadline)) || break
    args=()
    for p in index.html small.txt v1/models.json medium.bin small.txt; do
      args+=(-o /dev/null "$base_url/$p")
    done
    # One line per transfer: status and whether it opened a new connection.
    ccurl -w '%{http_code} %{num_connects}\n' "${args[@]}" 2>/dev/null >"$work/ka.$i" || true
    while read -r line; do record "$out" KA "$line"; done <"$work/ka.$i"
    sleep 2
  done
}

udp_loop() {
  local i
  for i in $(seq 1 20); do
    ((SECONDS < deadline)) || break
    echo 1 >>"$res/udp_sent"
    # bash's /dev/udp: one datagram per redirection, from the client namespace.
    ip netns exec "$cli_ns" timeout 2 bash -c \
      "echo 'sluice demo datagram $i' >/dev/udp/${server_ip}/9999" 2>/dev/null || true
    sleep 0.7
  done
}

ping_run() {
  bash tools/topology.sh ping "$cli_ns" "$server_ip" 10 >"$res/ping" 2>&1 || true
}

# Requests Sluice must refuse: each is sent raw over its own connection; Sluice answers it
# itself (400 with the OpenAI error shape) and resets the server side before the request can
# complete there, so no 2xx answer comes back.
refused_run() {
  sleep 3
  ip netns exec "$cli_ns" "$py" - "$server_ip" >"$res/refused" 2>&1 <<'PY' || true
import socket, sys
host = sys.argv[1]
body_dup = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"messages":[]}'
body_esc = b'{"model":"m","\\u006dessages":[{"role":"user","content":"hi"}]}'
def post(body, extra=b""):
    return (b"POST /v1/chat/completions HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Content-Type: application/json\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
cases = [
    ("request smuggling (Content-Length + Transfer-Encoding)",
     b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("duplicate JSON key", post(body_dup)),
    ("escaped JSON key", post(body_esc)),
]
for name, data in cases:
    s = socket.create_connection((host, 8000), timeout=3)
    s.settimeout(3)
    outcome = "refused"
    try:
        s.sendall(data)
        reply = s.recv(100)
        if reply.startswith(b"HTTP/1.1 2"):
            outcome = "ANSWERED"
    except (ConnectionResetError, socket.timeout, OSError):
        pass
    s.close()
    print(f"{outcome} {name}")
PY
}

say "traffic: GET loop, 64K/1M download loop, JSON POST loop, keep-alive loop, UDP, ping, 3 evasive requests (~20 s)"
traffic_pids=()
for fn in gets_loop bulk_loop posts_loop keepalive_loop udp_loop ping_run refused_run; do
  "$fn" &
  traffic_pids+=("$!")
  bg_pids+=("$!")
done
for pid in "${traffic_pids[@]}"; do wait "$pid" || true; done
say "traffic done"

# Let the last FIN/ACK exchanges pass through before stopping.
sleep 1.5

# ------------------------------------------------------------------ stop sluice
say "stopping sluice (SIGINT)"
kill -INT "$sluice_pid" 2>/dev/null || true
stopped=0
for _ in $(seq 1 200); do # 20 s
  if ! kill -0 "$sluice_pid" 2>/dev/null; then
    stopped=1
    break
  fi
  sleep 0.1
done
sluice_rc=0
if ((stopped == 0)); then
  say "sluice did not stop within 20 s of SIGINT; killing it"
  kill -KILL "$sluice_pid" 2>/dev/null || true
fi
wait "$sluice_pid" || sluice_rc=$?
sluice_pid=""
wait "$tail_pid" 2>/dev/null || true # its last lines (the summary) are out
tail_pid=""

# ------------------------------------------------------------------ recap
# count FILE: "<ok> <total>" where ok means a 2xx status.
count() {
  [[ -f $1 ]] || { echo "0 0"; return; }
  awk '{ n++ } $2 ~ /^2[0-9][0-9]$/ { ok++ } END { printf "%d %d\n", ok, n }' "$1"
}
failed_total=0
report() { # report LABEL FILE
  local ok total
  read -r ok total < <(count "$2")
  failed_total=$((failed_total + total - ok))
  say "  $(printf '%-34s' "$1") $ok/$total ok"
}

echo
say "recap of the traffic mix:"
report "GET small/JSON (1 per connection)" "$res/get_small"
report "GET 64 KB / 1 MB (compared)" "$res/get_bulk"
report "POST /v1/chat/completions" "$res/post"
report "keep-alive transfers" "$res/keepalive"
connects=$(awk '{ c += $3 } END { print c + 0 }' "$res/keepalive" 2>/dev/null || echo 0)
say "  $(printf '%-34s' "  ...over connections") $connects"
udp_sent=$(wc -l <"$res/udp_sent" 2>/dev/null || echo 0)
say "  $(printf '%-34s' "UDP datagrams received") $(cat "$res/udp_received")/$udp_sent"
say "  $(printf '%-34s' "ICMP") $(sed -n 's/^ping: //p' "$res/ping" | tail -n 1)"
refused=$(grep -c '^refused ' "$res/refused" 2>/dev/null || true)
say "  $(printf '%-34s' "evasive requests refused") ${refused:-0}/3 (answered by Sluice with its own 400, see requests_* above)"

echo
if ((sluice_rc != 0)); then
  say "FAILED: sluice exited with code $sluice_rc"
  exit 1
fi
leak=$(awk '$1 == "mbufs_in_use_at_exit" && NF == 2 { v = $2 } END { print v }' "$log")
if [[ -n $leak && $leak != 0 ]]; then
  say "FAILED: sluice exited with $leak mbufs still in use"
  exit 1
fi
if ((failed_total > 0)); then
  say "note: $failed_total request(s) did not get a 2xx answer (see recap)"
fi
say "sluice stopped cleanly (exit 0); done"
