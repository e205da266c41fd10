"""Every admin URL of the app, against every role: allowed, or refused exactly as documented.

The URLs are not listed by hand: they are collected from Django's resolver (every
pattern of the app's admin namespaces) and from Wagtail's bulk-action registry
(every bulk action on one of the app's models). A URL that ``MATRIX`` does not
classify fails ``test_every_admin_url_is_in_the_matrix``, so a new view cannot
escape these tests.

Roles (the permissions are those of docs/admin.md, docs/outbox.md,
docs/addresses.md and docs/mailings.md):

* ``anonymous``: not signed in, sent to the login page;
* ``editor``: Wagtail admin access, no permission of the app;
* ``member``: ``view_message`` only, in the group "Support" (their team);
* ``other``: ``view_message`` plus every mail-log and outbox action, in the
  group "Sales": what they may do, they may do only to their own team's mail;
* ``moderator``: every mail-log, outbox and address permission (``view_all_mail``),
  and composing mailings and mailing lists, but not sending mailings;
* ``publisher``: ``send_mailing`` and ``view_mailing_results`` only;
* ``superuser``.

Outcomes: ``ok`` (200, or a redirect elsewhere than the login page or the
dashboard), ``login`` (redirect to the login page), ``denied`` (Wagtail's answer
to ``PermissionDenied``: back to the dashboard, see ``tests.utils.denied``),
``404``, ``405`` (a POST-only view asked with GET), ``noop`` (a bulk action's
page answers, but about nothing: the row is not listed, a POST changes nothing),
``listed`` (a bulk action lists the row apart as refused, a POST changes nothing).
Whatever is not ``ok`` must leave the database as it was.

Also here: CSRF is enforced on every POST endpoint, and user-controlled text
(subject, addresses, ESP descriptions, raw payloads, error texts, mailing
subjects, list names, member names) is escaped on every page.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from anymail.backends.test import EmailBackend as AnymailTestBackend
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from wagtail.admin.views.bulk_action.registry import bulk_action_registry

from tests.testapp.models import Invoice, Member
from tests.utils import make_user
from wagtail_maillog import label
from wagtail_maillog.addresses.health import set_status
from wagtail_maillog.models import (
    Address,
    AddressStatus,
    ConnectorState,
    Event,
    Mailing,
    MailingList,
    MailingListMember,
    MailingState,
    Message,
    OutboxItem,
    OutboxPreference,
    Recipient,
    SendAttempt,
)

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'
#: The script's start, however its quotes come out (HTML, JSON: \"x\").
XSS_START = "<script>alert("
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
NAMESPACES = (
    "wagtail_maillog",
    "wagtail_maillog_outbox",
    "wagtail_maillog_addresses",
    "wagtail_maillog_mailings",
    "wagtail_maillog_lists",
    "wagtail_maillog_deliverability",
)
ROLES = ("anonymous", "editor", "member", "other", "moderator", "publisher", "superuser")
LOGIN = "/admin/login/"


# ---- the expected outcomes ------------------------------------------------------------


def rule(ok: set[str] = frozenset(), **outcomes: set[str]) -> dict[str, str]:
    """Role -> outcome: ``login`` for anonymous, ``ok`` for ``ok``, ``denied`` otherwise.

    ``rule({"superuser"}, n404={"other"}, noop={"member"})`` names the exceptions.
    """
    table = {role: "denied" for role in ROLES}
    table["anonymous"] = "login"
    table.update(dict.fromkeys(ok, "ok"))
    for outcome, roles in outcomes.items():
        table.update(dict.fromkeys(roles, {"n404": "404"}.get(outcome, outcome)))
    return table


MOD = {"moderator", "superuser"}  # view_all_mail + every action + addresses + composing
LOG = {"member", "other", *MOD}  # may open the mail log and the outbox
COMPOSE = MOD  # add / change / delete mailing and mailing list
SEE_MAILINGS = {"moderator", "publisher", "superuser"}  # compose, send or results
SEND = {"publisher", "superuser"}
RESULTS = {"publisher", "superuser"}
DELIVERABILITY = {"publisher", "superuser"}  # counts only: no mail, no address


def own_team(target: str, action_roles: set[str]) -> dict[str, str]:
    """A mail-log or outbox page of one message: only its team, or ``view_all_mail``, sees it.

    ``action_roles``: who has the page's permission at all (the others are denied
    before the message is looked up, so they learn nothing about its id).
    """
    team_of = {"support": "member", "sales": "other", "system": None}
    owner = team_of[target]
    allowed = {r for r in action_roles if r in MOD or r == owner}
    hidden = {r for r in action_roles if r not in allowed}
    return rule(allowed, n404=hidden)


def bulk(target: str, action_roles: set[str]) -> dict[str, str]:
    """A bulk action of the mail log or the outbox, on one row.

    Rows the user may not see are ignored, not even listed (``noop``); rows they
    see without the action's permission are listed apart and left alone (``listed``).
    """
    team_of = {"support": "member", "sales": "other", "system": None}
    sees = MOD | {team_of[target]}
    return rule(
        {r for r in action_roles if r in sees},
        noop={r for r in LOG if r not in sees},
        listed={r for r in LOG if r in sees and r not in action_roles},
    )


@dataclass
class Case:
    """One URL (a target fills its path) and what each role gets, by GET and by POST."""

    name: str  # "namespace:url_name", or "bulk:model:action"
    target: str = ""
    get: dict[str, str] = field(default_factory=dict)
    post: dict[str, str] | None = None  # None: no POST handler (405 even for a superuser)
    data: dict[str, Any] = field(default_factory=dict)
    query: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}[{self.target}]" if self.target else self.name


def post_only(table: dict[str, str]) -> dict[str, str]:
    """GET on a POST-only view: the permission check first, then 405."""
    return {role: "405" if outcome == "ok" else outcome for role, outcome in table.items()}


def mail_cases() -> list[Case]:
    cases = [
        Case("wagtail_maillog:index", get=rule(LOG)),
        Case("wagtail_maillog:index_results", get=rule(LOG)),
        Case("wagtail_maillog:webhooks", get=rule(LOG)),  # URLs and counts, no mail
        # Only redirects (to the object's edit view, or back to the log), whatever the method.
        Case("wagtail_maillog:related", "invoice", get=rule(LOG), post=rule(LOG)),
    ]
    for target in ("support", "sales", "system"):
        cases += [
            Case("wagtail_maillog:detail", target, get=own_team(target, LOG)),
            Case(
                "wagtail_maillog:resend",
                target,
                get=own_team(target, {"other", *MOD}),
                post=own_team(target, {"other", *MOD}),
                data={"recipient": "{recipient}"},
            ),
            Case(
                "wagtail_maillog:cancel",
                target,
                get=own_team(target, {"other", *MOD}),
                post=own_team(target, {"other", *MOD}),
            ),
            Case(
                "bulk:recipient:resend",
                target,
                get=bulk(target, {"other", *MOD}),
                post=bulk(target, {"other", *MOD}),
            ),
        ]
    return cases


def outbox_cases() -> list[Case]:
    cases = [
        Case("wagtail_maillog_outbox:index", get=rule(LOG), post=rule(LOG), data={"columns": []}),
        Case(
            "wagtail_maillog_outbox:index_results",
            get=rule(LOG),
            post=rule(LOG),
            data={"columns": []},
        ),
        Case("wagtail_maillog_outbox:connectors", get=rule(LOG)),
        Case("wagtail_maillog_outbox:connector_disable", "default", get=rule(MOD), post=rule(MOD)),
        Case("wagtail_maillog_outbox:connector_enable", "default", get=rule(MOD), post=rule(MOD)),
    ]
    for target in ("support", "sales", "system"):
        for action in ("retry", "cancel"):
            cases += [
                Case(
                    f"wagtail_maillog_outbox:{action}",
                    target,
                    get=own_team(target, {"other", *MOD}),
                    post=own_team(target, {"other", *MOD}),
                ),
                Case(
                    f"bulk:outboxitem:{action}",
                    target,
                    get=bulk(target, {"other", *MOD}),
                    post=bulk(target, {"other", *MOD}),
                ),
            ]
        cases.append(Case("wagtail_maillog_outbox:detail", target, get=own_team(target, LOG)))
        cases.append(Case("wagtail_maillog_outbox:quick_view", target, get=own_team(target, LOG)))
    return cases


def address_cases() -> list[Case]:
    return [
        Case("wagtail_maillog_addresses:index", get=rule(MOD)),
        Case("wagtail_maillog_addresses:index_results", get=rule(MOD)),
        Case("wagtail_maillog_addresses:detail", "address", get=rule(MOD)),
        Case("wagtail_maillog_addresses:clear", "address", get=rule(MOD), post=rule(MOD)),
        Case(
            "wagtail_maillog_addresses:send",
            get=rule(MOD),
            post=rule(MOD),
            query="address=new@example.com",
        ),
        Case("wagtail_maillog_addresses:resend", get=rule(MOD), post=rule(MOD), data={"days": 7}),
        Case("bulk:address:send_confirmation", "address", get=rule(MOD), post=rule(MOD)),
        Case("bulk:address:clear_problem", "address", get=rule(MOD), post=rule(MOD)),
    ]


def mailing_cases() -> list[Case]:
    ns = "wagtail_maillog_mailings"
    return [
        Case(f"{ns}:index", get=rule(SEE_MAILINGS)),
        Case(f"{ns}:index_results", get=rule(SEE_MAILINGS)),
        Case(f"{ns}:add", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:edit", "draft", get=rule(COMPOSE), post=rule(COMPOSE)),
        # A sent mailing is not editable: who may edit is sent to its overview.
        Case(f"{ns}:edit", "sent", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:delete", "draft", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:copy", "draft", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:history", "draft", get=rule(COMPOSE)),
        Case(f"{ns}:history_results", "draft", get=rule(COMPOSE)),
        Case(f"{ns}:usage", "draft", get=rule(COMPOSE)),
        Case(f"{ns}:overview", "sent", get=rule(SEE_MAILINGS)),
        Case(f"{ns}:progress", "sent", get=rule(RESULTS)),
        Case(f"{ns}:refresh", "sent", get=post_only(rule(RESULTS)), post=rule(RESULTS)),
        Case(f"{ns}:preview", "draft", get=rule(SEE_MAILINGS)),
        Case(f"{ns}:preview_html", "draft", get=rule(SEE_MAILINGS)),
        Case(f"{ns}:test", "draft", get=post_only(rule(SEE_MAILINGS)), post=rule(SEE_MAILINGS)),
        Case(f"{ns}:send", "draft", get=rule(SEND), post=rule(SEND), data={"when": "now"}),
        Case(f"{ns}:cancel", "sent", get=rule(SEND), post=rule(SEND)),
    ]


def list_cases() -> list[Case]:
    ns = "wagtail_maillog_lists"
    return [
        Case(f"{ns}:index", get=rule(COMPOSE)),
        Case(f"{ns}:index_results", get=rule(COMPOSE)),
        Case(f"{ns}:add", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:edit", "list", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:delete", "list", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:copy", "list", get=rule(COMPOSE), post=rule(COMPOSE)),
        Case(f"{ns}:history", "list", get=rule(COMPOSE)),
        Case(f"{ns}:history_results", "list", get=rule(COMPOSE)),
        Case(f"{ns}:usage", "list", get=rule(COMPOSE)),
    ]


def deliverability_cases() -> list[Case]:
    ns = "wagtail_maillog_deliverability"
    return [
        Case(f"{ns}:index", get=rule(DELIVERABILITY)),
        Case(f"{ns}:csv", get=rule(DELIVERABILITY)),
    ]


MATRIX: list[Case] = [
    *mail_cases(),
    *deliverability_cases(),
    *outbox_cases(),
    *address_cases(),
    *mailing_cases(),
    *list_cases(),
]


# ---- what the app has ------------------------------------------------------------------


def admin_url_names() -> set[str]:
    """Every named pattern in the app's admin namespaces, as Django resolves them."""
    found: set[str] = set()

    def walk(resolver: URLResolver, namespaces: tuple[str, ...]) -> None:
        for pattern in resolver.url_patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern, namespaces + ((pattern.namespace,) if pattern.namespace else ()))
            elif isinstance(pattern, URLPattern) and namespaces and namespaces[-1] in NAMESPACES:
                assert pattern.name, f"an unnamed URL in {namespaces[-1]}: {pattern.pattern}"
                found.add(f"{namespaces[-1]}:{pattern.name}")

    walk(get_resolver(), ())
    return found


