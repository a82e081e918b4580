#!/usr/bin/env python3
"""Helpers for netns-scripts/bench.sh: parse perfdhcp and dnsperf output, take medians, run a
small relayed DHCP client that leases named addresses (for the DNS benchmark), and print the
results table. Standard library only; no network access beyond the addresses it is given."""

import argparse
import random
import re
import select
import socket
import statistics
import struct
import sys
import time


def parse_perfdhcp(path, period, rate):
    """Print: discovers_sent acks_received drop_pct achieved_send_rate."""
    text = open(path, encoding="utf-8", errors="replace").read()
    sent = [int(x) for x in re.findall(r"^sent packets: (\d+)", text, re.M)]
    recv = [int(x) for x in re.findall(r"^received packets: (\d+)", text, re.M)]
    if len(sent) < 2 or len(recv) < 2:
        # No statistics: perfdhcp failed (or no answer at all to DISCOVER).
        d = sent[0] if sent else 0
        print(f"{d} 0 100.000 {d / period if period else 0:.1f}")
        return
    discovers, acks = sent[0], recv[1]
    drop = 100.0 * (1 - acks / discovers) if discovers else 100.0
    print(f"{discovers} {acks} {max(drop, 0.0):.3f} {discovers / period:.1f}")


def parse_dnsperf(path):
    """Print: qps avg_ms noerror_pct lost_pct."""
    text = open(path, encoding="utf-8", errors="replace").read()
    qps = re.search(r"Queries per second:\s+([\d.]+)", text)
    avg = re.search(r"Average Latency \(s\):\s+([\d.]+)", text)
    sent = re.search(r"Queries sent:\s+(\d+)", text)
    lost = re.search(r"Queries lost:\s+(\d+)", text)
    noerr = re.search(r"NOERROR (\d+) \(([\d.]+)%\)", text)
    s = int(sent.group(1)) if sent else 0
    print(
        f"{float(qps.group(1)) if qps else 0:.1f} "
        f"{1000 * float(avg.group(1)) if avg else 0:.3f} "
        f"{float(noerr.group(2)) if noerr else 0:.2f} "
        f"{100 * int(lost.group(1)) / s if lost and s else 0:.2f}"
    )


def p99_dnsperf_verbose(path):
    """dnsperf -v prints one line per answered query ending with its latency in seconds."""
    lat = []
    pat = re.compile(r"^> \S+ .* ([\d.]+)$")
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = pat.match(line.rstrip("\n"))
            if m:
                lat.append(float(m.group(1)))
    if not lat:
        print("0 0")
        return
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    print(f"{1000 * p99:.3f} {len(lat)}")


def median(values):
    nums = [float(v) for v in values if v not in ("", "nan")]
    print(f"{statistics.median(nums):.6g}" if nums else "nan")


# ---- a relayed DHCP client that leases named addresses ---------------------------------

def _packet(msg_type, xid, mac, giaddr, name, requested=None, server_id=None):
    fixed = struct.pack(
        "!BBBBIHH4s4s4s4s16s64s128s",
        1, 1, 6, 1, xid, 0, 0,
        b"\0" * 4, b"\0" * 4, b"\0" * 4, socket.inet_aton(giaddr),
        mac + b"\0" * 10, b"", b"",
    )
    opts = bytes([53, 1, msg_type])
    if requested:
        opts += bytes([50, 4]) + socket.inet_aton(requested)
    if server_id:
        opts += bytes([54, 4]) + socket.inet_aton(server_id)
    nb = name.encode()
    opts += bytes([12, len(nb)]) + nb + bytes([55, 3, 1, 3, 6, 255])
    return fixed + b"\x63\x82\x53\x63" + opts


def _parse_reply(data):
    if len(data) < 240 or data[236:240] != b"\x63\x82\x53\x63":
        return None
    xid = struct.unpack("!I", data[4:8])[0]
    yiaddr = socket.inet_ntoa(data[16:20])
    opts, i, = {}, 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        if i + 1 >= len(data):
            break
        code, ln = data[i], data[i + 1]
        opts[code] = data[i + 2 : i + 2 + ln]
        i += 2 + ln
    mtype = opts.get(53, b"\0")[0]
    sid = socket.inet_ntoa(opts[54]) if 54 in opts and len(opts[54]) == 4 else None
    return xid, mtype, yiaddr, sid


