"""The pages in a real headless Chromium (Debian `chromium`, driven by Playwright for
Python) against the running backend, with a press from the real firmware on the
MicroPython unix port. Screenshots go to test-artifacts/screenshots/.

Playwright's own browser download cannot work here: the Debian binary is launched
through `executable_path`, with the flags that keep it off the network.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.protocol import Kind
from backend.storage.db import utcnow
from backend.storage.models import Device, Event, Order
from devtools import unix_device
from devtools.mpy import FIRMWARE, popen_script
from devtools.system import program, unavailable
from provisioning.batch import provision_batch
from tests.conftest import BackendThread

SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = ["--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--disable-dev-shm-usage"]
PASSWORD = "correct horse battery"
PHONE = {"width": 375, "height": 740}
TIMEOUT_MS = 20_000
# A load cell under the bottle (as in tests/firmware/test_sensor_e2e.py).
SCALE_BOARD = {"model": "scale", "mcu": "esp32", "led": {"pin": 2, "active_high": True},
               "button": {"pin": 4, "active_low": True, "pull": "up", "rtc_wake": True,
                          "debounce_ms": 30},
               "hx711": {"dout_pin": 16, "sck_pin": 17, "gain": 128},
               "sensor": {"kind": "load_cell", "capacity": 2000, "unit": "g",
                          "hysteresis": 25, "heartbeat_s": 3600, "wake_interval_s": 900}}


@pytest.fixture(scope="module")
def chromium_path() -> str:
    return program("chromium", "chromium")


@pytest.fixture
def browser(chromium_path, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed "
                    "(it is in the test extra; make test installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path, headless=True,
                                              chromium_sandbox=False, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def site(settings, tmp_path):
    """The running backend with a batch of three provisioned buttons (none claimed)."""
    with BackendThread(settings) as backend:
        with backend.writer_sessions() as session, session.begin():
            made = provision_batch(session, backend.keyring, model="button", count=3,
                                   out=tmp_path / "bundles", coap_host="127.0.0.1",
                                   coap_port=backend.coap_port,
                                   name=f"web-{secrets.token_hex(3)}")
        yield backend, f"http://127.0.0.1:{backend.http_port}", made


def firmware_lines(bundle: Path, commands: list[str], **env: str) -> list[str]:
    proc = popen_script(FIRMWARE / "main_unix.py", bundle,
                        env={"REPLENISH_ACK_TIMEOUT_MS": "300", **env})
    out, err = proc.communicate("".join(c + "\n" for c in commands) + "quit\n", timeout=120)
    assert proc.returncode == 0, err
    return out.splitlines()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


class Page:
    """A browser tab that remembers console errors (a CSP violation is one)."""

    def __init__(self, browser, **options):
        self.context = browser.new_context(**options)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text)
                     if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def close(self) -> None:
        self.context.close()
        assert self.errors == []


def new_page(browser, **options):
    tab = Page(browser, **options)
    return tab, tab.page


def register(page, base: str, email: str, household: str = "Our flat") -> None:
    page.goto(f"{base}/register")
    page.fill("input[name=household_name]", household)
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/devices")


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_register_claim_configure_press_and_cancel(browser, site):
    backend, base, made = site
    button = made[0]
    context, page = new_page(browser)
    register(page, base, "ann@example.org")
    assert page.locator("text=No devices yet").is_visible()
    shot(page, "01-devices-empty")

    # Claim by typing the code from the label.
    page.click("text=Add a device")
    page.fill("input[name=code]", button.claim_code)
    shot(page, "02-claim-typed")
    page.click("button:has-text('Add this device')")
    page.wait_for_url(f"{base}/devices/{button.device_id}?claimed=1")
    assert page.locator(".notice.claimed").inner_text().startswith("Added to your household")

    # Configure the slot: 2 x detergent, by pressing.
    page.select_option("select[name=product_sku]", "DETERGENT-1L|899")  # value: SKU|price shown
    page.fill("input[name=quantity]", "2")
    page.click("#configure button[type=submit]")
    page.wait_for_url(f"{base}/devices/{button.device_id}")
    slot_text = page.locator("#slot-0").inner_text()
    assert "2 × Replenish Basics Laundry detergent 1 l" in slot_text
    assert "confirmed at €8.99 a pack" in slot_text
    shot(page, "03-device-configured")

    # The settings page shows the hold window (15 minutes by default): orders wait.
    page.goto(f"{base}/settings")
    assert page.input_value("input[name=hold_window_min]") == "15"

    # A press on the real firmware (MicroPython unix port) against the running backend.
    reports = unix_device.run_commands(button.bundle_dir, ["press"], ack_timeout_ms=300)
    assert reports[0].pattern == "ordered", reports
    order_id = reports[0].order

    page.goto(f"{base}/orders")
    card = page.locator(f"#order-{order_id}")
    assert "pending" in card.inner_text()
    assert "2 × Laundry detergent 1 l · €17.98" in card.inner_text()
    shot(page, "04-orders-pending")
    card.locator("button:has-text('Cancel order')").click()
    page.wait_for_url(f"{base}/orders/{order_id}")
    steps = page.locator(".timeline li").all_inner_texts()
    assert steps[0].startswith("pending") and steps[-1].startswith("cancelled")
    assert page.locator("button:has-text('Cancel order')").count() == 0
    shot(page, "05-order-cancelled")
    with backend.sessions() as session:
        assert session.get(Order, order_id).state == "cancelled"

    page.goto(f"{base}/notifications")
    assert f"Order {order_id}" in page.locator(".list").inner_text()

    # Log out: the pages ask for a log-in again.
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/login")
    page.goto(f"{base}/orders")
    assert page.url == f"{base}/login"
    context.close()


def test_device_page_shows_battery_and_firmware_from_the_devices_status(browser, site):
    """The real firmware sends a status heartbeat (its simulated battery and signal);
    the household's pages show what it reported, at phone and desktop widths."""
    backend, base, made = site
    button = made[0]
    context, page = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    register(page, base, "dee@example.org")
    page.goto(f"{base}/claim/{button.claim_code}")
    page.click("button:has-text('Add this device')")
    page.wait_for_url(f"{base}/devices/{button.device_id}?claimed=1")
    facts = page.locator("dl.facts")
    assert "Not reported yet" in facts.locator(".battery-fact").inner_text()

    lines = firmware_lines(button.bundle_dir, ["status"], REPLENISH_BATTERY_MV="2950",
                           REPLENISH_RSSI_DBM="-61")
    [status] = [line for line in lines if line.startswith("STATUS ")]
    assert status.startswith("STATUS result=68 "), lines  # 2.04: recorded
    firmware = status.split(" fw=")[1].split()[0]
    for viewport, name in ((PHONE, "phone"), ({"width": 1280, "height": 800}, "desktop")):
        page.set_viewport_size(viewport)
        page.goto(f"{base}/devices/{button.device_id}")
        assert facts.locator(".battery-fact").inner_text() == "Good · 2950 mV"
        assert facts.locator(".firmware-fact").inner_text() == firmware
        assert facts.locator(".status-fact").inner_text().endswith("· Wi-Fi good (-61 dBm)")
        assert no_horizontal_scroll(page)
        shot(page, f"14-device-status-{name}")
        page.goto(f"{base}/devices")
        card = page.locator(f"#device-{button.device_id}")
        assert card.locator(".battery-fact").inner_text() == "Good · 2950 mV"
        assert card.locator(".firmware-fact").inner_text() == firmware
    context.close()


