"""Each function runs from its deployment bundle alone: its folder plus common/.

The packaging check installs each zip into a clean venv and, there, imports every module
of common/ (a request imports only what its own path needs), then serves a request: a
real authenticated top-up from topup's, a fresh tick that runs lot_expiry's handler
against Postgres, and for the others an unauthenticated call or a too-old push."""

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import pytest
import requests

from emulators.stack import FUNCTIONS, PROJECT, http_responds, kill_group, wait_for
from infra.bundle import build_bundle
from tests.support import HTTP_TESTER, balance, key, new_wallet, principal


def requirements(path: Path) -> list[str]:
    """Pinned requirement lines, following `-r` includes relative to the file."""
    pins = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-r "):
            included = path.parent / line[3:].strip()
            assert included.exists(), f"{path} includes {included}, which the bundle lacks"
            pins += requirements(included)
        elif line:
            pins.append(line)
    return pins


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_bundle_holds_the_function_and_common_and_its_pinned_requirements(tmp_path, name):
    bundle = build_bundle(name, tmp_path)
    assert sorted(p.name for p in bundle.iterdir()) == sorted(["main.py", "requirements.txt", "common"])
    for pin in requirements(bundle / "requirements.txt"):
        package, version = pin.split("==")
        assert metadata.version(package) == version, f"{package} is not installed at {version}"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_bundle_serves_a_top_up_on_its_own(stack, tmp_path):
    bundle = build_bundle("topup", tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FUNCTION_TARGET")}
    env.update(stack.function_env("topup"))
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "functions-framework"),
            "--target",
            "topup",
            "--source",
            "main.py",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=bundle,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: http_responds(f"http://127.0.0.1:{port}/"), "the bundled function", 60)
        wallet = new_wallet(stack)
        response = requests.post(
            f"http://127.0.0.1:{port}/",
            json={"wallet_id": wallet, "asset": "TST", "amount": 3, "external_ref": key("bundle")},
            headers={"Idempotency-Key": key(), "Authorization": f"Bearer {principal(stack, HTTP_TESTER, 'tester')}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        assert balance(stack, wallet) == 3
    finally:
        kill_group(process.pid)


# The packaging check: each zip exactly as Terraform uploads it, in a clean venv ---------


@pytest.fixture(scope="session")
def unzipped_bundles(tmp_path_factory) -> dict[str, Path]:
    """Every function's zip, written by the command Terraform's bundle_dir comes from
    (infra/terraform/README.md), unzipped on its own as the platform does."""
    root = tmp_path_factory.mktemp("deployed")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "infra.bundle", "--all", str(root / "zips")], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL)  # fmt: skip
    unzipped = {}
    for name in FUNCTIONS:
        with zipfile.ZipFile(root / "zips" / f"{name}.zip") as archive:
            archive.extractall(root / "unzipped" / name)
        unzipped[name] = root / "unzipped" / name
    return unzipped


def clean_venv(bundle: Path, venv: Path) -> Path:
    """A fresh venv with nothing but what the bundle's requirements.txt installs from the
    package index (pip's cache makes a rerun quick)."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", "requirements.txt"],
        check=True, cwd=bundle,
    )  # fmt: skip
    return venv


@pytest.fixture(scope="session")
def clean_venvs(unzipped_bundles, tmp_path_factory) -> dict[str, Path]:
    """A clean venv per distinct requirements (today one for all)."""
    root = tmp_path_factory.mktemp("venvs")
    by_content: dict[str, Path] = {}
    venvs = {}
    for name, bundle in unzipped_bundles.items():
        digest = hashlib.sha256("\n".join(requirements(bundle / "requirements.txt")).encode()).hexdigest()[:12]
        if digest not in by_content:
            by_content[digest] = clean_venv(bundle, root / digest)
        venvs[name] = by_content[digest]
    return venvs


# Every module under common/, imported as the bundle's own code in the venv: a request
# imports only what its path needs, so serving one proves little about the rest (pg8000,
# redis, Firestore, the token library, the connector are each imported lazily).
_IMPORT_EVERY_MODULE = """
import importlib, json, pkgutil
import common
failed = {}
for module in pkgutil.walk_packages(common.__path__, "common."):
    try:
        importlib.import_module(module.name)
    except Exception as error:
        failed[module.name] = f"{type(error).__name__}: {error}"
