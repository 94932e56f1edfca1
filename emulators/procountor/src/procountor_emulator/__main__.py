"""`python -m procountor_emulator`: serve the emulator over HTTP."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping

import uvicorn

from procountor_emulator.app import create_app
from procountor_emulator.config import (
    LOCAL_API_KEY,
    LOCAL_CLIENT_ID,
    LOCAL_CLIENT_SECRET,
    LOCAL_LOGIN_PASSWORD,
    LOCAL_LOGIN_USERNAME,
    ApiClientRegistration,
    EmulatorConfig,
    LoginUser,
)

ENV_PREFIX = "PROCOUNTOR_EMULATOR_"


def config_from_environment(
    environ: Mapping[str, str],
    *,
    token_lifetime: int,
    rate_limit: int,
    latency_ms: float = 0.0,
    first_id: int = 1000,
) -> EmulatorConfig:
    """Credentials come from the environment, never from argv, which `ps` shows to everyone."""
    client = ApiClientRegistration(
        client_id=environ.get(f"{ENV_PREFIX}CLIENT_ID", LOCAL_CLIENT_ID),
        client_secret=environ.get(f"{ENV_PREFIX}CLIENT_SECRET", LOCAL_CLIENT_SECRET),
        api_key=environ.get(f"{ENV_PREFIX}API_KEY", LOCAL_API_KEY),
        redirect_uri=environ.get(f"{ENV_PREFIX}REDIRECT_URI") or None,
    )
    user = LoginUser(
        username=environ.get(f"{ENV_PREFIX}LOGIN_USERNAME", LOCAL_LOGIN_USERNAME),
        password=environ.get(f"{ENV_PREFIX}LOGIN_PASSWORD", LOCAL_LOGIN_PASSWORD),
    )
    return EmulatorConfig(
        clients=(client,),
        login_users=(user,),
        keylogin_auto_consent=environ.get(f"{ENV_PREFIX}KEYLOGIN_AUTO_CONSENT", "") == "1",
        token_lifetime_seconds=token_lifetime,
        rate_limit_requests=rate_limit,
        latency_seconds=latency_ms / 1000,
        first_id=first_id,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m procountor_emulator",
        description="An in-memory emulator of the Procountor REST API (base path /api).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token-lifetime", type=int, default=3600, help="seconds")
    parser.add_argument("--rate-limit", type=int, default=20, help="requests per second")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every API call, e.g. 50 for a realistic one"
    )
    parser.add_argument("--first-id", type=int, default=1000, help="ids are handed out after this one")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = config_from_environment(
        os.environ,
        token_lifetime=args.token_lifetime,
        rate_limit=args.rate_limit,
        latency_ms=args.latency_ms,
        first_id=args.first_id,
    )
    # uvicorn's access log prints query strings; the app logs paths only.
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
    )


if __name__ == "__main__":
    main()
