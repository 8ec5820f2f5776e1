"""Money values: integer minor units of an asset, bounded to a signed 64-bit integer."""

from typing import Annotated

from pydantic import Field, StringConstraints

MAX_MINOR_UNITS = 2**63 - 1

# Strictness comes from the models' strict config: floats, strings and booleans are
# refused, not coerced, so "10.5", 10.0 and true never become an amount.
Amount = Annotated[int, Field(gt=0, le=MAX_MINOR_UNITS, description="positive integer, minor units")]
CreditLimit = Annotated[int, Field(ge=0, le=MAX_MINOR_UNITS)]
WalletId = Annotated[int, Field(gt=0, le=MAX_MINOR_UNITS)]
AssetCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{1,15}$")]
Scale = Annotated[int, Field(ge=0, le=18)]
