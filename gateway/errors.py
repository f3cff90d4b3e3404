"""Errors named by what the caller should do next.

ConfigError stops start-up; TransientError is retried later (blame the server);
PermanentError is recorded and not retried (blame the message or the request);
SecurityError sends the message to quarantine and is never retried automatically.

Every error the gateway raises on purpose derives from one of them (``PoststelleError``
directly only when the raiser cannot know the next step and a caller translates it, as the
OpenPGP handler does with ``GpgError``). Some also derive from ``ValueError`` because
callers and tests catch them as bad input values; each says so where it is defined.
"""

from __future__ import annotations


class PoststelleError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(PoststelleError):
    """The configuration is unusable; names the file, the key and the problem."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        super().__init__(f"{file}: {key}: {problem}")


class TransientError(PoststelleError):
    """The peer or the machine failed for now; the same work may succeed later."""


class DiskFull(TransientError):
    """A file system the gateway writes to is full: nothing was acknowledged, retried with backoff.

    Its own kind because the administrator, not the server, must act: ``path`` is where
    space has to be freed, and the text says "disk full" with the error code
    (``gateway.diskfull``).
    """

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        super().__init__(text)


class PermanentError(PoststelleError):
    """The work itself is wrong and retrying will not help; record and move on.

    Raised as ``InvalidCaseReference`` (a reference that cannot become a folder),
    ``ReleaseError`` (a person's release request that cannot be done as asked) and
    ``LoginRejected``.
    """


class LoginRejected(PermanentError):
    """The IMAP server rejected the mailbox's credentials.

    Trying again with the same user name and password fails the same way and, on many
    servers, counts towards locking the account; the worker waits for a restart or a long
    interval instead of its usual backoff.
    """


class SecurityError(PoststelleError):
    """A message failed a security check; it goes to quarantine with ``reason``."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StartupError(PoststelleError):
    """The gateway cannot start on this machine as it is: a directory, a file, the disk.

    The message is one line for the administrator: what failed, where, and the setting.
    """
