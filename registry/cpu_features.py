"""Whether this CPU computes bfloat16 in hardware: the one place that decides (no TensorFlow here).

bfloat16 can pay on x86 CPUs with AVX512_BF16 (Intel Cooper Lake and later, AMD Zen 4 and later) or AMX-BF16
(Intel Sapphire Rapids and later): on a Zen 4 it does for the convolutions only, and only from 160-pixel images up
(the measured table that decides is in registry.engine.devices). Without them (AVX2-only CPUs, e.g. AMD EPYC before Zen 4) a bfloat16 graph is emulated
in float32 arithmetic with extra conversions: slower, never faster. Linux lists the features the kernel reports in
the `flags` line of /proc/cpuinfo (`avx512_bf16`, `amx_bf16`).

`ZOO_RUN_CPU_BF16=1` (or `0`) overrides the answer, for tests of the branch this machine does not take and for
users who know better; anything else is an error. The answer and why is `bf16()`: `(has, reason)`.
"""
import os

VARIABLE = "ZOO_RUN_CPU_BF16"
BF16_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


def flags(path=CPUINFO):
    """The CPU feature flags of the first processor in `path` (a set of strings; empty when it is unreadable,
    e.g. not Linux)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except (IOError, OSError):
        pass
    return set()


def bf16(environ=None, path=CPUINFO):
    """(True/False, reason): whether this CPU has bfloat16 hardware, and a phrase saying how that was decided,
    e.g. 'this CPU has no AVX512_BF16 or AMX-BF16 (/proc/cpuinfo)'. Raises ValueError for a bad override."""
    environ = os.environ if environ is None else environ
    forced = environ.get(VARIABLE, "")
    if forced:
        if forced not in ("0", "1"):
            raise ValueError("%s=%r: set it to 1 (this CPU has bfloat16 hardware) or 0 (it has none), or unset it "
                             "to read %s" % (VARIABLE, forced, path))
        return forced == "1", "%s=%s set in the environment" % (VARIABLE, forced)
    found = [flag for flag in BF16_FLAGS if flag in flags(path)]
    if found:
        return True, "this CPU has %s (%s)" % (" and ".join(f.upper() for f in found), path)
    return False, "this CPU has no AVX512_BF16 or AMX_BF16 (%s)" % path
