"""The migrations image's tag is its content's hash: file times don't change it, a
changed file does, and the staged folder holds what the Dockerfile copies."""

import os

from infra.migrations import image


def test_the_tag_depends_on_contents_only(tmp_path):
    first = image.stage(tmp_path / "a")
    for path in (image.REPO / "db").glob("*.py"):
        os.utime(path, (1, 1))
    assert image.stage(tmp_path / "b") == first


def test_a_changed_file_changes_the_tag():
    files = image.contents()
    changed = dict(files, **{"db/upgrade.py": files["db/upgrade.py"] + b"\n"})
    assert image.content_hash(changed) != image.content_hash(files)


def test_the_staged_folder_holds_what_the_dockerfile_copies(tmp_path):
    image.stage(tmp_path)
    copied = [line.split()[1] for line in (tmp_path / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    assert copied and all((tmp_path / name.rstrip("/")).exists() for name in copied)
    assert (tmp_path / "db" / "__main__.py").exists() and (tmp_path / "common" / "config.py").exists()
