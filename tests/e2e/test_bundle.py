"""Each function runs from its deployment bundle alone: its folder plus common/."""

import base64
import hashlib
import os
import socket
import subprocess
import sys
import uuid
import zipfile
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


@pytest.fixture(scope="session")
def clean_venvs(unzipped_bundles, tmp_path_factory) -> dict[str, Path]:
    """A fresh venv per distinct requirements (today one for all), with nothing but what
    the bundle's requirements.txt installs from PyPI (pip's cache makes a rerun quick)."""
    root = tmp_path_factory.mktemp("venvs")
    by_content: dict[str, Path] = {}
    venvs = {}
    for name, bundle in unzipped_bundles.items():
        digest = hashlib.sha256("\n".join(requirements(bundle / "requirements.txt")).encode()).hexdigest()[:12]
        if digest not in by_content:
            venv = root / digest
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                 "-r", "requirements.txt"],
                check=True, cwd=bundle,
            )  # fmt: skip
            by_content[digest] = venv
        venvs[name] = by_content[digest]
    return venvs


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


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_each_deployed_zip_installs_into_a_clean_venv_and_serves_a_request(stack, unzipped_bundles, clean_venvs, name):
    bundle, venv, port = unzipped_bundles[name], clean_venvs[name], free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FUNCTION_TARGET", "VIRTUAL_ENV")}
    env.update(stack.function_env(name))
    process = subprocess.Popen(
        [str(venv / "bin" / "functions-framework"), "--target", name, "--source", "main.py",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=bundle, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: process.poll() is not None or http_responds(url), f"the bundled {name}", 60)
        assert process.poll() is None, process.stdout.read().decode(errors="replace")[-3000:]
        if FUNCTIONS[name].trigger == "http":
            response = requests.get(f"{url}/", timeout=30)
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "unauthenticated"
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
