"""The operator console at ``/console`` (issue 10): "why did (or didn't) this alert go out?" on one
page. Server-rendered (Jinja2, no script), served by the web process, off unless
``B24NOTIFY_CONSOLE_PASSWORD`` or ``B24NOTIFY_CONSOLE_PASSWORD_HASH`` is set.

* ``routes.py``: the pages and their guards (session, CSRF, login rate limit);
* ``auth.py``: the signed session cookie and the password check; ``csrf.py``, ``ratelimit.py``;
* ``overview.py``, ``usage.py``, ``charts.py``: what the overview shows of each portal;
* ``pages.py``: templates in the reader's language (the alerts' gettext catalogs);
* ``redact.py``: the last guard against a secret reaching a page.

The console reads Redis with a synchronous client in Starlette's thread pool: its pages are few
and it calls the same classes as the CLI (``DeadLetters``, ``TraceLog``, ``PortalDirectory``).
"""
