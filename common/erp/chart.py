"""The chart of accounts (common/erp/chart.toml): a GL account per leg role, wallet
model and asset, and the ERP currency of each asset."""

from __future__ import annotations

import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path(__file__).with_name("chart.toml")
ROLES = ("customer", "funding", "revenue", "promotion", "breakage", "discount", "migration", "dormant")
# Set by the export's configuration (erp_exclude_migrations), kept in the chart so that
# its version, which every batch records, also says whether migrations had lines: a
# batch re-sent or reconciled later is read as it was built.
EXCLUDE_MIGRATIONS = "exclude_migrations"


class ChartError(ValueError):
    """The chart file is malformed or misses an account."""


@dataclass(frozen=True)
class Chart:
    sections: dict[str, Any]
    version: str  # a hash of the chart's content: batches name the chart they were built with

    @classmethod
    def from_dict(cls, sections: dict[str, Any], complete: bool = True) -> Chart:
        """`complete`: every role needs a default account. A chart stored with earlier
        batches may predate a role (discount came with the wallet models); its batches
        hold no legs of it, so it loads as it was."""
        default = sections.get("default", {})
        missing = [role for role in ROLES if not isinstance(default.get(role), str)]
        if missing and complete:
            raise ChartError(f"the chart's [default] section needs an account for {', '.join(missing)}")
        for where, table in _tables(sections):
            unknown = set(table) - set(ROLES)
            if unknown:
                raise ChartError(f"[{where}] names unknown roles: {', '.join(sorted(unknown))}")
        canonical = json.dumps(sections, sort_keys=True, separators=(",", ":"))
        return cls(sections, hashlib.sha256(canonical.encode()).hexdigest()[:16])

    @classmethod
    def from_toml(cls, text: str) -> Chart:
        try:
            return cls.from_dict(tomllib.loads(text))
        except tomllib.TOMLDecodeError as error:
            raise ChartError(f"the chart is not valid TOML: {error}") from None

    def account(self, asset: str, role: str, model: str) -> str:
        """The GL account of a leg: most specific section first."""
        by_asset = self.sections.get("asset", {}).get(asset, {})
        for table in (
            by_asset.get("model", {}).get(model, {}),
            by_asset,
            self.sections.get("model", {}).get(model, {}),
            self.sections["default"],
        ):
            account = table.get(role)
            if isinstance(account, str):
                return account
        raise ChartError(f"no account for role {role!r}")

    @property
    def excludes_migrations(self) -> bool:
        return self.sections.get(EXCLUDE_MIGRATIONS) is True

    def excluding_migrations(self) -> Chart:
        return Chart.from_dict({**self.sections, EXCLUDE_MIGRATIONS: True})

    def currency(self, asset: str) -> str:
        return str(self.sections.get("currency", {}).get(asset, asset))


def _tables(sections: dict[str, Any]):  # noqa: ANN202 - (name, table) of every account table
    yield "default", sections.get("default", {})
    for model, table in sections.get("model", {}).items():
        yield f"model.{model}", table
    for asset, table in sections.get("asset", {}).items():
        yield f"asset.{asset}", {k: v for k, v in table.items() if k != "model"}
        for model, inner in table.get("model", {}).items():
            yield f"asset.{asset}.model.{model}", inner


def load_chart(path: str | Path = DEFAULT_PATH) -> Chart:
    return Chart.from_toml(Path(path).read_text())
