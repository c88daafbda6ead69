# The engine's configuration: a JSON object (MicroPython has json), checked
# once (ike.config_check) so the engine can trust it. docs/config.md
# describes every key; qcd-peer and the device firmware read the same file.
#
# lib/ike knows nothing of QCD (design principle 2): the "qcd" section, like
# any key it does not know, is kept in Config.extra for whoever builds the
# hook.

import json

# Every check (and the key table, the defaults, the ID rules) is in
# ike.config_check, loaded when a Config is made; what stays loaded with the
# engine is this much. forget_checks() unloads ike.config_check again.


class ConfigError(ValueError):
    pass


class Config:
    """Checked configuration (ike.config_check.check). Times are integer
    milliseconds."""

    def __init__(self, d):
        from ike import config_check

        config_check.check(self, d)


def identity(text):
    """RFC 7296 §3.5 ID for a configured identity (ike.config_check.identity)."""
    from ike import config_check

    return config_check.identity(text)


def forget_checks():
    """Unload ike.config_check (a device, once its Config is made: the
    setup is the only time it needs it). The next Config loads it again."""
    import sys

    import ike

    sys.modules.pop("ike.config_check", None)
    try:
        del ike.config_check  # the import made it an attribute of the package
    except (AttributeError, KeyError):
        pass


def loads(text):
    try:
        d = json.loads(text)
    except ValueError:
        raise ConfigError("not valid JSON")
    return Config(d)


def load(path):
    with open(path) as f:
        return loads(f.read())
