"""course_utils: the small package behind the transfer-learning course's notebooks.

Importing it changes nothing: no seeds, no settings. A lesson's first cell calls ``setup(seed=0)``.
"""

from course_utils.assets import AssetError, asset_path
from course_utils.env import get_device, setup

__all__ = ["AssetError", "asset_path", "get_device", "setup"]
__version__ = "0.1.0"
