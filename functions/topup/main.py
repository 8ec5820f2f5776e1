"""HTTP function `topup`: funding to a wallet, carrying the payment reference."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import TopUp


@functions_framework.http
@endpoint
def topup(request, caller):
    return money_action(request, caller, TopUp, bootstrap.service().top_up, function="topup")
