"""Every page, as a household and as an operator, checked by axe-core (the accessibility
engine, injected by Playwright into the real Chromium): no serious or critical
violation of WCAG 2.0/2.1 A and AA rules. And the main flows by keyboard alone."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.accounts import devices as device_service
from backend.accounts import users as accounts
from backend.orders import lifecycle as orders
from devtools.system import npm_package_file
from provisioning import releases as release_signing
from provisioning.batch import provision_batch
from tests.backend.web.test_browser import (  # noqa: F401 (browser, chromium_path: fixtures)
    PASSWORD,
    browser,
    chromium_path,
    new_page,
    register,
)
from tests.conftest import BackendThread

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # pages, not SQL

AXE_DIR = Path(__file__).resolve().parents[3] / "build" / "axe-core"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def axe_js() -> str:
    return npm_package_file("axe-core@4", "axe.min.js", str(AXE_DIR))


def violations(page, axe_js: str) -> list[str]:
    page.add_script_tag(path=axe_js)
    found = page.evaluate("r => axe.run(document, {runOnly: r})", RULES)["violations"]
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']][:3]}"
            for v in found if v["impact"] in ("serious", "critical")]


@pytest.fixture
def lived_in(settings, tmp_path):
    """A backend with a household that has a claimed, configured button, an order and
    a notification; an operator; a published release."""
    with BackendThread(settings) as backend:
        with backend.writer_sessions() as session, session.begin():
            made = provision_batch(session, backend.keyring, model="button", count=2,
                                   out=tmp_path / "bundles", coap_host="127.0.0.1",
                                   coap_port=backend.coap_port,
                                   name=f"a11y-{secrets.token_hex(3)}")
            accounts.create_operator(session, "ops@example.org", PASSWORD)
            release_signing.publish(session, release_signing.Ed25519PrivateKey.generate(),
                                    model="button", version="0.3.0",
                                    files={"replenish/x.mpy": b"x"})
        yield backend, f"http://127.0.0.1:{backend.http_port}", made


def test_no_serious_or_critical_violation_on_any_page(browser, lived_in, axe_js):
    backend, base, made = lived_in
    found: dict[str, list[str]] = {}

    def check(page, path: str) -> None:
        page.goto(base + path)
        if problems := violations(page, axe_js):
            found[path] = problems

    tab, page = new_page(browser, bypass_csp=True)  # axe is injected as a script
    for path in ("/login", "/register"):
        check(page, path)
    register(page, base, "a11y@example.org")
    page.goto(f"{base}/devices/claim")
    page.fill("input[name=code]", made[0].claim_code)
    page.click("main button[type=submit]")
    device = made[0].device_id
    page.wait_for_url(f"{base}/devices/{device}*")
    with backend.writer_sessions() as session, session.begin():
        claimed = device_service.find(session, device)
        device_service.configure_slot(session, claimed, 0, "DETERGENT-1L", 1)
        order_id = orders.create(session, actor=f"device:{device}", hold_window_s=900,
                                 household_id=claimed.household_id, device_pk=claimed.id,
                                 slot_index=0, product_sku="DETERGENT-1L", quantity=1).id
    for path in ("/claim/ABCD", "/devices", "/devices/claim", f"/devices/{device}",
                 f"/devices/{device}/slots/0", "/orders", f"/orders/{order_id}",
                 "/notifications", "/settings"):
        check(page, path)
    tab.context.clear_cookies()
    page.goto(f"{base}/login")
    page.fill("input[name=email]", "ops@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    for path in ("/operator/fleet", "/operator/batches", "/operator/releases",
                 "/operator/catalogue",
                 f"/operator/devices/{made[1].device_id}/revoke"):
        check(page, path)
    tab.close()
    assert found == {}


def tab_to(page, test_js: str, presses: int = 40) -> None:
    """Tab (bounded) until the focused element passes `test_js` (an expression on `e`)."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"(e => !!({test_js}))(document.activeElement)"):
            return
    raise AssertionError(f"Tab never reached {test_js}")


def test_claim_configure_confirm_and_cancel_by_keyboard_alone(browser, lived_in):
    """The household's main flows with the keyboard only: claim a device, choose what it
    orders, confirm an order that waits for consent, cancel one in its hold window."""
    from backend.orders import catalogue
    from backend.storage.models import Device, Order, Slot

    backend, base, made = lived_in
    tab, page = new_page(browser)
    register(page, base, "keys@example.org")
    device = made[0].device_id
    page.goto(f"{base}/devices/claim")
    tab_to(page, "e.name === 'code'")
    page.keyboard.type(made[0].claim_code)
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_url(f"{base}/devices/{device}*")

    tab_to(page, "e.name === 'product_sku'")
    page.keyboard.press("ArrowDown")  # the next product in the list
    chosen = page.evaluate("document.activeElement.value").split("|")[0]  # sku|price shown
    tab_to(page, "e.name === 'quantity'")
    page.keyboard.press("Control+A")
    page.keyboard.type("3")
    tab_to(page, "e.tagName === 'BUTTON' && e.textContent.includes('Save')")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    with backend.sessions() as session:
        pk = session.scalars(select(Device.id).where(Device.device_id == device)).one()
        slot = session.scalars(select(Slot).where(Slot.device_pk == pk)).one()
        assert (slot.product_sku, slot.quantity) == (chosen, 3)
        household_id = session.get(Device, pk).household_id

    with backend.writer_sessions() as session, session.begin():
        product = catalogue.get(session, chosen)
        waiting = orders.create(session, actor=f"device:{device}", hold_window_s=900,
                                household_id=household_id, device_pk=pk, slot_index=0,
                                product_sku=chosen, quantity=1,
                                unit_price_cents=product.price_cents,
                                currency=product.currency,
                                confirmed_price_minor=product.price_cents - 1,
                                consent_reason="price_increased").id
        pending = orders.create(session, actor=f"device:{device}", hold_window_s=900,
                                household_id=household_id, device_pk=pk, slot_index=0,
                                product_sku=chosen, quantity=1).id
    page.goto(f"{base}/orders/{waiting}")
    tab_to(page, f"e.textContent.startsWith('Confirm order {waiting}')")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    page.goto(f"{base}/orders/{pending}")
    tab_to(page, f"e.textContent.startsWith('Cancel order {pending}')")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    with backend.sessions() as session:
        steps = {order_id: [(t.to_state, t.actor.split(":")[0])
                            for t in session.get(Order, order_id).history]
                 for order_id in (waiting, pending)}
    # (the worker may already have sent the confirmed one on to the merchant)
    assert steps[waiting][:2] == [("awaiting_consent", "device"), ("confirmed", "household")]
    assert steps[pending] == [("pending", "device"), ("cancelled", "household")]
    tab.close()
