"""The bundles' zips depend on the files' paths and contents alone (infra/bundle.py):
Terraform names each uploaded object by its zip's md5, so a fresh checkout, with new
file times and another umask, must not redeploy anything."""

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra.bundle import REPO, build_bundle

SOME = ("topup", "usage", "wallets")


@pytest.fixture
def checkout(tmp_path):
    root = tmp_path / "checkout"
    for part in ("common", "functions"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


def md5s(root: Path, dest: Path) -> dict[str, str]:
    return {
        name: hashlib.md5(
            (build_bundle(name, dest, archive=True, root=root).parent / f"{name}.zip").read_bytes()
        ).hexdigest()
        for name in SOME
    }


def every_file(root: Path):
    return [path for path in root.rglob("*") if path.is_file()]


def test_a_bundle_built_again_after_new_file_times_and_modes_is_byte_identical(checkout, tmp_path):
    first = md5s(checkout, tmp_path / "first")
    for number, path in enumerate(reversed(every_file(checkout))):
        os.utime(path, (1_700_000_000 + number * 7919, 1_700_000_000 + number * 7919))
        path.chmod(0o600 if number % 2 else 0o664)
    (checkout / "common" / "__pycache__").mkdir(exist_ok=True)
    (checkout / "common" / "__pycache__" / "config.cpython-311.pyc").write_bytes(b"stale bytecode")
    assert md5s(checkout, tmp_path / "second") == first


def test_a_change_in_one_function_changes_only_its_bundle(checkout, tmp_path):
    first = md5s(checkout, tmp_path / "first")
    with open(checkout / "functions" / "topup" / "main.py", "a") as main:
        main.write("\n# changed\n")
    after = md5s(checkout, tmp_path / "second")
    assert [name for name in SOME if after[name] != first[name]] == ["topup"]


def test_a_change_in_common_changes_every_bundle(checkout, tmp_path):
    first = md5s(checkout, tmp_path / "first")
    with open(checkout / "common" / "errors.py", "a") as errors:
        errors.write("\n# changed\n")
    after = md5s(checkout, tmp_path / "second")
    assert all(after[name] != first[name] for name in SOME)


def test_the_zip_holds_sorted_files_with_a_fixed_time_and_mode_and_no_bytecode(checkout, tmp_path):
    build_bundle("topup", tmp_path, archive=True, root=checkout)
    with zipfile.ZipFile(tmp_path / "topup.zip") as archive:
        infos = archive.infolist()
    names = [info.filename for info in infos]
    assert names == sorted(names) and "main.py" in names and "common/config.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith((".pyc", "/"))]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {info.external_attr >> 16 for info in infos} == {0o100644}
    assert {info.compress_type for info in infos} == {zipfile.ZIP_DEFLATED}


def zipped_names(root: Path, dest: Path) -> list[str]:
    build_bundle("topup", dest, archive=True, root=root)
    with zipfile.ZipFile(dest / "topup.zip") as archive:
        return archive.namelist()


def test_a_stray_dotfile_is_not_shipped_outside_git(checkout, tmp_path):
    (checkout / "common" / ".env").write_text("LEDGER_ERP_TOKEN=a-developer-secret\n")
    (checkout / "functions" / "topup" / ".secrets").mkdir()
    (checkout / "functions" / "topup" / ".secrets" / "key.json").write_text("{}")
    names = zipped_names(checkout, tmp_path / "out")
    assert "common/config.py" in names and "main.py" in names
    assert not [name for name in names if any(part.startswith(".") for part in name.split("/"))]


def test_in_a_git_checkout_what_git_ignores_is_not_shipped_but_a_new_module_is(checkout, tmp_path):
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    (checkout / ".gitignore").write_text("*.local\n")
    (checkout / "common" / ".env").write_text("LEDGER_ERP_TOKEN=a-developer-secret\n")
    (checkout / "common" / "notes.local").write_text("ignored by git")
    (checkout / "common" / "brand_new.py").write_text("# not committed yet, not ignored\n")
    names = zipped_names(checkout, tmp_path / "out")
    assert "common/brand_new.py" in names and "common/config.py" in names and "main.py" in names
    assert "common/.env" not in names and "common/notes.local" not in names
