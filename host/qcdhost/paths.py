# Where the host tools find what is not Python code of theirs: the board
# definitions (boards/) and the firmware app (firmware/), shipped as package
# data (data/ links to the checkout's directories; a wheel holds copies),
# and the checkout itself when there is one (an editable install).
import os

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
# realpath: in a checkout, the real boards/ and firmware/ (a firmware build
# resolves ../ from them).
BOARDS_DIR = os.path.realpath(os.path.join(DATA, "boards"))
FIRMWARE_DIR = os.path.realpath(os.path.join(DATA, "firmware"))
WASM_DIR = os.path.join(HERE, "emu", "wasm")


def _checkout():
    root = os.path.dirname(os.path.dirname(HERE))
    if os.path.isfile(os.path.join(root, "pyproject.toml")) and os.path.isdir(os.path.join(root, "lib")):
        return root
    return None


# The repository root of an editable install (or a run from the checkout);
# None when installed from a wheel.
CHECKOUT = _checkout()
