#!/usr/bin/env python3
"""Helpers for bench/run.sh: free ports, idle-machine wait, RSS, and the results table.

  helper.py ports N                      print N free TCP ports on 127.0.0.1
  helper.py idle THRESHOLD TIMEOUT       wait until the CPU idle share over ~1 s exceeds
                                         THRESHOLD (0..1) or TIMEOUT seconds pass; print it
  helper.py rss PID                      print "VmRSS_KiB VmHWM_KiB" of PID
  helper.py table RESULTS.jsonl META.json print the markdown table and ratios
"""
import json
import socket
import sys
import time


def ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    print(" ".join(str(s.getsockname()[1]) for s in socks))
    for s in socks:
        s.close()


def cpu_times():
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    vals = [int(x) for x in parts[:8]]  # user nice system idle iowait irq softirq steal
    idle = vals[3] + vals[4]
    return idle, sum(vals)


def idle_share(window=1.0):
    i0, t0 = cpu_times()
    time.sleep(window)
    i1, t1 = cpu_times()
    return (i1 - i0) / max(1, t1 - t0)


def idle(threshold, timeout):
    deadline = time.monotonic() + timeout
    share = idle_share()
    while share < threshold and time.monotonic() < deadline:
        share = idle_share()
    print(f"{share:.3f}")


def rss(pid):
    vals = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                k, v = line.split(":", 1)
                vals[k] = int(v.split()[0])
    print(vals.get("VmRSS", 0), vals.get("VmHWM", 0))


def ms(us):
    return us / 1000.0


