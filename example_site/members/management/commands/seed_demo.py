"""Fill the example site with users, members and a realistic mail log.

Idempotent: users, the group and members are created once; a welcome mail goes
to each member the log has no welcome mail for yet. The other mails (invoices,
a password reset, support replies...) are sent again on every run, as a live
site would. All of it goes through ``settings.EMAIL_BACKEND``.
"""

from __future__ import annotations

import datetime
from typing import Any

from anymail.exceptions import AnymailRecipientsRefused
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
from wagtail_maillog.models import Message

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
            help="Emit the sandbox's delivery events at once (SANDBOX_EVENT_DELAY=0).",
        )

    def handle(self, *args: Any, no_send: bool, events_now: bool, **options: Any) -> None:
        admin = self.ensure_admin()
        team, editors = self.ensure_team()
        members = self.ensure_members()
        if not no_send:
            maillog = dict(getattr(settings, "WAGTAIL_MAILLOG", {}))
            if events_now:
                maillog["SANDBOX_EVENT_DELAY"] = 0
            with override_settings(WAGTAIL_MAILLOG=maillog):
                self.send_all(admin, editors, members)
            if not events_now and maillog.get("SANDBOX_EVENT_DELAY"):
                self.stdout.write(
                    "Delivery events follow through django-q2: keep `manage.py qcluster` running."
                )
        self.stdout.write(self.style.SUCCESS(f"Wagtail admin login: {ADMIN[0]} / {ADMIN[1]}"))
        for username, password, *_ in EDITORS:
            self.stdout.write(f"Editor ({team.name}): {username} / {password}")

    # -- data ---------------------------------------------------------------

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
        """Send one message; a refused recipient is logged, not fatal."""
        try:
            message.send()
        except AnymailRecipientsRefused:
            self.stdout.write(f"  refused by the ESP: {', '.join(message.to)} (logged as rejected)")

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
        self.stdout.write(f"Sent {Message.objects.count() - before} messages")

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
        self.deliver(label(message, source="board", related=to, user=admin))

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