def bulk_action_names() -> set[str]:
    """Every Wagtail bulk action registered on one of the app's models."""
    bulk_action_registry._scan_for_bulk_actions()
    models = bulk_action_registry.actions.get("wagtail_maillog", {})
    return {f"bulk:{model}:{action}" for model, actions in models.items() for action in actions}


def test_every_admin_url_is_in_the_matrix():
    in_the_app = admin_url_names() | bulk_action_names()
    classified = {case.name for case in MATRIX}
    assert in_the_app - classified == set(), "new admin URLs: add them to MATRIX"
    assert classified - in_the_app == set(), "MATRIX names URLs the app no longer has"
    # Every namespace and every bulk model is really there (the walk found something).
    assert {name.split(":")[0] for name in in_the_app} >= {*NAMESPACES, "bulk"}


# ---- the world the matrix runs in ------------------------------------------------------


@dataclass
class World:
    users: dict[str, User]
    objects: dict[str, Any]
    texts: dict[str, str]  # target -> a text that identifies it on a page


def queue(subject: str, user: User | None, to: str) -> Message:
    msg = EmailMessage(subject, "Body", "site@example.com", [to])
    label(msg, user=user)
    msg.send()
    return Message.objects.get(pk=msg._maillog_pk)


def build_world(text: str = "") -> World:
    """Users of every role, and one object of every kind (``text`` in what users write)."""
    support = Group.objects.create(name=f"Support{text}")
    sales = Group.objects.create(name=f"Sales{text}")
    users = {
        "editor": make_user("editor"),
        "member": make_user("member", "view_message", groups=(support,)),
        "other": make_user(
            "other",
            "view_message",
            "resend_message",
            "cancel_message",
            "retry_outboxitem",
            "cancel_outboxitem",
            groups=(sales,),
        ),
        "moderator": make_user(
            "moderator",
            "view_all_mail",
            "resend_message",
            "cancel_message",
            "retry_outboxitem",
            "cancel_outboxitem",
            "manage_connectors",
            "lead_team",
            "manage_addresses",
            "add_mailing",
            "change_mailing",
            "delete_mailing",
            "add_mailinglist",
            "change_mailinglist",
            "delete_mailinglist",
        ),
        "publisher": make_user(
            "publisher", "send_mailing", "view_mailing_results", "view_deliverability"
        ),
        "superuser": User.objects.create_superuser("admin", "admin@example.com", "pw"),
    }
    teammate = make_user("teammate", groups=(support,))
    seller = make_user("seller", groups=(sales,))

    texts = {
        "support": f"Support mail {text}",
        "sales": f"Sales mail {text}",
        "system": f"System mail {text}",
    }
    # Mail sent straight to an ESP, never in the outbox: message and outbox ids differ.
    AnymailTestBackend().send_messages(
        [EmailMessage(f"Early {i}", "Body", None, [f"early{i}@example.com"]) for i in range(2)]
    )
    messages = {
        "support": queue(texts["support"], teammate, "ann@example.com"),
        "sales": queue(texts["sales"], seller, "bo@example.com"),
        "system": queue(texts["system"], None, "cy@example.com"),
    }
    invoice = Invoice.objects.create(number="7")
    set_status([(f"bounced{text}@example.com".lower(), AddressStatus.BOUNCED, f"cause {text}")])
    address = Address.objects.get(status=AddressStatus.BOUNCED)
    draft = Mailing.objects.create(
        subject=f"Spring news {text}", body=f"<p>Hi {{{{ name }}}}</p>{text}", audience="members"
    )
    sent = Mailing.objects.create(
        subject=f"Winter news {text}",
        body="<p>Hi</p>",
        audience="members",
        state=MailingState.QUEUED,
        error=text,
    )
    mailing_list = MailingList.objects.create(name=f"Club list {text}", description=text)
    MailingListMember.objects.create(mailing_list=mailing_list, address="m@example.com", name=text)
    objects = {
        **messages,
        **{f"outbox:{k}": OutboxItem.objects.get(message=m) for k, m in messages.items()},
        "invoice": invoice,
        "address": address,
        "draft": draft,
        "sent": sent,
        "list": mailing_list,
        "default": "default",
    }
    return World(users, objects, texts)


