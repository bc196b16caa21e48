#!/usr/bin/python3
"""Draws a sluice-bench report: the per-stage breakdown and the scaling over workers.

    /usr/bin/python3 perf/plot_bench.py REPORT.json OUT.png

REPORT.json is what `sluice-bench --json` prints (sluice-bench --plot OUT.png writes it beside the
picture as OUT.png.json and calls this). Needs python3-matplotlib.
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STAGES = ["other", "classify", "flow", "tcp", "http", "identity", "limit", "canonicalise", "scan",
          "enforce"]


def main(argv):
    if len(argv) != 3:
        sys.exit("usage: plot_bench.py REPORT.json OUT.png")
    with open(argv[1], encoding="utf-8") as f:
        report = json.load(f)
    runs = report["runs"]
    fig, (stages_ax, scale_ax) = plt.subplots(1, 2, figsize=(13, 5))
    fig.suptitle(f"sluice-bench {report['profile']}: {report.get('description', '')}", fontsize=10)

    if "stages" in report:
        stages = report["stages"]["stages"]
        names = [s for s in STAGES if s in stages]
        values = [stages[s]["ns_per_packet"] for s in names]
        stages_ax.barh(names[::-1], values[::-1], color="#4c72b0")
        for y, v in enumerate(values[::-1]):
            stages_ax.text(v, y, f" {v:.0f}", va="center", fontsize=8)
        stages_ax.set_xlabel("ns per packet (shares from sluice-bench-staged, "
                             f"{report['stages']['workers']} worker(s))")
        stages_ax.set_title(f"where a packet's {runs[-1]['ns_per_packet']:.0f} ns go")
    else:
        stages_ax.text(0.5, 0.5, "no stage breakdown\n(run without --no-breakdown)",
                       ha="center", va="center", transform=stages_ax.transAxes)
        stages_ax.set_axis_off()

    workers = [r["workers"] for r in runs]
    mpps = [r["mpps"] for r in runs]
    scale_ax.plot(workers, mpps, "o-", label="Mpps", color="#4c72b0")
    ideal = [mpps[0] / workers[0] * w for w in workers]
    scale_ax.plot(workers, ideal, ":", color="#4c72b0", label="Mpps, linear from the first run")
    scale_ax.set_xlabel("worker lcores")
    scale_ax.set_ylabel("million packets per second")
    scale_ax.set_xticks(workers)
    requests = [r["requests_per_second"] / 1e3 for r in runs]
    if any(requests):
        rps_ax = scale_ax.twinx()
        rps_ax.plot(workers, requests, "s-", color="#dd8452", label="k requests/s")
        scan = [r.get("scan_only_requests_per_second") for r in runs]
        if all(s is not None for s in scan):
            rps_ax.plot(workers, [s / 1e3 for s in scan], "s--", color="#55a868",
                        label="k requests/s, scan only (bound)")
        rps_ax.set_ylabel("thousand requests per second")
        rps_ax.set_ylim(bottom=0)
        rps_ax.legend(loc="lower right", fontsize=8)
    scale_ax.set_ylim(bottom=0)
    scale_ax.legend(loc="upper left", fontsize=8)
    scale_ax.set_title("scaling over worker lcores")
    fig.tight_layout()
    fig.savefig(argv[2], dpi=110)


if __name__ == "__main__":
    main(sys.argv)
