"""Every curl example in README.md and docs/*.md runs against a fresh demo stack.

The examples are written for `make dev` (ports 54300 + offset, the demo data). This
module brings up a stack of its own (profile "docs", base LEDGER_DOCS_PORT_BASE,
54500 by default, outside the dev and test blocks), and runs the examples file by
file, each file on a freshly reset ledger: a file's examples may rely on the demo data
and on the examples above them in the same file, never on another file's.

What counts as an example: every command in a ```sh block that starts with `curl`
(continuation lines ending in `\\` joined; comment lines skipped). It must answer 2xx,
unless the line right above it is an annotation, `# answers STATUS [CODE]`, e.g.
`# answers 422 insufficient_funds`: then it must answer that status (and that error
code). Other commands in ```sh blocks (make, python) are not run here. A curl line
outside a ```sh block, or an annotation not followed by a curl, fails the extraction,
so no example is skipped silently.

Each command runs through bash, as a reader's shell would parse it, with `curl`
wrapped to add a timeout and print the status; `localhost:543NN` becomes the docs
stack's port with the same offset.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from emulators import database
from emulators.__main__ import token_variable
from emulators.stack import PROJECT, REPO, Stack
from tests.support import assert_invariants

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DEV_PORTS = re.compile(r"\b(localhost|127\.0\.0\.1):543(\d\d)\b")
ANNOTATION = re.compile(r"#\s*answers\b(.*)")
ANNOTATION_FORM = re.compile(r"\s+(\d{3})(?:\s+([a-z_]+))?\s*")
FENCE = re.compile(r"^\s*```(\S*)")
CURL_WRAPPER = 'curl() { command curl --silent --show-error --max-time 30 --write-out "\\n%{http_code}" "$@"; }\n'


@dataclass(frozen=True)
class Example:
    doc: str
    line: int  # where the command starts in its file (1-based)
    command: str  # continuation lines joined
    status: int | None = None  # None: any 2xx
    code: str | None = None  # the error code the annotation names, if any


class ExtractionError(ValueError):
    pass


def extract(text: str, doc: str = "") -> list[Example]:
    """The curl examples of one Markdown file, in order."""
    examples: list[Example] = []
    lines = text.splitlines()
    block: str | None = None  # the open fence's language; None outside a fence
    pending: tuple[int, int, str | None] | None = None  # an annotation waiting for its curl
    index = 0
    while index < len(lines):
        number, line = index + 1, lines[index]
        stripped = line.strip()
        index += 1
        fence = FENCE.match(line)
        if fence:
            if block is not None and pending is not None:
                raise ExtractionError(f"{doc}:{pending[0]}: an annotation with no curl below it")
            block = fence.group(1) if block is None else None
            continue
        if block is None:
            if stripped.startswith("curl ") and "localhost:" in stripped:
                raise ExtractionError(f"{doc}:{number}: a curl example outside a ```sh block (indented code?)")
            continue
        annotation = ANNOTATION.match(stripped)
        if block != "sh":
            if stripped.startswith("curl ") or annotation:
                raise ExtractionError(f"{doc}:{number}: a curl example outside a ```sh block (```{block})")
            continue
        if annotation:
            form = ANNOTATION_FORM.fullmatch(annotation.group(1))
            if form is None:
                raise ExtractionError(f"{doc}:{number}: write annotations as '# answers STATUS [code]'")
            pending = (number, int(form.group(1)), form.group(2))
            continue
        expected, pending = pending, None
        if not stripped or stripped.startswith("#"):
            if expected is not None:
                raise ExtractionError(f"{doc}:{expected[0]}: an annotation must be right above its curl")
            continue
        command = stripped
        while command.endswith("\\"):
            if index >= len(lines):
                raise ExtractionError(f"{doc}:{number}: a continuation at the end of the file")
            command = command[:-1].rstrip() + " " + lines[index].strip()
            index += 1
        if not command.startswith("curl "):
            if "curl " in command:
                raise ExtractionError(f"{doc}:{number}: a curl that is not the command itself: {command}")
            if expected is not None:
                raise ExtractionError(f"{doc}:{expected[0]}: an annotation above a command that is not curl")
            continue
        status, code = (expected[1], expected[2]) if expected else (None, None)
        examples.append(Example(doc, number, command, status, code))
    if block is not None:
        raise ExtractionError(f"{doc}: a code block is never closed")
    return examples


def curl_lines(text: str) -> int:
    """Lines that start a curl command anywhere in fenced blocks: what extract() must find."""
    inside, count = False, 0
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif inside and line.strip().startswith("curl "):
            count += 1
    return count


# The extractor --------------------------------------------------------------

SAMPLE = """
Prose with `curl localhost:54315/assets` inline is not an example.

```sh
# a comment
curl -s -X POST localhost:54310 -H 'Idempotency-Key: k1' \\
  -d '{"wallet_id": 16}'
make dev
# answers 422 insufficient_funds
curl -s localhost:54312
curl -s localhost:54315/wallets/16    # a trailing comment
```

