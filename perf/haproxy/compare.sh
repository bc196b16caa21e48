#!/usr/bin/env bash
# Sluice next to HAProxy on the same request mix: CPU-microseconds per request, requests/s and the
# statuses each side answers. HAProxy (the Debian package) does the closest equivalent admission
# it can: API key → tier from a map, per-key request-rate stick tables per tier, and the shipped
# prompt rules it can express as regex denies on the raw body. perf/haproxy/README.md says what
# each side does and does not do.
#
# Steps: dump the mix with sluice-bench → generate the HAProxy configs, key map and wrk's request
# file (compare.py prepare) → start the upstream and the admission HAProxy on 127.0.0.1 → send
# the rules' own examples through it (compare.py probe) → one pass of the mix on one connection,
# statuses per request kind → the measured wrk run, with the admission HAProxy's CPU time and
# request count read before and after → the same run without the rule denies → stop HAProxy →
# sluice-bench on the same profile → the table (and JSON with --json).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() {
  cat <<EOF
usage: perf/haproxy/compare.sh [options]

  --bench PATH          sluice-bench (default: build/perf/sluice-bench)
  --profile PATH        request-mix profile (default: perf/profiles/chat-1k.yaml)
  --mix FILE            use this dump of the mix (sluice-bench --dump-requests) instead of
                        dumping one
  --rules DIR           rule files to carry over (default: rules/)
  --seconds S           length of each side's measured run (default: 10)
  --quick               2-second runs (for the test)
  --connections N       wrk's keep-alive connections (default: 4)
  --close-every N       close the connection after every Nth request (default: never; sluice-bench
                        opens a fresh flow per session of 1-4 requests)
  --port P              the admission HAProxy's port on 127.0.0.1 (default: 18081)
  --upstream-port P     the upstream's port on 127.0.0.1 (default: 18080)
  --haproxy-only        measure HAProxy only (no sluice-bench run; needs --mix without a bench)
  --json FILE           also write the results as JSON
  --keep DIR            generate configs, logs and results in DIR and keep them
  --help                this text

Needs the Debian packages haproxy, wrk, python3-yaml.
EOF
}

bench=$repo/build/perf/sluice-bench
profile=$repo/perf/profiles/chat-1k.yaml
mix=""
rules=$repo/rules
seconds=10
verify_limit=10
connections=4
close_every=0
port=18081
upstream_port=18080
haproxy_only=0
json_out=""
keep=""
while (($# > 0)); do
  case $1 in
    --bench) bench=$(realpath -m "$2"); shift ;;
    --profile) profile=$(realpath -m "$2"); shift ;;
    --mix) mix=$(realpath -m "$2"); shift ;;
    --rules) rules=$(realpath -m "$2"); shift ;;
    --seconds) seconds=$2; shift ;;
    --quick) seconds=2 verify_limit=3 ;;
    --connections) connections=$2; shift ;;
    --close-every) close_every=$2; shift ;;
    --port) port=$2; shift ;;
    --upstream-port) upstream_port=$2; shift ;;
    --haproxy-only) haproxy_only=1 ;;
    --json) json_out=$(realpath -m "$2"); shift ;;
    --keep) keep=$(realpath -m "$2"); shift ;;
    --help | -h) usage; exit 0 ;;
    *) echo "compare.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
