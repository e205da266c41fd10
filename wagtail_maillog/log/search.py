"""The mail log's search: by address or subject, in a shape indexes can answer.

A whole address (``ann@example.com``) finds that address: an index lookup on
any database, however long the log. Any other text finds the mail whose
address or subject contains it, ignoring case. That is a substring search,
which a plain index cannot answer:

- On PostgreSQL, migration 0005 adds trigram indexes (``pg_trgm``) on the
  upper-cased address and subject, which Django's ``icontains`` SQL
  (``UPPER(col::text) LIKE UPPER(%s)``) matches. The subject side is asked
  first and, when it matches a few messages, becomes ``message_id IN (ids)``:
  an ``OR`` across a join, or with ``IN (subquery)``, makes PostgreSQL read
  every row, while two index conditions on the recipient table combine (a
  bitmap OR). A common text (thousands of matches) keeps ``IN (subquery)``:
  walking the listing's order then fills the first page at once.
- Elsewhere (SQLite, MariaDB) it reads the log: fine for the thousands of
  rows of a small site, about 1.7 s at a million rows on SQLite
  (docs/performance.md).

The listing and its "select all" bulk actions both filter through
:func:`search_recipients`, so they always agree on what matched.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import connections
from django.db.models import Q, QuerySet

from ..addresses import normalize
from ..models import Message, Recipient


def is_whole_address(query: str) -> bool:
    """True when ``query`` is a complete email address (not a part of one)."""
    try:
        validate_email(query)
    except ValidationError:
        return False
    return True


#: On PostgreSQL, up to this many messages whose subject matches are looked up by id
#: (an index condition on the recipients); more, and the matches are so common that
#: walking the listing's own order fills the first page sooner.
SUBJECT_IDS_MAX = 1000


def _subject_condition(query: str, using: str) -> Q:
    subjects = (
        Message.objects.using(using).filter(subject__icontains=query).values_list("pk", flat=True)
    )
    if connections[using].vendor == "postgresql":
        ids = list(subjects[: SUBJECT_IDS_MAX + 1])
        if len(ids) <= SUBJECT_IDS_MAX:
            return Q(message_id__in=ids)
    return Q(message_id__in=subjects)


def search_condition(query: str, using: str = "default") -> Q:
    """The filter for ``query`` on recipients of database ``using`` (an empty query
    matches everything)."""
    query = query.strip()
    if not query:
        return Q()
    if is_whole_address(query):
        return Q(address=normalize(query))
    return Q(address__icontains=query) | _subject_condition(query, using)


def search_recipients(queryset: QuerySet[Recipient], query: str) -> QuerySet[Recipient]:
    """``queryset`` narrowed to the mail matching ``query`` (see the module's docstring)."""
    condition = search_condition(query, queryset.db)
    return queryset.filter(condition) if condition else queryset
