"""Helpers for the page tests: a real app on the test database and a logged-in client."""

from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select

from backend.accounts import users as accounts
from backend.orders import lifecycle as orders
from backend.storage.db import make_engine, make_sessionmaker
from backend.storage.models import Device, User
from backend.web import create_app

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class App:
    """create_app on `settings`, with reader and writer sessions like the backend's."""

    def __init__(self, settings):
        self.engine = make_engine(settings.db_url)
        self.sessions = make_sessionmaker(self.engine)
        self.writer = make_sessionmaker(self.engine, writer=True)
        self.flask = create_app(self.sessions, self.writer, settings)
        self.flask.testing = True

    def client(self, source: str = "127.0.0.1"):
        client = self.flask.test_client()
        client.environ_base["REMOTE_ADDR"] = source
        return client

    def close(self):
        self.engine.dispose()


def web_app(settings):
    """The body of a test module's `app` fixture: the web app on the test's database."""
    made = App(settings)
    yield made
    made.close()


def csrf(client, path: str = "/login") -> str:
    page = client.get(path)
    match = _CSRF.search(page.get_data(as_text=True))
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def register(client, email: str | None = None, name: str = "Test flat"):
    email = email or f"u{secrets.token_hex(4)}@example.org"
    token = csrf(client, "/register")
    response = client.post("/register", data={
        "email": email, "password": PASSWORD, "password_again": PASSWORD,
        "household_name": name, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return email


def login(client, email: str, password: str = PASSWORD):
    token = csrf(client, "/login")
    return client.post("/login", data={"email": email, "password": password,
                                       "csrf_token": token})


def make_operator(app: App, email: str = "ops@example.org") -> str:
    with app.writer() as session, session.begin():
        accounts.create_operator(session, email, PASSWORD)
    return email


def add_device(session, *, model: str = "button", fw: str | None = "1.0.0",
               battery_mv: int | None = 3000, household_id: int | None = None,
               last_seen_at=None) -> tuple[str, str]:
    """A device row with a real claim code (no key needed by the pages): (id, code)."""
    from backend.accounts import claim_codes
    from backend.storage.models import Batch

    batch = session.scalars(select_batch()).first()
    if batch is None:
        batch = Batch(name="web-test", model=model, count=0, firmware_version="1.0.0",
                      created_by="test")
        session.add(batch)
        session.flush()
    code = claim_codes.generate()
    device_id = secrets.token_hex(8)
    session.add(Device(device_id=device_id, serial=f"SN-{device_id}", model=model,
                       batch_id=batch.id, wrapped_key=b"\x01" * 45,
                       claim_code_sha256=claim_codes.code_hash(code), fw_version=fw,
                       battery_mv=battery_mv, household_id=household_id,
                       last_seen_at=last_seen_at))
    session.flush()
    return device_id, code


def select_batch():
    from backend.storage.models import Batch

    return select(Batch).where(Batch.name == "web-test")


def household_of(app: App, email: str) -> int:
    with app.sessions() as session:
        return session.scalars(select(User.household_id).where(User.email == email)).one()


def text(response) -> str:
    return response.get_data(as_text=True)


def count(app: App, model) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count()).select_from(model))


def new_order(app: App, household_id: int, device_id: str, hold_window_s: int = 900,
              **fields) -> int:
    """An order for 1 x DETERGENT-1L; `consent_reason="price_increased"` (with the
    snapshot fields) makes one that waits for the household."""
    with app.writer() as session, session.begin():
        device = session.scalars(select(Device).where(Device.device_id == device_id)).one()
        order = orders.create(session, actor=f"device:{device_id}",
                              hold_window_s=hold_window_s, household_id=household_id,
                              device_pk=device.id, slot_index=0, product_sku="DETERGENT-1L",
                              quantity=1, **fields)
        return order.id


def claimed_device(app: App, household_id: int, **kw) -> str:
    with app.writer() as session, session.begin():
        device_id, _ = add_device(session, household_id=household_id, **kw)
    return device_id
