"""Core postings from several processes, so the Python side can use every core as a
deployment's instances would. Each process runs a share of the workers as threads and
sends its Result back."""

from __future__ import annotations

import multiprocessing
import os
import sys

from bench.runner import Result


def _process(scenario: str, threads: int, duration_s: float, data, group_commit: bool, queue) -> None:  # noqa: ANN001
    from bench import runner, scenarios
    from common import bootstrap

    os.environ["LEDGER_DB_POOL_SIZE"] = str(threads)
    if not group_commit:
        os.environ["LEDGER_GROUP_COMMIT_MAX"] = "1"
    body = scenarios.bodies(data)[scenario]
    result = runner.run(scenario, threads, duration_s, scenarios.core_worker(body))
    group = bootstrap.ledger()._group
    if group is not None:
        result.posting_calls = group.batches + group.alone
        result.postings_called = group.batched_items + group.alone
    queue.put(result)


def run(  # noqa: ANN001
    scenario: str, workers: int, duration_s: float, data, label: str | None = None, group_commit: bool = True
) -> Result:
    print(f"  running: {label or f'core: {scenario}'} ({workers} workers) ...", file=sys.stderr, flush=True)
    processes = max(1, min(workers, os.cpu_count() or 1))
    shares = [workers // processes + (1 if i < workers % processes else 0) for i in range(processes)]
    queue: multiprocessing.Queue = multiprocessing.get_context("fork").Queue()
    children = [
        multiprocessing.get_context("fork").Process(
            target=_process, args=(scenario, share, duration_s, data, group_commit, queue)
        )
        for share in shares
    ]
    for child in children:
        child.start()
    results = [queue.get() for _ in children]
    for child in children:
        child.join()
    merged = Result(label or f"core: {scenario}", 0)
    for result in results:
        merged.merge(result)
    return merged
