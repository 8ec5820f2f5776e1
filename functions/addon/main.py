"""HTTP function `addon`: extra credit bought on top of a plan, funding to a wallet; with
`expires_at` it becomes a lot."""

import functions_framework

from common import bootstrap
from common.http import endpoint, money_action
from common.ledger.commands import AddOn


@functions_framework.http
@endpoint
def addon(request, caller):
    return money_action(request, caller, AddOn, bootstrap.service().add_on, function="addon")