def test_claim_by_opening_the_qr_url(browser, site):
    backend, base, made = site
    button = made[1]
    context, page = new_page(browser)
    register(page, base, "bob@example.org")
    page.click("button:has-text('Log out')")
    page.wait_for_url(f"{base}/login")

    # The phone camera opens the URL from the label's QR code: log in first, then confirm.
    page.goto(f"{base}/claim/{button.claim_code}")
    assert page.url == f"{base}/login"
    page.fill("input[name=email]", "bob@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/claim/{button.claim_code}")
    assert page.input_value("input[name=code]") == button.claim_code
    shot(page, "06-claim-from-qr")
    page.click("button:has-text('Add this device')")
    page.wait_for_url(f"{base}/devices/{button.device_id}?claimed=1")
    with backend.sessions() as session:
        device = session.scalars(select(Device)
                                 .where(Device.device_id == button.device_id)).one()
        assert device.household_id is not None
    context.close()


def test_sensor_page_chart_and_phone_width(browser, site):
    backend, base, made = site
    sensor = made[2]
    with backend.writer_sessions() as session, session.begin():  # made as a scale
        session.scalars(select(Device).where(Device.device_id == sensor.device_id)
                        ).one().model = "scale"
    context, page = new_page(browser, viewport=PHONE, is_mobile=True, has_touch=True)
    register(page, base, "cat@example.org", household="A flat with a long name, really")
    page.click("text=Add a device")
    page.fill("input[name=code]", sensor.claim_code)
    page.click("button:has-text('Add this device')")
    page.wait_for_url(f"{base}/devices/{sensor.device_id}?claimed=1")
    page.select_option("select[name=product_sku]", "DETERGENT-1L|899")  # value: SKU|price shown
    assert page.locator("select[name=kind]").count() == 0  # a scale's form is a sensor's
    page.fill("input[name=safety_days]", "1")
    page.click("#configure button[type=submit]")
    page.wait_for_url(f"{base}/devices/{sensor.device_id}")
    assert "level chart and forecast" in page.locator("#slot-0").inner_text()

    # Level history: a bottle going down by 150 ml a day, a report every 6 hours for
    # five days (stored as ingest stores level reports; history needs past times).
    # Their seq numbers are far above the firmware's, which stay fresh for the device.
    now = utcnow()
    levels = [(now - timedelta(hours=6 * (20 - i)), 900 - 37.5 * i) for i in range(20)]
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device)
                                 .where(Device.device_id == sensor.device_id)).one()
        for n, (at, remaining) in enumerate(levels):
            session.add(Event(device_pk=device.id, seq=10**12 + n, kind=int(Kind.LEVEL),
                              slot=0, remaining=int(remaining), tag=secrets.token_bytes(32),
                              received_at=at, result=68))
    # Then the real firmware weighs the bottle and reports: below the reorder point, so
    # the backend orders, and the chart shows why.
    (sensor.bundle_dir / "board.json").write_text(json.dumps(SCALE_BOARD))
    lines = firmware_lines(sensor.bundle_dir, ["tare", "weight 1000", "calibrate 1000",
                                               "weight 150", "wake 0"])
    assert "LEVEL remaining=150 report=first" in lines, lines
    with backend.sessions() as session:
        order = session.scalars(select(Order).where(Order.device_pk == device.id)).one()
        assert (order.source, order.state) == ("sensor", "pending")

    page.click("text=level chart and forecast")
    page.wait_for_url(f"{base}/devices/{sensor.device_id}/slots/0")
    chart = page.locator("svg.chart")
    assert chart.is_visible()
    assert chart.locator("circle.reading").count() == len(levels) + 1
    assert chart.locator("g.order-mark").get_attribute("data-order") == str(order.id)
    line = chart.locator("g.reorder-point line")
    assert line.count() == 1 and line.get_attribute("y1") == line.get_attribute("y2")
    box = chart.bounding_box()
    assert box["width"] <= PHONE["width"]
    assert page.locator(".run-out-date").inner_text()[-4:-2] == "20"  # "Dec 9, 2026"
    assert no_horizontal_scroll(page)
    shot(page, "07-sensor-chart-phone")

    for path in ("/devices", f"/devices/{sensor.device_id}", "/orders", "/settings",
                 "/notifications", "/devices/claim"):
        page.goto(base + path)
        assert no_horizontal_scroll(page), path
    page.goto(f"{base}/devices")
    shot(page, "08-devices-phone")
    context.close()


