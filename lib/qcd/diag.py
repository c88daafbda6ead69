# REPL diagnostics: what an operator types at the mpremote REPL, or what a
# host tool runs over it, to see a device's QCD state. Never a secret: secrets
# appear as fingerprints (first 8 bytes of SHA-256, hex), tokens not at all.
#
#   >>> import qcd.diag
#   >>> qcd.diag.show(hook)            # hook: the running QcdHook
#   >>> qcd.diag.show(hook, store)     # plus the flash store's state


def _lines(d, indent):
    out = []
    for k in sorted(d):
        v = d[k]
        if isinstance(v, dict):
            out.append("%s%s:" % (indent, k))
            out.extend(_lines(v, indent + "  "))
        elif isinstance(v, (list, tuple)):
            out.append("%s%s: %s" % (indent, k, ", ".join(str(x) for x in v) or "-"))
        else:
            out.append("%s%s: %s" % (indent, k, v))
    return out


def report(hook=None, store=None):
    """The diagnostics as a dict: {"hook": ..., "store": ...}."""
    d = {}
    if hook is not None:
        d["hook"] = hook.status()
    if store is not None and hasattr(store, "status"):
        d["store"] = store.status()
    return d


def show(hook=None, store=None):
    """Print the diagnostics, one fact per line, sorted."""
    for line in _lines(report(hook, store), ""):
        print(line)
