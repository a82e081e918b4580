#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: the golden packets of the DHCP tests
(a DISCOVER with client id, host name and PRL; relayed REQUESTs with option 82 and an FQDN; a
RELEASE, DECLINE and INFORM), DORA sequences for the engine, journals and snapshots in the
journal's own format, and the shipped configs. Run it again after changing the formats."""
import glob, os, struct, zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")

def packet(opts, mac=b"\x52\x54\x00\x12\x34\x56", xid=0xdeadbeef, giaddr=b"\0\0\0\0",
           ciaddr=b"\0\0\0\0", flags=0x8000):
    p = bytearray(240)
    p[0:4] = bytes([1, 1, 6, 0])
    p[4:8] = struct.pack(">I", xid)
    p[8:10] = struct.pack(">H", 3)
    p[10:12] = struct.pack(">H", flags)
    p[12:16] = ciaddr
    p[24:28] = giaddr
    p[28:28 + len(mac)] = mac
    p[236:240] = bytes([99, 130, 83, 99])
    p += bytes(opts) + b"\xff"
    p += bytes(max(0, 300 - len(p)))
    return bytes(p)

CID = [61, 7, 1, 0x52, 0x54, 0, 0x12, 0x34, 0x56]
PRL = [55, 4, 1, 3, 6, 15]
discover = packet([53, 1, 1] + CID + [12, 4] + list(b"host") + PRL + [57, 2, 5, 220, 50, 4, 10, 0, 0, 7])
request = packet([53, 1, 3, 50, 4, 10, 0, 0, 10, 54, 4, 10, 0, 0, 1] + CID + [12, 4] + list(b"host") + PRL)
relayed = packet([53, 1, 3, 54, 4, 10, 0, 0, 1, 51, 4, 0, 0, 0x0e, 0x10,
                  81, 6, 1, 0, 0] + list(b"abc") + [60, 3] + list(b"MSF") + [82, 4, 1, 2, 0xaa, 0xbb],
                 giaddr=bytes([10, 9, 0, 1]))
renew = packet([53, 1, 3] + PRL, ciaddr=bytes([10, 0, 0, 10]), flags=0)
release = packet([53, 1, 7, 54, 4, 10, 0, 0, 1], ciaddr=bytes([10, 0, 0, 10]), flags=0)
decline = packet([53, 1, 4, 50, 4, 10, 0, 0, 11, 54, 4, 10, 0, 0, 1])
inform = packet([53, 1, 8] + PRL, ciaddr=bytes([10, 0, 0, 99]), flags=0)
rapid = packet([53, 1, 1, 80, 0, 60, 7] + list(b"android") + PRL, mac=b"\x02\0\0\0\0\x09")
reserved_cid = packet([53, 1, 1, 61, 7, 1, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff] + PRL, mac=b"\xaa\xbb\xcc\xdd\xee\xff")

def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

for name, p in [("discover", discover), ("request", request), ("relayed", relayed),
                ("renew", renew), ("release", release), ("decline", decline),
                ("inform", inform), ("rapid", rapid), ("reserved_cid", reserved_cid)]:
    write("dhcp_decode", name, p)

def rec(step, iface, p):
    return bytes([step, iface]) + struct.pack(">H", len(p)) + p

write("dhcp_engine", "dora", rec(0, 0, discover) + rec(1, 0, request) + rec(60, 0, renew)
      + rec(1, 0, release))
write("dhcp_engine", "decline_expire", rec(0, 0, discover) + rec(1, 0, decline) + rec(255, 0, b"")
      + rec(0, 0, discover))
write("dhcp_engine", "relay_inform_rapid", rec(0, 1, relayed) + rec(2, 0, inform) + rec(3, 0, rapid)
      + rec(0, 0, reserved_cid) + rec(255, 0, b"") + rec(0, 1, relayed))

def line(payload):
    return b"%08x %s\n" % (zlib.crc32(payload.encode()) & 0xffffffff, payload.encode())

journal = (line("H leasedns-journal 1 gen=2")
           + line("U 10.0.0.10 1700000600 b 1 52:54:00:12:34:56 01525400123456 host")
           + line("U 10.0.0.11 1700000900 d 1 - - -")
           + line("U 10.0.0.12 1700003600 b 1 02:00:00:00:00:05 - lap%2Dtop")
           + line("R 10.0.0.11 released"))
snapshot = (line("H leasedns-snapshot 1 gen=1")
            + line("U 10.0.0.20 1700007200 b 1 02:00:00:00:00:20 - phone"))
torn = journal + line("U 10.0.0.13 1700000600 b 1 02:00:00:00:00:13 - x")[:-7]
zeros = journal + bytes(64) + line("U 10.0.0.14 1700000600 b 1 02:00:00:00:00:14 - after")
for name, snap, j in [("journal", b"", journal), ("snapshot_and_journal", snapshot, journal),
                      ("torn_tail", b"", torn), ("zeros_then_record", snapshot, zeros)]:
    write("journal_open", name, struct.pack(">H", len(snap)) + snap + j)

for conf in sorted(glob.glob(os.path.join(HERE, "..", "conf", "*.toml"))):
    with open(conf, "rb") as f:
        write("config_parse", os.path.basename(conf), f.read())