@pytest.fixture(autouse=True)
def outbox(settings):
    settings.EMAIL_BACKEND = "wagtail_maillog.outbox.backend.OutboxBackend"
    settings.WAGTAIL_MAILLOG = {
        "CONNECTORS": {"default": {"BACKEND": "anymail.backends.test.EmailBackend"}},
        "STORE_BODY": True,
    }


@pytest.fixture
def world() -> World:
    return build_world()


def url_of(case: Case, world: World) -> str:
    target = world.objects.get(case.target)
    if case.name.startswith(("wagtail_maillog_outbox:", "bulk:outboxitem:")) and case.target:
        target = world.objects.get(f"outbox:{case.target}", target)
    if case.name.startswith("bulk:recipient:"):
        target = target.recipients.get()
    if case.name.startswith("bulk:"):
        _bulk, model, action = case.name.split(":")
        pk = target.pk if target is not None else ""
        url = f"/admin/bulk/wagtail_maillog/{model}/{action}/?id={pk}&next=/admin/maillog/"
        return url
    namespace, name = case.name.split(":")
    if case.target == "invoice":
        args: list[Any] = [ContentType.objects.get_for_model(Invoice).pk, target.pk]
    elif case.target == "default":
        args = ["default"]
    elif case.target:
        args = [target.pk]
    else:
        args = []
    url = reverse(case.name, args=args)
    return f"{url}?{case.query}" if case.query else url


