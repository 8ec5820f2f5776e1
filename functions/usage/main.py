"""HTTP function `usage`: wallet to revenue for a usage id and product, under the wallet's Redis lock."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Usage


@functions_framework.http
@endpoint
def usage(request, caller):
    return money_action(request, caller, Usage, bootstrap.service().usage, function="usage")
