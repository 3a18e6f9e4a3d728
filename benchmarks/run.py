"""Benchmark zray against Ray, Dask distributed, ProcessPoolExecutor and ipyparallel.

    python benchmarks/run.py [--compare ray,dask,processpool,ipyparallel] [--repeats N]
                             [--quick] [--json out.json]

Every (system, repeat) runs in a fresh subprocess (bench_worker.py) that
starts a 2-CPU local cluster, runs all cases, and shuts it down, so no two
systems' clusters ever share the machine.  Within a repeat the systems run one
after another, and the order rotates from repeat to repeat, so slow drift of
the machine hits every system alike.  See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

from bench_worker import DEFAULT_CONFIG, QUICK_OVERRIDES, make_config  # noqa: E402

PEERS = ["ray", "dask", "processpool", "ipyparallel"]
DIST = {"zray": "zray", "ray": "ray", "dask": "distributed", "ipyparallel": "ipyparallel"}
IMPORT_NAME = {"zray": "zray", "ray": "ray", "dask": "distributed",
               "processpool": "concurrent.futures", "ipyparallel": "ipyparallel"}

# (case, key, label, unit, direction): direction +1 = higher is better,
# -1 = lower is better, 0 = informational (no ratio).
METRICS: list[tuple[str, str, str, str, int]] = [
    ("tiny", "tasks_per_s", "tiny tasks ({tiny_n:,})", "tasks/s", +1),
    ("rtt", "median_ms", "round trip ({rtt_n:,}) median", "ms", -1),
    ("rtt", "p99_ms", "round trip ({rtt_n:,}) p99", "ms", -1),
    ("chain", "seconds", "chain ({chain_n:,} tasks)", "s", -1),
    ("actor", "calls_per_s", "actor calls ({actor_n:,})", "calls/s", +1),
    ("actor_rtt", "median_ms", "actor round trip ({actor_rtt_n:,}) median", "ms", -1),
    ("actor_rtt", "p99_ms", "actor round trip ({actor_rtt_n:,}) p99", "ms", -1),
    ("putget", "put_gbps", "put {mb:g} MB", "GB/s", +1),
    ("putget", "get_ms", "get {mb:g} MB", "ms", -1),
    ("putget", "zero_copy", "get is zero-copy", "", 0),
    ("largearg", "ms_per_call", "large arg {mb:g} MB (med of {largearg_calls})", "ms/call", -1),
    ("start", "seconds", "start: init -> 1st result", "s", -1),
    ("memory", "cluster_rss_mb", "peak RSS, cluster procs", "MB", -1),
    ("memory", "total_rss_mb", "peak RSS, incl. driver", "MB", -1),
    ("memory", "procs", "cluster processes", "count", 0),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import psutil

        mem_gb = psutil.virtual_memory().total / 1e9
    except Exception:  # noqa: BLE001
        mem_gb = None
    git = {}
    for key, cmd in (("commit", ["git", "rev-parse", "HEAD"]),
                     ("dirty_files", ["git", "status", "--porcelain", "--", "zray"])):
        try:
            git[key] = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                      timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            git[key] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model,
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "python": sys.version,
        "python_executable": sys.executable,
        "packages": {d: version(d) for d in ("zray", "ray", "dask", "distributed", "ipyparallel",
                                             "numpy", "psutil", "pyzmq", "cloudpickle", "pyarrow",
                                             "pydantic", "tornado", "msgpack")},
        "zray_git": git,
        "loadavg_at_start": os.getloadavg(),
    }


def importable(system: str) -> bool:
    try:
        return importlib.util.find_spec(IMPORT_NAME[system]) is not None
    except (ImportError, ValueError):
        return False


# --------------------------------------------------------------------------
# running one (system, repeat)

def alive(d: dict[str, Any]) -> bool:
    import psutil

    try:
        p = psutil.Process(int(d["pid"]))
        return abs(p.create_time() - d["create_time"]) < 0.5 and p.status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, KeyError, ValueError):
        return False


def kill_recorded(procs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kill processes the benchmark subprocess recorded as its own, if still alive."""
    import psutil

    left = [d for d in procs if alive(d)]
    for d in left:
        try:
            psutil.Process(int(d["pid"])).kill()
        except psutil.Error:
            pass
    return left


