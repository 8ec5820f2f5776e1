"""`python -m bench.cost`: what each money function costs per action.

Each function (topup, usage, transfer, void) runs alone over HTTP for `--duration`
seconds with `--clients` closed-loop clients (default 8, the deployed concurrency), after
an unmeasured warm-up. Around the measured window the CPU (utime + stime) of that
function's process group is read from /proc (bench/processes.py); divided by the
requests it answered, that is its CPU per action. Its memory is the summed RSS of the
group at the end (steady) and the summed peak RSS (VmHWM) of its processes. A void run
first posts, over HTTP, the usage it voids: only the void function's CPU is counted.

Those figures, the deployed vCPU, memory and concurrency read from infra/terraform
(infra/hcl.py), the Firestore operations of the idempotency protocol and the billed
size of each action's ledger event (read back from the outbox) give the cost per
million actions at the list prices of bench/pricing.py. Prints the tables; with
`--write`, also bench/results/cost.md (on a quiet machine only). Exits 1 on a request
that failed other than by a business refusal. Speed is never judged.
"""

from __future__ import annotations

import json
import os
import random
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import click

from bench import pricing
from bench.report import RESULTS, machine
from emulators.stack import Stack

ACTIONS = ("topup", "usage", "transfer", "void")


def deployed(function: str) -> pricing.Deployed:
    """vCPU, memory and concurrency Terraform gives `function` (functions.tf): an HTTP
    function is one of google_cloudfunctions2_function.http, a pushed one of .pushed."""
    from infra import functions as folders
    from infra import hcl

    module = hcl.terraform()
    kind = "http" if function in folders.http_functions(folders.discover()) else "pushed"
    config = hcl.blocks(module.resource("google_cloudfunctions2_function", kind).body, "service_config")[0]
    concurrency = str(config["max_instance_request_concurrency"])
    if concurrency == "${local.function_request_concurrency[each.key]}":
        # capacity.tf: a scheduled job serves one request at a time, the rest var.function_concurrency
        found = folders.discover()
        scheduled = function in folders.tick_functions(found) and not found[function].push_topic_settings
        concurrency = "1" if scheduled else "${var.function_concurrency}"
    if concurrency.startswith("${var."):
        concurrency = str(module.variables[concurrency[6:-1]]["default"])
    return pricing.Deployed(
        vcpu=float(config["available_cpu"]),
        memory_gib=pricing.memory_gib(str(config["available_memory"])),
        concurrency=int(concurrency),
    )


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """(RSS now, peak RSS) of a process group, summed over its processes, in MiB."""
    return (sum(_status_kib(p, "VmRSS") for p in pids) / 1024, sum(_status_kib(p, "VmHWM") for p in pids) / 1024)


def _worker(stack: Stack, action: str, wallets: list[int], asset: str) -> Callable[[int], Callable[[], str]]:
    from bench.http_client import Client
    from bench.runner import OK, REFUSED

    def make(index: int) -> Callable[[], str]:
        session, rng = Client(), random.Random(1800 + index)

        def post(function: str, body: dict) -> tuple[int, dict, str]:
            response = session.post(
                stack.function_url(function), body, headers={"Idempotency-Key": f"cost-{uuid.uuid4()}"}
            )
            return response.status_code, (response.json() if response.status_code < 300 else {}), response.text[:200]

        def usage_body() -> dict:
            wallet = rng.choice(wallets)
            return {
                "wallet_id": wallet,
                "asset": asset,
                "amount": 1,
                "usage_id": f"c-{uuid.uuid4()}",
                "product": "cost",
            }

        def act() -> str:
            if action == "void":
                status, answer, text = post("usage", usage_body())
                if status >= 300:
                    return f"HTTP {status} on the usage to void: {text}"
                body = {"transaction_id": answer["transaction"]["id"], "reason": "cost"}
            elif action == "usage":
                body = usage_body()
            elif action == "topup":
                body = {
                    "wallet_id": rng.choice(wallets),
                    "asset": asset,
                    "amount": 10,
                    "external_ref": f"c-{uuid.uuid4()}",
                }
            else:
                source, target = rng.sample(wallets, 2)
                body = {"from_wallet_id": source, "to_wallet_id": target, "asset": asset, "amount": 1}
            status, _, text = post(action, body)
            if status < 300:
                return OK
            return REFUSED if status in (409, 422) else f"HTTP {status} on {action}: {text}"

        return act

    return make


def event_bytes(stack: Stack, action: str, sample: int = 200) -> int:
    """The mean billed size of `action`'s ledger events as Pub/Sub messages."""
    import pg8000.native

    from common import events

    con = pg8000.native.Connection(**stack.owner_dsn())
    try:
        rows = con.run(
            "SELECT event FROM ledger.outbox_events WHERE event->>'action' = :a ORDER BY transaction_id DESC LIMIT :n",
            a=action,
            n=sample,
        )
    finally:
        con.close()
    sizes = []
    for (event,) in rows:
        message = events.message(event if isinstance(event, dict) else json.loads(event))
        sizes.append(pricing.pubsub_message_bytes(message.data, message.attributes))
    return round(sum(sizes) / len(sizes)) if sizes else 0