print(json.dumps(failed))
"""


# Operator commands run from the development environment, never by a function: their
# extra package (rich, the import's progress bar) is in requirements-dev.txt alone.
OPERATOR_ONLY = {"common.migrate", "common.migrate_moves"}


def import_failures(venv: Path, bundle: Path, env: dict[str, str]) -> dict[str, str]:
    """Each module of the bundle's common/ (but OPERATOR_ONLY) that does not import in
    `venv`, with why."""
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _IMPORT_EVERY_MODULE],
        cwd=bundle, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    failed = json.loads(result.stdout.strip().splitlines()[-1])
    return {module: why for module, why in failed.items() if module not in OPERATOR_ONLY}


def bundle_env(stack, name: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FUNCTION_TARGET", "VIRTUAL_ENV")}
    env.update(stack.function_env(name))
    return env


def test_the_import_check_reports_a_bundle_whose_requirements_lack_a_package(stack, unzipped_bundles, tmp_path):
    """The checker itself: a copy of the topup bundle without pg8000 in its requirements
    installs, but its Postgres modules do not import, and the check says so."""
    bundle = tmp_path / "topup"
    shutil.copytree(unzipped_bundles["topup"], bundle)
    pinned = bundle / "common" / "requirements.txt"
    pinned.write_text("\n".join(line for line in pinned.read_text().splitlines() if not line.startswith("pg8000")))
    failures = import_failures(clean_venv(bundle, tmp_path / "venv"), bundle, bundle_env(stack, "topup"))
    assert [module for module, why in failures.items() if "pg8000" in why], failures


def old_push(stack, name: str) -> tuple[str, dict]:
    """A Pub/Sub push to the function's first topic, published long before its
    LEDGER_MAX_EVENT_AGE_S: the function acknowledges it without acting on the ledger."""
    declared, settings = FUNCTIONS[name], stack.settings()
    setting = declared.tick_topic_setting or declared.push_topic_settings[0]
    topic = str(getattr(settings, setting)).split(",")[0]
    marker = key("packaging")
    envelope = {
        "subscription": f"projects/{PROJECT}/subscriptions/packaging",
        "message": {
            "data": base64.b64encode(b"{}").decode(),
            "attributes": {"marker": marker},
            "messageId": str(uuid.uuid4().int)[:16],
            "publishTime": "2020-01-01T00:00:00Z",
        },
    }
    return f"/projects/{PROJECT}/topics/{topic}", envelope | {"marker": marker}


# The scheduled function whose fresh tick each run serves: its handler reads and writes
# Postgres (the expired lots) through the bundle's own pg8000.
FRESH_TICK = "lot_expiry"


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_deployed_zip_installs_into_a_clean_venv_and_serves_a_request(stack, unzipped_bundles, clean_venvs, name):
    bundle, venv, port = unzipped_bundles[name], clean_venvs[name], free_port()
    env = bundle_env(stack, name)
    assert import_failures(venv, bundle, env) == {}
    process = subprocess.Popen(
        [str(venv / "bin" / "functions-framework"), "--target", name, "--source", "main.py",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=bundle, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or http_responds(url), f"the bundled {name}", 60)
        assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
        if name == "topup":
            # authenticated (the token library, the callers in Postgres), idempotent
            # (Firestore), rate-limited (Redis), posted (Postgres)
            wallet = new_wallet(stack)
            response = requests.post(
                f"{url}/",
                json={"wallet_id": wallet, "asset": "TST", "amount": 3, "external_ref": key("packaged")},
                headers={
                    "Idempotency-Key": key(),
                    "Authorization": f"Bearer {principal(stack, HTTP_TESTER, 'tester')}",
                },
                timeout=30,
            )
            assert response.status_code == 201, response.text
            assert balance(stack, wallet) == 3
            return
        if FUNCTIONS[name].trigger == "http":
            response = requests.get(f"{url}/", timeout=30)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthenticated"
            return
        if name == FRESH_TICK:
            path, envelope = fresh_tick(stack, name)
            response = requests.post(f"{url}{path}", json=envelope, timeout=60)
            assert 200 <= response.status_code < 300, process_output(process, response.text)
            return
        path, envelope = old_push(stack, name)
        marker = envelope.pop("marker")
        response = requests.post(f"{url}{path}", json=envelope, timeout=30)
        assert 200 <= response.status_code < 300, response.text
        if FUNCTIONS[name].dead_letter_topic_setting == "actions_dead_letter_topic":
            from tests.e2e.test_messages import _ack_dead_letter, _dead_letter

            letter = _dead_letter(stack, lambda m: m["attributes"].get("marker") == marker)
            _ack_dead_letter(stack, letter["messageId"])
    finally:
        kill_group(process.pid)


def fresh_tick(stack, name: str) -> tuple[str, dict]:
    """Cloud Scheduler's tick to the function, published now: the handler runs."""
    topic = getattr(stack.settings(), FUNCTIONS[name].tick_topic_setting)
    envelope = {
        "subscription": f"projects/{PROJECT}/subscriptions/{topic}-{name}",
        "message": {
            "data": base64.b64encode(b"{}").decode(),
            "messageId": str(uuid.uuid4().int)[:16],
            "publishTime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    }
    return f"/projects/{PROJECT}/topics/{topic}", envelope


def process_output(process, answer: str) -> str:
    """A failed request's answer and what the function logged (the traceback)."""
    kill_group(process.pid)
    return answer + "\n" + process.stdout.read().decode(errors="replace")[-3000:]
