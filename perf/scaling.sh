#!/usr/bin/env bash
# Scaling of sluice-bench over worker lcores, on a machine with the cores for it: one run per
# worker count from 1 to MAX for each profile, a JSON report and a plot per profile.
#
#   perf/scaling.sh [--max N] [--seconds S] [--out DIR] [PROFILE...]
#
# Defaults: N = online CPUs − 2 (one for the main lcore, one for the audit writer thread), at
# most 14; S = 5; DIR = scaling-results; profiles chat-1k and acks-only. Needs a build
# (`meson setup build && ninja -C build`, benchmarks on) and python3-matplotlib for the plots.
set -euo pipefail
cd "$(dirname "$0")/.."

cpus=$(nproc)
max=$((cpus > 3 ? cpus - 2 : 1))
((max <= 14)) || max=14
seconds=5
out=scaling-results
profiles=()
while (($# > 0)); do
  case $1 in
    --max) max=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --out) out=$2; shift ;;
    --help | -h) sed -n '2,10p' "$0"; exit 0 ;;
    -*) echo "scaling.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) profiles+=("$1") ;;
  esac
  shift
done
((${#profiles[@]} > 0)) || profiles=(chat-1k acks-only)
[[ -x build/perf/sluice-bench ]] || { echo "scaling.sh: build/perf/sluice-bench is missing: build first" >&2; exit 2; }
mkdir -p "$out"
lscpu >"$out/lscpu.txt" 2>&1 || true
for profile in "${profiles[@]}"; do
  echo "scaling.sh: $profile, 1-$max workers, $seconds s each"
  build/perf/sluice-bench --profile "$profile" --workers "1-$max" --seconds "$seconds" \
    --scan-seconds 1 --json --plot "$out/$profile.png" >"$out/$profile.json" 2>"$out/$profile.log"
  /usr/bin/python3 - "$out/$profile.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
print(f"{'workers':>7} {'Mpps':>8} {'k req/s':>9} {'ns/packet':>10} {'scan-only k req/s':>18}")
for r in report["runs"]:
    scan = r["scan_only_requests_per_second"]
    print(f"{r['workers']:>7} {r['mpps']:>8.3f} {r['requests_per_second'] / 1e3:>9.1f} "
          f"{r['ns_per_packet']:>10.0f} {'-' if scan is None else f'{scan / 1e3:.1f}':>18}")
PY
done
echo "scaling.sh: reports and plots in $out/"
