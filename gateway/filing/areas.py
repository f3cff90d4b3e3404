"""The two places entries are published (case folders, quarantine), held open as directory descriptors.

An ``Area`` is a root and the directory its entries are built in (staging), each opened
once; every directory below them is reached by name through ``filing.dirs``, never by a
path the kernel resolves again (docs/case-folders.md, "Staging and links").

Where entries are built: publishing is one ``rename(2)``, which cannot cross a mount, so
staging must be on the root's mount. ``<state_dir>/staging/<area>/`` is used whenever it
is (the default layout, with ``cases_dir`` under ``state_dir``, and any layout with both on
one mount): there the clerks who can write to the share cannot see, change or plant
anything in half-written entries. A root on a mount of its own (the README recommends
file systems of their own) has its staging in ``<root>/.incoming/`` instead, reached
without following links and swept only of entry-shaped directories. So does every root
when several nodes share the records (the PostgreSQL store): a node that takes a mailbox
over must find, and remove, what the previous holder staged but never published, and the
previous holder's late rename must then fail instead of publishing a second entry.

Each process opens its own areas (descriptors do not cross ``spawn``): the intake per
mailbox, each analysis worker on first use, the release for one call.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Config
from gateway.filing.dirs import UnsafeDirectory, check_owner, open_dir, open_root, same_mount
from gateway.statedir import STAGING, area_root, share_staging_dir, staging_dir

AREAS = ("cases", "quarantine")


@dataclass
class Area:
    """A root entries are published in, and the directory they are built in, both open."""

    name: str  # "cases" | "quarantine"
    root: Path
    staging: Path
    root_fd: int
    staging_fd: int
    owners: frozenset[int]  # who may own a directory the gateway writes into
    private_staging: Path  # <state_dir>/staging/<area>, also when not used (recovery looks there)

    @classmethod
    def open(cls, config: Config, name: str) -> Area:
        """Open ``name``'s root and choose its staging directory (see the module docstring).

        The owners a case folder may have are the gateway's own user and the owner of the
        root (the share's owner may make folders; anyone else's folder could be emptied or
        swapped by them later, so nothing is published into it).
        """
        root = area_root(config, name)
        private = staging_dir(config, name)
        root_fd = open_root(root, create=name != "cases")  # cases_dir is never made on the fly (`init`)
        try:
            owners = frozenset({os.geteuid(), os.fstat(root_fd).st_uid})
            staging_fd = open_root(private)
            staging = private
            if config.storage.backend == "postgresql" or not same_mount(root_fd, staging_fd):
                os.close(staging_fd)
                staging = share_staging_dir(root)
                staging_fd = open_dir(STAGING, dir_fd=root_fd, create=True, where=str(root))
                try:
                    check_owner(staging_fd, owners, str(staging))
                except UnsafeDirectory:
                    os.close(staging_fd)
                    raise
        except BaseException:
            os.close(root_fd)
            raise
        return cls(name, root, staging, root_fd, staging_fd, owners, private)

    @classmethod
    def at(cls, name: str, root: Path, staging_in: Path | None = None) -> Area:
        """An area with an explicit root, staging in ``staging_in`` or else ``<root>/.incoming``.

        For tools and tests that have no configuration (and for the share-staging layout,
        which the default layout never chooses on one mount).
        """
        root_fd = open_root(root)
        try:
            if staging_in is None:
                staging, staging_fd = share_staging_dir(root), open_dir(STAGING, dir_fd=root_fd, create=True)
            else:
                staging, staging_fd = staging_in, open_root(staging_in)
        except BaseException:
            os.close(root_fd)
            raise
        owners = frozenset({os.geteuid(), os.fstat(root_fd).st_uid})
        return cls(name, root, staging, root_fd, staging_fd, owners, staging_in or staging)

    @property
    def in_share(self) -> bool:
        """Whether entries are built inside the root (another mount than ``state_dir``)."""
        return self.staging == share_staging_dir(self.root)

    def close(self) -> None:
        for fd in (self.staging_fd, self.root_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.staging_fd = self.root_fd = -1


class Areas:
    """The case folders and the quarantine of one configuration, opened on first use.

    Lazily, because an analysis worker starts before the daemon has created the state
    directory on a first start; thread-safe, because the in-process analyser serves every
    mailbox's I/O thread.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self._open: dict[str, Area] = {}
        self._lock = threading.Lock()

    def __getitem__(self, name: str) -> Area:
        area = self._open.get(name)
        if area is None:
            with self._lock:
                area = self._open.get(name)
                if area is None:
                    area = self._open[name] = Area.open(self.config, name)
        return area

    def close(self) -> None:
        with self._lock:
            for area in self._open.values():
                area.close()
            self._open.clear()
