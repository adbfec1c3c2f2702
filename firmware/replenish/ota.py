"""Over-the-air update: fetch a signed release over CoAP Block2, verify, stage, switch.

The answer to a heartbeat names a release (answer key 7). Updater.run(release):

1. refuses to start below a safe battery voltage (a cut mid-write costs a retry, not
   a brick, but a flat battery would keep retrying);
2. GETs /fw/<release> (the signed manifest) and every /fw/<release>/<path>, block by
   block (RFC 7959 Block2, 1024-byte blocks), each block appended to a file in
   <root>/ota/stage and fed to an incremental SHA-256: no file is ever held in RAM;
3. checks the manifest's Ed25519 signature under the manufacturer key from the
   identity, its model and build (only newer builds), then each file's size and digest;
4. renames the stage to <root>/ota/b<build> and writes the boot record last
   (otaboot.write: one atomic rename). The caller reboots; otaboot.select runs the
   new slot on trial until it checks in, and rolls back after otaboot.MAX_TRIES boots.

An interrupted download resumes: finished files are kept (their digest is checked
again), a partial file continues from its last whole block. A refused release (bad
signature or digest) is deleted and reported; the running firmware is untouched.
Download requests carry the device id and a MAC over the release id (docs/fleet.md).
"""

import binascii
import gc
import hashlib
import os

import otaboot
from micropython import const

from replenish import cbor, coap, ota_ed25519, protocol
from replenish.hmac_sha256 import HmacSha256
from replenish.storage import makedirs

SIGN_CONTEXT = b"replenish-fw-v1"
MIN_BATTERY_MV = const(2600)  # above power.LOW_BATTERY_MV: the update never drains it
_SZX = const(6)  # 2 ** (6 + 4) = 1024-byte blocks
_MAX_MANIFEST_BYTES = const(8192)
_MAX_BLOCKS_PER_FILE = const(1024)
_CONTENT = const(69)  # 2.05
_DIR_TYPE = const(0x4000)
_M_MODEL = const(1)
_M_VERSION = const(2)
_M_BUILD = const(3)
_M_FILES = const(4)

INSTALLED = "installed"
REFUSED = "refused"
FAILED = "failed"  # network or storage trouble: the stage stays for a resume
SKIPPED = "skipped"


class UpdateError(Exception):
    """The update stopped; what was staged stays for the next attempt."""


class Refused(UpdateError):
    """The release is not genuine or not intact: deleted, reported, never run."""


def token(mac, release):
    """Hex MAC that lets a device fetch a release's files (the server checks it)."""
    return binascii.hexlify(mac.digest_parts((b"replenish-fw:%d" % release,))[:16])


def sign_message(envelope_manifest):
    """What the manufacturer signs: a domain string and the manifest's SHA-256."""
    return SIGN_CONTEXT + hashlib.sha256(envelope_manifest).digest()


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _remove(path):
    try:
        os.remove(path)
    except OSError:
        pass


def rmtree(path):
    try:
        entries = list(os.ilistdir(path))
    except OSError:
        return
    for entry in entries:
        child = path + "/" + entry[0]
        if entry[1] == _DIR_TYPE:
            rmtree(child)
        else:
            _remove(child)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _safe_path(path):
    if not isinstance(path, str) or not path:
        return False
    for part in path.split("/"):
        if part in ("", ".", "..") or part.startswith("."):
            return False
    return True


class Manifest:
    __slots__ = ("model", "version", "build", "files", "digest")

    def __init__(self, model, version, build, files, digest):
        self.model = model
        self.version = version
        self.build = build
        self.files = files  # [(path, size, sha256 bytes)]
        self.digest = digest  # hex SHA-256 of the signed envelope


