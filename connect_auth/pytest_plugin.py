"""The ``connect_emulator`` pytest fixture, for ``-p connect_auth.pytest_plugin``.

The plugin pytest loads by itself is `connect_auth_pytest`; this module
names the same fixture.
"""

from connect_auth_pytest import connect_emulator

__all__ = ["connect_emulator"]