def test_operator_fleet_and_revoke(browser, site):
    backend, base, made = site
    from backend.accounts import users as accounts

    with backend.writer_sessions() as session, session.begin():
        accounts.create_operator(session, "ops@example.org", PASSWORD)
    context, page = new_page(browser, viewport=PHONE)
    page.goto(f"{base}/login")
    page.fill("input[name=email]", "ops@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/operator/fleet")
    assert page.locator("tbody tr").count() == len(made)
    assert no_horizontal_scroll(page)  # the wide table scrolls inside its box
    target = made[0].device_id
    page.locator(f"#device-{target} a:has-text('Revoke')").click()
    page.wait_for_url(f"{base}/operator/devices/{target}/revoke")
    shot(page, "10-operator-revoke-confirm-phone")
    page.fill("input[name=reason]", "reported stolen")
    page.click("button:has-text('Revoke this device')")
    page.wait_for_url(f"{base}/operator/fleet?revoked={target}")
    assert "revoked" in page.locator(f"#device-{target}").inner_text()
    shot(page, "09-operator-fleet-phone")
    page.goto(f"{base}/operator/batches")
    assert page.locator("tbody tr").count() == 1
    with backend.sessions() as session:
        assert session.scalars(select(Device.status)
                               .where(Device.device_id == target)).one() == "revoked"
    # At 1280 px the fleet table uses the width it needs: every column in view, nothing
    # clipped by a reading-width column or scrolled out of its box.
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{base}/operator/fleet")
    box = page.locator(".scroll").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert box[0] <= box[1], box
    last = page.locator("thead th").last.bounding_box()
    assert last["x"] + last["width"] <= 1280
    shot(page, "11-operator-fleet-desktop")
    # The catalogue too: each row's price form on one line, its Save button in view.
    page.goto(f"{base}/operator/catalogue")
    box = page.locator(".scroll").evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert box[0] <= box[1], box
    save = page.locator("table.catalogue button[type=submit]").last.bounding_box()
    assert save["x"] + save["width"] <= 1280
    page.set_viewport_size(NARROW)
    assert no_horizontal_scroll(page)  # the table scrolls inside its box
    page.set_viewport_size({"width": 1280, "height": 800})
    from provisioning import releases as release_signing

    with backend.writer_sessions() as session, session.begin():
        for version in ("0.3.0", "0.4.0"):
            release_signing.publish(session, release_signing.Ed25519PrivateKey.generate(),
                                    model="button", version=version, percent=20,
                                    files={"replenish/x.mpy": version.encode()})
    page.goto(f"{base}/operator/releases")
    page.locator("tbody tr").first.locator("button:has-text('Pause')").click()
    page.wait_for_url(f"{base}/operator/releases?changed=*")
    assert "paused: paused by operator" in page.locator("tbody tr").first.inner_text()
    shot(page, "12-operator-rollouts-desktop")
    context.close()


