"""Memory and time of the dense instance affinity head, against the n x n matrix it never forms.

    python benchmarks/affinity.py [--channels 128] [--detections 100] [--stuff 53]

At the paper's training size, 800x1300 (Q at stride 4: n = 200 x 325), and at a
quarter and four times as many pixels, it measures in one run:

* the head's peak memory beyond its inputs ``Q`` and ``Psi`` (so ``phi0(Q)``,
  ``phi1(Q)``, the ``C x K`` product and ``P``): each size runs in a fresh process
  that records its resident memory just before the call and its maximum after.
  Tensors of this size are ``mmap``-ed by glibc and returned on free, so the
  resident maximum is the allocation peak (to a page);
* the forward time (median of 5, all cores);
* the naive ``n x n`` float32 matrix, computed, not allocated (the paper's 15.7 GB).

Last line: ``affinity n=<n> C=<C> K=<K> efficient_peak_mb=<x> naive_gb=<y> ratio=<y*1024/x>`` at 800x1300.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from unips.models.affinity import AffinityHead

SIZES = [(100, 163), (200, 325), (400, 650)]  # Q at stride 4 of 400x650, 800x1300, 1600x2600
PAPER = (200, 325)


def _resident_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure_peak(height: int, width: int, channels: int, k: int) -> dict[str, float]:
    """Run in a fresh process: peak MB of one forward beyond its inputs."""
    head = AffinityHead(8, 8, channels).eval()
    with torch.no_grad():
        head(torch.randn(channels, 8, 8), torch.rand(k, 8, 8))  # load every kernel on a tiny input first
        q, psi = torch.randn(channels, height, width), torch.rand(k, height, width)
        before = _resident_mb()
        p = head(q, psi)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
    return {"peak_mb": peak, "p_mb": p.numel() * 4 / 2**20}


def time_forward(height: int, width: int, channels: int, k: int, repeats: int = 5) -> float:
    head = AffinityHead(8, 8, channels).eval()
    q, psi = torch.randn(channels, height, width), torch.rand(k, height, width)
    times = []
    with torch.no_grad():
        head(q, psi)
        for _ in range(repeats):
            start = time.perf_counter()
            head(q, psi)
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, default=128)
    parser.add_argument("--detections", type=int, default=100)
    parser.add_argument("--stuff", type=int, default=53)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    k = args.detections + args.stuff
    if args.child:
        print(json.dumps(measure_peak(*args.child, args.channels, k)))
        return

    print(f"C={args.channels} K={k} (D={args.detections} + N_st={args.stuff}); CPU threads {torch.get_num_threads()}")
    print(f"{'input':>11} {'n':>8} {'peak MB':>8} {'MB per 1k px':>13} {'P MB':>7} {'forward ms':>11} {'naive GB':>9}")
    rows = {}
    for height, width in SIZES:
        child = subprocess.run([sys.executable, __file__, "--child", str(height), str(width),
                                "--channels", str(args.channels), "--detections", str(args.detections),
                                "--stuff", str(args.stuff)], check=True, capture_output=True, text=True)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        n = height * width
        naive_gb = n * n * 4 / 2**30
        ms = time_forward(height, width, args.channels, k)
        rows[(height, width)] = (n, measured["peak_mb"], naive_gb)
        print(f"{4 * height:>5}x{4 * width:<5} {n:>8} {measured['peak_mb']:>8.1f} {1000 * measured['peak_mb'] / n:>13.2f} "
              f"{measured['p_mb']:>7.1f} {ms:>11.1f} {naive_gb:>9.1f}")
    n, peak, naive_gb = rows[PAPER]
    print(f"affinity n={n} C={args.channels} K={k} efficient_peak_mb={peak:.1f} naive_gb={naive_gb:.1f} "
          f"ratio={naive_gb * 1024 / peak:.0f}")


if __name__ == "__main__":
    main()
