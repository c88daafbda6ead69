# Files that can hold a secret (a partition image with the secret in clear,
# an emulator sidecar with an encrypted image's device key, a whole-flash
# image, a raw dump, a device configuration with the IKE key) are created
# 0600 and atomically: written under a fresh temporary name in the target's
# directory, opened with O_CREAT|O_EXCL and mode 0o600 (tempfile.mkstemp),
# then renamed over the target. Never readable by others for an instant,
# whatever the umask (a chmod after the write would leave a window), and a
# kill leaves the old file or the new one, never half of either.
import os
import tempfile

MODE = 0o600


def write(path, data):
    """Replace (or create) `path` with `data`, mode 0600, atomically."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def copy(src, dest):
    """Copy file `src` to `dest` as write() does."""
    with open(src, "rb") as f:
        write(dest, f.read())


def restrict(path):
    """Take group and other access away from an existing file before a
    secret goes into it (a file this code did not create, e.g. an image
    made by another tool); returns True if its mode changed."""
    st = os.stat(path)
    if st.st_mode & 0o077:
        os.chmod(path, st.st_mode & 0o700)
        return True
    return False
