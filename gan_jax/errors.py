"""Errors that mean "the input was wrong": shown to the user as one paragraph, no traceback."""


class UserError(Exception):
  """Bad input (config, data, workdir). ``launch.py`` prints it and exits with status 2."""
