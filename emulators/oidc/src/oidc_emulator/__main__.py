"""`python -m oidc_emulator` / `oidc-emulator`: serve the dev issuer on loopback."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from oidc_emulator.app import create_app
from oidc_emulator.config import DEFAULT_AUDIENCE, IssuerConfig


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="oidc-emulator", description="A development OpenID Connect issuer.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--issuer", help="the `iss` of tokens (default http://HOST:PORT)")
    parser.add_argument("--audience", default=DEFAULT_AUDIENCE)
    parser.add_argument("--token-lifetime", type=int, default=900, help="seconds")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    config = IssuerConfig(
        issuer=args.issuer or f"http://{args.host}:{args.port}",
        audience=args.audience,
        token_lifetime_seconds=args.token_lifetime,
    )
    uvicorn.run(
        create_app(config), host=args.host, port=args.port, log_level=args.log_level, access_log=False
    )


if __name__ == "__main__":
    main()