def parse_manifest(envelope, public_key):
    """Manifest from the signed envelope [manifest bstr, signature bstr]; or Refused."""
    try:
        outer = cbor.decode(envelope)
    except ValueError:
        raise Refused("manifest is not CBOR")
    if not isinstance(outer, list) or len(outer) != 2 or not isinstance(outer[0], bytes) \
            or not isinstance(outer[1], bytes):
        raise Refused("manifest envelope must be [manifest, signature]")
    if public_key is None:
        raise Refused("no release key in the identity")
    if not ota_ed25519.verify(public_key, sign_message(outer[0]), outer[1]):
        raise Refused("manifest signature does not verify")
    fields = cbor.decode(outer[0])
    if not isinstance(fields, dict):
        raise Refused("manifest must be a map")
    model, version, build = fields.get(_M_MODEL), fields.get(_M_VERSION), fields.get(_M_BUILD)
    files = fields.get(_M_FILES)
    if not isinstance(model, str) or not isinstance(version, str) \
            or not isinstance(build, int) or not isinstance(files, list) or not files:
        raise Refused("manifest lacks model, version, build or files")
    entries = []
    for item in files:
        if not isinstance(item, list) or len(item) != 3 or not _safe_path(item[0]) \
                or not isinstance(item[1], int) or not isinstance(item[2], bytes) \
                or len(item[2]) != 32:
            raise Refused("bad file entry in the manifest")
        entries.append((item[0], item[1], item[2]))
    digest = binascii.hexlify(hashlib.sha256(envelope).digest()).decode()
    return Manifest(model, version, build, entries, digest)


