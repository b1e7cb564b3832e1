"""villageami: an open metering stack for village mini-grids.

Layers (data flows down this list, commands flow back up):
contract -> dlms -> meters -> gateway -> hes; sim and fieldcheck sit beside meters.
"""

__version__ = "0.1.0.dev0"
