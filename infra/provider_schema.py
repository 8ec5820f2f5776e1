"""The google and google-beta providers' schema (6.50.0), read offline from the cdktf
bindings generated from it (@cdktf/provider-google 16.12.1, pinned in
infra/schema/package-lock.json, installed by `make test`). Terraform would download the
provider to know a resource's attributes; here its TypeScript declarations say the same.

Each lib/<resource-with-dashes>/index.d.ts declares the resource's configuration as an
interface `...Config extends cdktf.TerraformMetaArguments`, one member per attribute or
block, and one interface per nested block, named by the member's type. Every member's
documentation links to the registry page with the HCL name as its anchor
(`{@link https://registry.terraform.io/...#attribute_name ...}`), which is read rather
than converting camelCase back (ipv4Enabled is ipv4_enabled).
"""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path

SCHEMA_DIR = Path(__file__).resolve().parent / "schema" / "node_modules" / "@cdktf"
PACKAGES = {"google": "provider-google", "google-beta": "provider-google-beta"}

_INTERFACE = re.compile(r"^export interface (\w+)(?: extends ([\w.]+))? \{$(.*?)^\}$", re.M | re.S)
# a member and the documentation before it (which may have no registry link)
_MEMBER = re.compile(r"^    (?:/\*\*((?:(?!\*/).)*)\*/\s*)?readonly (\w+)\??: ([^;\n]+)", re.M | re.S)
_LINK = re.compile(r"\{@link https://registry\.terraform\.io/\S+#(\w+) ")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a resource (or one of its nested blocks) may contain."""

    attributes: frozenset[str]
    blocks: dict[str, Shape]


class SchemaMissing(RuntimeError):
    pass


def library(provider: str = "google") -> Path:
    lib = SCHEMA_DIR / PACKAGES[provider] / "lib"
    if not lib.is_dir():
        raise SchemaMissing(f"no provider schema at {lib}: run `make test` (npm ci --prefix infra/schema)")
    return lib


def _folder(kind: str, type_: str, provider: str) -> str:
    # google_pubsub_subscription -> pubsub-subscription (google-pubsub-subscription in
    # google-beta's package); data google_project -> data-google-project
    dashed = type_.replace("_", "-")
    if kind == "data":
        return "data-" + dashed
    return dashed if provider == "google-beta" else dashed.removeprefix("google-")


@cache
def shape(kind: str, type_: str, provider: str = "google") -> Shape | None:
    """The schema of a resource or data source, None if the provider has no such type."""
    declarations = library(provider) / _folder(kind, type_, provider) / "index.d.ts"
    if not declarations.exists():
        return None
    interfaces = {found[1]: (found[2], found[3]) for found in _INTERFACE.finditer(declarations.read_text())}
    root = next(name for name, (base, _) in interfaces.items() if base == "cdktf.TerraformMetaArguments")
    return _shape(root, interfaces, ())


def _shape(name: str, interfaces: dict[str, tuple[str | None, str]], seen: tuple[str, ...]) -> Shape:
    attributes, blocks = set(), {}
    for documentation, member, type_text in _MEMBER.findall(interfaces[name][1]):
        link = _LINK.search(documentation)
        hcl_name = link[1] if link else re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", member).lower()
        nested = type_text.split("|")[0].strip().removesuffix("[]")
        if nested in interfaces and nested not in seen:
            blocks[hcl_name] = _shape(nested, interfaces, (*seen, name))
        else:
            attributes.add(hcl_name)
    return Shape(frozenset(attributes), blocks)


# Terraform's built-in resource, which no provider package describes
BUILT_IN = {("resource", "terraform_data"): Shape(frozenset({"input", "triggers_replace"}), {})}


def provider_version(provider: str = "google") -> str:
    """The provider release the bindings were generated from, as their links name it."""
    declarations = library(provider) / _folder("resource", "google_pubsub_topic", provider) / "index.d.ts"
    found = re.search(rf"registry\.terraform\.io/providers/hashicorp/{provider}/([0-9.]+)/", declarations.read_text())
    assert found, f"no provider version in {declarations}"
    return found[1]


def problems(kind: str, type_: str, body: dict, provider: str = "google") -> list[str]:
    """Every name in a resource or data block the provider's schema lacks, as
    "<type>.<path>: ...", or the type itself when the provider has no such one."""
    from infra.hcl import META_ARGUMENTS

    if (kind, type_) in BUILT_IN:
        found: Shape | None = BUILT_IN[(kind, type_)]
    elif not type_.startswith("google_"):
        return [f"{kind} {type_}: no schema is pinned for its provider (infra/schema/package.json)"]
    else:
        found = shape(kind, type_, provider)
    if found is None:
        return [f"{kind} {type_}: the {provider} provider has no such {kind} type"]
    return _problems(f"{type_}", body, found, META_ARGUMENTS)


def _problems(path: str, body: dict, allowed: Shape, meta: frozenset[str]) -> list[str]:
    from infra.hcl import nested_names  # (infra.hcl imports python-hcl2; the schema alone needs none)

    wrong = []
    for name, value, is_block in nested_names(body):
        if name in meta:
            continue
        if name in allowed.blocks:
            if is_block:
                wrong.extend(_problems(f"{path}.{name}", value, allowed.blocks[name], frozenset()))
            else:
                wrong.append(f"{path}.{name}: a block, written as an attribute (`{name} = ...`)")
        elif name in allowed.attributes:
            continue  # a list of objects parses like blocks; the schema says it is an attribute
        else:
            wrong.append(f"{path}.{name}: no such {'block' if is_block else 'attribute'} in the schema")
    return wrong
