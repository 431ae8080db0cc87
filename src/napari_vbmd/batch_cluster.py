"""Where a batch runs: the output folder's lock and leftovers, the local Dask cluster or a given
scheduler, and sending the cases to it. (:mod:`napari_vbmd.batch` runs them.)"""
from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .batch_case import _failed_row, process_case
from .errors import CancelledError, VbmdError, one_line

if TYPE_CHECKING:
    from .batch import Case, Job

#: environment of local worker processes (Dask's default, less MALLOC_TRIM_THRESHOLD_)
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}

#: how long a batch given a scheduler waits for its first worker
WAIT_FOR_WORKERS_S = 300


@contextlib.contextmanager
def _output_lock(output_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (an OS lock: released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one batch per folder by hand
        yield
        return
    handle = open(output_dir / ".vbmd-batch.lock", "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise VbmdError("another vbmd batch is writing to this folder", output_dir) from None
        yield
    finally:
        handle.close()


def remove_stale_temporaries(output_dir: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.*.part*``) a killed run left in our output folders."""
    output_dir = Path(output_dir)
    removed = []
    candidates = list(output_dir.glob(".*.part*"))
    for sub in ("cases", "masks"):
        if (output_dir / sub).is_dir():
            candidates += list((output_dir / sub).rglob(".*.part*"))
    for path in candidates:
        if path.is_file() and ".part" in path.name:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def default_workers(n_cases: int, device: str = "cpu") -> int:
    """Local workers: one per two cores, at most one per 4 GB of memory, one if the device is a GPU."""
    if device.startswith("cuda") or device == "mps":
        return 1
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    return max(1, min(n_cases, max(1, cores // 2), max(1, memory // (4 << 30))))


@contextlib.contextmanager
def _client(workers: int, threads_per_worker: int, scheduler: str | None, memory_limit) -> Iterator[tuple[object, str]]:
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            if "://" not in scheduler and Path(scheduler).is_file():  # `dask scheduler --scheduler-file`
                client = Client(scheduler_file=scheduler, timeout="30s")
            else:
                client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise VbmdError(f"cannot reach the Dask scheduler at {scheduler} ({one_line(exc, named=False)})") from None
        try:
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
                except TimeoutError:
                    raise VbmdError(f"no Dask worker joined the scheduler at {scheduler} within "
                                    f"{WAIT_FOR_WORKERS_S} s (start some with `dask worker {scheduler}`)") from None
            yield client, f"scheduler {scheduler} ({len(client.scheduler_info().get('workers', {}))} workers)"
        finally:
            client.close()
        return
    with dask.config.set({
        # a scan that kills its worker (memory) is retried once, then fails its own case
        "distributed.scheduler.allowed-failures": 1,
        # send a worker only the cases it can start now, so a worker that dies takes no queued
        # neighbour with it
        "distributed.scheduler.worker-saturation": 1.0,
        # tasks return small records: nothing worth spilling to disk
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        # pausing a worker that runs one case helps nothing (its memory is the case's own)
        "distributed.worker.memory.pause": False,
        # Dask's default MALLOC_TRIM_THRESHOLD_ turns off glibc's adaptive mmap threshold, so every
        # large numpy array is mmapped and page-faulted afresh: cases ran ~45% slower with it
        "distributed.nanny.pre-spawn-environ": WORKER_ENVIRONMENT,
    }):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
            memory_limit=memory_limit, host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
        )
        client = Client(cluster)
        try:
            yield client, f"local: {workers} workers x {threads_per_worker} threads"
        finally:
            client.close()
            cluster.close()


def _prepare_worker() -> None:
    """Import the heavy modules once per worker, so the first case's timings are its own."""
    from .segmentation import pipeline  # noqa: F401  (imports torch)


def _run_on_cluster(client, cases: list[Case], job: Job, finished, cancel) -> None:
    from distributed import as_completed

    token = hashlib.sha256(f"{job.output_dir}{time.time_ns()}".encode()).hexdigest()[:8]
    futures = {}
    for case in cases:
        key = f"vbmd-case-{token}-{len(futures)}"
        futures[client.submit(process_case, case, job, key=key, pure=False)] = case
    try:
        for future in as_completed(list(futures)):
            if cancel and cancel():
                raise CancelledError("batch cancelled")
            case = futures[future]
            try:
                record = future.result()
            except CancelledError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "KilledWorker":  # died, e.g. killed at its memory limit
                    error = (f"{case.file}: the worker processes running this case died (each time it was "
                             "tried): memory limit too low?")
                else:  # e.g. the worker cannot import napari_vbmd, or a version mismatch
                    error = f"{case.file}: the task failed on its worker: {one_line(exc)}"
                record = _failed_row(case, job, error)
            finished(case, record)
    except BaseException:
        client.cancel(list(futures))
        raise
