"""`make run`: the whole system on embedded parts, one real billing month end to end.

Starts the embedded Kafka-protocol broker and PostgreSQL, the Procountor emulator and the four
services as their own processes (exactly the `<service> serve` command the images run), then
plays two sample months: contracts and usage are published to Kafka as outside systems would,
metering closes the first month, invoicing runs its billing on the next month's first business day,
procountor-sync delivers the invoices to the emulator. Then Procountor's side: the emulator pays
one invoice and overpays another (a refund follows, B-06), and a customer's billing address is
changed there (B-22); the second month's invoice carries the new address. Invoices are printed. The
partner program runs alongside: the partner CRM registers the demo accounting firm and the training
platform certifies one of its experts; partners computes its tier from the end customers invoicing
announces, makes its commission statement after the run, and lists it in the public directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from billing_contracts.base import Message
from billing_contracts.contracts import (
    BillingChannel,
    ContractSignedV1,
    EInvoiceAddress,
    PackageCode,
    PayerKind,
    PostalAddress,
)
from billing_contracts.partners import (
    AccountingFirmDetailsChangedV1,
    AccountingFirmRegisteredV1,
    ExpertCertifiedV1,
    ExpertSoftware,
)
from billing_contracts.references import first_business_id_from
from billing_contracts.registry import TOPICS, all_topic_names
from billing_contracts.usage import (
    DocumentKind,
    EInvoiceReceivedV1,
    EInvoiceSentV1,
    InvoiceChannel,
    PayCalculatedV1,
    UserRole,
    UserRolesChangedV1,
    VoucherCreatedV1,
    VoucherVoidedV1,
)
from devstack.broker import EmbeddedBroker, free_port
from devstack.infra import KafkaTarget, async_url, create_database, ensure_topics, postgres_answers
from devstack.issuer import DevIssuer
from devstack.postgres import EmbeddedPostgres
from devstack.testing import Publisher
from service_runtime.migrations import upgrade

HELSINKI = ZoneInfo("Europe/Helsinki")
ROOT = Path(__file__).resolve().parents[3]
SERVICES = {  # service -> (command, env prefix, migrations)
    "metering": ("metering", "METERING_", "metering:migrations"),
    "invoicing": ("invoicing", "INVOICING_", "invoicing:migrations"),
    "partners": ("partners", "PARTNERS_", "partners:migrations"),
    "procountor-sync": ("procountor-sync", "PROCOUNTOR_SYNC_", "procountor_sync:migrations"),
}


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def business_id(base: int) -> str:
    """A valid Finnish business ID from a 7-digit base (check digit per the Y-tunnus rule)."""
    return first_business_id_from(base)


def previous_month(today: dt.date) -> tuple[int, int]:
    first = today.replace(day=1) - dt.timedelta(days=1)
    return first.year, first.month


def first_business_day(year: int, month: int) -> dt.date:
    from invoicing.calendar import first_business_day as fbd

    return fbd(year, month)


@dataclass
class Processes:
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, args: list[str], env: dict[str, str], log: Path) -> None:
        handle = log.open("ab")
        self.procs[name] = subprocess.Popen(
            args, env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see .local/logs/{name}.log")

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            if proc.poll() is None:
                proc.kill()


def partner_program(firm_business_id: str, at: dt.datetime) -> list[Message]:
    """The partner CRM's and the training platform's facts about the demo accounting firm."""

    def envelope(producer: str) -> dict[str, Any]:
        return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": producer}

    return [
        AccountingFirmRegisteredV1(
            **envelope("partner-crm"),
            firm_id="numero",
            business_id=firm_business_id,
            firm_name="Tilitoimisto Numero Oy",
            agreement_signed_on=dt.date(2024, 1, 15),
        ),
        AccountingFirmDetailsChangedV1(
            **envelope("partner-crm"),
            firm_id="numero",
            firm_name="Tilitoimisto Numero Oy",
            business_id=firm_business_id,
            city="Helsinki",
            website="https://numero.example.fi",
            presentation="Sähköisen taloushallinnon tilitoimisto Helsingin keskustassa.",
            software=[ExpertSoftware.PROCOUNTOR],
        ),
        ExpertCertifiedV1(
            **envelope("training"),
            firm_id="numero",
            expert_id="numero-expert-1",
            software=ExpertSoftware.PROCOUNTOR,
            passed_on=at.date() - dt.timedelta(days=3),
        ),
    ]


def sample_month(year: int, month: int) -> list[Message]:
    """A small but real month: four companies, an accounting firm with its other clients, and what they did."""
    run = uuid.uuid4().hex[:4]
    firm_bid = business_id(3141592)
    mid = dt.datetime(year, month, 10, 9, 30, tzinfo=HELSINKI)
    production = dt.date(year, month, 1) - dt.timedelta(days=40)
    messages: list[Message] = []

    def envelope(at: dt.datetime) -> dict[str, Any]:
        return {"event_id": uuid.uuid4(), "occurred_at": at, "producer": "local-run"}

    def company(env: str, base: int, name: str, package: PackageCode, **extra: Any) -> str:
        bid = business_id(base)
        messages.append(
            ContractSignedV1(
                **envelope(mid - dt.timedelta(days=60)),
                environment_id=env,
                business_id=bid,
                company_name=name,
                package=package,
                production_date=production,
                accounting_firm_id="numero",
                accounting_firm_business_id=firm_bid,
                billing_address=PostalAddress(
                    street="Aleksanterinkatu 15", postal_code="00100", city="Helsinki"
                ),
                billing_channel=BillingChannel.EINVOICE,
                einvoice_address=EInvoiceAddress(
                    address="0037" + bid.replace("-", ""), operator="003723327487"
                ),
                **extra,
            )
        )
        return env

    aurinko = company(
        f"aurinko-{run}", 2077474, "Kahvila Aurinko Oy", PackageCode.KEVYT, reseller_partner_id="numero"
    )
    laine = company(f"laine-{run}", 1234567, "Rakennus Laine Oy", PackageCode.KEVYT)
    virta = company(f"virta-{run}", 7654321, "Konepaja Virta Oy", PackageCode.JOUSTO)
    ledger = company(
        f"ledger-{run}",
        1572860,
        "Tmi Kirjanpito Virtanen",
        PackageCode.TALLENNUS,
        payer=PayerKind.ACCOUNTING_FIRM,
    )

    def vouchers(env: str, count: int, kind: DocumentKind = DocumentKind.PURCHASE_INVOICE) -> None:
        for n in range(count):
            at = dt.datetime(year, month, 1 + n % 27, 8 + n % 9, tzinfo=HELSINKI)
            messages.append(
                VoucherCreatedV1(
                    **envelope(at),
                    environment_id=env,
                    voucher_id=f"{env}-V{n}",
                    document_kind=kind,
                    created_at=at,
                )
            )

    # The partner program (P-02…P-09): 21 more clients make numero's end customers 25 (P-03). It
    # resold two of them the software (P-08); the other 19 keep their books in Tallennus, which the
    # firm pays on its own invoice (B-17), so the demo bills two more invoices, not 21.
    for n in range(21):
        if n < 2:
            company(
                f"asiakas{n:02d}-{run}",
                4000000 + 7 * n,
                f"Asiakasyritys {n + 1} Oy",
                PackageCode.KEVYT,
                reseller_partner_id="numero",
            )
        else:
            company(
                f"asiakas{n:02d}-{run}",
                4000000 + 7 * n,
                f"Asiakasyritys {n + 1} Oy",
                PackageCode.TALLENNUS,
                payer=PayerKind.ACCOUNTING_FIRM,
            )
    vouchers(aurinko, 23)
    void_at = dt.datetime(year, month, 20, tzinfo=HELSINKI)
    messages.append(
        VoucherVoidedV1(
            **envelope(void_at), environment_id=aurinko, voucher_id=f"{aurinko}-V3", voided_at=void_at
        )
    )
    for person in ("anna", "bertta", "cecilia", "anna"):
        messages.append(
            PayCalculatedV1(
                **envelope(mid),
                environment_id=aurinko,
                payslip_id=f"PS-{person}-{uuid.uuid4().hex[:4]}",
                person_id=person,
                calculated_at=mid,
            )
        )
    for n in range(4):
        messages.append(
            EInvoiceSentV1(
                **envelope(mid),
                environment_id=aurinko,
                voucher_id=f"{aurinko}-S{n}",
                channel=InvoiceChannel.OPERATOR,
                sent_at=mid,
            )
        )
    messages.append(
        EInvoiceReceivedV1(
            **envelope(mid),
            environment_id=aurinko,
            voucher_id=f"{aurinko}-R1",
            channel=InvoiceChannel.BANK,
            received_at=mid,
        )
    )
    vouchers(laine, 7)
    messages.append(
        PayCalculatedV1(
            **envelope(mid), environment_id=laine, payslip_id="PS-1", person_id="urho", calculated_at=mid
        )
    )
    vouchers(virta, 3)
    for user, roles in (
        ("u1", [UserRole.ACCOUNTANT]),
        ("u2", [UserRole.MAIN_USER]),
        ("u3", [UserRole.MANAGEMENT_AUDITOR]),
        ("u4", [UserRole.STAFF_ENTRY, UserRole.ACCOUNTANT]),
    ):
        messages.append(
            UserRolesChangedV1(
                **envelope(mid),
                environment_id=ledger,
                user_id=user,
                roles=roles,
                changed_at=mid - dt.timedelta(days=5),
            )
        )
    return messages


async def wait_ready(urls: dict[str, str], procs: Processes, within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=3) as http:
        pending = dict(urls)
        while pending:
            procs.check_alive()
            for name, url in list(pending.items()):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        say(f"  {name} ready at {url}")
                        del pending[name]
            if time.monotonic() > deadline:
                raise TimeoutError(f"not ready: {', '.join(pending)}")
            await asyncio.sleep(0.3)


def print_invoices(invoices: list[dict[str, Any]], procountor: dict[str, dict[str, Any]]) -> None:
    line = "─" * 96
    print(f"\n{line}")
    for inv in invoices:
        sent = procountor.get(inv["invoice_number"], {})
        print(f"Invoice {inv['invoice_number']}  {inv['payer_name']} ({inv['payer_business_id']})")
        print(
            f"  date {inv['invoice_date']}  due {inv['due_date']}  reference {inv['reference_number']}  "
            f"period {inv['billing_period']}  Procountor: #{sent.get('id', '-')} {sent.get('status', 'not delivered')}"
        )
        print(
            f"  {'environment':<16} {'product':<18} {'description':<36} {'qty':>6} {'unit €':>9} {'net €':>9}"
        )
        for ln in inv["lines"]:
            qty = Decimal(ln["quantity"]).normalize()
            print(
                f"  {ln['environment_id']:<16} {ln['product_code']:<18} {ln['description'][:36]:<36} "
                f"{qty!s:>6} {ln['unit_price']:>9} {ln['net']:>9}"
            )
        for vat in inv["vat_totals"]:
            print(f"  {'':<72} VAT {vat['vat_rate']} % of {vat['net']}: {vat['vat']:>9}")
        print(f"  {'':<72} total net {inv['total_net']:>9}")
        print(f"  {'':<72} total     {inv['total_gross']:>9}")
        print(line)


async def wait_for_usage(
    http: httpx.AsyncClient, urls: dict[str, str], envs: list[str], month_key: str
) -> None:
    """Usage is in when every environment's figures stop changing."""
    deadline = time.monotonic() + 60
    while True:
        seen = [
            (await http.get(f"{urls['metering']}/environments/{e}/usage/{month_key}")).json()["usage"]
            for e in envs
        ]
        await asyncio.sleep(1.0)
        again = [
            (await http.get(f"{urls['metering']}/environments/{e}/usage/{month_key}")).json()["usage"]
            for e in envs
        ]
        if (seen == again and any(u["vouchers"] for u in seen)) or time.monotonic() > deadline:
            return