DESKTOP = {"width": 1280, "height": 900}
NARROW = {"width": 390, "height": 844}


def claim_and_configure(page, base: str, button) -> None:
    page.click("text=Add a device")
    page.fill("input[name=code]", button.claim_code)
    page.click("button:has-text('Add this device')")
    page.wait_for_url(f"{base}/devices/{button.device_id}?claimed=1")
    page.select_option("select[name=product_sku]", "DETERGENT-1L|899")  # €8.99 shown
    page.click("#configure button[type=submit]")
    page.wait_for_url(f"{base}/devices/{button.device_id}")


@pytest.mark.parametrize("viewport", [DESKTOP, NARROW], ids=["1280", "390"])
def test_consent_price_raised_press_waits_confirm_delivers_and_decline(browser, site,
                                                                        viewport):
    """Price raised in the catalogue → a press from the real firmware on the unix port →
    the order waits → the household confirms on the page → delivered; and declined."""
    from backend.orders import catalogue
    from tests.worker_helpers import until

    backend, base, made = site
    width = viewport["width"]
    tab, page = new_page(browser, viewport=viewport)
    register(page, base, f"dee-{width}@example.org")
    for button in made[:2]:
        page.goto(f"{base}/devices")
        claim_and_configure(page, base, button)
    page.goto(f"{base}/settings")
    page.fill("input[name=hold_window_min]", "0")
    page.click("button:has-text('Save')")

    # The operator raises the price (as PATCH /operator/products or `catalogue set`).
    with backend.writer_sessions() as session, session.begin():
        catalogue.upsert(session, {"sku": "DETERGENT-1L", "price_minor": 999}, create=False)
    page.goto(f"{base}/devices/{made[0].device_id}")
    assert "now €9.99" in page.locator("#slot-0").inner_text()

    reports = unix_device.run_commands(made[0].bundle_dir, ["press"], ack_timeout_ms=300)
    assert (reports[0].result, reports[0].state) == (65, "awaiting_consent"), reports
    order_id = reports[0].order

    page.goto(f"{base}/orders")
    card = page.locator(f"#order-{order_id}")
    assert "awaiting consent" in card.inner_text() and "Waits for you" in card.inner_text()
    assert "1 × Laundry detergent 1 l · €9.99" in card.inner_text()
    card.locator("a:has-text('confirm or decline')").click()
    page.wait_for_url(f"{base}/orders/{order_id}")
    consent = page.locator("section.consent")
    assert "€9.99" in consent.locator(".price-now").inner_text()
    assert "you confirmed €8.99" in consent.inner_text()
    assert no_horizontal_scroll(page)
    shot(page, f"17-consent-waiting-{width}")
    page.click(f"button:has-text('Confirm order {order_id}')")
    page.wait_for_url(f"{base}/orders/{order_id}")
    assert page.locator("section.consent").count() == 0
    until(backend, lambda s: s.get(Order, order_id).state == "delivered")
    page.reload()
    steps = page.locator(".timeline li").all_inner_texts()
    assert steps[0].startswith("awaiting consent") and steps[1].startswith("confirmed")
    assert "confirmed by household at €9.99 a pack" in steps[1]
    assert steps[-1].startswith("delivered")
    shot(page, f"18-consent-confirmed-delivered-{width}")

    # The second button: the product is unavailable now; the household declines.
    with backend.writer_sessions() as session, session.begin():
        catalogue.upsert(session, {"sku": "DETERGENT-1L", "available": False}, create=False)
    reports = unix_device.run_commands(made[1].bundle_dir, ["press"], ack_timeout_ms=300)
    assert reports[0].state == "awaiting_consent", reports
    declined = reports[0].order
    page.goto(f"{base}/orders/{declined}")
    assert "not available at the moment" in page.locator("section.consent").inner_text()
    assert page.locator("button:has-text('Confirm order')").count() == 0
    page.click(f"button:has-text('Decline order {declined}')")
    page.wait_for_url(f"{base}/orders/{declined}")
    steps = page.locator(".timeline li").all_inner_texts()
    assert steps[-1].startswith("cancelled") and "declined by household" in steps[-1]
    shot(page, f"19-consent-declined-{width}")
    with backend.sessions() as session:
        assert session.get(Order, declined).state == "cancelled"
    tab.close()


