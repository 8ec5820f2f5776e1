"""HTTP function `bonus`: promotion to a wallet."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import Bonus


@functions_framework.http
@endpoint
def bonus(request, caller):
    return money_action(request, caller, Bonus, bootstrap.service().bonus, function="bonus")