def measure(
    stack: Stack, action: str, clients: int, duration: float, warmup: float, wallets: list[int], asset: str
) -> dict:
    from bench import processes, runner

    def probe() -> dict:
        pids = processes.stack_processes(stack).get(action, [])
        return {"cpu_s": sum(processes._cpu_seconds(p) for p in pids), "pids": pids}

    make = _worker(stack, action, wallets, asset)
    make(clients)()  # the function's first request loads its clients: not a window's work
    result = runner.run(action, clients, duration, make, warmup_s=warmup, probe=probe)
    assert result.probes is not None
    first, last = result.probes
    rss, peak = memory_mib(last["pids"])
    answered = result.outcomes[runner.OK] + result.outcomes[runner.REFUSED]
    latencies = result.latencies_ms
    return {
        "requests": answered,
        "errors": result.error_samples if result.outcomes[runner.ERROR] else [],
        "cpu_ms": (last["cpu_s"] - first["cpu_s"]) * 1000 / max(answered, 1),
        # a void run's latency includes the usage it posts first: the void alone is not
        # timed apart, so its billed time errs high
        "latency_ms": sum(latencies) / len(latencies) if latencies else 0.0,
        "rss_mib": rss,
        "peak_mib": peak,
    }


def tables(rows: dict[str, dict]) -> str:
    measured = [
        "| function | requests | CPU ms per action | mean latency ms | RSS MiB (steady) | RSS MiB (peak) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    priced = [
        "| function | vCPU, memory, concurrency | billed ms per action | compute $/M | Firestore $/M"
        " | event bytes | Pub/Sub $/M | **total $/M** |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        measured.append(
            f"| {name} | {row['requests']:,} | {row['cpu_ms']:.2f} | {row['latency_ms']:.1f}"
            f" | {row['rss_mib']:.0f} | {row['peak_mib']:.0f} |"
        )
        d = row["deployed"]
        cost = pricing.per_million_actions(
            row["latency_ms"] / 1000, row["cpu_ms"] / 1000, d, pricing.IDEMPOTENCY_OPS["first"], row["event_bytes"]
        )
        billed = pricing.billed_seconds(row["latency_ms"] / 1000, row["cpu_ms"] / 1000, d) * 1000
        priced.append(
            f"| {name} | {d.vcpu:g}, {d.memory_gib * 1024:.0f} MiB, {d.concurrency} | {billed:.2f}"
            f" | {cost.compute:.2f} | {cost.firestore:.2f} | {row['event_bytes']:,} | {cost.pubsub:.2f}"
            f" | **{cost.total:.2f}** |"
        )
    return "\n".join(measured) + "\n\n" + "\n".join(priced)


@click.command()
@click.option("--duration", default=20.0, show_default=True, help="Seconds measured per function.")
@click.option("--warmup", default=5.0, show_default=True, help="Seconds sent, unmeasured, before each.")
@click.option("--clients", default=8, show_default=True, help="Closed-loop clients (8: the deployed concurrency).")
@click.option("--wallets", default=2_000, show_default=True)
@click.option("--action", "actions", multiple=True, type=click.Choice(ACTIONS), help="Only these (repeatable).")
@click.option("--profile", default="dev", show_default=True, help="Which local stack to drive (the tests use test).")
@click.option("--write", is_flag=True, help="Write bench/results/cost.md (a quiet machine only).")
def main(
    duration: float,
    warmup: float,
    clients: int,
    wallets: int,
    actions: tuple[str, ...],
    profile: str,
    write: bool,
) -> None:
    stack = Stack(profile)
    os.environ.update(stack.in_process_env())
    from bench import events, setup

    stack.stop_service("scheduler")  # no ERP export pass in a measured window
    before = events.high_water(stack)
    data = setup.prepare(stack, wallets)
    setup.mark_events_published(stack, before)
    rows: dict[str, dict] = {}
    for action in actions or ACTIONS:
        click.echo(f"  running: {action} ({clients} clients, {duration:g} s) ...", err=True)
        rows[action] = measure(stack, action, clients, duration, warmup, data.wallets, setup.ASSET)
        rows[action]["deployed"] = deployed(action)
        rows[action]["event_bytes"] = event_bytes(stack, action)
    command = (
        f"python -m bench.cost --duration {duration:g} --warmup {warmup:g} --clients {clients} --wallets {wallets}"
    )
    text = (
        "# Cost per action of the functions\n\n"
        f"`{command}`, {machine()}. Prices: Cloud Run request-based billing, Tier 1, free tier"
        f" excluded, list prices read {pricing.PRICES_READ} ({pricing.SOURCES['cloud_run']}); $/M is USD per"
        " million actions; method and assumptions in docs/cost.md.\n\n" + tables(rows) + "\n"
    )
    click.echo(text)
    if write:
        (RESULTS / "cost.md").write_text(text)
    failed = {
        name: row["errors"] or ["no request answered"]
        for name, row in rows.items()
        if row["errors"] or not row["requests"]
    }
    if failed:
        click.echo(f"unexpected errors: {failed}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
