"""Fill the example site with users, members and a realistic mail log.

Idempotent: users, the group and members are created once; a welcome mail goes
to each member the log has no welcome mail for yet. The other mails (invoices,
a password reset, support replies...) are sent again on every run, as a live
site would. All of it goes through ``settings.EMAIL_BACKEND``: in the demo, the
outbox, where a newsletter waits until tomorrow, a reply waits 10 minutes
("undo send") and the mail of a member whose ESP is down is retried, then fails.
"""

from __future__ import annotations

import datetime
from typing import Any

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail
from django.core.management.base import BaseCommand, CommandParser
from django.test.utils import override_settings
from django.utils import timezone

from members.models import Member
from wagtail_maillog import label, mail_context
from wagtail_maillog.checks import OUTBOX_BACKEND
from wagtail_maillog.models import Message, OutboxItem
from wagtail_maillog.outbox.worker import process_outbox

ADMIN = ("admin", "admin", "admin@example.com")
EDITORS = [
    # username, password, first name, last name
    ("emma", "emma-demo", "Emma", "Lindqvist"),
    ("jonas", "jonas-demo", "Jonas", "Møller"),
]
TEAM = "Support team"

# (name, email): mostly ordinary addresses; the *.example domains make the
# sandbox ESP bounce, refuse, defer... (see wagtail_maillog/sandbox.py).
MEMBERS: list[tuple[str, str]] = [
    ("Anna Sørensen", "anna.sorensen@example.com"),
    ("Mikkel Jensen", "mikkel.jensen@example.com"),
    ("Freja Nielsen", "freja.nielsen@example.org"),
    ("Lars Andersson", "lars.andersson@example.com"),
    ("Ingrid Johansson", "ingrid.johansson@example.org"),
    ("Oskar Lindberg", "oskar.lindberg@example.net"),
    ("Camille Dubois", "camille.dubois@example.com"),
    ("Julien Moreau", "julien.moreau@example.org"),
    ("Léa Fontaine", "lea.fontaine@example.com"),
    ("Thomas Bernard", "thomas.bernard@example.net"),
    ("Sarah Mitchell", "sarah.mitchell@example.com"),
    ("James Whitfield", "james.whitfield@example.org"),
    ("Priya Raman", "priya.raman@example.com"),
    ("Daniel Okafor", "daniel.okafor@example.com"),
    ("Sofia Rossi", "sofia.rossi@example.org"),
    ("Mateo García", "mateo.garcia@example.com"),
    ("Nora Hansen", "nora.hansen@example.net"),
    ("Elias Berg", "elias.berg@example.com"),
    ("Maja Karlsson", "maja.karlsson@example.org"),
    ("Hugo Lefèvre", "hugo.lefevre@example.com"),
    ("Olivia Brown", "olivia.brown@example.com"),
    ("William Taylor", "william.taylor@example.org"),
    ("Astrid Holm", "astrid.holm@bounce.example"),
    ("Gustav Ek", "gustav.ek@bounce.example"),
    ("Chloé Martin", "chloe.martin@invalid.example"),
    ("Peter Schmidt", "peter.schmidt@spam.example"),
    ("Ida Petersen", "ida.petersen@unsubscribe.example"),
    ("Noah Wilson", "noah.wilson@defer.example"),
    ("Emil Nyström", "emil.nystrom@reject.example"),
    ("Bruno Keller", "bruno.keller@unreachable.example"),  # the ESP answers 503: retried
    ("Clara Evans", "clara.evans@example.com"),
]

INVOICE_CSV = "item,quantity,unit price,total\nAnnual membership,1,{fee},{fee}\n"