def table(results_path, meta_path):
    rows = [json.loads(line) for line in open(results_path) if line.strip()]
    meta = json.load(open(meta_path))
    by = {(r["variant"], r["target"], r["conns"]): r for r in rows}

    def rps(r):
        return r["requests"] / (r["duration_us"] / 1e6)

    out = []
    out.append("| variant | target | conns | req/s | p50 ms | p99 ms | p99.9 ms | max ms "
               "| non-2xx | sock err | idle before |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        errs = r["connect_err"] + r["read_err"] + r["write_err"] + r["timeout_err"]
        out.append(
            f"| {r['variant']} | {r['target']} | {r['conns']} | {rps(r):,.0f} "
            f"| {ms(r['p50_us']):.3f} | {ms(r['p99_us']):.3f} | {ms(r['p999_us']):.3f} "
            f"| {ms(r['max_us']):.1f} | {r['non2xx']} | {errs} | {r['idle'] * 100:.0f}% |")
    out.append("")
    out.append("| ratio | conns | throughput | added p50 ms | added p99 ms |")
    out.append("|---|---:|---:|---:|---:|")
    for variant, pairs in (("plain", (("direct", "gateway / direct"), ("proxy", "gateway / plain proxy"))),
                           ("stream", (("direct", "stream: gateway / direct"),))):
        for base, label in pairs:
            for c in sorted({r["conns"] for r in rows}):
                g = by.get((variant, "gateway", c))
                b = by.get((variant, base, c))
                if not g or not b:
                    continue
                out.append(
                    f"| {label} | {c} | {rps(g) / rps(b) * 100:.1f}% "
                    f"| {ms(g['p50_us'] - b['p50_us']):+.3f} | {ms(g['p99_us'] - b['p99_us']):+.3f} |")
    out.append("")
    out.append(f"Gateway RSS: idle after start {meta.get('rss_idle_kib', 0) / 1024:.1f} MiB, "
               f"after load {meta.get('rss_after_kib', 0) / 1024:.1f} MiB, "
               f"peak (VmHWM) {meta.get('rss_peak_kib', 0) / 1024:.1f} MiB.")
    if "usage_rows" in meta:
        total = sum(r["requests"] for r in rows if r["target"] in ("gateway", "lb-1proc", "lb-2proc"))
        out.append(f"Usage rows recorded: {meta['usage_rows']:,} "
                   f"(gateway requests completed in measured runs: {total:,}; "
                   f"rows also include warm-ups and requests in flight when wrk stopped).")
    if meta.get("wal_bytes"):
        out.append(f"SQLite WAL file after the runs (its high-water mark): "
                   f"{meta['wal_bytes'] / 1048576:.1f} MiB.")

    # Targets from issue 5.
    checks = []
    g1, d1 = by.get(("plain", "gateway", 1)), by.get(("plain", "direct", 1))
    g32, p32 = by.get(("plain", "gateway", 32)), by.get(("plain", "proxy", 32))
    if g1 and d1:
        a50 = ms(g1["p50_us"] - d1["p50_us"])
        a99 = ms(g1["p99_us"] - d1["p99_us"])
        checks.append(("added p50 at 1 conn <= 0.2 ms", f"{a50:.3f} ms", a50 <= 0.2))
        checks.append(("added p99 at 1 conn <= 1 ms", f"{a99:.3f} ms", a99 <= 1.0))
    if g32:
        checks.append((f"gateway >= 10,000 req/s at 32 conns ({meta.get('db', '?')})",
                       f"{rps(g32):,.0f}", rps(g32) >= 10000))
    if g32 and p32:
        share = rps(g32) / rps(p32)
        checks.append(("gateway >= 60% of plain proxy at 32 conns", f"{share * 100:.1f}%", share >= 0.6))
    if meta.get("db") == "postgres":
        sq32 = by.get(("plain", "gateway-sqlite", 32))
        if g1 and d1:
            a50 = ms(g1["p50_us"] - d1["p50_us"])
            a99 = ms(g1["p99_us"] - d1["p99_us"])
            checks.append(("issue 11: added p50 at 1 conn <= 0.5 ms", f"{a50:.3f} ms", a50 <= 0.5))
            checks.append(("issue 11: added p99 at 1 conn <= 2 ms", f"{a99:.3f} ms", a99 <= 2.0))
        if g32:
            checks.append(("issue 11: >= 8,000 req/s at 32 conns", f"{rps(g32):,.0f}", rps(g32) >= 8000))
        if g32 and sq32:
            share = rps(g32) / rps(sq32)
            checks.append(("issue 11: >= 40% of the SQLite gateway at 32 conns",
                           f"{share * 100:.1f}% of {rps(sq32):,.0f}", share >= 0.4))
        l1, l2 = by.get(("plain", "lb-1proc", 32)), by.get(("plain", "lb-2proc", 32))
        if l1 and l2:
            share = rps(l2) / rps(l1)
            checks.append(("issue 11: 2 processes >= 80% of 1 (behind nginx, 32 conns)",
                           f"{share * 100:.1f}%", share >= 0.8))
        if meta.get("spend_check"):
            checks.append(("issue 11: key spend = sum of usage rows after the run",
                           meta["spend_check"], meta["spend_check"].startswith("ok")))
    peak = meta.get("rss_peak_kib", 0) / 1024
    idle_rss = meta.get("rss_idle_kib", 0) / 1024
    checks.append(("peak RSS <= 100 MiB", f"{peak:.1f} MiB", peak <= 100))
    checks.append(("idle RSS <= 30 MiB", f"{idle_rss:.1f} MiB", idle_rss <= 30))
    out.append("")
    out.append("| target (issue 5) | measured | met |")
    out.append("|---|---:|:---:|")
    for name, val, ok in checks:
        out.append(f"| {name} | {val} | {'yes' if ok else '**no**'} |")
    print("\n".join(out))


def main():
    cmd = sys.argv[1]
    if cmd == "ports":
        ports(int(sys.argv[2]))
    elif cmd == "idle":
        idle(float(sys.argv[2]), float(sys.argv[3]))
    elif cmd == "rss":
        rss(sys.argv[2])
    elif cmd == "table":
        table(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
