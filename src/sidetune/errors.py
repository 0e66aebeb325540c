"""User-facing errors. The CLI prints any ``SidetuneError`` as one line and exits 1.

Subclass it for errors caused by input (a file, a config key, an argument); the message must
name the file, line or field at fault.
"""


class SidetuneError(Exception):
    """Bad input: the message says which file / line / field and what is wrong."""
