# Power-cut torture of qcd.store (issue 3): random workloads of map updates,
# rollovers, retirements and reboots, cut at every flash operation of a run,
# plain and encrypted flash, partitions of 4 to 16 blocks, some with a worn
# block, some running into the Child SPI map cap (evictions), some with puts
# at the cap whose eviction has to open and compact a block (issue 13 §5),
# and, in the "unstable" runs, on flash whose torn programs and erases leave
# bits that read back differently each time. host_tests/portable/store_torture.py
# is the harness and says what is checked after each cut.
#
# `make test` runs about QCD_TORTURE_CUTS=5000 cuts (a quarter in each of
# plain, encrypted, plain unstable, encrypted unstable); `make torture` runs
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
    seed, encrypted, unstable = args
    blocks = SIZES[seed % len(SIZES)]
    # every fifth sweep has a worn block; every third runs into a small map
    # cap, and half of those first make puts at the cap whose DROP opens a block
    cap = 6 + seed % 8 if seed % 3 == 2 else None
    cap_drop = 4 if seed % 6 == 5 else 0
    stats = {}
    made = sweep(seed, blocks=blocks, encrypted=encrypted, n_ops=60, worn=(seed % 5 == 4), cap=cap,
                 cap_drop=cap_drop, unstable=unstable, stats=stats)
    return made, (made if cap_drop else 0), stats.get("cap_drop_compacting", 0)


def torture(target, encrypted, unstable):
    """Run sweeps until `target` cuts were made; returns (cuts, sweeps,
    cuts in cap-drop sweeps, cap-drop rounds whose DROP compacted)."""
    seed = SEED0 * 1000003 + (1 if encrypted else 500001) + (250000 if unstable else 0)
    tot = [0, 0, 0, 0]

    def add(r):
        tot[0] += r[0]
        tot[1] += 1
        tot[2] += r[1]
        tot[3] += r[2]

    procs = os.cpu_count() or 1
    if target < 20000 or procs == 1:
        while tot[0] < target:
            add(job((seed, encrypted, unstable)))
            seed += 1
        return tot
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        while tot[0] < target:
            batch = [(seed + i, encrypted, unstable) for i in range(procs * 8)]
            seed += len(batch)
            for r in pool.imap_unordered(job, batch):
                add(r)
    return tot


@pytest.mark.slow
@pytest.mark.parametrize("unstable", [False, True], ids=["stable", "unstable"])
@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_every_power_cut_leaves_the_store_as_acknowledged(encrypted, unstable):
    t = time.time()
    made, sweeps, cap_cuts, cap_hits = torture(CUTS // 4, encrypted, unstable)
    print("%d cuts in %d sweeps (%s flash%s; %d of them in sweeps with puts at the cap whose DROP opens a block, %d such DROPs compacted) in %.1f s" % (
        made, sweeps, "encrypted" if encrypted else "plain", ", unstable bits" if unstable else "", cap_cuts, cap_hits, time.time() - t))
    assert made >= CUTS // 4
