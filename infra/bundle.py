"""Build a function's deployment bundle: its folder plus common/, nothing else.

`python -m infra.bundle NAME DEST` writes DEST/NAME/ (and DEST/NAME.zip for Terraform);
`python -m infra.bundle --all DEST` does so for every function (infra/functions.py).
The same bundle is what tests/e2e/test_bundle.py serves, so the deployed shape is tested.
The folder's deploy.json stays out: it tells the deployment how to wire the function,
and the function never reads it.

Only what the checkout would commit is shipped: in a git checkout, the files git
tracks or would track (`git ls-files`, so nothing it ignores), else every file; in
both, no dotfile or dot-folder (a stray `.env` with a developer's secrets) and no
bytecode.

The zip is a function of the files' paths and contents alone: Terraform names the
uploaded object by the zip's md5 (infra/terraform/functions.tf), so anything else in it
(modification times, the order a directory lists in, the umask's permissions) would
redeploy every function from every fresh checkout.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from infra.functions import DECLARATION, FUNCTIONS_DIR, discover

REPO = Path(__file__).resolve().parent.parent
# The earliest time a zip can hold: no file's own time leaks into the archive.
FIXED_DATE_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # a regular file, rw-r--r--, whatever the umask made of the copy
UNIX = 3  # ZipInfo.create_system: the same attribute meaning on every build host
COMPRESS_LEVEL = 9


def build_bundle(name: str, dest: Path, archive: bool = False, root: Path = REPO) -> Path:
    """`root` is the checkout to build from (tests build from a copy of it)."""
    source = FUNCTIONS_DIR / name if root == REPO else root / "functions" / name
    if not (source / "main.py").exists():
        raise SystemExit(f"no function named {name}")
    target = dest / name
    shutil.rmtree(target, ignore_errors=True)
    for relative in shipped(source):
        if relative != DECLARATION:
            _copy(source / relative, target / relative)
    for relative in shipped(root / "common"):
        _copy(root / "common" / relative, target / "common" / relative)
    if archive:
        write_zip(target, dest / f"{name}.zip")
    return target


def shipped(folder: Path) -> list[str]:
    """The files under `folder` (paths relative to it) that go into a bundle."""
    listed = _git_listed(folder)
    candidates = listed if listed is not None else [p.relative_to(folder).as_posix() for p in folder.rglob("*")]
    return sorted(
        relative
        for relative in candidates
        if (folder / relative).is_file()
        and not any(part.startswith(".") or part == "__pycache__" for part in Path(relative).parts)
        and not relative.endswith(".pyc")
    )


def _git_listed(folder: Path) -> list[str] | None:
    """Tracked files and untracked ones git doesn't ignore (a new module not yet
    committed still ships); None outside a git checkout, or without git."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sorted({path for path in result.stdout.decode().split("\0") if path})


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def write_zip(folder: Path, zip_path: Path) -> Path:
    """The folder's files, sorted by path, each with a fixed time and mode; no directory
    entries (an unzip creates them from the paths) and no bytecode."""
    files = sorted(
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )
    with zipfile.ZipFile(zip_path, "w") as archive:
        for relative in files:
            info = zipfile.ZipInfo(relative, date_time=FIXED_DATE_TIME)
            info.external_attr = FILE_MODE << 16
            info.create_system = UNIX
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (folder / relative).read_bytes(), compresslevel=COMPRESS_LEVEL)
    return zip_path


if __name__ == "__main__":
    which, dest = sys.argv[1], Path(sys.argv[2])
    for name in discover() if which == "--all" else [which]:
        print(build_bundle(name, dest, archive=True))