class Command(BaseCommand):
    help = "Create demo users and members, and send realistic mail through EMAIL_BACKEND."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-send", action="store_true", help="Only create the data.")
        parser.add_argument(
            "--events-now",
            action="store_true",
            help="Hand what the outbox holds to the ESP once now, and emit the sandbox's "
            "delivery events at once (SANDBOX_EVENT_DELAY=0).",
        )

    def handle(self, *args: Any, no_send: bool, events_now: bool, **options: Any) -> None:
        admin = self.ensure_admin()
        team, editors = self.ensure_team()
        members = self.ensure_members()
        self.address_health(members, no_send)
        if not no_send:
            maillog = dict(getattr(settings, "WAGTAIL_MAILLOG", {}))
            if events_now:
                maillog["SANDBOX_EVENT_DELAY"] = 0
            with override_settings(WAGTAIL_MAILLOG=maillog):
                self.send_all(admin, editors, members)
                if events_now and settings.EMAIL_BACKEND == OUTBOX_BACKEND:
                    # What the cluster would do within a minute, done now.
                    self.stdout.write(f"Outbox run: {process_outbox()}")
            if settings.EMAIL_BACKEND == OUTBOX_BACKEND:
                self.stdout.write(
                    f"In the outbox: {OutboxItem.objects.count()} (sent by `manage.py qcluster`)"
                )
            if not events_now and maillog.get("SANDBOX_EVENT_DELAY"):
                self.stdout.write(
                    "Delivery events follow through django-q2: keep `manage.py qcluster` running."
                )
        self.seed_history()
        self.stdout.write(self.style.SUCCESS(f"Wagtail admin login: {ADMIN[0]} / {ADMIN[1]}"))
        for username, password, *_ in EDITORS:
            self.stdout.write(f"Editor ({team.name}): {username} / {password}")

    # -- data ---------------------------------------------------------------

    def seed_history(self) -> None:
        """Six weeks of made-up deliverability figures before today, so the page has
        a history to draw (today's figures are the demo's own mail, counted by the
        scheduled task). A bad week of complaints three weeks ago crosses a threshold.
        """
        from wagtail_maillog.deliverability import rollup
        from wagtail_maillog.models import DailyCount

        today = timezone.localdate()
        if not DailyCount.objects.filter(day__lt=today).exists():
            rows = []
            slices = [
                ("newsletter", "newsletter", "gmail.com", 40),
                ("newsletter", "newsletter", "outlook.com", 22),
                ("newsletter", "newsletter", "example.com", 30),
                ("newsletter", "newsletter", "", 18),
                ("invoice", "transactional", "gmail.com", 9),
                ("invoice", "transactional", "example.org", 7),
                ("welcome", "transactional", "example.net", 4),
                ("password_reset", "transactional", "gmail.com", 3),
            ]
            for back in range(1, 43):
                day = today - datetime.timedelta(days=back)
                weekday = day.weekday() < 5
                for n, (source, connector, domain, base) in enumerate(slices):
                    wobble = (back * 7 + n * 13) % 11
                    sent = base * (3 if weekday else 1) + wobble
                    bad_week = 20 <= back <= 24 and source == "newsletter"
                    bounced = (wobble % 4 == 0) + (sent // 40)
                    delivered = sent - bounced - (wobble % 3 == 0)
                    opened = delivered * (35 + wobble) // 100
                    rows.append(
                        DailyCount(
                            day=day,
                            source=source,
                            connector=connector,
                            esp_name="Sandbox",
                            domain=domain,
                            sent=sent,
                            delivered=delivered,
                            deferred=wobble % 5 == 0,
                            bounced=bounced,
                            complained=(wobble % 6 == 0) if bad_week else back % 17 == n,
                            unsubscribed=(wobble % 4 == 1) + bad_week,
                            opened=opened,
                            clicked=opened * (20 + wobble) // 100,
                        )
                    )
            DailyCount.objects.bulk_create(rows)
        for _ in range(2):  # what the scheduled task does within two minutes
            rollup.catch_up()

    def address_health(self, members: list[Any], no_send: bool) -> None:
        """Every member's address gets a row; some are confirmed, some asked to confirm."""
        from wagtail_maillog.addresses.confirmation import send_requests
        from wagtail_maillog.addresses.health import set_status
        from wagtail_maillog.addresses.members import sync
        from wagtail_maillog.models import Address, AddressStatus

        sync()
        if Address.objects.exclude(status=AddressStatus.UNCONFIRMED).exists():
            return  # seeded before
        ordinary = [m.email for m in members if m.email.endswith((".com", ".org", ".net"))]
        set_status(
            (address, AddressStatus.CONFIRMED, "Confirmed when joining (demo data)")
            for address in ordinary[: len(ordinary) // 2]
        )
        if not no_send:
            send_requests(ordinary[len(ordinary) // 2 : len(ordinary) // 2 + 4])

    def ensure_admin(self) -> User:
        username, password, email = ADMIN
        user, created = User.objects.get_or_create(
            username=username,
            defaults={
                "email": email,
                "is_staff": True,
                "is_superuser": True,
                "first_name": "Site",
                "last_name": "Admin",
            },
        )
        if created:
            user.set_password(password)
            user.save()
            self.stdout.write(f"Created superuser {username}")
        return user

    def ensure_team(self) -> tuple[Group, list[User]]:
        team, _ = Group.objects.get_or_create(name=TEAM)
        member_type = ContentType.objects.get_for_model(Member)
        team.permissions.add(
            Permission.objects.get(content_type__app_label="wagtailadmin", codename="access_admin"),
            *Permission.objects.filter(content_type=member_type),
            *Permission.objects.filter(
                content_type=ContentType.objects.get_for_model(Message),
                codename__in=["view_message", "resend_message", "cancel_message"],
            ),
            *Permission.objects.filter(
                content_type=ContentType.objects.get_for_model(OutboxItem),
                codename__in=["retry_outboxitem", "cancel_outboxitem"],
            ),
        )
        # The first editor leads the team: the outbox opens on the team's mail for her.
        lead_team = Permission.objects.get(
            content_type=ContentType.objects.get_for_model(OutboxItem), codename="lead_team"
        )
        editors = []
        for username, password, first, last in EDITORS:
            user, created = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@example.com",
                },
            )
            if created:
                user.set_password(password)
                user.save()
                self.stdout.write(f"Created editor {username}")
            user.groups.add(team)
            editors.append(user)
        editors[0].user_permissions.add(lead_team)
        return team, editors

    def ensure_members(self) -> list[Member]:
        today = timezone.localdate()
        created = 0
        for index, (name, email) in enumerate(MEMBERS):
            joined = today - datetime.timedelta(days=17 * index + 3)
            _, was_created = Member.objects.get_or_create(
                email=email, defaults={"name": name, "joined": joined}
            )
            created += was_created
        self.stdout.write(f"Members: {created} created, {Member.objects.count()} in total")
        by_email = {m.email: m for m in Member.objects.filter(email__in=[e for _, e in MEMBERS])}
        return [by_email[email] for _, email in MEMBERS]

    # -- mail ---------------------------------------------------------------

    def deliver(self, message: EmailMessage) -> None:
        """Send one message; a refused recipient or a failing ESP is logged, not fatal.

        Both only happen here without the outbox (EMAIL_BACKEND set to the sandbox):
        the outbox queues the mail, and its worker meets the ESP's answer.
        """
        try:
            message.send()
        except AnymailRecipientsRefused:
            self.stdout.write(f"  refused by the ESP: {', '.join(message.to)} (logged as rejected)")
        except AnymailAPIError:
            self.stdout.write(f"  the ESP failed for {', '.join(message.to)} (not retried)")

    def send_all(self, admin: User, editors: list[User], members: list[Member]) -> None:
        before = Message.objects.count()
        self.send_welcomes(members)
        ordinary = [m for m in members if m.email.endswith((".com", ".org", ".net"))]
        at = {m.email.rsplit("@", 1)[1]: m for m in reversed(members)}  # first per domain
        self.send_invoices([*ordinary[:4], at["bounce.example"]])
        self.send_overdue_notice(ordinary[4])
        self.send_board_minutes(ordinary[5:8], admin)
        self.send_password_reset(admin)
        self.send_support_replies(
            editors, [*ordinary[8:11], at["spam.example"], at["defer.example"]]
        )
        self.send_newsletter_tomorrow(ordinary[11:16], admin)
        self.send_reply_with_undo(editors[1], ordinary[16])
        self.stdout.write(f"Sent {Message.objects.count() - before} messages")
        self.seed_mailings(admin, members)

    def seed_mailings(self, admin: User, members: list[Member]) -> None:
        """A mailing list, a draft, and one mailing sent to all members (results show)."""
        from wagtail_maillog.addresses.health import set_status
        from wagtail_maillog.mailings import sending
        from wagtail_maillog.models import AddressStatus, Mailing, MailingList, MailingListMember

        if Mailing.objects.exists():
            return
        board, _created = MailingList.objects.get_or_create(
            name="Board", defaults={"description": "The club's board members."}
        )
        for member in members[:4]:
            MailingListMember.objects.get_or_create(
                mailing_list=board, address=member.email, defaults={"name": member.name}
            )
        Mailing.objects.create(
            subject="Save the date: the autumn meeting, {{ name }}",
            body="<p>Dear {{ name }},</p><p>The autumn meeting is on 14 November. "
            "The agenda follows.</p>",
            audience="members",
            connector="newsletter",
            created_by=admin,
        )
        # Some members of the simulated problem domains confirmed long ago: their mail
        # bounces or is marked as spam, so the results show problem recipients.
        troubled = [
            m.email for m in members if m.email.endswith(("@bounce.example", "@spam.example"))
        ]
        set_status(
            (a, AddressStatus.CONFIRMED, "Confirmed when joining (demo data)") for a in troubled[:2]
        )
        sent = Mailing.objects.create(
            subject="Club news: October, {{ name }}",
            body="<p>Hello {{ name }},</p><p>The new season starts on Saturday. "
            'See the <a href="/">programme</a>.</p>',
            audience="members",
            connector="newsletter",
            created_by=admin,
        )
        sending.send(sent, user=admin)
        sending.queue_mailing(sent.pk)  # the task the cluster would run, done now
        sent.refresh_from_db()
        self.stdout.write(
            f"Mailing “{sent.subject}”: {sent.queued_count} queued, "
            f"{sum(sent.skipped.values())} members left out"
        )

    def send_welcomes(self, members: list[Member]) -> None:
        member_type = ContentType.objects.get_for_model(Member)
        welcomed = set(
            Message.objects.filter(source="welcome", content_type=member_type).values_list(
                "object_id", flat=True
            )
        )
        for member in members:
            if str(member.pk) in welcomed:
                continue
            first = member.name.split()[0]
            message = EmailMultiAlternatives(
                subject="Welcome to Example Club",
                body=f"Hi {first},\n\nWelcome aboard! Your membership starts today.\n",
                to=[f"{member.name} <{member.email}>"],
            )
            message.attach_alternative(
                f"<p>Hi {first},</p><p>Welcome aboard! Your membership starts today.</p>",
                "text/html",
            )
            self.deliver(label(message, source="welcome", related=member))

    def send_invoices(self, members: list[Member]) -> None:
        for number, member in enumerate(members, start=1001):
            message = EmailMessage(
                subject=f"Invoice {number} for your membership",
                body=f"Dear {member.name},\n\nPlease find invoice {number} attached.\n",
                to=[member.email],
                reply_to=["billing@example.com"],
            )
            message.attach(f"invoice-{number}.csv", INVOICE_CSV.format(fee="60.00"), "text/csv")
            self.deliver(label(message, source="invoice", related=member))

    def send_overdue_notice(self, member: Member) -> None:
        message = EmailMessage(
            subject="Payment overdue: invoice 0999",
            body=f"Dear {member.name},\n\nInvoice 0999 is now 30 days overdue.\n",
            to=[member.email],
        )
        self.deliver(label(message, source="invoice", related=member, importance="high"))

    def send_board_minutes(self, members: list[Member], admin: User) -> None:
        to, *cc = members
        message = EmailMessage(
            subject="Minutes of the board meeting",
            body="Hello all,\n\nThe minutes of Tuesday's board meeting are below.\n",
            to=[to.email],
            cc=[m.email for m in cc],
            bcc=[admin.email],
        )
        # Mail to many goes through the "newsletter" connector (see CONNECTORS).
        self.deliver(label(message, source="board", related=to, user=admin, connector="newsletter"))

    def send_newsletter_tomorrow(self, members: list[Member], admin: User) -> None:
        """Scheduled: "scheduled" in the outbox until tomorrow 08:00, cancellable."""
        tomorrow = timezone.localtime() + datetime.timedelta(days=1)
        send_at = tomorrow.replace(hour=8, minute=0, second=0, microsecond=0)
        for member in members:
            message = EmailMessage(
                subject="Club news: the summer programme",
                body=f"Hi {member.name.split()[0]},\n\nOur summer programme is out.\n",
                to=[member.email],
            )
            label(message, source="newsletter", user=admin, connector="newsletter", send_at=send_at)
            self.deliver(message)

    def send_reply_with_undo(self, editor: User, member: Member) -> None:
        """With "undo send": waits 10 minutes in the outbox ("queued"), cancellable."""
        message = EmailMessage(
            subject="Re: Change of address",
            body=f"Hi {member.name.split()[0]},\n\nWe have updated your address.\n",
            to=[member.email],
        )
        label(message, source="support", related=member, user=editor, undo_seconds=600)
        self.deliver(message)

    def send_password_reset(self, admin: User) -> None:
        """Django's own password reset; the log must recognise it unaided."""
        form = PasswordResetForm({"email": admin.email})
        if form.is_valid():
            form.save(
                domain_override="localhost:8000",
                subject_template_name="wagtailadmin/account/password_reset/email_subject.txt",
                email_template_name="wagtailadmin/account/password_reset/email.txt",
            )

    def send_support_replies(self, editors: list[User], members: list[Member]) -> None:
        """Mail an editor sends: logged as created by them, for their team."""
        for index, member in enumerate(members):
            editor = editors[index % len(editors)]
            with mail_context(user=editor, source="support", related=member):
                send_mail(
                    subject="Re: Question about my membership",
                    message=(
                        f"Hi {member.name.split()[0]},\n\nThanks for getting in touch. "
                        f"Your card is on its way.\n\n{editor.get_full_name()}\n"
                    ),
                    from_email=None,
                    recipient_list=[member.email],
                    fail_silently=False,
                )