# Level histories from a minute to two months: (name, readings, time between them).
CHART_SPANS = [("minute", 8, timedelta(seconds=8)), ("hour", 12, timedelta(minutes=5)),
               ("day", 12, timedelta(hours=2)), ("fortnight", 28, timedelta(hours=12)),
               ("two-months", 58, timedelta(days=1))]
# Every text of the chart, as the browser drew it: its box and the SVG's, in CSS px.
LABEL_BOXES = """svg => {
  const box = e => { const r = e.getBoundingClientRect();
                     return [r.left, r.top, r.right, r.bottom]; };
  return {svg: box(svg), labels: [...svg.querySelectorAll('text')].map(
    t => ({text: t.textContent, cls: t.getAttribute('class'), box: box(t)}))};
}"""


def overlapping(labels: list[dict], slack: float = 0.5) -> list[tuple[str, str]]:
    pairs = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            (a0, a1, a2, a3), (b0, b1, b2, b3) = a["box"], b["box"]
            if min(a2, b2) - max(a0, b0) > slack and min(a3, b3) - max(a1, b1) > slack:
                pairs.append((a["text"], b["text"]))
    return pairs


def outside(labels: list[dict], svg: list[float], slack: float = 0.5) -> list[str]:
    return [label["text"] for label in labels
            if label["box"][0] < svg[0] - slack or label["box"][1] < svg[1] - slack
            or label["box"][2] > svg[2] + slack or label["box"][3] > svg[3] + slack]


def test_chart_labels_never_overlap_at_any_span_or_width(browser, site):
    """The sensor chart's texts (times, levels, reorder point, orders, run-out) as
    Chromium lays them out at 390 and 1280 px, for histories from a minute to two
    months: no two boxes overlap, all inside the chart."""
    from backend.orders import lifecycle

    backend, base, made = site
    sensor = made[2]
    with backend.writer_sessions() as session, session.begin():  # made as a scale
        session.scalars(select(Device).where(Device.device_id == sensor.device_id)
                        ).one().model = "scale"
    tab, page = new_page(browser, viewport=DESKTOP)
    register(page, base, "eve@example.org")
    claim_and_configure(page, base, sensor)
    with backend.writer_sessions() as session, session.begin():
        device = session.scalars(select(Device)
                                 .where(Device.device_id == sensor.device_id)).one()
        for _ in range(2):  # two order marks at the same time: their labels compete
            lifecycle.create(session, actor="test", hold_window_s=900,
                             household_id=device.household_id, device_pk=device.id,
                             slot_index=0, product_sku="DETERGENT-1L", quantity=1)
        device_pk = device.id
    measured = 0
    for name, count, step in CHART_SPANS:
        now = utcnow()
        with backend.writer_sessions() as session, session.begin():
            session.execute(Event.__table__.delete().where(Event.device_pk == device_pk))
            for n in range(count):  # falling from 900 towards 100, the last just now
                session.add(Event(device_pk=device_pk, seq=10**12 + n, kind=int(Kind.LEVEL),
                                  slot=0, remaining=900 - 700 * n // count,
                                  tag=secrets.token_bytes(32),
                                  received_at=now - step * (count - 1 - n), result=68))
        for viewport in (NARROW, DESKTOP):
            page.set_viewport_size(viewport)
            page.goto(f"{base}/devices/{sensor.device_id}/slots/0")
            drawn = page.locator("svg.chart").evaluate(LABEL_BOXES)
            labels = drawn["labels"]
            assert sum(label["cls"] == "time-label" for label in labels) >= 2, (name, labels)
            assert overlapping(labels) == [], (name, viewport["width"])
            assert outside(labels, drawn["svg"]) == [], (name, viewport["width"])
            assert no_horizontal_scroll(page)
            shot(page, f"13-chart-{name}-{viewport['width']}")
            measured += 1
    assert measured == 2 * len(CHART_SPANS)
    tab.close()