usage_error() { echo "compare.sh: $*" >&2; exit 2; }
[[ $seconds =~ ^[1-9][0-9]*$ ]] || usage_error "--seconds: expected whole seconds ≥ 1, got '$seconds'"
[[ $connections =~ ^[1-9][0-9]*$ ]] || usage_error "--connections: expected a count ≥ 1, got '$connections'"
[[ $close_every =~ ^[0-9]+$ ]] || usage_error "--close-every: expected a count, got '$close_every'"
for value in "$port" "$upstream_port"; do
  if ! [[ $value =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then usage_error "bad port '$value'"; fi
done

missing=()
command -v haproxy >/dev/null || missing+=("haproxy (Debian package haproxy)")
command -v wrk >/dev/null || missing+=("wrk (Debian package wrk)")
[[ -x /usr/bin/python3 ]] || missing+=("/usr/bin/python3 (Debian package python3)")
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=("PyYAML (Debian package python3-yaml)")
if ((${#missing[@]} > 0)); then
  printf 'compare.sh: missing %s\n' "${missing[@]}" >&2
  echo "compare.sh: install with: apt-get install haproxy wrk python3-yaml" >&2
  exit 2
fi

[[ -z $mix || -f $mix ]] || usage_error "--mix $mix: no such file"
if [[ -z $mix || $haproxy_only -eq 0 ]] && [[ ! -x $bench ]]; then
  usage_error "$bench: no sluice-bench there (build it or give --bench;" \
    "--mix FILE --haproxy-only measures HAProxy alone)"
fi
cd "$repo" # sluice-bench's profiles may name files relative to the repository root
if [[ -n $keep ]]; then
  mkdir -p "$keep"
  work=$keep
else
  work=$(mktemp -d /tmp/sluice-haproxy.XXXXXX)
fi

started=() # pids of the HAProxy instances running, stopped on exit whatever happens
all_started=()
# shellcheck source=tools/lib/process.sh
source "$repo/tools/lib/process.sh" # stop_pid: TERM, a bounded wait, then KILL
cleanup() {
  local pid
  for pid in "${started[@]}"; do stop_pid "$pid"; done
  started=()
  [[ -n $keep ]] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for_port() { # port pid log: up to 5 s for a listener, failing early if the process died
  for _ in $(seq 1 50); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || break
    sleep 0.1
  done
  echo "compare.sh: nothing listens on 127.0.0.1:$1; $3:" >&2
  cat "$3" >&2
  exit 1
}
start_haproxy() { # name port → pid in $started; -db: stays in the foreground, one process
  haproxy -db -f "$work/$1.cfg" >"$work/$1.log" 2>&1 &
  started+=("$!")
  all_started+=("$!")
  wait_for_port "$2" "$!" "$work/$1.log"
}

# ---- the mix and the generated files ---------------------------------------------------------
if [[ -n $mix ]]; then
  cp "$mix" "$work/mix.jsonl"
else
  echo "dumping the request mix: $bench --profile $profile --dump-requests"
  timeout 120 "$bench" --profile "$profile" --dump-requests "$work/mix.jsonl" \
    >"$work/dump.log" 2>&1 ||
    { echo "compare.sh: $bench --dump-requests failed:" >&2; cat "$work/dump.log" >&2; exit 1; }
fi
for value in "$port" "$upstream_port"; do
  if port_open "$value"; then
    echo "compare.sh: 127.0.0.1:$value is in use (choose others with --port / --upstream-port)" >&2
    exit 1
  fi
done
/usr/bin/python3 "$here/compare.py" prepare --mix "$work/mix.jsonl" --rules "$rules" \
  --work "$work" --port "$port" --upstream-port "$upstream_port" --close-every "$close_every"
for config in admission admission-without-rules upstream; do
  haproxy -c -q -f "$work/$config.cfg"
done

# ---- HAProxy ---------------------------------------------------------------------------------
url="http://127.0.0.1:$port/v1/chat/completions"
run_wrk() { # mode connections seconds out
  timeout --kill-after=5 $(($3 + 30)) wrk -t 1 -c "$2" -d "${3}s" --timeout 5s -s "$here/mix.lua" \
    "$url" -- "$work/requests.bin" "$1" >"$4" 2>&1 ||
    { echo "compare.sh: wrk failed:" >&2; cat "$4" >&2; exit 1; }
}
snapshot() { # pid out
  /usr/bin/python3 "$here/compare.py" snapshot --pid "$1" --socket "$work/admission.sock" --out "$2"
}
measure() { # config: a wrk run of the mix, the admission HAProxy's CPU time and counters around it
  local pid=${started[-1]}
  echo "measuring HAProxy ($1): wrk, 1 thread, $connections connections, ${seconds} s"
  snapshot "$pid" "$work/$1.before.json"
  run_wrk load "$connections" "$seconds" "$work/$1.load.out"
  snapshot "$pid" "$work/$1.after.json"
  stop_pid "$pid"
  unset 'started[-1]'
}

start_haproxy upstream "$upstream_port"
start_haproxy admission "$port"
echo
timeout 120 /usr/bin/python3 "$here/compare.py" probe --work "$work" --port "$port"
echo
# wrk runs for its whole -d even when mix.lua stops after one pass: size it to the mix (a pass
# runs at ≥ 1,000 requests/s on one connection here), at most 10 s, or 3 s with --quick; what
# the pass has not reached by then goes untallied.
mix_requests=$(($(wc -l <"$work/mix.jsonl") - 1))
verify_seconds=$((mix_requests / 1000 + 1))
((verify_seconds <= verify_limit)) || verify_seconds=$verify_limit
echo "one pass over the mix on one connection (${verify_seconds} s at most):" \
  "statuses per request kind; also the warm-up"
run_wrk verify 1 "$verify_seconds" "$work/verify.out"
measure admission

# The same HAProxy without the rule denies, to show what the regexes cost.
start_haproxy admission-without-rules "$port"
run_wrk load "$connections" 1 "$work/warm-up.out"
measure admission-without-rules
stop_pid "${started[0]}"
started=()

# ---- Sluice ----------------------------------------------------------------------------------
sluice_args=()
if ((haproxy_only == 0)); then
  echo "measuring Sluice: $bench --profile $profile --workers 1 --seconds $seconds"
  timeout --kill-after=5 $((seconds + 120)) "$bench" --profile "$profile" --workers 1 \
    --seconds "$seconds" --json --no-breakdown >"$work/sluice.json" 2>"$work/sluice.log" ||
    { echo "compare.sh: sluice-bench failed:" >&2; cat "$work/sluice.log" >&2; exit 1; }
  sluice_args=(--sluice "$work/sluice.json" --reasons "$repo/include/sluice/request_reason.hpp")
fi

json_args=()
[[ -z $json_out ]] || json_args=(--json "$json_out")
/usr/bin/python3 "$here/compare.py" report --work "$work" --seconds "$seconds" \
  --connections "$connections" --close-every "$close_every" --pids "${all_started[*]}" \
  "${sluice_args[@]}" "${json_args[@]}"
[[ -z $keep ]] || echo "kept: $work"
