"""The seccomp filter bubblewrap loads before it executes the test command.

Capabilities are dropped and nested user namespaces are disabled already; the filter is the second wall for
the kernel interfaces that have produced most container escapes and that a test suite never needs:
tracing other processes (ptrace, process_vm_*), mounting and namespace changes (mount API, unshare, setns,
namespace flags on clone), kernel keyrings, eBPF, io_uring (its own syscall path around seccomp), perf,
module loading and kexec. Each is answered with EPERM so that programs see an ordinary refusal.

`clone3` answers ENOSYS instead: its flags live in memory that seccomp cannot inspect, and glibc then falls
back to `clone`, whose namespace flags the filter can refuse. Other architectures (i386, x32) are killed by
libseccomp's default bad-architecture action, which closes the 32-bit syscall table as a way around the rules.
"""

from __future__ import annotations

import errno
import functools
import os

import pyseccomp  # type: ignore[import-untyped]

DENIED_SYSCALLS: tuple[str, ...] = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "mount",
    "umount2",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "perf_event_open",
    "userfaultfd",
    "open_by_handle_at",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
)

# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET (linux/sched.h); NEWTIME is unshare-only.
_CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)


@functools.cache
def compiled_filter() -> bytes:
    """The filter as classic BPF, ready for `bwrap --seccomp FD`; built once per process."""
    syscall_filter = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    deny = pyseccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        syscall_filter.add_rule(deny, name)
    for flag in _CLONE_NAMESPACE_FLAGS:
        syscall_filter.add_rule(deny, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    syscall_filter.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("sf-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as buffer:
        syscall_filter.export_bpf(buffer)
        buffer.seek(0)
        return buffer.read()
