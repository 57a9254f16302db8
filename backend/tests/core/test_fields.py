"""Field types: a name needs a visible character; blank and invisible ones do not count."""

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, select

from app.core.fields import NAME_PATTERN, Name
from app.trips.models import Trip
from tests import factories, support

NAME = TypeAdapter(Name)
# Each shows nothing: zero-width space, non-joiner, joiner, word joiner, BOM, soft hyphen,
# left-to-right mark, a variation selector, a tag character, the Hangul filler.
INVISIBLE = [
    "\u200b",
    "\u200b\u200c\u200d\u2060\ufeff",
    " \u200b \u00ad ",
    "\u200e\u200f\u202a\u202c",
    "\ufe0f",
    "\U000e0041\U000e007f",
    "\u3164",
    "\u2800",
    "\t\u200b\u3000",
]
# A family: man, woman, girl joined by zero-width joiners; a flag made of tag characters.
VISIBLE = [
    "Ann",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 Smiths",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "Ann\u200b",
    "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
    "caf\u00e9",
]


@pytest.mark.parametrize("name", INVISIBLE)
def test_a_name_of_only_invisible_characters_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="visible character"):
        NAME.validate_python(name)
    assert not re.fullmatch(NAME_PATTERN, name)  # the OpenAPI document says so too


@pytest.mark.parametrize("name", VISIBLE)
def test_a_name_with_a_visible_character_is_kept(name: str) -> None:
    assert NAME.validate_python(name) == name.strip()
    assert re.fullmatch(NAME_PATTERN, name)


@pytest.mark.parametrize("name", ["\u200b\u200b", "\ufeff", "\u200d"])
def test_an_invisible_trip_name_is_422_and_stores_nothing(
    client: TestClient, session: Session, name: str
) -> None:
    owner = factories.make_user(session)
    response = client.post(
        "/trips", headers=support.auth(owner), json={**factories.TRIP, "name": name}
    )
    support.assert_problem(response, 422, "validation_error")
    assert session.exec(select(Trip).where(Trip.created_by == owner.id)).first() is None


def test_an_emoji_family_names_a_trip(client: TestClient, session: Session) -> None:
    owner = factories.make_user(session)
    name = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert factories.create_trip(client, owner, name=name)["name"] == name
