"""Build a function's deployment bundle: its folder plus common/, nothing else.

`python -m infra.bundle NAME DEST` writes DEST/NAME/ (and DEST/NAME.zip for Terraform).
The same bundle is what tests/e2e/test_bundle.py serves, so the deployed shape is tested.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def build_bundle(name: str, dest: Path, archive: bool = False) -> Path:
    source = REPO / "functions" / name
    if not (source / "main.py").exists():
        raise SystemExit(f"no function named {name}")
    target = dest / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=IGNORE)
    shutil.copytree(REPO / "common", target / "common", ignore=IGNORE)
    if archive:
        shutil.make_archive(str(dest / name), "zip", target)
    return target


if __name__ == "__main__":
    name, dest = sys.argv[1], Path(sys.argv[2])
    print(build_bundle(name, dest, archive=True))
