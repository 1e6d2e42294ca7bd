"""Is a run directory on storage that every node sees?

With several nodes, rank 0 writes config.toml, metrics.jsonl and model/, every rank writes its
checkpoint shards, and a restarted group resumes from what all of them wrote: the run directory
must be one directory for all nodes. We cannot prove that from one node, but the filesystem type
of the mount that holds it is a strong hint, so a local type gets a warning (not an error: a
single machine that plays several "nodes", as the tests do, is legitimate).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Filesystem types that live on one machine. Anything network- or cluster-backed (nfs, nfs4, cifs,
# smb3, lustre, gpfs, beegfs, ceph, fuse.* such as fuse.juicefs or fuse.gcsfuse) is taken as shared.
LOCAL_FS_TYPES = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "overlay", "ramfs", "zfs", "f2fs", "vfat"}


def _unescape(field: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def read_mounts(mounts_text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) per line of /proc/mounts."""
    rows = []
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            rows.append((_unescape(parts[1]), parts[2]))
    return rows


def filesystem_type(path: Path, mounts_text: str | None = None) -> str | None:
    """The type of the mount holding `path` (its deepest existing ancestor), or None when unknown.

    >>> filesystem_type(Path("/a/b/c"), "d / ext4 rw 0 0\\nsrv:/x /a nfs4 rw 0 0\\n")
    'nfs4'
    """
    if mounts_text is None:
        try:
            mounts_text = Path("/proc/mounts").read_text()
        except OSError:  # not Linux: nothing to go on
            return None
    target = Path(os.path.abspath(path))
    best, best_type = None, None
    for mount_point, fs_type in read_mounts(mounts_text):
        mp = Path(mount_point)
        if (target == mp or mp in target.parents) and (best is None or len(mp.parts) >= len(best.parts)):
            best, best_type = mp, fs_type  # later lines win at equal depth: they are mounted on top
    return best_type


def shared_storage_warning(run_dir: Path, nnodes: int, mounts_text: str | None = None) -> str | None:
    """The warning for a multi-node run directory on a local filesystem, or None."""
    if nnodes <= 1:
        return None
    fs_type = filesystem_type(run_dir, mounts_text)
    if fs_type not in LOCAL_FS_TYPES:
        return None
    return (
        f"warning: --run-dir {run_dir} is on a local filesystem ({fs_type}), but --nnodes {nnodes} needs one run "
        "directory that every node reads and writes (rank 0 writes the run, each rank its checkpoint shards, and a "
        "restart resumes from them); use a shared mount (NFS, Lustre, GPFS, BeeGFS, a FUSE object store) unless "
        "all nodes are this machine"
    )


def warn_if_not_shared(run_dir: Path, nnodes: int) -> None:
    message = shared_storage_warning(run_dir, nnodes)
    if message:
        print(message, file=sys.stderr)
