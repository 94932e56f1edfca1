"""Auth against the dev OpenID Connect issuer running as its own process: discovery, JWKS, both flows, rotation."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from devstack.issuer import DevIssuer
from service_runtime.auth import AuthConfig, AuthError, Role, TokenVerifier
from service_runtime.token_client import ClientCredentials, ClientCredentialsAuth, TokenRequestError

pytestmark = pytest.mark.integration


def verifier(issuer: DevIssuer) -> TokenVerifier:
    # No jwks_url: found through the issuer's discovery document, as in production.
    return TokenVerifier(AuthConfig(issuer=issuer.url, audience="billing", jwks_min_refresh_seconds=0))


async def test_a_dev_user_signs_in_by_authorization_code_and_the_service_knows_its_roles(
    oidc_issuer: DevIssuer,
) -> None:
    caller = await verifier(oidc_issuer).verify(oidc_issuer.user_token("hilkka.prices"))
    assert caller.subject == "hilkka.prices"
    assert caller.roles == {Role.VIEWER, Role.PRICE_ADMINISTRATOR}
    assert caller.client_id == "billing-dev"
    assert caller.name == "Hilkka Hinnoittelija"


async def test_the_cronjob_gets_a_client_credentials_token_with_its_service_role(
    oidc_issuer: DevIssuer,
) -> None:
    caller = await verifier(oidc_issuer).verify(
        oidc_issuer.service_token("billing-run-cronjob", "local-cronjob-secret")
    )
    assert caller.subject == "billing-run-cronjob"
    assert caller.roles == {Role.BILLING_RUN_TRIGGER}


async def test_after_a_key_rotation_new_tokens_verify_and_retired_keys_do_not(oidc_issuer: DevIssuer) -> None:
    check = verifier(oidc_issuer)
    before = oidc_issuer.user_token("olli.operator")
    await check.verify(before)

    oidc_issuer.rotate_keys()
    after = oidc_issuer.user_token("olli.operator")
    assert (await check.verify(after)).subject == "olli.operator"
    assert (await check.verify(before)).subject == "olli.operator"  # the old key is still published

    oidc_issuer.rotate_keys(retire_previous=True)
    newest = oidc_issuer.user_token("olli.operator")
    assert (await check.verify(newest)).subject == "olli.operator"
    with pytest.raises(AuthError, match="unknown key"):
        await check.verify(before)


def credentials(issuer: DevIssuer, secret: str = "local-invoicing-secret") -> ClientCredentials:
    return ClientCredentials(
        token_url=f"{issuer.url}/token", client_id="invoicing", client_secret=SecretStr(secret)
    )


async def test_the_async_client_sends_a_cached_token_that_the_service_accepts(oidc_issuer: DevIssuer) -> None:
    auth = ClientCredentialsAuth(credentials(oidc_issuer))
    first = await auth.async_token()
    assert await auth.async_token() == first  # cached, not fetched per call
    caller = await verifier(oidc_issuer).verify(first)
    assert caller.roles == {Role.USAGE_READER}
    async with httpx.AsyncClient(auth=auth) as http:
        request = (await http.get(f"{oidc_issuer.url}/jwks")).request
    assert request.headers["authorization"] == f"Bearer {first}"


def test_the_sync_client_renews_the_token_before_it_expires(oidc_issuer: DevIssuer) -> None:
    now = [0.0]
    auth = ClientCredentialsAuth(credentials(oidc_issuer), monotonic=lambda: now[0])
    first = auth.sync_token()
    now[0] += 900 - 29  # within the renewal margin of the 900 s lifetime
    second = auth.sync_token()
    assert second != first


def test_a_wrong_secret_is_a_clear_error_without_the_secret(oidc_issuer: DevIssuer) -> None:
    auth = ClientCredentialsAuth(credentials(oidc_issuer, secret="wrong-and-private"))
    with pytest.raises(TokenRequestError) as error:
        auth.sync_token()
    assert "HTTP 401" in str(error.value)
    assert "wrong-and-private" not in str(error.value)


def test_a_developer_gets_a_dev_users_token_from_the_command_line(
    oidc_issuer: DevIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    from devstack.issuer import main

    assert main(["pirjo.partners", "--issuer", oidc_issuer.url]) == 0
    token = capsys.readouterr().out.strip()
    assert token.count(".") == 2