async def bill_month(
    http: httpx.AsyncClient, urls: dict[str, str], year: int, month: int
) -> list[dict[str, Any]]:
    """Close the month in metering, run its billing, wait until procountor-sync sent every invoice."""
    month_key = f"{year:04d}-{month:02d}"
    run_date = first_business_day(*((year + 1, 1) if month == 12 else (year, month + 1)))
    say(f"closing {month_key} in metering (final usage per environment goes to invoicing)")
    closed = (await http.post(f"{urls['metering']}/months/{month_key}/close")).json()
    say(f"  {closed}")
    say(f"billing run for {run_date.isoformat()}, the first Finnish business day after {month_key} (B-03)")
    deadline = time.monotonic() + 60
    while True:
        response = await http.post(
            f"{urls['invoicing']}/billing-runs", json={"run_date": run_date.isoformat()}
        )
        if response.status_code == 200:
            run = response.json()
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"billing run not accepted: {response.text}")
        await asyncio.sleep(0.5)
    say(
        f"  payers {run['payers']}, issued {run['invoices_issued']}, already billed {run['already_billed']}, "
        f"failures {run['failures']}"
    )
    invoices: list[dict[str, Any]] = (
        await http.get(f"{urls['invoicing']}/invoices", params={"period": month_key})
    ).json()
    numbers = {i["invoice_number"] for i in invoices}
    say("waiting for procountor-sync to create, approve and send them in Procountor (the emulator)")
    deadline = time.monotonic() + 60
    while True:
        sent = {
            i["originalInvoiceNumber"]: i
            for i in (await http.get(f"{urls['procountor']}/_emulator/invoices")).json()
        }
        if all(sent.get(n, {}).get("status") == "SENT" for n in numbers) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    print_invoices(invoices, sent)
    return [i | {"procountor": sent.get(i["invoice_number"], {})} for i in invoices]


