"""The migrations image's build context, staged into a folder, and its tag: a hash of
exactly what goes in (paths and bytes, never file times), so the same tree always names
the same image and an unchanged tree is never rebuilt (infra/deploy.py checks the
registry for the tag first)."""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
# What the Dockerfile copies, by its path in the build context.
TREES = ("db", "common")
SINGLE_FILES = {"alembic.ini": REPO / "alembic.ini"} | {
    name: HERE / name for name in ("Dockerfile", "requirements.txt", "cloudbuild.yaml")
}


def contents(repo: Path = REPO) -> dict[str, bytes]:
    """Path in the build context -> bytes, for every file the image is built from."""
    found = {name: path.read_bytes() for name, path in SINGLE_FILES.items()}
    for tree in TREES:
        for path in sorted((repo / tree).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                found[path.relative_to(repo).as_posix()] = path.read_bytes()
    return found


def content_hash(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()[:32]


def stage(destination: Path, repo: Path = REPO) -> str:
    """Write the build context into `destination`; returns its tag."""
    files = contents(repo)
    for name, data in files.items():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return content_hash(files)