def post_data(case: Case, world: World) -> dict[str, Any]:
    data = dict(case.data)
    if data.get("recipient") == "{recipient}":
        data["recipient"] = [r.pk for r in world.objects[case.target].recipients.all()]
    return data


# ---- running one request ------------------------------------------------------------


def fingerprint() -> tuple:
    """What any action of the app changes."""
    return (
        list(Message.objects.order_by("pk").values_list("pk", "subject")),
        list(Recipient.objects.order_by("pk").values_list("pk", "status")),
        list(OutboxItem.objects.order_by("pk").values_list("pk", "state", "next_attempt_at")),
        list(SendAttempt.objects.order_by("pk").values_list("pk", "outcome")),
        list(Address.objects.order_by("pk").values_list("pk", "status", "requested_at")),
        list(Mailing.objects.order_by("pk").values_list("pk", "state", "subject")),
        list(MailingList.objects.order_by("pk").values_list("pk", "name")),
        list(ConnectorState.objects.order_by("pk").values_list("name", "enabled")),
        list(OutboxPreference.objects.order_by("pk").values_list("user_id", "columns")),
    )


def outcome_of(response: Any) -> str:
    status = response.status_code
    if status in (301, 302):
        location = response["Location"]
        if location.startswith(LOGIN):
            return "login"
        if location == "/admin/":
            return "denied"
        return "ok"
    if status == 200:
        return "ok"
    return str(status)


