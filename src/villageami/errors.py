"""The project's base error: every error meant for a user derives from it and carries a plain message."""


class VillageAmiError(Exception):
    """Base of all villageami errors. str(err) is a one-line message that names the problem."""
