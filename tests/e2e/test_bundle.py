"""Each function runs from its deployment bundle alone: its folder plus common/."""

import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import requests

from emulators.stack import FUNCTIONS, http_responds, kill_group, wait_for
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
