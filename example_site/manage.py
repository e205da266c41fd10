#!/usr/bin/env python
"""Django's command-line utility for the wagtail-maillog example site."""

import os
import sys
from pathlib import Path


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
    # Prefer the pip-installed wagtail_maillog; fall back to the checkout this
    # site lives in (appended, so an installed copy always wins).
    repo_root = Path(__file__).resolve().parent.parent
    if (repo_root / "wagtail_maillog" / "__init__.py").exists():
        sys.path.append(str(repo_root))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