# RFC 2136 UPDATEs for dns_update: [key index][message]. Zone "lan." SOA IN; then updates.
def dname(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"

def rr(name, rtype, rclass, ttl, rdata):
    return dname(name) + struct.pack(">HHIH", rtype, rclass, ttl, len(rdata)) + rdata

def update(prereqs, updates, msg_id=0x1234):
    head = struct.pack(">HHHHHH", msg_id, 0x2800, 1, len(prereqs), len(updates), 0)
    zone = dname("lan.") + struct.pack(">HH", 6, 1)
    return head + zone + b"".join(prereqs) + b"".join(updates)

A, TXT, ANY_TYPE, IN, ANY, NONE = 1, 16, 255, 1, 255, 254
txt = rr("_acme-challenge.www.lan.", TXT, IN, 60, b"\x05token")
add_a = rr("home.lan.", A, IN, 300, bytes([10, 0, 0, 42]))
take_router = rr("router.lan.", A, IN, 300, bytes([10, 0, 0, 66]))
del_rrset = rr("home.lan.", A, ANY, 0, b"")
del_name = rr("home.lan.", ANY_TYPE, ANY, 0, b"")
del_rr = rr("home.lan.", A, NONE, 0, bytes([10, 0, 0, 42]))
exists = rr("home.lan.", ANY_TYPE, ANY, 0, b"")
not_exists = rr("nothere.lan.", ANY_TYPE, NONE, 0, b"")
for name, key, msg in [("acme_txt", 0, update([], [txt])),
                       ("home_add", 1, update([not_exists], [add_a])),
                       ("home_delete", 1, update([exists], [del_rr, del_rrset, del_name])),
                       ("take_router", 1, update([], [take_router])),
                       ("wrong_key_policy", 0, update([], [add_a]))]:
    write("dns_update", name, bytes([key]) + msg)


# DNS queries and upstream answers for dns_fast: [mode][message].
def query(name, qtype, edns=None, do=False, msg_id=0x4242, flags=0x0100):
    head = struct.pack(">HHHHHH", msg_id, flags, 1, 0, 0, 1 if edns else 0)
    body = dname(name) + struct.pack(">HH", qtype, 1)
    if edns:
        body += b"\0" + struct.pack(">HHIH", 41, edns, 0x8000 if do else 0, 0)
    return head + body

PTR, SRV, SOA, AAAA, CNAME = 12, 33, 6, 28, 5
for name, q in [("lease_a", query("laptop.lan.", A)), ("reserved_a", query("NAS.lan.", A, 1232, True)),
                ("static_srv", query("_ipp._tcp.lan.", SRV)), ("ent", query("_tcp.lan.", A)),
                ("ptr", query("100.0.0.10.in-addr.arpa.", PTR)), ("cname", query("www.lan.", A, 4096)),
                ("soa", query("lan.", SOA)), ("nx", query("nothere.lan.", AAAA)),
                ("outside", query("example.com.", A, 1232))]:
    write("dns_fast", name, bytes([0]) + q)

def response(name, qtype, answers, authority=b"", nauth=0, rcode=0):
    head = struct.pack(">HHHHHH", 0x4242, 0x8180 | rcode, 1, len(answers), nauth, 0)
    return head + dname(name) + struct.pack(">HH", qtype, 1) + b"".join(answers) + authority

ex_a = response("example.com.", A, [rr("example.com.", A, IN, 300, bytes([192, 0, 2, 1])),
                                    rr("example.com.", A, IN, 60, bytes([192, 0, 2, 2]))])
soa_rdata = dname("ns.example.com.") + dname("host.example.com.") + struct.pack(">IIIII", 1, 2, 3, 4, 30)
ex_nx = response("none.example.com.", A, [], rr("example.com.", SOA, IN, 600, soa_rdata), 1, 3)
write("dns_fast", "cached_a", bytes([1 | (5 << 1)]) + ex_a)
write("dns_fast", "cached_nxdomain", bytes([1 | (10 << 1)]) + ex_nx)

# Zone transfers for dns_xfr: [mode][query]; mode bit 0 from the secondary, bit 1 signed.
AXFR, IXFR = 252, 251
def ixfr(zone, serial):
    head = struct.pack(">HHHHHH", 0x5151, 0, 1, 0, 1, 0)
    soa = dname("lan.") + dname("hostmaster.lan.") + struct.pack(">IIIII", serial, 3600, 600, 86400, 300)
    return head + dname(zone) + struct.pack(">HH", IXFR, 1) + rr(zone, SOA, IN, 0, soa)
for name, mode, q in [("axfr_by_address", 1, query("lan.", AXFR, flags=0)),
                      ("axfr_signed", 2, query("lan.", AXFR, flags=0)),
                      ("axfr_reverse", 1, query("0.0.10.in-addr.arpa.", AXFR, flags=0)),
                      ("axfr_refused", 0, query("lan.", AXFR, flags=0)),
                      ("ixfr_old", 1, ixfr("lan.", 1)),
                      ("ixfr_current", 3, ixfr("lan.", 4000000000))]:
    write("dns_xfr", name, bytes([mode]) + q)
