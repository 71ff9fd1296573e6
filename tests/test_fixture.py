"""The connect_emulator fixture as a user's test suite meets it (inner pytest runs)."""

from __future__ import annotations

import pytest

CONFIG = """
[[connectors]]
uid = "acme/crm"
type = "oauth"
users = ["u_carol"]
"""

USES_CONFIG = """
import connect_auth

def test_token_from_the_configured_connector(connect_emulator):
    connect_auth.get_token("acme/crm", subject={"type": "user", "id": "u_carol"})
    assert connect_emulator.token_calls() == 1
"""


def test_connectors_added_in_a_test_are_linked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import connect_auth
        from connect_auth.testing import ConnectorSpec

        def test_new_connector(connect_emulator):
            connect_emulator.add_connector(ConnectorSpec(uid="acme/thing"))
            assert connect_auth.get_token("acme/thing", subject={"type": "app"})
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_marker_points_the_fixture_at_a_file(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", connect=CONFIG)
    pytester.makepyfile(
        "import pytest\n"
        + USES_CONFIG.replace(
            "def test_", '@pytest.mark.connect_emulator(config="connect.toml")\ndef test_'
        )
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_ini_option_configures_every_fixture(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", connect=CONFIG)
    pytester.makeini("[pytest]\nconnect_emulator_config = connect.toml\n")
    pytester.makepyfile(USES_CONFIG)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_marker_takes_emulator_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import connect_auth
        from connect_auth.testing import ConnectorSpec

        @pytest.mark.connect_emulator(connectors=[ConnectorSpec(uid="acme/only")])
        def test_only_that_connector(connect_emulator):
            connect_auth.get_token("acme/only", subject={"type": "app"})
            with pytest.raises(connect_auth.ConnectorNotFoundError):
                connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_emulator_methods_take_both_subject_forms(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        import connect_auth
        from connect_auth import UserSubject

        def test_revoke_grant(connect_emulator):
            connect_emulator.revoke_grant("slack/acme-slack", UserSubject("u_alice"))
            connect_emulator.revoke_grant("slack/acme-slack", {"type": "user", "id": "u_bob"})
            for user in ("u_alice", "u_bob"):
                with pytest.raises(connect_auth.NoValidTokenError):
                    connect_auth.get_token("slack/acme-slack", subject=UserSubject(user))
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_outages_are_retried_with_the_fast_policy(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import connect_auth
        from connect_auth.testing import FAST_RETRY

        def test_outage(connect_emulator):
            connect_emulator.fail_next(3, status=503, retry_after=30)
            assert connect_auth.get_token("slack/acme-slack", subject={"type": "app"})
            assert connect_emulator.token_calls() == 4
            assert connect_auth.default_client()._wire._retry is FAST_RETRY
        """
    )
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:timeout").assert_outcomes(passed=1)
