"""The errors modlib reports: one class per documented exit code, raised below, turned into a message
and that code at the CLI only (cibuildwheel's errors.py). There is no default: whoever raises says
which class of failure it is, so a failure during a run is never reported as bad input.
"""

from __future__ import annotations

from typing import ClassVar

#: Exit codes of the CLI contract (README.md, "Commands": one error class each).
EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOCKED = 3


class ModlibError(Exception):
    """An error meant for the user: ``str(err)`` is the whole message, ``exit_code`` the CLI's status."""

    exit_code: ClassVar[int]

    def __init__(self, message: str):
        if type(self) is ModlibError:
            raise TypeError("raise one of ModlibError's subclasses: they carry the exit code")
        super().__init__(message)

    def __reduce__(self):
        """Errors cross process boundaries (the planner parses in forked workers): rebuild from the message."""
        return rebuilt, (type(self), str(self))


def rebuilt(cls: type[ModlibError], message: str) -> ModlibError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    return err


class RunFailed(ModlibError):
    """A build failed, or the run could not go on (cluster API, full disk, a tool missing, lock lost)."""

    exit_code = EXIT_BUILD_FAILED


class BadInput(ModlibError):
    """The admin's input is wrong; always names the file (or option) it came from. Nothing was built or changed."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, source: object, problem: str):
        super().__init__(f"{source}: {problem}")


def malformed_yaml(source: object, err: Exception) -> BadInput:
    """One line for a YAML error: PyYAML's own message spans lines and names ``<unicode string>``."""
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return BadInput(source, f"malformed YAML{where}: {' '.join(str(getattr(err, 'problem', None) or err).split())}")


class Locked(ModlibError):
    """Another run holds the library's run lock."""

    exit_code = EXIT_LOCKED
