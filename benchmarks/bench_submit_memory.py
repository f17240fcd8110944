"""What submitting every video at once cost the extraction client (issue 16): the memory of N
pending extraction-like tasks in a LocalCluster's client + scheduler (one process: the
scheduler runs in the client's).

    python benchmarks/bench_submit_memory.py 20000

Each task holds a video item like the extractor's and the task's arguments; the one worker
blocks on its first task, so all N stay pending on the scheduler.  Prints the growth of the
process's resident memory (``/proc/self/statm``, Linux) per task.  The executor now keeps a
window of tasks (``comode.extract.executors.DaskExecutor.window``) instead.
"""

import gc
import os
import sys
import time
import uuid

from dask.distributed import Client, LocalCluster


def rss() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def block(item, *args):
    time.sleep(3600)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    args = ({"codec": "mpeg2video", "gop": 12, "width": 340, "height": 256}, "/data/k400.zarr", None)
    items = [("train/abseiling/" + uuid.uuid4().hex + ".mp4", "abseiling", 0, {"1": "train"}) for _ in range(n)]
    gc.collect()
    time.sleep(2)
    before = rss()
    futures = [client.submit(block, item, *args, pure=False, key=f"extract-x-{i}") for i, item in enumerate(items)]
    while len(cluster.scheduler.tasks) < n:
        time.sleep(0.5)
    time.sleep(2)
    gc.collect()
    after = rss()
    print(
        f"{n} pending tasks: client+scheduler RSS +{(after - before) / 1e6:.0f} MB = "
        f"{(after - before) / n / 1e3:.1f} kB per task",
        flush=True,
    )
    os._exit(0)  # the worker is blocked for an hour: a graceful close would only wait for it
