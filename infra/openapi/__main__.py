"""python -m infra.openapi [--check]: write docs/openapi.json, or say whether it is current."""

import argparse
import sys

from infra.openapi import DOCUMENT, REPO, build, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.openapi", description="the API's OpenAPI document")
    parser.add_argument("--check", action="store_true", help="exit 1 when docs/openapi.json is not what the code says")
    args = parser.parse_args(argv)
    text, name = render(build()), DOCUMENT.relative_to(REPO)
    if args.check:
        current = DOCUMENT.exists() and DOCUMENT.read_text() == text
        print(f"{name} is current" if current else f"{name} is out of date: run python -m infra.openapi")
        return 0 if current else 1
    DOCUMENT.write_text(text)
    print(f"wrote {name}")
    return 0


sys.exit(main())