def client_as(role: str, world: World, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def check(case: Case, world: World, method: str, expected: dict[str, str]) -> list[str]:
    """Ask as every role (each in a savepoint that is rolled back); the mismatches."""
    url = url_of(case, world)
    text = world.texts.get(case.target, "")
    problems = []
    for role in ROLES:
        client = client_as(role, world)
        with transaction.atomic():
            before = fingerprint()
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, post_data(case, world))
            got = outcome_of(response)
            want = expected[role]
            if want in ("noop", "listed"):
                if got != "ok":
                    problems.append(f"{method} {url} as {role}: {got}, expected {want}")
                elif want == "noop" and text and text in response.content.decode():
                    problems.append(f"{method} {url} as {role}: shows {text!r}")
            elif got != want:
                problems.append(f"{method} {url} as {role}: {got}, expected {want}")
            if want != "ok" and fingerprint() != before:
                problems.append(f"{method} {url} as {role}: changed the database")
            transaction.set_rollback(True)
    return problems


@pytest.mark.parametrize("case", MATRIX, ids=lambda c: c.id)
def test_matrix(case: Case, world: World):
    problems = check(case, world, "GET", case.get)
    if case.post is not None:
        problems += check(case, world, "POST", case.post)
    else:  # no POST handler: even a superuser gets 405, so no POST can slip past the matrix
        response = client_as("superuser", world).post(url_of(case, world))
        if response.status_code != 405:
            problems.append(f"POST {url_of(case, world)}: {response.status_code}, not in MATRIX")
    assert not problems, "\n".join(problems)


