"""HTTP function `void`: reverse an earlier action, exactly once."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Void


@functions_framework.http
@endpoint
def void(request, caller):
    return money_action(request, caller, Void, bootstrap.service().void, function="void")
