#!/usr/bin/env python3
"""Keystroke-to-echo latency through `<cli> run -it --rm busybox cat`, driven through a
real pseudo-terminal: the time from writing one key to reading its echo back, which
travels CLI -> engine -> ... -> the container's terminal and back.

Usage: keystroke.py COUNT CLI [ARGS...]   prints the median, min and max in milliseconds.
"""
import os
import pty
import select
import statistics
import subprocess
import sys
import time


def read_until(fd, want, timeout=10.0):
    deadline = time.monotonic() + timeout
    got = b""
    while want not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"never read {want!r}; got {got[-200:]!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            got += os.read(fd, 4096)
    return got


def main():
    count = int(sys.argv[1])
    cli = sys.argv[2:]
    master, slave = pty.openpty()
    proc = subprocess.Popen(cli + ["run", "-it", "--rm", "busybox", "sh"], stdin=slave,
                            stdout=slave, stderr=slave, close_fds=True, start_new_session=True)
    os.close(slave)
    try:
        os.write(master, b"PS1='$ '; stty -echoctl; cat\r")
        time.sleep(1.5)
        while select.select([master], [], [], 0.2)[0]:
            os.read(master, 65536)
        samples = []
        for i in range(count):
            key = bytes([ord("a") + i % 26])
            start = time.perf_counter()
            os.write(master, key)
            read_until(master, key)
            samples.append((time.perf_counter() - start) * 1000)
            if i % 60 == 59:
                os.write(master, b"\r")
                read_until(master, b"\n")
        os.write(master, b"\r\x04")  # end the line, then EOF for cat
        time.sleep(0.3)
        os.write(master, b"exit\r")
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    print(f"{statistics.median(samples):.2f} {min(samples):.2f} {max(samples):.2f}")


if __name__ == "__main__":
    main()