# ---- CSRF ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in MATRIX if c.post], ids=lambda c: c.id)
def test_every_post_needs_the_csrf_token(case: Case, world: World):
    client = client_as("superuser", world, enforce_csrf_checks=True)
    before = fingerprint()
    response = client.post(url_of(case, world), post_data(case, world))
    assert response.status_code == 403
    assert fingerprint() == before


# ---- escaping ------------------------------------------------------------------------


@pytest.fixture
def hostile_world() -> World:
    """Every text a user, a member or an ESP controls holds a script."""
    world = build_world(XSS)
    support = world.objects["support"]
    recipient = support.recipients.get()
    Message.objects.filter(pk=support.pk).update(
        from_email=f"{XSS}@example.com",
        reply_to=[XSS],
        source=XSS,
        tags=[XSS],
        metadata={"k": XSS},
        attachment_names=[XSS],
        related_label=XSS,
        body_text=XSS,
        body_html=XSS,
        headers={"X-Note": XSS},
    )
    Recipient.objects.filter(pk=recipient.pk).update(
        address=f"{XSS}@example.com", name=XSS, reason=XSS, esp_message_id=XSS
    )
    Event.objects.create(
        recipient=recipient,
        esp_name="Postmark",
        esp_message_id=XSS,
        address=f"{XSS}@example.com",
        event_type="bounced",
        dedupe_key="x",
        description=XSS,
        mta_response=XSS,
        reject_reason=XSS[:32],
        click_url=f"https://example.com/{XSS}",
        user_agent=XSS,
        raw={"Description": XSS, XSS: [XSS]},
    )
    SendAttempt.objects.create(
        message=support, outcome="failed", connector="default", error=XSS, response={XSS: XSS}
    )
    OutboxItem.objects.filter(message=support).update(state="retry_pending", last_error=XSS)
    Member.objects.create(name=XSS, email=world.objects["address"].address)
    world.objects["address"].changes.update(cause=XSS)
    return world


def test_user_controlled_text_is_escaped_on_every_page(hostile_world: World):
    world = hostile_world
    admin = client_as("superuser", world)
    outbox = reverse("wagtail_maillog_outbox:index")
    pages = ["/admin/", f"{outbox}?view=all", f"{outbox}results/?view=all"]  # dashboard panels
    pages += [url_of(case, world) for case in MATRIX if case.get["superuser"] == "ok"]
    seen_escaped = 0
    for url in dict.fromkeys(pages):
        response = admin.get(url, follow=True)
        assert response.status_code == 200, url
        body = response.content.decode()
        if url.endswith("/preview/html/"):
            # The mailing's own HTML, as members get it: shown only in a sandboxed frame.
            assert "sandbox" in response["Content-Security-Policy"], url
            continue
        assert XSS_START not in body, url
        seen_escaped += ESCAPED in body
    assert seen_escaped >= 30  # the pages really showed the texts, escaped


def test_user_controlled_text_is_escaped_after_every_action(hostile_world: World):
    """The messages after a POST ("Sending “…” was cancelled") escape it too."""
    world = hostile_world
    admin = client_as("superuser", world)
    for case in MATRIX:
        if not case.post or case.post["superuser"] != "ok":
            continue
        with transaction.atomic():
            response = admin.post(url_of(case, world), post_data(case, world), follow=True)
            body = response.content.decode()
            transaction.set_rollback(True)
        assert XSS_START not in body, case.id
