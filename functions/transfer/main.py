"""HTTP function `transfer`: wallet to wallet, same asset."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Transfer


@functions_framework.http
@endpoint
def transfer(request, caller):
    return money_action(request, caller, Transfer, bootstrap.service().transfer, function="transfer")
