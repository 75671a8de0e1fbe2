"""One error type for everything modlib reports; the CLI alone turns it into a message and an exit code."""

from __future__ import annotations

#: Exit codes of the CLI contract (design.md).
EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3


class ModlibError(Exception):
    """An error meant for the user: ``str(err)`` is the whole message, ``exit_code`` the CLI's status."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


def bad_input(source: object, problem: str) -> ModlibError:
    """Bad input always names the file (or object) it came from, so admins know where to look."""
    return ModlibError(f"{source}: {problem}", EXIT_BAD_INPUT)
