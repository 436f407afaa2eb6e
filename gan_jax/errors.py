"""Errors that mean "the input was wrong": shown to the user as one paragraph, no traceback."""

import sys
from collections.abc import Callable
from typing import Any


class UserError(Exception):
  """Bad input (config, data, workdir). ``launch.py`` prints it and exits with status 2."""


def exit_on_user_error(main: Callable[[], Any]) -> None:
  """Run a command's ``main``: a UserError is printed as its paragraph, with exit status 2."""
  try:
    main()
  except UserError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(2)
