"""Typing as users meet it: mypy on user code, and the typed expiry."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

from mypy import api

from connect_auth import ConnectClient

USER_CODE = """
from connect_auth import Subject, SubjectLike, UserSubject, VercelToken, get_token

def token_for(subject: SubjectLike, credential: VercelToken | None = None) -> str:
    return get_token("slack/acme-slack", subject=subject, vercel_token=credential)

def pick(user_id: str | None) -> SubjectLike:
    if user_id is None:
        return {"type": "app"}
    return UserSubject(user_id)

mine: Subject = UserSubject("u_alice")
token_for(mine)
token_for(pick(None), credential=lambda: "a token")
token_for(pick("u_bob"), credential="a token")
get_token("slack/acme-slack", subject={"type": "app"}, scopes=["chat:write"], force_refresh=True)
get_token("slack/acme-slack", subject={"type": "app"}, scope=["chat:write"])  # BAD
get_token("slack/acme-slack", subject={"type": "app"}, force_refresh="yes")  # BAD

get_token("slack/acme-slack", subject={"type": "app"})
get_token("slack/acme-slack", subject={"type": "user", "id": "u_alice"})
get_token("slack/acme-slack", subject={"type": "jwt-bearer", "sub": "x", "iss": "y"})
get_token("slack/acme-slack", subject=UserSubject("u_alice"))
get_token("slack/acme-slack", subject={"type": "usr"})  # BAD
get_token("slack/acme-slack", subject={"type": "user"})  # BAD
get_token("slack/acme-slack", subject={"type": "user", "id": 1})  # BAD
get_token("slack/acme-slack", subject={"type": "app", "id": "u_alice"})  # BAD
"""


def test_mypy_checks_dict_subjects_in_user_code(tmp_path: Path) -> None:
    """Typos, missing ids and wrong field types in dict subjects are mypy errors, and
    user code can annotate with the public subject and credential types."""
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(USER_CODE))
    out, _, _ = api.run([str(path), "--strict", "--no-incremental", "--no-error-summary"])
    flagged = {int(line.split(":")[1]) for line in out.splitlines() if ": error:" in line}
    bad = {n for n, line in enumerate(path.read_text().splitlines(), 1) if "# BAD" in line}
    assert flagged == bad, out


def test_expiry_is_an_aware_datetime(client: ConnectClient) -> None:
    response = client.get_token_response("slack/acme-slack", subject={"type": "app"})
    assert response.expiry.tzinfo is datetime.UTC
    assert response.expiry.timestamp() * 1000 == response.expires_at
