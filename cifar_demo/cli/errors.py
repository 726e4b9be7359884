"""The CLI's own error type."""


class CliError(Exception):
    """An error whose message is meant for the user as is."""
