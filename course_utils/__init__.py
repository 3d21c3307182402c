"""course_utils: the small package behind the transfer-learning course's notebooks.

Importing it changes nothing: no seeds, no settings, and torch is only imported when a function
needs it (so `python -m course_utils install-assets` works before torch is installed).
A lesson's first cell calls ``setup(seed=0)``.
"""

from course_utils.assets import asset_path
from course_utils.errors import AssetError, CourseError, ImageInputError, SettingError, SimError

__all__ = ["AssetError", "CourseError", "ImageInputError", "SettingError", "SimError", "asset_path", "get_device",
           "setup"]
__version__ = "0.1.0"


def __getattr__(name: str):
    """Import ``setup`` and ``get_device`` (and with them torch) on first use."""
    if name in ("setup", "get_device"):
        from course_utils import env

        return getattr(env, name)
    raise AttributeError(f"module 'course_utils' has no attribute {name!r}")
