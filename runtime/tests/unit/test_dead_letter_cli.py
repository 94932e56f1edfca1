"""`<service> dead-letters …` calls the service's API with the operator's own token, never without one."""

from __future__ import annotations

import argparse

import pytest

from service_runtime.cli import dead_letters_command


def test_without_a_token_the_cli_says_how_to_get_one_and_calls_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BILLING_TOKEN", raising=False)
    args = argparse.Namespace(action="replay", id=7, url="http://127.0.0.1:9", token=None, json=False)

    assert dead_letters_command(args, default_url="http://127.0.0.1:9") == 1
    error = capsys.readouterr().err
    assert "no access token: pass --token or set BILLING_TOKEN" in error


def test_an_unreachable_service_is_a_clear_failure(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(action="show", id=7, url="http://127.0.0.1:9", token="t", json=False)

    assert dead_letters_command(args, default_url="http://unused") == 1
    assert "http://127.0.0.1:9 did not answer: ConnectError" in capsys.readouterr().err