def zray_state(zray_src: str | None) -> dict[str, Any]:
    """Which zray code a run used (it may be edited while the benchmark runs)."""
    if zray_src:
        commit_file = os.path.join(zray_src, "COMMIT")
        commit = open(commit_file).read().strip() if os.path.exists(commit_file) else None
        return {"src": zray_src, "commit": commit, "dirty_files": None}
    state: dict[str, Any] = {"src": ROOT}
    for key, cmd in (("commit", ["git", "rev-parse", "HEAD"]),
                     ("dirty_files", ["git", "status", "--porcelain", "--", "zray"])):
        try:
            state[key] = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                        timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            state[key] = None
    return state


def run_segment(system: str, cfg: dict[str, Any], out_path: str, err_path: str,
                zray_src: str | None) -> dict[str, Any]:
    """One benchmark process; returns what it wrote plus how it ended."""
    env = dict(os.environ)
    # The cluster's services run `python -m`, which puts the working folder first
    # on sys.path: with --zray-src they start there, or they would import ROOT's zray.
    paths = [HERE] + ([zray_src] if zray_src else []) + (
        [env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cmd = [sys.executable, os.path.join(HERE, "bench_worker.py"), "--system", system,
           "--config", json.dumps(cfg), "--out", out_path]
    budget = cfg["case_timeout_s"] * (len(cfg["cases"]) + 2) + 120
    t0 = time.monotonic()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=subprocess.STDOUT,
                                env=env, cwd=zray_src or ROOT, start_new_session=True)
        try:
            rc = proc.wait(budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
    wall = time.monotonic() - t0
    try:
        with open(out_path) as f:
            res = json.load(f)
    except (OSError, ValueError) as e:
        res = {"system": system, "cases": {}, "errors": {"worker": f"no result file: {e}"},
               "processes": {}, "running": "?"}
    res["returncode"] = rc
    res["wall_s"] = wall
    running = res.get("running")
    if rc != 0 and not res["errors"].get(running or "worker"):
        res["errors"][running or "worker"] = f"benchmark process exited with {rc} while running {running!r}"
    # What is left of the process group (everything started without its own
    # session), then whatever the worker recorded as started by its cluster.
    try:
        os.killpg(proc.pid, 0)
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGKILL)
        res["killed_process_group"] = True
    except ProcessLookupError:
        pass
    time.sleep(0.5)
    res["stragglers_killed"] = kill_recorded(list(res.get("processes", {}).values()))
    with open(err_path, errors="replace") as f:
        res["log_tail"] = f.read()[-6000:]
    return res


def run_one(system: str, cfg: dict[str, Any], workdir: str, tag: str,
            zray_src: str | None) -> dict[str, Any]:
    """All cases for one (system, repeat).  If the process dies in a case (a hang
    caught by its watchdog, a crash), the cases after it run in a fresh process
    with a fresh cluster; that process's own start time is not used."""
    merged: dict[str, Any] = {"system": system, "cases": {}, "errors": {}, "segments": [],
                              "processes": {}, "left_after_shutdown": [], "stragglers_killed": []}
    if system == "zray":
        merged["zray_code"] = zray_state(zray_src)
    todo = list(cfg["cases"])
    seg = 0
    while todo:
        res = run_segment(system, dict(cfg, cases=todo), os.path.join(workdir, f"{tag}_{seg}.json"),
                          os.path.join(workdir, f"{tag}_{seg}.log"), zray_src)
        for name, val in res.get("cases", {}).items():
            if name == "start" and seg > 0:
                merged.setdefault("restarts", []).append(val)
            else:
                merged["cases"][name] = val
        for name, err in res.get("errors", {}).items():
            if seg > 0 and name == "start":
                name = "restart"
            merged["errors"].setdefault(name, err)
        merged["processes"].update(res.get("processes", {}))
        merged["left_after_shutdown"] += res.get("left_after_shutdown", [])
        merged["stragglers_killed"] += res.get("stragglers_killed", [])
        for k in ("prepare_s", "shutdown_s", "system_info", "loadavg_before", "killed_on_timeout",
                  "killed_process_group"):
            if k in res and k not in merged:
                merged[k] = res[k]
        merged["segments"].append({k: res.get(k) for k in ("cases_asked", "returncode", "wall_s",
                                                           "running", "cpu_accounting", "log_tail")}
                                  | {"cases_asked": todo})
        attempted = set(res.get("cases", {})) | set(res.get("errors", {}))
        if res.get("running") in todo:
            attempted.add(res["running"])
        rest = [c for c in todo if c not in attempted]
        if res["returncode"] == 0 or not rest or "start" in res.get("errors", {}):
            break
        if seg == 0 and "start" not in attempted:
            break
        todo = rest
        seg += 1
    merged["returncode"] = merged["segments"][-1]["returncode"]
    merged["wall_s"] = sum(sg["wall_s"] or 0 for sg in merged["segments"])
    accs = [sg["cpu_accounting"] for sg in merged["segments"] if sg.get("cpu_accounting")]
    if accs:
        wall = sum(a["wall_s"] for a in accs)
        foreign = sum(a["foreign_cpu_s"] for a in accs)
        merged["cpu_accounting"] = {"wall_s": wall, "foreign_cpu_s": foreign,
                                    "foreign_share": foreign / (wall * (os.cpu_count() or 1))}
    merged["log_tail"] = merged["segments"][-1].get("log_tail")
    return merged


# --------------------------------------------------------------------------
# summary

def fmt(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    if a >= 10_000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def collect(runs: dict[str, list[dict[str, Any]]], case: str, key: str) -> dict[str, Any]:
    vals, state = [], None
    for r in runs:
        c = r.get("cases", {}).get(case)
        if c is None:
            continue
        if "not_supported" in c:
            state = "n/a"
            continue
        if key in c:
            vals.append(c[key])
    return {"values": vals, "state": state}


def summarize(results: dict[str, list[dict[str, Any]]], systems: list[str],
              cfg: dict[str, Any], repeats: int) -> tuple[str, dict[str, Any]]:
    mb = cfg["array_len"] * 8 / 1e6
    lines = []
    summary: dict[str, Any] = {}
    head = (f"{'case':<38} {'system':<12} {'median':>10} {'[min - max]':>23} {'n':>4} "
            f"{'zray adv.':>10}")
    lines.append("zray adv. = how many times better zray is than that system, on medians "
                 "(>1 = zray better: more tasks/s, calls/s or GB/s, or fewer ms/s/MB)")
    lines.append(head)
    lines.append("-" * len(head))
    for case, key, label, unit, direction in METRICS:
        if case != "start" and case not in cfg["cases"]:
            continue  # not asked for with --cases: no row, rather than FAILED
        title = label.format(mb=mb, **cfg) + (f" [{unit}]" if unit else "")
        zray_med = None
        for i, system in enumerate(systems):
            col = collect(results.get(system, []), case, key)
            vals, n = col["values"], len(col["values"])
            name = title if i == 0 else ""
            entry: dict[str, Any] = {"values": vals}
            if col["state"] == "n/a" and not vals:
                lines.append(f"{name:<38} {system:<12} {'n/a':>10}")
                entry["median"] = "n/a"
            elif not vals:
                lines.append(f"{name:<38} {system:<12} {'FAILED':>10}")
                entry["median"] = None
            elif isinstance(vals[0], bool):
                yes = sum(vals)
                txt = "yes" if yes == n else "no" if yes == 0 else f"{yes}/{n} yes"
                lines.append(f"{name:<38} {system:<12} {txt:>10} {'':>23} {n:>2}/{repeats}")
                entry["median"] = txt
            else:
                med = statistics.median(vals)
                f = (lambda v: f"{v:g}") if key == "procs" else fmt
                rng = f"[{f(min(vals))} - {f(max(vals))}]"
                ratio = ""
                if system == "zray":
                    zray_med = med
                elif direction and zray_med:
                    r = zray_med / med if direction > 0 else med / zray_med
                    ratio = f"{r:.2f}x"
                    entry["zray_advantage"] = r
                lines.append(f"{name:<38} {system:<12} {f(med):>10} {rng:>23} {n:>2}/{repeats} "
                             f"{ratio:>10}")
                entry.update(median=med, min=min(vals), max=max(vals))
            summary.setdefault(f"{case}.{key}", {})[system] = entry
    return "\n".join(lines), summary


# --------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", default="",
                    help="comma-separated peers to run besides zray: " + ",".join(PEERS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", dest="json_out", help="write raw results here")
    ap.add_argument("--cases", help="comma-separated subset of: " + ",".join(DEFAULT_CONFIG["cases"]))
    ap.add_argument("--case-timeout", type=float,
                    help=f"seconds before a case is declared hung (default "
                    f"{DEFAULT_CONFIG['case_timeout_s']:g}, quick {QUICK_OVERRIDES['case_timeout_s']:g})")
    ap.add_argument("--zray-src", help="benchmark the zray package found in this directory instead of "
                    "the installed one, e.g. a frozen `git archive HEAD zray | tar -x -C DIR`")
    args = ap.parse_args()

    peers = [p.strip() for p in args.compare.split(",") if p.strip()]
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        ap.error(f"unknown --compare {unknown}; choose from {PEERS}")
    given: dict[str, Any] = {"quick": args.quick}
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        bad = [c for c in wanted if c not in DEFAULT_CONFIG["cases"]]
        if bad:
            ap.error(f"unknown --cases {bad}")
        given["cases"] = [c for c in DEFAULT_CONFIG["cases"] if c in wanted]
    if args.case_timeout:
        given["case_timeout_s"] = args.case_timeout
    cfg = make_config(given)

    systems = ["zray"]
    skipped = {}
    for p in peers:
        if importable(p):
            systems.append(p)
        else:
            skipped[p] = f"{IMPORT_NAME[p]} is not importable"
            log(f"skipping {p}: {skipped[p]} (pip install -e '.[bench]')")

    info = machine_info()
    log(f"systems {systems}, {args.repeats} repeat(s), {'quick' if args.quick else 'full'} sizes; "
        f"{info['cpu_count']} CPUs, loadavg {info['loadavg_at_start']}")
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    started = datetime.datetime.now().isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix="zray_bench_") as workdir:
        for rep in range(args.repeats):
            k = rep % len(systems)
            order = systems[k:] + systems[:k]
            for system in order:
                log(f"repeat {rep + 1}/{args.repeats}: {system} ...")
                res = run_one(system, cfg, workdir, f"{system}_{rep}", args.zray_src)
                res["repeat"] = rep
                res["order"] = order
                results[system].append(res)
                errs = res.get("errors", {})
                bits = [f"{res['wall_s']:.0f}s"]
                if errs:
                    bits.append(f"ERRORS in {sorted(errs)}")
                # multiprocessing's resource tracker lives until the driver exits, by design;
                # anything else still alive after shutdown is worth a note.
                left = [d["name"] for d in res.get("left_after_shutdown", [])
                        if d["name"] != "multiprocessing.resource_tracker"]
                if left:
                    bits.append(f"{len(left)} process(es) outlived shutdown: " + ", ".join(left))
                acc = res.get("cpu_accounting")
                if acc:
                    bits.append(f"other processes used {acc['foreign_cpu_s']:.1f} CPU-s "
                                f"({acc['foreign_share']:.0%} of the machine)")
                if res.get("stragglers_killed"):
                    bits.append(f"killed {len(res['stragglers_killed'])} straggler(s)")
                log(f"  {system}: " + "; ".join(bits))
                for case, tb in errs.items():
                    log(f"  {system} {case}: " + tb.strip().splitlines()[-1][:300])

    table, summary = summarize(results, systems, cfg, args.repeats)
    cmdline = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    print()
    print(f"$ {cmdline}")
    print(f"{info['cpu_count']} CPUs ({info['cpu_model']}), Python {platform.python_version()}, "
          + ", ".join(f"{s} {info['packages'].get(DIST[s])}" for s in systems if s in DIST)
          + f"; zray at {(info['zray_git'].get('commit') or '?')[:10]}"
          + (" (+ uncommitted changes)" if info["zray_git"].get("dirty_files") else ""))
    print(table)
    errors = [(s, r["repeat"], c, tb.strip().splitlines()[-1][:200])
              for s in systems for r in results[s] for c, tb in r.get("errors", {}).items()]
    if errors:
        print("\nerrors:")
        for s, rep, c, last in errors:
            print(f"  {s} repeat {rep + 1} case {c}: {last}")
    shares = {s: [r["cpu_accounting"]["foreign_share"] for r in results[s] if r.get("cpu_accounting")]
              for s in systems}
    print("\nCPU used by processes outside the benchmark while it ran (share of the machine, "
          "per repeat): " + "; ".join(f"{s} " + " ".join(f"{x:.0%}" for x in v)
                                      for s, v in shares.items()))
    codes: dict[str, list[int]] = {}
    for r in results.get("zray", []):
        code = r.get("zray_code") or {}
        key = (code.get("commit") or "?")[:10] + (" + uncommitted changes" if code.get("dirty_files") else "")
        codes.setdefault(key, []).append(r["repeat"] + 1)
    if len(codes) > 1:
        print("\nnote: zray's code changed during the benchmark: "
              + "; ".join(f"{k} in repeat(s) {', '.join(map(str, v))}" for k, v in codes.items()))
    if skipped:
        print("\nskipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()))

    if args.json_out:
        doc = {"command": sys.argv, "cwd": os.getcwd(), "started": started,
               "finished": datetime.datetime.now().isoformat(timespec="seconds"),
               "machine": info, "config": cfg, "systems": systems, "skipped": skipped,
               "quick_overrides": QUICK_OVERRIDES if args.quick else None,
               "summary": summary, "runs": results, "table": table}
        with open(args.json_out, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        log(f"wrote {args.json_out}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
