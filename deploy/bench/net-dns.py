#!/usr/bin/env python3
"""DNS lookup latency: COUNT A queries for NAME sent one after another over UDP to
SERVER:53, each timed from send to the matching reply (python3 stdlib only).

    net-dns.py SERVER NAME [COUNT]   ->  "median_us p99_us min_us max_us"

Run it inside a container's network namespace (nsenter --net=/proc/PID/ns/net) so the
server sees the query coming from that container, as a lookup by a program in it would.
A reply without an A record, or no reply within a second, fails the run: a benchmark of
errors is no benchmark. 50 untimed queries warm up first.
"""
import os
import socket
import struct
import sys
import time


def query(name, qid):
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split("."))
    # id, flags (RD), 1 question, no answers/authority/additional; QTYPE A, QCLASS IN
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00" + struct.pack(">HH", 1, 1)


def main():
    server, name = sys.argv[1], sys.argv[2]
    count = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    s.connect((server, 53))
    qid = int.from_bytes(os.urandom(2), "big")
    samples = []
    for i in range(50 + count):
        qid = (qid + 1) & 0xFFFF
        msg = query(name, qid)
        t0 = time.perf_counter_ns()
        s.send(msg)
        while True:
            reply = s.recv(4096)
            if len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == qid:
                break
        t1 = time.perf_counter_ns()
        rcode = reply[3] & 0x0F
        ancount = struct.unpack(">H", reply[6:8])[0]
        if rcode != 0 or ancount == 0:
            sys.exit(f"net-dns: {name} at {server}: rcode {rcode}, {ancount} answers")
        if i >= 50:
            samples.append((t1 - t0) / 1000)
    samples.sort()
    n = len(samples)
    med = samples[n // 2] if n % 2 else (samples[n // 2 - 1] + samples[n // 2]) / 2
    p99 = samples[min(n - 1, -(-99 * n // 100) - 1)]
    print(f"{med:.0f} {p99:.0f} {samples[0]:.0f} {samples[-1]:.0f}")


if __name__ == "__main__":
    main()
