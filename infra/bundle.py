"""Build a function's deployment bundle: its folder plus common/, nothing else.

`python -m infra.bundle NAME DEST` writes DEST/NAME/ (and DEST/NAME.zip for Terraform);
`python -m infra.bundle --all DEST` does so for every function (infra/functions.py).
The same bundle is what tests/e2e/test_bundle.py serves, so the deployed shape is tested.
The folder's deploy.json stays out: it tells the deployment how to wire the function,
and the function never reads it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from infra.functions import DECLARATION, FUNCTIONS_DIR, discover

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")
IGNORE_IN_FUNCTION = shutil.ignore_patterns("__pycache__", "*.pyc", DECLARATION)


def build_bundle(name: str, dest: Path, archive: bool = False) -> Path:
    source = FUNCTIONS_DIR / name
    if not (source / "main.py").exists():
        raise SystemExit(f"no function named {name}")
    target = dest / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=IGNORE_IN_FUNCTION)
    shutil.copytree(REPO / "common", target / "common", ignore=IGNORE)
    if archive:
        shutil.make_archive(str(dest / name), "zip", target)
    return target


if __name__ == "__main__":
    which, dest = sys.argv[1], Path(sys.argv[2])
    for name in discover() if which == "--all" else [which]:
        print(build_bundle(name, dest, archive=True))