def dora(server, giaddr, count, prefix, domain, out, window, deadline_s):
    """Lease `count` addresses with host names prefix0..prefixN-1 through a relay address;
    write one dnsperf query line per name that got an ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((giaddr, 67))
    base = random.randrange(1 << 24)
    state = {}  # xid -> [index, phase, sent_at, tries]
    next_i, acked = 0, []
    deadline = time.monotonic() + deadline_s

    def send(xid, st, requested=None, sid=None):
        i = st[0]
        mac = b"\x02\xbe" + struct.pack("!I", (base + i) & 0xFFFFFFFF)
        mt = 1 if st[1] == "offer" else 3
        sock.sendto(_packet(mt, xid, mac, giaddr, f"{prefix}{i}", requested, sid), (server, 67))
        st[2] = time.monotonic()

    while (next_i < count or state) and time.monotonic() < deadline:
        while next_i < count and len(state) < window:
            xid = random.randrange(1 << 32)
            state[xid] = [next_i, "offer", 0.0, 0, None, None]
            send(xid, state[xid])
            next_i += 1
        r, _, _ = select.select([sock], [], [], 0.2)
        if r:
            data, _ = sock.recvfrom(4096)
            rep = _parse_reply(data)
            if rep and rep[0] in state:
                xid, mtype, yiaddr, sid = rep
                st = state[xid]
                if mtype == 2 and st[1] == "offer":
                    st[1], st[4], st[5] = "ack", yiaddr, sid
                    send(xid, st, yiaddr, sid)
                elif mtype == 5 and st[1] == "ack":
                    acked.append(st[0])
                    del state[xid]
                elif mtype == 6:
                    del state[xid]
        now = time.monotonic()
        for xid, st in list(state.items()):
            if now - st[2] > 1.0:
                st[3] += 1
                if st[3] > 4:
                    del state[xid]
                else:
                    send(xid, st, st[4], st[5])
    with open(out, "w", encoding="utf-8") as f:
        for i in sorted(acked):
            f.write(f"{prefix}{i}.{domain} A\n")
    print(len(acked))


def probe(server, giaddr, deadline_s):
    """Send a DISCOVER every 10 ms until one is answered; print 'up' at once (so the caller
    can start the server after it) and then the wall-clock time of the first OFFER."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((giaddr, 67))
    print("up", flush=True)
    xid = random.randrange(1 << 32)
    mac = b"\x02\xbf" + struct.pack("!I", random.randrange(1 << 32))
    pkt = _packet(1, xid, mac, giaddr, "probe")
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            sock.sendto(pkt, (server, 67))
        except OSError:
            pass
        r, _, _ = select.select([sock], [], [], 0.01)
        if r:
            rep = _parse_reply(sock.recv(4096))
            if rep and rep[0] == xid and rep[1] == 2:
                print(f"{time.time():.6f}", flush=True)
                return 0
    print("timeout", flush=True)
    return 1


# ---- the results table ---------------------------------------------------------------

METRICS = [
    ("dhcp_max_rate", "DHCP: highest offered rate with <1% drops (DORA/s)", "higher"),
    ("dhcp_cpu_us", "DHCP: server CPU per DORA at {rate}/s offered (us)", "lower"),
    ("dhcp_pg_cpu_us", "DHCP: PostgreSQL CPU per DORA at {rate}/s offered (us)", "lower"),
    ("dhcp_total_cpu_us", "DHCP: server + PostgreSQL CPU per DORA at {rate}/s offered (us)", "lower"),
    ("dhcp_pg_xact_per_dora", "DHCP: PostgreSQL transactions per DORA at {rate}/s offered", "lower"),
    ("dhcp_fixed_done", "DHCP: DORA completed at {rate}/s offered (per s)", "higher"),
    ("dns_qps", "DNS: queries/s, lease names (dnsperf)", "higher"),
    ("dns_avg_ms", "DNS: average latency (ms)", "lower"),
    ("dns_p99_ms", "DNS: p99 latency (ms)", "lower"),
    ("dns_noerror_pct", "DNS: NOERROR answers (%)", "higher"),
    ("mem_leases", "Leases granted for the memory test", "higher"),
    ("mem_rss_mib", "Peak RSS with those leases (MiB, VmHWM)", "lower"),
    ("mem_restart_s", "Restart with those leases: start to first OFFER (s)", "lower"),
    ("mem_ready_log_s", "Restart with those leases: start to 'leasedns ready' (s)", "lower"),
]


