"""Text Postgres can't hold (a NUL) is the caller's fault: a 400, even when it slips past
the command models (here they are gone around), never a 500, and nothing is written."""

import json

import pytest

from common import bootstrap
from common.errors import InvalidRequest
from common.ledger import commands
from tests.support import CALLER, key, sql


def test_a_nul_in_an_owner_id_the_models_let_through_is_a_400_and_writes_nothing(stack):
    owner = key("nul") + "\x00x"
    unchecked = commands.CreateWallet.model_construct(
        owner_id=owner, asset="TST", model="personal", parent_id=None, spend_mode=None, credit_limit=0, metadata={}
    )
    with pytest.raises(InvalidRequest) as refused:
        bootstrap.ledger_admin().create_wallet(unchecked, CALLER.actor())
    assert refused.value.status == 400
    assert sql(stack, "SELECT count(*) FROM ledger.wallets WHERE owner_id LIKE :o", o=owner[:40] + "%")[0][0] == 0


def test_a_nul_escape_in_metadata_the_models_let_through_is_a_400(stack):
    unchecked = commands.CreateWallet.model_construct(
        owner_id=key("o"),
        asset="TST",
        model="personal",
        parent_id=None,
        spend_mode=None,
        credit_limit=0,
        metadata={"note": "a\x00b"},
    )
    assert "\\u0000" in json.dumps(dict(unchecked.metadata))  # jsonb refuses this escape (22P05)
    with pytest.raises(InvalidRequest) as refused:
        bootstrap.ledger_admin().create_wallet(unchecked, CALLER.actor())
    assert refused.value.status == 400
