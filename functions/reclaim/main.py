"""HTTP function `reclaim`: move credit from a wallet back up to its parent."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Reclaim


@functions_framework.http
@endpoint
def reclaim(request, caller):
    return money_action(request, caller, Reclaim, bootstrap.service().reclaim, function="reclaim")
