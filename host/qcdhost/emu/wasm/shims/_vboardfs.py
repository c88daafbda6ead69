# The virtual board's filesystem, mounted at "/" in place of the port's bare
# VfsPosix (which it wraps), so the board looks like an esp32 port's littlefs
# to mpremote and to code on it:
#  - errors carry MicroPython's errno numbers (py/mperrno.h, what the esp32
#    port raises and what mpremote's error mapping expects). The WebAssembly
#    port's VfsPosix raises the C library's WASI numbers instead (ENOENT is
#    44 there), while its own errno module says ENOENT is 2;
#  - Emscripten's own directories (/dev, /proc, /tmp, /home) are left out of
#    listings of "/": a board has none of them;
#  - statvfs reports the `vfs` partition of the board's flash.
import _vboard

# WASI errno -> MicroPython errno, for what a filesystem raises.
_ERRNO = {
    44: 2,  # ENOENT
    20: 17,  # EEXIST
    54: 20,  # ENOTDIR
    31: 21,  # EISDIR
    28: 22,  # EINVAL
    2: 13,  # EACCES
    63: 1,  # EPERM
    8: 9,  # EBADF
    29: 5,  # EIO
    51: 28,  # ENOSPC
    55: 39,  # ENOTEMPTY
    37: 36,  # ENAMETOOLONG
    69: 30,  # EROFS
    75: 18,  # EXDEV
    43: 19,  # ENODEV
    22: 27,  # EFBIG
    33: 24,  # EMFILE
}
_HIDDEN = ("dev", "proc", "tmp", "home")


def _call(f, *args):
    try:
        return f(*args)
    except OSError as e:
        n = e.args[0] if e.args else 0
        raise OSError(_ERRNO.get(n, n))


class BoardFS:
    def __init__(self, inner):
        self._v = inner

    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def open(self, path, mode):
        return _call(self._v.open, path, mode)

    def ilistdir(self, path):
        # (name, type, inode, size), as littlefs gives it; VfsPosix here
        # leaves the size out.
        root = path in ("", "/")
        out = []
        for e in _call(self._v.ilistdir, path):
            if root and e[0] in _HIDDEN:
                continue
            if len(e) < 4:
                size = 0
                if e[1] == 0x8000:
                    size = self.stat(path.rstrip("/") + "/" + e[0])[6]
                e = (e[0], e[1], e[2], size)
            out.append(e)
        return iter(out)

    def stat(self, path):
        return _call(self._v.stat, path)

    def statvfs(self, path):
        bsize, blocks, bfree = [int(x) for x in _vboard.statvfs().split(",")]
        return (bsize, bsize, blocks, bfree, bfree, 0, 0, 0, 0, 255)

    def mkdir(self, path):
        return _call(self._v.mkdir, path)

    def rmdir(self, path):
        return _call(self._v.rmdir, path)

    def remove(self, path):
        return _call(self._v.remove, path)

    def rename(self, old, new):
        return _call(self._v.rename, old, new)

    def chdir(self, path):
        return _call(self._v.chdir, path)

    def getcwd(self):
        return _call(self._v.getcwd)
