"""Deliverability: daily rates of every ESP's mail, against the providers' limits.

* :mod:`.figures`: what the page, the dashboard panel and the alert read
  (periods, slices, counts, rates, thresholds), from the rollup only;
* :mod:`.rollup`: keeps :class:`~wagtail_maillog.models.DailyCount` up to date
  (a scheduled task) and rebuilds it from the log;
* the admin: :mod:`.views` (the page and its CSV), :mod:`.forms` (its filters),
  :mod:`.charts` (server-side SVG), :mod:`.panels` (the dashboard panel),
  :mod:`.access`, :mod:`.urls`, :mod:`.wagtail_hooks`.
"""
