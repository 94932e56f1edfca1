"""An HTTP emulator of the part of the Procountor REST API that this product uses."""

from procountor_emulator.app import create_app
from procountor_emulator.config import ApiClientRegistration, EmulatorConfig, LoginUser, VatStatus

__all__ = ["ApiClientRegistration", "EmulatorConfig", "LoginUser", "VatStatus", "create_app"]
