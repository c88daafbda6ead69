# Power-cut torture of qcd.store (issue 3): random workloads of map updates,
# rollovers, retirements and reboots, cut at every flash operation of a run,
# plain and encrypted flash, partitions of 4 to 16 blocks, some with a worn
# block, some running into the Child SPI map cap (evictions). host_tests/portable/store_torture.py is the harness and says what is
# checked after each cut.
#
# `make test` runs about QCD_TORTURE_CUTS=5000 cuts; `make torture` runs
# 100,000 or more, spread over the machine's cores. QCD_TORTURE_SEED shifts
# the seeds to explore new workloads; a failure names its seed and cut.
import multiprocessing
import os
import time

import pytest
from store_torture import sweep

CUTS = int(os.environ.get("QCD_TORTURE_CUTS", "5000"))
SEED0 = int(os.environ.get("QCD_TORTURE_SEED", "0"))
SIZES = (4, 5, 6, 4, 8, 5, 4, 16)  # blocks: small partitions compact often; 16 is the reference 64 KiB


def job(args):
    seed, encrypted = args
    blocks = SIZES[seed % len(SIZES)]
    # every fifth sweep has a worn block; every third runs into a small map cap
    cap = 6 + seed % 8 if seed % 3 == 2 else None
    return sweep(seed, blocks=blocks, encrypted=encrypted, n_ops=60, worn=(seed % 5 == 4), cap=cap)


def torture(target, encrypted):
    """Run sweeps until `target` cuts were made; returns (cuts, sweeps)."""
    seed = SEED0 * 1000003 + (1 if encrypted else 500001)
    made = 0
    sweeps = 0
    procs = os.cpu_count() or 1
    if target < 20000 or procs == 1:
        while made < target:
            made += job((seed, encrypted))
            seed += 1
            sweeps += 1
        return made, sweeps
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        while made < target:
            batch = [(seed + i, encrypted) for i in range(procs * 8)]
            seed += len(batch)
            for n in pool.imap_unordered(job, batch):
                made += n
                sweeps += 1
    return made, sweeps


@pytest.mark.slow
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_every_power_cut_leaves_the_store_as_acknowledged(encrypted):
    t = time.time()
    made, sweeps = torture(CUTS // 2, encrypted)
    print("%d cuts in %d sweeps (%s flash) in %.1f s" % (made, sweeps, "encrypted" if encrypted else "plain", time.time() - t))
    assert made >= CUTS // 2