def fmt(v):
    if v is None:
        return "n/a"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def table(raw, servers, notes_path):
    vals, notes = {}, {}
    for line in open(raw, encoding="utf-8"):
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            continue
        server, metric, value = parts[0], parts[1], parts[2]
        if metric.endswith("_note"):
            notes.setdefault((server, metric[:-5]), []).append(value)
            continue
        try:
            vals.setdefault((server, metric), []).append(float(value))
        except ValueError:
            pass
    servers = [s for s in servers.split(",") if s]
    head = ["metric (median)"] + servers
    others = [s for s in servers if s != "leasedns"]
    head += [f"leasedns/{s}" for s in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    rows = []
    for key, label, _ in METRICS:
        if "{rate}" not in label:
            rows.append((key, label))
            continue
        # One row per fixed rate, recorded as key@rate.
        rates = sorted({int(m.split("@")[1]) for (_, m) in vals if m.startswith(key + "@")})
        rows += [(f"{key}@{r}", label.format(rate=f"{r:,}")) for r in rates]
    for key, label in rows:
        med = {}
        for s in servers:
            v = vals.get((s, key))
            med[s] = statistics.median(v) if v else None
        if all(m is None for m in med.values()):
            continue
        cells = [label]
        for s in servers:
            c = fmt(med[s])
            if med[s] is not None and len(vals[(s, key)]) > 1:
                c += f" (n={len(vals[(s, key)])})"
            if (s, key) in notes:
                c += " [" + "; ".join(sorted(set(notes[(s, key)]))) + "]"
            cells.append(c)
        for s in others:
            a, b = med.get("leasedns"), med.get(s)
            cells.append(f"{a / b:.2f}" if a is not None and b else "n/a")
        print("| " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("perfdhcp")
    p.add_argument("file")
    p.add_argument("period", type=float)
    p.add_argument("rate", type=float)
    p = sub.add_parser("dnsperf")
    p.add_argument("file")
    p = sub.add_parser("p99")
    p.add_argument("file")
    p = sub.add_parser("median")
    p.add_argument("values", nargs="*")
    p = sub.add_parser("dora")
    p.add_argument("--server", required=True)
    p.add_argument("--giaddr", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", default="h")
    p.add_argument("--domain", default="lan")
    p.add_argument("--out", required=True)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--deadline", type=float, default=120)
    p = sub.add_parser("probe")
    p.add_argument("--server", required=True)
    p.add_argument("--giaddr", required=True)
    p.add_argument("--deadline", type=float, default=120)
    p = sub.add_parser("table")
    p.add_argument("raw")
    p.add_argument("servers")
    p.add_argument("--notes", default="")
    a = ap.parse_args()
    if a.cmd == "perfdhcp":
        parse_perfdhcp(a.file, a.period, a.rate)
    elif a.cmd == "dnsperf":
        parse_dnsperf(a.file)
    elif a.cmd == "p99":
        p99_dnsperf_verbose(a.file)
    elif a.cmd == "median":
        median(a.values)
    elif a.cmd == "dora":
        dora(a.server, a.giaddr, a.count, a.prefix, a.domain, a.out, a.window, a.deadline)
    elif a.cmd == "probe":
        return probe(a.server, a.giaddr, a.deadline)
    elif a.cmd == "table":
        table(a.raw, a.servers, a.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
