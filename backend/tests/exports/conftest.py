"""The expense tests' trip: an owner, an editor, a viewer and a guest, built through the API."""

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from tests.expenses.support import Ledger, make_ledger


@pytest.fixture
def ledger(client: TestClient, session: Session) -> Ledger:
    return make_ledger(client, session)
