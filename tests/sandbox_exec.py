"""Run a command under the seccomp filters that systemd builds from a unit's
`SystemCallFilter=`, `SystemCallErrorNumber=` and `MemoryDenyWriteExecute=yes`, with
libseccomp through ctypes: a way to see a node work under its unit's sandbox on a machine
without systemd as init. Standard library only; no tests in this module.

    python sandbox_exec.py UNIT_FILE -- COMMAND [ARG...]

What it reproduces (systemd 252, src/shared/seccomp-util.c):
- the system-call allow list: the groups of the first `SystemCallFilter=` line, minus those
  of the `~` lines, expanded with `systemd-analyze syscall-filter`; anything else fails with
  `SystemCallErrorNumber=` (EPERM);
- MemoryDenyWriteExecute: mmap with PROT_WRITE|PROT_EXEC, mprotect and pkey_mprotect with
  PROT_EXEC, shmat with SHM_EXEC fail with EPERM;
- RestrictAddressFamilies (an allow list): socket() of any other family fails with
  EAFNOSUPPORT;
- NoNewPrivileges (needed to load a filter without privileges).
Not reproduced: namespaces, mounts, capabilities, users (they need systemd or root tools),
and the smaller seccomp filters (LockPersonality, RestrictNamespaces, RestrictRealtime,
RestrictSUIDSGID, SystemCallArchitectures).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_LT, SCMP_CMP_EQ, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = 2, 4, 6, 7
PR_SET_NO_NEW_PRIVS = 38
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


class ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def scmp_act_errno(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)


def syscall_groups() -> dict[str, list[str]]:
    """systemd's groups (`@system-service`, ...) with their members, as systemd-analyze
    lists them; members may be groups themselves."""
    listing = subprocess.run(
        ["systemd-analyze", "syscall-filter", "--no-pager"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.split()[0])
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    found: set[str] = set()
    for name in names:
        found |= expand(groups[name], groups) if name.startswith("@") else {name}
    return found


@dataclass(frozen=True)
class Policy:
    syscalls: set[str]  # allowed; the others fail with `error`
    error: int
    deny_write_execute: bool
    families: set[int]  # allowed address families (empty: all)


def unit_policy(unit: str) -> Policy:
    """What a unit's SystemCallFilter, SystemCallErrorNumber, MemoryDenyWriteExecute and
    RestrictAddressFamilies settings allow."""
    settings = re.findall(r"^(\w+)=(.*)$", unit, re.MULTILINE)
    filters = [value.split() for key, value in settings if key == "SystemCallFilter"]
    if not filters or filters[0][0].startswith("~"):
        raise SystemExit("the unit has no allow-list SystemCallFilter=")
    groups = syscall_groups()
    allowed = expand(filters[0], groups)
    for words in filters[1:]:
        if not words[0].startswith("~"):
            allowed |= expand(words, groups)
        else:
            allowed -= expand([words[0][1:], *words[1:]], groups)
    number = dict(settings).get("SystemCallErrorNumber", "EPERM")
    mdwe = dict(settings).get("MemoryDenyWriteExecute") == "yes"
    names = dict(settings).get("RestrictAddressFamilies", "").split()
    if names and names[0].startswith("~"):
        raise SystemExit("only an allow list of RestrictAddressFamilies= is reproduced")
    families = {int(getattr(socket, name)) for name in names}
    return Policy(allowed, getattr(errno, number), mdwe, families)


def load(policy: Policy) -> None:
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]

    def check(result: int, what: str) -> None:
        if result < 0:
            raise SystemExit(f"libseccomp: {what}: {os.strerror(-result)}")

    if ctypes.CDLL(None).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_NO_NEW_PRIVS) failed")
    if policy.families:
        # As systemd does it: refuse the families below the lowest allowed, above the
        # highest, and each one in between that is not allowed.
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        refuse = scmp_act_errno(errno.EAFNOSUPPORT)
        nr = lib.seccomp_syscall_resolve_name(b"socket")
        low, high = min(policy.families), max(policy.families)
        rules = [ArgCmp(0, SCMP_CMP_LT, low, 0), ArgCmp(0, SCMP_CMP_GT, high, 0)]
        rules += [ArgCmp(0, SCMP_CMP_EQ, family, 0) for family in range(low, high)
                  if family not in policy.families]  # fmt: skip
        for cmp in rules:
            check(lib.seccomp_rule_add_array(ctx, refuse, nr, 1, ctypes.byref(cmp)), "socket")
        check(lib.seccomp_load(ctx), "load RestrictAddressFamilies")
        lib.seccomp_release(ctx)
    if policy.deny_write_execute:
        # A filter of its own, as systemd loads it: allow all but these.
        ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
        for name, mask, value in (
            ("mmap", PROT_WRITE | PROT_EXEC, PROT_WRITE | PROT_EXEC),
            ("mprotect", PROT_EXEC, PROT_EXEC),
            ("pkey_mprotect", PROT_EXEC, PROT_EXEC),
            ("shmat", SHM_EXEC, SHM_EXEC),
        ):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            cmp = ArgCmp(2, SCMP_CMP_MASKED_EQ, mask, value)
            check(
                lib.seccomp_rule_add_array(
                    ctx, scmp_act_errno(errno.EPERM), nr, 1, ctypes.byref(cmp)
                ),
                name,
            )
        check(lib.seccomp_load(ctx), "load MemoryDenyWriteExecute")
        lib.seccomp_release(ctx)
    ctx = lib.seccomp_init(scmp_act_errno(policy.error))
    for name in sorted(policy.syscalls):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:  # not a system call of this architecture
            continue
        check(lib.seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 0, None), name)
    check(lib.seccomp_load(ctx), "load SystemCallFilter")
    lib.seccomp_release(ctx)


def main() -> None:
    unit, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit(__doc__)
    load(unit_policy(Path(unit).read_text()))
    os.execv(command[0], command)  # noqa: S606 - the command under test


if __name__ == "__main__":
    main()
