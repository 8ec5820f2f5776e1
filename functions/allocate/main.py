"""HTTP function `allocate`: move credit from a wallet's parent down to it (an enterprise
pool to a division, a reseller to its customer)."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Allocate


@functions_framework.http
@endpoint
def allocate(request, caller):
    return money_action(request, caller, Allocate, bootstrap.service().allocate, function="allocate")
