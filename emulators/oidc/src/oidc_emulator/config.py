"""Who the dev issuer knows: dev users per role, service accounts, public clients, token lifetime."""

from __future__ import annotations

from dataclasses import dataclass, field

#: The role names the services check (`service_runtime.auth.Role`); a test keeps the two in step.
VIEWER = "viewer"
BILLING_OPERATOR = "billing-operator"
PRICE_ADMINISTRATOR = "price-administrator"
PARTNER_MANAGER = "partner-manager"
CONTRACT_SYSTEM = "contract-system"
BILLING_RUN_TRIGGER = "billing-run-trigger"
USAGE_READER = "usage-reader"

#: The audience every token carries unless the config says otherwise.
DEFAULT_AUDIENCE = "billing"


@dataclass(frozen=True)
class DevUser:
    """A person who signs in through the authorization-code flow; chosen by `login_hint` or on the page."""

    subject: str
    name: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class ServiceClient:
    """A confidential client: a machine that gets tokens by client credentials."""

    client_id: str
    client_secret: str = field(repr=False)
    roles: tuple[str, ...] = ()


DEV_USERS: tuple[DevUser, ...] = (
    DevUser("ville.viewer", "Ville Viewer", (VIEWER,)),
    DevUser("olli.operator", "Olli Operaattori", (VIEWER, BILLING_OPERATOR)),
    DevUser("hilkka.prices", "Hilkka Hinnoittelija", (VIEWER, PRICE_ADMINISTRATOR)),
    DevUser("pirjo.partners", "Pirjo Partneripäällikkö", (VIEWER, PARTNER_MANAGER)),
    DevUser("ned.noroles", "Ned Norole", ()),
)

# Published defaults for local runs only; a production issuer has its own secrets.
SERVICE_CLIENTS: tuple[ServiceClient, ...] = (
    ServiceClient("billing-run-cronjob", "local-cronjob-secret", (BILLING_RUN_TRIGGER,)),
    ServiceClient("invoicing", "local-invoicing-secret", (USAGE_READER,)),
    ServiceClient("crm", "local-crm-secret", (CONTRACT_SYSTEM,)),
    # Every role at once: the test stacks and the HTTP fuzzers, which must get past every policy.
    ServiceClient(
        "dev-all-roles",
        "local-all-roles-secret",
        (
            VIEWER,
            BILLING_OPERATOR,
            PRICE_ADMINISTRATOR,
            PARTNER_MANAGER,
            CONTRACT_SYSTEM,
            BILLING_RUN_TRIGGER,
            USAGE_READER,
        ),
    ),
)

#: Public clients (no secret; PKCE) allowed to use the authorization-code flow: the API docs, a CLI.
PUBLIC_CLIENTS: tuple[str, ...] = ("billing-dev",)


@dataclass(frozen=True)
class IssuerConfig:
    """Everything that varies between issuer instances; tests build one directly."""

    issuer: str
    """The `iss` of every token and the base of every endpoint URL, e.g. `http://127.0.0.1:8091`."""
    audience: str = DEFAULT_AUDIENCE
    role_claim: str = "roles"
    token_lifetime_seconds: int = 900
    users: tuple[DevUser, ...] = DEV_USERS
    clients: tuple[ServiceClient, ...] = SERVICE_CLIENTS
    public_clients: tuple[str, ...] = PUBLIC_CLIENTS

    def user(self, subject: str) -> DevUser | None:
        return next((u for u in self.users if u.subject == subject), None)

    def client(self, client_id: str) -> ServiceClient | None:
        return next((c for c in self.clients if c.client_id == client_id), None)
