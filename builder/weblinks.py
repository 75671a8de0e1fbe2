"""Which URLs from outside modlib may become a link or a download: ``http(s)://host...`` and nothing else.

A homepage reaches modlib from a package index (``modlib new-pypi``) and from an easyconfig through
Lmod (the catalogue page), both untrusted. Browsers run ``javascript:`` links, open ``data:`` and
``file:`` ones, and ignore spaces, tabs and newlines inside a scheme (a tab inside ``javascript:`` still runs it), so
the test is on the whole string: RFC 3986's characters only, scheme http or https, a host.
"""

from __future__ import annotations

import re
import urllib.parse

#: RFC 3986's characters: no space, quote, backslash, brace or control character.
_URL = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")


def http_url(text: str) -> bool:
    parts = urllib.parse.urlsplit(text) if _URL.match(text) else None
    return parts is not None and parts.scheme in ("https", "http") and bool(parts.hostname)