async def money_back(http: httpx.AsyncClient, urls: dict[str, str], invoices: list[dict[str, Any]]) -> str:
    """Procountor both ways (I-03, B-06, B-22): one invoice paid, one overpaid, one customer's address
    changed in Procountor. Returns the business ID whose address moved."""
    companies = [i for i in invoices if i.get("procountor", {}).get("id")]
    paid, overpaid = companies[0], companies[1]
    emulator = urls["procountor"]
    say(
        f"the emulator: {paid['payer_name']} pays invoice {paid['invoice_number']} ({paid['total_gross']} €), "
        f"{overpaid['payer_name']} pays 25.00 € too much on {overpaid['invoice_number']}"
    )
    await http.post(
        f"{emulator}/_emulator/invoices/{paid['procountor']['id']}/payments",
        json={"amount": paid["total_gross"]},
    )
    extra = Decimal(overpaid["total_gross"]) + Decimal("25.00")
    await http.post(
        f"{emulator}/_emulator/invoices/{overpaid['procountor']['id']}/payments", json={"amount": str(extra)}
    )
    deadline = time.monotonic() + 30
    while True:
        views = [
            (await http.get(f"{urls['invoicing']}/invoices/{i['invoice_id']}")).json()
            for i in (paid, overpaid)
        ]
        # B-06: the one refund list is invoicing's; procountor-sync notes each in Procountor.
        refunds = (await http.get(f"{urls['invoicing']}/refunds")).json()
        notes = {
            r["refund_id"]: (
                await http.get(f"{urls['procountor-sync']}/deliveries/refund_note:{r['refund_id']}")
            ).json()
            for r in refunds
        }
        noted = refunds and all(n.get("status") == "delivered" for n in notes.values())
        if (all(v["status"] == "paid" for v in views) and noted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    for view in views:
        say(
            f"  invoicing: invoice {view['invoice_number']} {view['status']}, paid {view['paid_amount']} €, "
            f"open {view['open_amount']} €; in Procountor {view['delivery_status']}, {view['payment_status']}"
        )
    for refund in refunds:
        say(
            f"  refund {refund['refund_id']}: {refund['amount']} € back to {refund['payer_business_id']} "
            f"({refund['reason']}); on invoicing's refund list ({refund['status']}), noted in Procountor: "
            f"{notes[refund['refund_id']].get('status') == 'delivered'}"
        )
    moved = paid["payer_business_id"]
    partners = (await http.get(f"{emulator}/_emulator/businesspartners")).json()
    partner = next(p for p in partners if p["invoicingInfo"]["identifier"] == moved)
    say(
        f"the emulator: {paid['payer_name']}'s billing address is changed in Procountor to Hämeenkatu 3, Tampere"
    )
    await http.patch(
        f"{emulator}/_emulator/businesspartners/{partner['id']}",
        json={
            "billingAddress": {
                "name": paid["payer_name"],
                "street": "Hämeenkatu 3",
                "zip": "33100",
                "city": "Tampere",
            }
        },
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        contracts = (await http.get(f"{urls['invoicing']}/contracts", params={"payer_id": moved})).json()
        if contracts and all(c["billing_address"]["city"] == "Tampere" for c in contracts):
            say("  invoicing took it from Procountor (CustomerChangedInProcountorV1, B-22)")
            break
        await asyncio.sleep(0.3)
    return str(moved)


async def play_months(
    urls: dict[str, str], kafka: KafkaTarget, year: int, month: int, operator: httpx.Auth
) -> None:
    """Two months: the first billed, paid and changed in Procountor; the second carries the change."""
    first_year, first_month = (year - 1, 12) if month == 1 else (year, month - 1)
    messages = sample_month(first_year, first_month)
    later = usage_again(messages, year, month)
    say(
        f"publishing {len(messages) + len(later)} contract and usage events for "
        f"{first_year:04d}-{first_month:02d} and {year:04d}-{month:02d} to Kafka"
    )
    program = partner_program(business_id(3141592), dt.datetime.now(HELSINKI))
    say(
        f"publishing {len(program)} partner-program facts: firm 'numero' registered, its details, a certified expert"
    )
    async with Publisher(kafka) as publisher:
        await publisher.publish(*program)
        await publisher.publish(*messages, *later)
    envs = sorted({getattr(m, "environment_id", "") for m in messages} - {""})
    async with httpx.AsyncClient(timeout=30, auth=operator) as http:
        await wait_for_usage(http, urls, envs, f"{first_year:04d}-{first_month:02d}")
        first = await bill_month(http, urls, first_year, first_month)
        moved = await money_back(http, urls, first)
        await wait_for_usage(http, urls, envs, f"{year:04d}-{month:02d}")
        second = await bill_month(http, urls, year, month)
        carried = next(i for i in second if i["payer_business_id"] == moved)
        address = carried.get("procountor", {}).get("counterParty", {}).get("counterPartyAddress", {})
        say(
            f"the next invoice {carried['invoice_number']} of {carried['payer_name']} went to Procountor addressed "
            f"to {address.get('street')}, {address.get('zip')} {address.get('city')}"
        )
    await show_partner_program(urls["partners"], f"{year:04d}-{month:02d}", operator)


async def show_partner_program(url: str, month_key: str, operator: httpx.Auth) -> None:
    """The demo firm's tier and why, its commission statement of the month, the public directory."""
    async with httpx.AsyncClient(base_url=url, timeout=10, auth=operator) as http:
        deadline = time.monotonic() + 30
        while True:
            firm = (await http.get("/firms/numero")).json()
            if firm["tier"] == "gold" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        counts = firm["counts"]
        say(
            f"partners: 'numero' is {firm['tier_name']} with {counts['end_customers']} end customers (P-03), "
            f"{counts['certified_experts']} certified and {counts['authorized_experts']} authorized experts (P-02)"
        )
        say(f"  why: {firm['tier_reason']}")
        if firm["next_tier"]:
            say(f"  for {firm['next_tier']['tier']} it needs {'; '.join(firm['next_tier']['lacks'])}")
        say(
            f"  own-use discount {firm['benefits']['own_use_discount_percent']} % from this month's bill (P-07)"
        )
        deadline = time.monotonic() + 30
        while True:  # made once invoicing says the run finished and every invoice of it has arrived
            found = (
                await http.get("/commission-statements", params={"month": month_key, "partner_id": "numero"})
            ).json()
            if found or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        if not found:
            say(
                f"partners: no commission statement for {month_key} yet (see GET /commission-months/{month_key})"
            )
        else:
            statement = (await http.get(f"/commission-statements/{found[0]['statement_id']}")).json()
            say(f"partners: commission statement {statement['statement_id']} (P-08)")
            for ln in statement["invoices"]:
                print(
                    f"    {ln['kind']:<12} {ln['number']:>10}  {ln['payer_business_id']}  {ln['software_net']:>9} €"
                )
            print(
                f"    {'software net total':<35} {statement['software_net_total']:>9} €\n"
                f"    {'commission ' + statement['commission_rate_percent'] + ' %':<35} "
                f"{statement['commission_amount']:>9} €   (CSV for finance: {url}/commission-statements/"
                f"{statement['statement_id']}/csv)"
            )
        directory = (await http.get("/directory", auth=None)).json()  # public: no token (P-09)
        say(f"partners: public directory (P-09), {directory['total']} firm(s) listed (Silver and up)")
        for entry in directory["items"]:
            print(
                f"    {entry['firm_name']:<30} {entry['tier_name']:<20} {entry['city'] or '':<12} "
                f"presentation: {entry['presentation_level']}"
            )


def usage_again(messages: list[Message], year: int, month: int) -> list[Message]:
    """The same environments' usage once more, in another month (new ids, same days)."""
    times = ("created_at", "voided_at", "calculated_at", "sent_at", "received_at", "changed_at")
    again: list[Message] = []
    for m in messages:
        if isinstance(m, ContractSignedV1):
            continue
        update: dict[str, Any] = {"event_id": uuid.uuid4()}
        for name in times:
            value = getattr(m, name, None)
            if isinstance(value, dt.datetime):
                update[name] = value.replace(year=year, month=month, day=min(value.day, 28))
        update["occurred_at"] = update.get(next((t for t in times if t in update), ""), m.occurred_at)
        for name in ("voucher_id", "payslip_id"):
            if getattr(m, name, None):
                update[name] = f"{getattr(m, name)}-{month:02d}"
        again.append(m.model_copy(update=update))
    return again


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="make run", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--keep-running", action="store_true", help="keep everything up until Ctrl-C")
    parser.add_argument(
        "--month",
        help="the second month billed, YYYY-MM (default: last month in Helsinki); the one before it first",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT / ".local", help="where PostgreSQL keeps its data"
    )
    args = parser.parse_args(argv)
    if args.month:
        year, month = (int(p) for p in args.month.split("-"))
    else:
        year, month = previous_month(dt.datetime.now(HELSINKI).date())
    data: Path = args.data_dir
    (data / "logs").mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    procs = Processes()
    broker = EmbeddedBroker(log_path=data / "logs" / "broker.log")
    postgres = EmbeddedPostgres(data / "pgdata")
    # The dev OpenID Connect issuer, its own process like the rest (issue 12): the services trust it.
    issuer = DevIssuer(log_path=data / "logs" / "oidc-emulator.log")
    try:
        say("starting the embedded Kafka-protocol broker (Tansu) and PostgreSQL")
        bootstrap = broker.start()
        admin = postgres.start()
        if not postgres_answers(admin):
            raise RuntimeError("embedded PostgreSQL does not answer")
        kafka = KafkaTarget(bootstrap, enable_idempotence=False, kind="embedded")
        partitions = {t.name: t.partitions for t in TOPICS}
        asyncio.run(ensure_topics(bootstrap, {n: partitions.get(n, 1) for n in all_topic_names()}))
        say(f"  broker {bootstrap}, PostgreSQL {admin} (data in {data / 'pgdata'})")
        urls: dict[str, str] = {}
        base_env = {
            k: v
            for k, v in os.environ.items()
            if not k.endswith(("_DATABASE_URL", "_KAFKA_BOOTSTRAP_SERVERS"))
        }
        urls["issuer"] = issuer.start()
        emulator_port = free_port()
        urls["procountor"] = f"http://127.0.0.1:{emulator_port}"
        procs.start(
            "procountor-emulator",
            [
                sys.executable,
                "-m",
                "procountor_emulator",
                "--port",
                str(emulator_port),
                "--log-level",
                "warning",
            ],
            base_env,
            data / "logs" / "procountor-emulator.log",
        )
        for name, (command, prefix, migrations) in SERVICES.items():
            db = name.replace("-", "_")
            url = async_url(create_database(admin, db))  # each run starts from empty databases
            upgrade(url, migrations)
            port = free_port()
            urls[name] = f"http://127.0.0.1:{port}"
            env = base_env | {
                f"{prefix}KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                f"{prefix}KAFKA_ENABLE_IDEMPOTENCE": "false",  # Tansu refuses InitProducerId
                f"{prefix}DATABASE_URL": url,
                f"{prefix}HTTP_HOST": "127.0.0.1",
                f"{prefix}HTTP_PORT": str(port),
                f"{prefix}LOG_FORMAT": "json",
                f"{prefix}OUTBOX_IDLE_SECONDS": "0.2",
                f"{prefix}AUTH_ISSUER": urls["issuer"],
                # Swagger UI at /docs signs in at the dev issuer as its public client (PKCE).
                f"{prefix}AUTH_DOCS_CLIENT_ID": "billing-dev",
            }
            if name == "metering":
                # The demo plays last month now: metering closes it when told, after the usage is in,
                # as the scheduled close would have on the 1st.
                env[f"{prefix}AUTO_CLOSE"] = "false"
            if name == "invoicing":
                # Its calls to metering carry a client-credentials token (role usage-reader).
                env |= {
                    f"{prefix}OAUTH_TOKEN_URL": f"{urls['issuer']}/token",
                    f"{prefix}OAUTH_CLIENT_ID": "invoicing",
                    f"{prefix}OAUTH_CLIENT_SECRET": "local-invoicing-secret",
                }
            if name == "procountor-sync":
                env |= {
                    f"{prefix}PROCOUNTOR_BASE_URL": f"{urls['procountor']}/api",
                    f"{prefix}PROCOUNTOR_CLIENT_SECRET": "local-client-secret",
                    f"{prefix}PROCOUNTOR_API_KEY": "local-api-key",
                    # Payments come back by webhook (HMAC), customers by polling (Procountor has no
                    # webhook for them); both quick here so that the demo shows them.
                    f"{prefix}WEBHOOK_SECRET": "local-webhook-secret-0123456789",
                    f"{prefix}WEBHOOK_PUBLIC_URL": f"{urls[name]}/webhooks/procountor",
                    f"{prefix}POLL_INTERVAL_SECONDS": "1",
                    f"{prefix}DELIVERY_INTERVAL_SECONDS": "0.2",
                    f"{prefix}CREDENTIAL_KEY": "bqTcbTtWhzPfKHBqxrMRz5gBeo2KKCZBuV8eqMfXcyg=",
                }
            procs.start(
                name,
                [str(Path(sys.executable).parent / command), "serve"],
                env,
                data / "logs" / f"{name}.log",
            )
        say("starting the Procountor emulator and the four services (logs in .local/logs/)")
        asyncio.run(wait_ready({k: v for k, v in urls.items() if k not in ("procountor", "issuer")}, procs))
        # Everything below calls the APIs as a billing operator would, with a token (issue 12).
        asyncio.run(play_months(urls, kafka, year, month, issuer.user_auth("olli.operator")))
        print("\nAPI docs (OpenAPI):")
        for name, url in urls.items():
            if name != "issuer":
                print(f"  {name:<16} {url}{'/_emulator/docs' if name == 'procountor' else '/docs'}")
        print(f"\nOpenID Connect issuer (dev users per role, emulators/oidc/README.md): {urls['issuer']}")
        print(
            f"  a billing operator's token: uv run python -m devstack.issuer olli.operator --issuer {urls['issuer']}"
        )
        say(f"done in {time.monotonic() - started:.0f} s")
        if args.keep_running:
            say("running until Ctrl-C")
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    procs.check_alive()
                    time.sleep(1)
        return 0
    finally:
        say("shutting down")
        procs.stop()
        issuer.stop()
        broker.stop()
        postgres.stop()


if __name__ == "__main__":
    sys.exit(main())
