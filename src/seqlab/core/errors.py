"""The one exception type that means "the user gave bad input": scripts print it as one line."""


class UserError(Exception):
    """Bad input (flags, files, folders). Its message says what is wrong and how to fix it."""
