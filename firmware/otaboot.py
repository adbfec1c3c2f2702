"""Boot stage of over-the-air updates: pick the firmware slot before the app imports.

Part of the entry stage with main.py / main_unix.py: never replaced by an update,
imports nothing from replenish/ (that package must come from the chosen slot).

<root>/ota/boot.json (written whole to boot.tmp, then renamed over: one atomic step on
littlefs and POSIX) says which slot runs:

    {"active": "b3" | null, "build": 3, "version": "0.3.0", "release": 7,
     "confirmed": false, "tries": 1, "previous": "b2" | null, "prev_build": 2,
     "prev_version": "0.2.0", "report": [code, release] | null}

`active` null (or no file) = the factory firmware, the modules beside the entry point.
A new slot starts unconfirmed: each boot counts a try; the app confirms the slot once
the backend answered its check-in (checked_in). A slot that has not checked in after
MAX_TRIES boots is abandoned: the previous slot runs again and `report` holds
[2 (rolled back), release] until a heartbeat delivered it (docs/fleet.md).
"""

import json
import os
import sys

MAX_TRIES = 3
FACTORY = 0  # running the modules flashed at provisioning
CONFIRMED = 1  # running an update that checked in
TRIAL = 2  # running an update that has not checked in yet
_ROLLED_BACK = 2  # = protocol.OTA_ROLLED_BACK
_INSTALLED = 1  # = protocol.OTA_INSTALLED


def ota_dir(root):
    return root + "/ota"


def read(root):
    """The boot record (a dict), or None when the factory firmware is all there is."""
    try:
        with open(ota_dir(root) + "/boot.json") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write(root, record):
    """Replace the boot record atomically: a power cut leaves the old or the new one."""
    folder = ota_dir(root)
    try:
        os.mkdir(folder)
    except OSError:
        pass
    tmp = folder + "/boot.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(record))
    os.rename(tmp, folder + "/boot.json")


def _roll_back(record):
    record["report"] = [_ROLLED_BACK, record.get("release")]
    record["active"] = record.get("previous")
    record["build"] = record.get("prev_build", 0)
    record["version"] = record.get("prev_version")
    record["release"] = None
    record["previous"] = None
    record["confirmed"] = True
    record["tries"] = 0


def select(root, max_tries=MAX_TRIES):
    """Count this boot, roll back if a trial ran out of tries, put the slot on sys.path.

    Returns FACTORY, CONFIRMED or TRIAL (the caller arms a watchdog for a trial)."""
    record = read(root)
    if record is None or not record.get("active"):
        return FACTORY
    if not record.get("confirmed"):
        record["tries"] = record.get("tries", 0) + 1
        if record["tries"] > max_tries:
            _roll_back(record)
        write(root, record)
        if not record.get("active"):
            return FACTORY
    sys.path.insert(0, ota_dir(root) + "/" + record["active"])
    return CONFIRMED if record.get("confirmed") else TRIAL


def running(root, factory_version):
    """(version, build) of the firmware running now."""
    record = read(root)
    if record is None or not record.get("active"):
        return (record or {}).get("version") or factory_version, 0
    return record.get("version") or factory_version, record.get("build", 0)


def pending_report(root):
    """[code, release] the next heartbeat must carry, or None.

    A trial slot reports itself as installed: its first answered check-in confirms it."""
    record = read(root)
    if record is None:
        return None
    if record.get("active") and not record.get("confirmed"):
        return [_INSTALLED, record.get("release")]
    return record.get("report")


def checked_in(root):
    """A heartbeat carrying pending_report() got an authenticated answer."""
    record = read(root)
    if record is None:
        return
    if record.get("active") and not record.get("confirmed"):
        record["confirmed"] = True
        record["tries"] = 0
    record["report"] = None
    write(root, record)


def note_report(root, code, release):
    """Keep a report (e.g. refused) for the next heartbeat."""
    record = read(root) or {"active": None, "build": 0, "confirmed": True}
    record["report"] = [code, release]
    write(root, record)