class Updater:
    def __init__(self, root, client, identity, battery=None, min_battery_mv=MIN_BATTERY_MV,
                 log=None, tick=None):
        self._root = root
        self._dir = otaboot.ota_dir(root)
        self._stage = self._dir + "/stage"
        self._client = client
        self._ident = identity
        self._mac = HmacSha256(identity.key)
        self._battery = battery
        self._min_mv = min_battery_mv
        self._log = log
        self._tick = tick  # called after every block (an ESP32 feeds its watchdog)
        self._auth = []
        self.blocks = 0  # Block2 exchanges (figures)
        self.bytes = 0  # payload bytes received
        self.kept = 0  # files found complete in the stage (resumed)
        self.heap_base = None  # gc.mem_alloc() after a collection, before the update
        self.heap_peak = 0  # the largest such figure between files (live heap)

    def _note(self, text):
        if self._log is not None:
            self._log(text)

    def _heap(self):
        gc.collect()
        used = gc.mem_alloc()
        if self.heap_base is None:
            self.heap_base = used
        if used > self.heap_peak:
            self.heap_peak = used

    def run(self, release):
        """Fetch, verify and stage `release`; (INSTALLED|REFUSED|FAILED|SKIPPED, detail)."""
        mv = None if self._battery is None else self._battery.read_mv()
        if mv is not None and mv < self._min_mv:
            return SKIPPED, "battery %d mV below %d mV" % (mv, self._min_mv)
        self._auth = [
            (coap.OPT_URI_QUERY, b"d=" + binascii.hexlify(self._ident.device_id)),
            (coap.OPT_URI_QUERY, b"t=" + token(self._mac, release)),
        ]
        self._heap()
        try:
            manifest = self._manifest(release)
            self._cleanup()
            for path, size, digest in manifest.files:
                self._file(release, path, size, digest)
                self._heap()
            slot = self._install(release, manifest)
        except Refused as err:
            rmtree(self._stage)
            otaboot.note_report(self._root, protocol.OTA_REFUSED, release)
            return REFUSED, str(err)
        except Exception as err:  # network, storage (the client's Timeout too): resume later
            return FAILED, "%s: %s" % (err.__class__.__name__, err)
        return INSTALLED, "%s build %d in %s" % (manifest.version, manifest.build, slot)

    # -- steps ---------------------------------------------------------------------
    def _manifest(self, release):
        makedirs(self._stage)
        part = self._stage + "/.manifest"
        with open(part, "wb") as out:
            self._download("fw/%d" % release, out, None, 0, _MAX_MANIFEST_BYTES)
        with open(part, "rb") as f:
            envelope = f.read()
        manifest = parse_manifest(envelope, self._ident.release_key)
        if manifest.model != self._ident.model:
            raise Refused("release is for model %s" % manifest.model)
        _version, build = otaboot.running(self._root, self._ident.fw)
        if manifest.build <= build:
            raise Refused("build %d is not newer than %d" % (manifest.build, build))
        marker = self._stage + "/.release"
        old = None
        try:
            with open(marker) as f:
                old = f.read()
        except OSError:
            pass
        if old != manifest.digest:  # another release was staged: start afresh
            rmtree(self._stage)
            makedirs(self._stage)
            with open(marker, "w") as f:
                f.write(manifest.digest)
            with open(part, "wb") as f:
                f.write(envelope)
        return manifest

    def _cleanup(self):
        """Remove slots that neither run nor serve as the rollback target."""
        record = otaboot.read(self._root) or {}
        keep = ("stage", record.get("active"), record.get("previous"))
        try:
            entries = list(os.ilistdir(self._dir))
        except OSError:
            return
        for entry in entries:
            if entry[1] == _DIR_TYPE and entry[0] not in keep:
                rmtree(self._dir + "/" + entry[0])

    def _file(self, release, path, size, digest):
        target = self._stage + "/" + path
        part = target + ".part"
        if _exists(target):
            if self._digest_of(target, size) == digest:
                self.kept += 1
                return
            _remove(target)
        makedirs(target[:target.rfind("/")])
        h = hashlib.sha256()
        done = 0
        try:
            done = os.stat(part)[6]
        except OSError:
            pass
        if done % (1 << (_SZX + 4)) or done > size:
            done = 0  # not a whole number of blocks: start the file again
        if done:
            self._hash_file(part, h, done)
        with open(part, "ab" if done else "wb") as out:
            got = self._download("fw/%d/%s" % (release, path), out, h, done, size)
        if got != size or h.digest() != digest:
            _remove(part)
            raise Refused("%s does not match its digest in the manifest" % path)
        os.rename(part, target)
        self._note("OTA file %s %d" % (path, size))

    def _hash_file(self, path, h, size):
        buf = bytearray(256)
        view = memoryview(buf)
        left = size
        with open(path, "rb") as f:
            while left > 0:
                n = f.readinto(buf)
                if not n:
                    break
                n = min(n, left)
                h.update(view[:n])
                left -= n

    def _digest_of(self, path, size):
        try:
            if os.stat(path)[6] != size:
                return None
        except OSError:
            return None
        h = hashlib.sha256()
        self._hash_file(path, h, size)
        return h.digest()

    def _download(self, uri, out, h, offset, limit):
        """Append uri's content from byte `offset` (a block boundary) to out; new size."""
        szx = _SZX
        for _ in range(_MAX_BLOCKS_PER_FILE):
            num = offset >> (szx + 4)
            block = coap.uint_value((num << 4) | szx)
            msg = self._client.exchange(coap.GET, uri,
                                        options=self._auth + [(coap.OPT_BLOCK2, block)])
            if msg.code != _CONTENT:
                raise UpdateError("%s answered %s %r" % (uri, protocol.dotted(msg.code),
                                                         bytes(msg.payload[:60])))
            opt = msg.uint_option(coap.OPT_BLOCK2)
            payload = msg.payload
            if opt is None:
                if offset:
                    raise UpdateError("%s: no Block2 option past the first block" % uri)
                more = False
            else:
                szx = opt & 7
                more = opt & 8
                if (opt >> 4) << (szx + 4) != offset or (more and len(payload) != 1 << (szx + 4)):
                    raise UpdateError("%s: unexpected block" % uri)
            if offset + len(payload) > limit:
                raise Refused("%s is larger than the manifest says" % uri)
            out.write(payload)
            if h is not None:
                h.update(payload)
            offset += len(payload)
            self.blocks += 1
            self.bytes += len(payload)
            if self._tick is not None:
                self._tick()
            if not more:
                return offset
        raise UpdateError("%s: too many blocks" % uri)

    def _install(self, release, manifest):
        for path, _size, _digest in manifest.files:  # all present, all verified
            if not _exists(self._stage + "/" + path):
                raise UpdateError("%s missing from the stage" % path)
        slot = "b%d" % manifest.build
        record = otaboot.read(self._root) or {}
        version, build = otaboot.running(self._root, self._ident.fw)
        rmtree(self._dir + "/" + slot)
        _remove(self._stage + "/.release")
        os.rename(self._stage, self._dir + "/" + slot)
        otaboot.write(self._root, {
            "active": slot, "build": manifest.build, "version": manifest.version,
            "release": release, "confirmed": False, "tries": 0,
            "previous": record.get("active"), "prev_build": build, "prev_version": version,
            "report": None,
        })
        return slot
