"""Auth: keys bound to user and role, constant-time comparison, trusted networks."""

from __future__ import annotations

import hashlib

import pytest

from gpu_router.shim.config import AuthSection
from gpu_router.shim.http import auth as auth_mod
from gpu_router.shim.http.auth import Authenticator, AuthError, Role

ALICE = "alice-key-0123456789"
ADMIN = "admin-key-0123456789"


def make(**extra):
    return Authenticator(
        AuthSection.model_validate(
            {
                "keys": [
                    {"key": ALICE, "user_id": "alice"},
                    {
                        "key_sha256": hashlib.sha256(ADMIN.encode()).hexdigest(),
                        "user_id": "ops",
                        "role": "admin",
                    },
                ],
                **extra,
            }
        )
    )


def test_keys_map_to_user_and_role():
    a = make()
    alice = a.authenticate(f"Bearer {ALICE}", "10.0.0.1")
    assert (alice.user_id, alice.role, alice.via) == ("alice", Role.USER, "key")
    assert a.authenticate(f"bearer   {ADMIN} ", None).is_admin


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic abc", f"Bearer {ALICE}x", "Bearer \ud800", f"Token {ALICE}"],
)
def test_bad_or_missing_key_is_401(header):
    with pytest.raises(AuthError):
        make().authenticate(header, "127.0.0.1")


def test_may_act_for():
    a = make(trusted_networks=[{"cidr": "127.0.0.0/8"}])
    alice = a.authenticate(f"Bearer {ALICE}", None)
    assert alice.may_act_for("alice") and not alice.may_act_for("bob")
    svc = a.authenticate(None, "127.0.0.1")
    assert svc.role is Role.SERVICE and svc.may_act_for("bob") and not svc.is_admin


def test_trusted_networks():
    a = make(
        trusted_networks=[
            {"cidr": "10.1.0.0/16", "user_id": "orch"},
            {"cidr": "::1/128", "role": "admin", "user_id": "local"},
        ]
    )
    assert a.authenticate(None, "10.1.2.3").user_id == "orch"
    assert a.authenticate(None, "::ffff:10.1.2.3").user_id == "orch"
    assert a.authenticate(None, "::1").is_admin
    for host in ("10.2.0.1", "not-an-ip", None):
        with pytest.raises(AuthError):
            a.authenticate(None, host)
    with pytest.raises(AuthError):  # a wrong key is refused even from a trusted network
        a.authenticate("Bearer wrong-key-000000000", "10.1.2.3")


def test_no_network_trusted_by_default():
    with pytest.raises(AuthError):
        make().authenticate(None, "127.0.0.1")


def test_every_key_compared_without_early_exit(monkeypatch):
    calls = []
    real = auth_mod.hmac.compare_digest

    def spy(a, b):
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(auth_mod.hmac, "compare_digest", spy)
    a = make()
    a.authenticate(f"Bearer {ALICE}", None)  # first key matches; the second is still compared
    assert len(calls) == 2