```json
{"curl": "not a command"}
```
"""


def test_the_extractor_joins_continuations_and_reads_annotations():
    examples = extract(SAMPLE, "sample.md")
    assert [(e.line, e.status, e.code) for e in examples] == [
        (6, None, None),
        (10, 422, "insufficient_funds"),
        (11, None, None),
    ]
    assert examples[0].command == "curl -s -X POST localhost:54310 -H 'Idempotency-Key: k1' -d '{\"wallet_id\": 16}'"
    assert curl_lines(SAMPLE) == 3


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("```\ncurl -s localhost:54315\n```\n", "outside a ```sh block"),
        ("```bash\ncurl -s localhost:54315\n```\n", "outside a ```sh block"),
        ("```sh\n# answers 422\n```\n", "no curl below it"),
        ("```sh\n# answers 422\n\ncurl -s localhost:54315\n```\n", "right above its curl"),
        ("```sh\n# answers maybe\ncurl -s localhost:54315\n```\n", "write annotations as"),
        ("```sh\n# answers 201\nmake dev\n```\n", "not curl"),
        ("```sh\nx=$(curl -s localhost:54315)\n```\n", "not the command itself"),
        ("```sh\ncurl -s localhost:54315\n", "never closed"),
        ("Prose, then code by indentation:\n\n    curl -s localhost:54315\n", "outside a ```sh block"),
    ],
)
def test_the_extractor_refuses_what_it_would_otherwise_skip(text, complaint):
    with pytest.raises(ExtractionError, match=re.escape(complaint)):
        extract(text, "bad.md")


@pytest.mark.parametrize("doc", DOCS, ids=lambda path: path.name)
def test_every_curl_line_of_the_docs_is_an_example(doc):
    text = doc.read_text()
    examples = extract(text, doc.name)
    assert len(examples) == curl_lines(text)
    for example in examples:
        assert "<" not in example.command and "..." not in example.command, f"a placeholder: {example.command}"


def test_the_readme_and_the_api_reference_have_examples():
    assert len(extract((REPO / "README.md").read_text())) >= 8
    assert len(extract((REPO / "docs" / "api.md").read_text())) >= 20


# Running them -----------------------------------------------------------------


@pytest.fixture
def money_invariants():
    """Instead of the tier's check on the test stack (this module never starts it): the
    docs stack's invariants are checked after each file's examples."""
    yield


@pytest.fixture(scope="module")
def docs_stack():
    stack = Stack("docs")  # its ports from LEDGER_DOCS_PORT_BASE
    stack.down()
    shutil.rmtree(stack.state_dir, ignore_errors=True)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()
        shutil.rmtree(stack.state_dir, ignore_errors=True)


def reset(stack: Stack) -> None:
    """A fresh demo ledger under the running functions: the database dropped and made
    again (their pooled connections die with it; the pool reconnects on first use),
    idempotency records, Redis and the ERP's books emptied."""
    stack.psql("DROP DATABASE IF EXISTS ledger WITH (FORCE)")
    stack.psql("CREATE DATABASE ledger OWNER ledger_owner")
    database.migrate(stack.owner_dsn())
    database.seed_demo(stack.owner_dsn())
    database.seed_principals(stack.owner_dsn(), stack.issuer)
    firestore = f"http://127.0.0.1:{stack.ports['firestore']}"
    documents = f"{firestore}/emulator/v1/projects/{PROJECT}/databases/(default)/documents"
    urllib.request.urlopen(urllib.request.Request(documents, method="DELETE"), timeout=10).close()
    redis.Redis.from_url(stack.env()["LEDGER_REDIS_URL"]).flushall()
    control = urllib.request.Request(
        f"http://127.0.0.1:{stack.ports['erp']}/control",
        data=json.dumps({"reset": True}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(control, timeout=10).close()


def on_stack(command: str, stack: Stack) -> str:
    return DEV_PORTS.sub(lambda m: f"{m.group(1)}:{stack.port_base + int(m.group(2))}", command)


def demo_tokens(stack: Stack) -> dict[str, str]:
    """The demo callers' tokens as the shell variables `eval "$(make -s tokens)"` sets."""
    return {token_variable(row[0]): stack.token(row[0]) for row in database.DEMO_PRINCIPALS}


def run(example: Example, stack: Stack) -> tuple[int, str]:
    result = subprocess.run(
        ["bash", "-c", CURL_WRAPPER + on_stack(example.command, stack)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **demo_tokens(stack)},
    )
    body, _, status = result.stdout.rpartition("\n")
    assert result.returncode == 0 and status.isdigit(), (
        f"{example.doc}:{example.line}: curl failed ({result.returncode}): {example.command}\n{result.stderr}"
    )
    return int(status), body


def docs_with_examples() -> list[Path]:
    return [doc for doc in DOCS if extract(doc.read_text(), str(doc.relative_to(REPO)))]


@pytest.mark.parametrize("doc", docs_with_examples(), ids=lambda path: path.name)
def test_the_examples_of_each_doc_run_on_a_fresh_demo_ledger(docs_stack, doc):
    examples = extract(doc.read_text(), str(doc.relative_to(REPO)))
    reset(docs_stack)
    for example in examples:
        status, body = run(example, docs_stack)
        where = f"{example.doc}:{example.line}: {example.command}\nanswered {status}: {body[:2000]}"
        if example.status is None:
            assert 200 <= status < 300, where
        else:
            assert status == example.status, f"expected {example.status}; " + where
            if example.code:
                assert f'"code":"{example.code}"' in body, f"expected error code {example.code}; " + where
    assert_invariants(docs_stack)
