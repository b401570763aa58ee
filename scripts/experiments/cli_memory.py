"""Runs `tinyalign <args>` in this process, its RSS sampled every 50 ms: each printed line gets
the time and RSS, and at the end the RSS timeline (the most in each 2 s) and the peak.

    PYTHONPATH=. python scripts/experiments/cli_memory.py adapt --data user.jsonl \\
        --out /tmp/p.safetensors --threads 2

TRIM_EVERY=0.5 also hands freed heap pages back every 0.5 s (how much of the RSS is free memory
malloc holds).
"""
import ctypes
import os
import sys
import threading
import time

from tinyalign_ros.bench.cost import rss_mb

T0 = time.time()
TRIM_EVERY = float(os.environ.get("TRIM_EVERY", "0"))



class Stamped:
    """A stream that starts each line with the seconds since the start and the RSS."""

    def __init__(self, stream):
        self.stream, self.line_start = stream, True

    def write(self, text):
        for part in text.splitlines(True):
            if self.line_start:
                self.stream.write(f"[{time.time() - T0:6.1f}s {rss_mb():5.0f}MB] ")
            self.stream.write(part)
            self.line_start = part.endswith("\n")

    def flush(self):
        self.stream.flush()


def main():
    samples, done = [], threading.Event()

    def sample():
        libc, trimmed = ctypes.CDLL("libc.so.6"), time.time()
        while not done.is_set():
            samples.append((time.time() - T0, rss_mb()))
            if TRIM_EVERY and time.time() - trimmed > TRIM_EVERY:
                libc.malloc_trim(0)
                trimmed = time.time()
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    out = sys.stdout
    sys.stdout, sys.stderr = Stamped(sys.stdout), Stamped(sys.stderr)
    from tinyalign_ros.cli import main as tinyalign
    try:
        tinyalign(sys.argv[1:])
    finally:
        done.set()
        sys.stdout = out
        buckets = {}
        for t, r in samples:
            buckets[int(t // 2) * 2] = max(buckets.get(int(t // 2) * 2, 0), r)
        print("timeline (s: most RSS in MB over the next 2 s):")
        print(" ".join(f"{t}:{r:.0f}" for t, r in sorted(buckets.items())))
        print(f"peak {max(r for _, r in samples):.0f} MB")


if __name__ == "__main__":
    main()
