"""User ids name folders and database rows, so they are checked before any use."""
from __future__ import annotations

import re

_USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class UserIdError(ValueError):
    pass


def check_user_id(user_id: str) -> str:
    """Return the id if it is safe as a file name (letters, digits, _ . -; no '..'), else raise."""
    if not isinstance(user_id, str) or not _USER_ID.match(user_id) or ".." in user_id:
        raise UserIdError(f"invalid user id {user_id!r}: use 1-64 letters, digits, '_', '.' or '-', "
                          "starting with a letter or digit, without '..'")
    return user_id
