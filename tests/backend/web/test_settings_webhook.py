"""The settings page sets the household's webhook, under the outbound address policy
(docs/security.md): a refused URL is said in words, logged, and changes nothing; the
secret is write-only. Both databases."""

import logging

import pytest

from backend.storage.models import Household
from tests.web_helpers import App, csrf, household_of, register, text

FORM = {"hold_window_min": "5", "max_orders_per_day": "", "monthly_limit": ""}


@pytest.fixture
def app(settings):
    made = App(settings.with_(webhook_allow_networks=("192.0.2.0/24",)))
    yield made
    made.close()


def post(client, **fields):
    return client.post("/settings", data={**FORM, **fields,
                                          "csrf_token": csrf(client, "/settings")})


def test_the_settings_page_sets_a_webhook_under_the_address_policy(app, caplog):
    client = app.client()
    hid = household_of(app, register(client))
    assert post(client, webhook_url="http://192.0.2.10/hook",
                webhook_secret="shh-secret").status_code == 302
    for refused, words in [("http://127.0.0.1:8000/admin", "loopback"),
                           ("http://169.254.169.254/latest/", "link-local"),
                           ("http://10.0.0.1/", "private"),
                           ("ftp://192.0.2.10/", "http:// or https://")]:
        caplog.clear()
        response = post(client, hold_window_min="9", webhook_url=refused)
        assert response.status_code == 400 and words in text(response), refused
        assert any("refused" in r.getMessage() for r in caplog.records
                   if r.levelno >= logging.INFO)
    with app.sessions() as session:
        household = session.get(Household, hid)
        assert (household.webhook_url, household.webhook_secret, household.hold_window_s) \
            == ("http://192.0.2.10/hook", "shh-secret", 300), "refusals changed nothing"
    page = text(client.get("/settings"))
    assert "http://192.0.2.10/hook" in page and "shh-secret" not in page
    assert post(client, webhook_url="").status_code == 302  # empty: no webhook
    with app.sessions() as session:
        household = session.get(Household, hid)
        assert (household.webhook_url, household.webhook_secret) == (None, "shh-secret")
    assert "shh-secret" not in caplog.text
