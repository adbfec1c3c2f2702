"""The chip's flash filesystem as a host folder, with a power cut at any write.

MicroPython lets a Python class be a VFS (os.mount(obj, "/")); this one wraps
os.VfsPosix(folder) and counts every mutating operation (open for writing, write,
rename, remove, mkdir, rmdir). When the count reaches the scripted cut, the operation
is interrupted and the run ends as a power loss. Two models:

- "torn" (default): a cut inside write() leaves a prefix of the new bytes (the file
  was truncated at open), so only a checksum can tell -- the harshest case, what FAT
  or a raw partition gives;
- "lfs": littlefs v2's guarantee (the esp32 port's default filesystem, ports/esp32/
  modules/inisetup.py): a file's new contents exist only after close; a cut before
  that leaves the previous contents. rename/remove/mkdir are atomic in both models.
"""

import io
import os

import _sim

OP_US = 3000  # estimate: one small littlefs program/commit on SPI flash (ms range)


class _Writer(io.IOBase):
    def __init__(self, vfs, path, mode):
        self._vfs = vfs
        self._path = path
        self._target = path
        if vfs.model == "lfs":
            self._path = path + ".~new"
            if "a" in mode or "+" in mode:
                try:
                    with vfs.real.open(path, "rb") as src:
                        old = src.read()
                except OSError:
                    old = b""
                with vfs.real.open(self._path, "wb") as dst:
                    dst.write(old)
        self._f = vfs.real.open(self._path, mode)
        self._open = True

    def write(self, data):
        if self._vfs.step("write"):
            if self._vfs.model == "torn":
                keep = int(len(data) * _sim.state.get("tear_frac", 0.5))
                self._f.write(data[:keep])
            self._f.close()
            self._open = False
            if self._vfs.model == "lfs":
                self._vfs.real.remove(self._path)  # uncommitted blocks are free again
            self._vfs.cut("write %s" % self._target)
        return self._f.write(data)

    def readinto(self, buf):
        return self._f.readinto(buf)

    def read(self, n=-1):
        return self._f.read(n)

    def flush(self):
        if self._open:
            self._f.flush()

    def close(self):
        if not self._open:
            return
        self._open = False
        self._f.close()
        if self._vfs.model == "lfs":
            if _sim.dead:
                self._vfs.real.remove(self._path)  # never committed
            else:
                self._vfs.real.rename(self._path, self._target)

    def ioctl(self, req, arg):
        return 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class FlashVfs:
    def __init__(self, folder, model="torn", cut_at_op=None):
        self.real = os.VfsPosix(folder)
        self._raw = os.VfsPosix()
        self._folder = folder.rstrip("/")
        self.model = model
        self.cut_at_op = cut_at_op
        self.ops = 0
        self.writes = []  # names written (for the harness: flash wear)

    def step(self, what):
        """One mutating operation; True when the power cut lands on it."""
        _sim.check_alive()
        self.ops += 1
        _sim.advance(OP_US)
        return self.cut_at_op is not None and self.ops == self.cut_at_op

    def cut(self, where):
        _sim.log("power cut at flash op %d (%s)" % (self.ops, where))
        _sim.halt("power_cut", cut_where=where)

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        if "w" in mode or "a" in mode or "+" in mode:
            self.writes.append(path)
            if self.step("open"):
                if self.model == "torn" and "w" in mode:
                    self.real.open(path, mode).close()  # truncated, nothing written
                self.cut("open %s" % path)
            return _Writer(self, path, mode)
        return self.real.open(path, mode)

    def _meta(self, what, fn, *args):
        if self.step(what):
            self.cut("%s %s" % (what, args[0]))
        return fn(*args)

    def rename(self, old, new):
        # VfsPosix(root).rename joins both paths into one shared buffer (extmod/
        # vfs_posix.c vfs_posix_get_path_str), so the second clobbers the first: rename
        # through a root-less VfsPosix with whole host paths instead.
        return self._meta("rename", self._raw.rename, self._host(old), self._host(new))

    def _host(self, path):
        if not path.startswith("/"):
            path = self.real.getcwd().rstrip("/") + "/" + path
        return self._folder + path

    def remove(self, path):
        return self._meta("remove", self.real.remove, path)

    def mkdir(self, path):
        return self._meta("mkdir", self.real.mkdir, path)

    def rmdir(self, path):
        return self._meta("rmdir", self.real.rmdir, path)

    def ilistdir(self, path):
        for entry in self.real.ilistdir(path):
            if not entry[0].endswith(".~new"):  # a littlefs write not yet committed
                yield entry

    def stat(self, path):
        return self.real.stat(path)

    def statvfs(self, path):
        return self.real.statvfs(path)

    def chdir(self, path):
        return self.real.chdir(path)

    def getcwd(self):
        return self.real.getcwd()


def mount(folder):
    vfs = FlashVfs(folder, _sim.state.get("flash_model", "torn"), _sim.state.get("cut_at_op"))
    os.umount("/")
    os.mount(vfs, "/")
    os.chdir("/")
    _sim.on_end(lambda out: out.update(flash_ops=vfs.ops, flash_writes=len(vfs.writes)))
    return vfs
