"""The course's one error family: something the learner can fix, said in one line with the fix.

Jupyter shows a ``CourseError`` as its message alone, not a traceback from deep inside a library. Each kind also
derives from the built-in error it refines, so ``except ValueError`` and the like still catch it.
"""

from __future__ import annotations


class CourseError(Exception):
    """Something the learner can fix; the message says what happened and how to fix it."""

    def _render_traceback_(self) -> list[str]:
        """In Jupyter, show the message alone: the fix matters, the call stack does not."""
        return [f"{type(self).__name__}: {self}"]


class AssetError(CourseError, RuntimeError):
    """An asset could not be found or failed its checksum."""


class ImageInputError(CourseError, ValueError):
    """A path, folder or image the course cannot use."""


class SimError(CourseError, RuntimeError):
    """The simulator could not start: a missing scene file, no MuJoCo, or no OpenGL to render with."""


class SettingError(CourseError, ValueError):
    """A setting the course cannot use: an unknown option, a threshold out of range, a class with no examples."""


class NotWritableError(CourseError, PermissionError):
    """A folder the course must write to (caches, checkpoints) is read-only."""
