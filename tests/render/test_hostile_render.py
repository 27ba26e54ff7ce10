"""Whatever a portal sends as a title, an author's name or a result's text (BBCode, HTML, line
breaks, bidi overrides, NUL, 10 KB of it), the chat message and the mail are safe in both
languages and for digests: only our own chat tags are live, no header is broken, the HTML part
runs nothing, and the size stays bounded.
"""

from __future__ import annotations

import email
import email.policy
import html as htmllib
import re
from dataclasses import replace
from email.message import EmailMessage
from html.parser import HTMLParser

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from b24notify.alerts import Alert, sample_alert
from b24notify.diff import ChangeKind
from b24notify.i18n import LANGUAGES
from b24notify.render import MailRenderer, render_chat
from b24notify.render.bbcode import ZWSP
from b24notify.render.chat import MAX_DIGEST_ENTRIES
from b24notify.render.email import MAX_MAIL_RESULT_CHARS, MAX_MAIL_RESULT_HTML_CHARS, MAX_SUBJECT_CHARS
from b24notify.render.preview import email_part

TASK_URL = "https://acme.bitrix24.com/company/personal/user/503/tasks/task/view/8017/"
CHAT_LIMIT = 60_000  # the portal's limit for one message
TEN_KB = 10_240

FRAGMENTS = [
    "[", "]", "/", "=", " ", "x", "Ж", ZWSP, "[b]", "[/b]", "[B]", "[i]", "[/I]", "[s]", "[br]", "[BR]",
    "[url=https://evil.example]", "[/url]", "[URL]", "[/URL]", "[user=all]", "[USER=1]x[/USER]",
    "[send=/kick]", "[put=x]", "[img]", "[b=1]", "[[b]]", "[DISK FILE ID=n1]",
    "<script>alert(1)</script>", "<SCRIPT SRC=//evil.example>", "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">j</a>', '<a href=" JaVaScRiPt:alert(1)">', '<a href="java\tscript:x">',
    '<a href="/rel">r</a>', "<a onclick=x href=https://ok.example>", "<svg onload=x>", "</blockquote>",
    "</a>", '"', "'", "&", "&lt;", "&#106;avascript:", "<!--", "-->", "<p", "<style>x{}</style>",
    "\r", "\n", "\r\n", "\r\nBcc: victim@example.com\r\n", "\nX-Evil: 1", "\x0b", "\x0c", "\x1c", "\x85",
    "\u2028", "\u2029", "\x00", "\t", "\u202e", "\u202d", "\u202a", "\u2066", "\u2067", "\u2068", "\u2069",
    "\u200f", "&#x202e;", "&#8238;", "&#X2069;", "&#0;", "&#1", "&#x85;", "\ud800", "\udfff",
    "%(num)d", "%s", "{0}", "{{ 7*7 }}", "{% raw %}", "=?utf-8?q?x?=",
]
BIDI_AND_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

short_text = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(FRAGMENTS), max_size=25).map("".join))
ten_kb = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map(
    lambda parts: ("".join(parts) * (TEN_KB // len("".join(parts)) + 1))[:TEN_KB]
)
hostile = st.one_of(short_text, short_text, ten_kb)
kinds = st.sampled_from(list(ChangeKind))
languages = st.sampled_from(LANGUAGES)


@st.composite
def digests(draw: st.DrawFn, max_size: int) -> list[Alert]:
    """The alerts of one task (its title hostile), each result's author and texts hostile."""
    title = draw(hostile)
    count = draw(st.integers(1, max_size))
    alerts = []
    for i in range(count):
        base = sample_alert(draw(kinds), title=title, text=draw(hostile), formatted_text=draw(hostile),
                            closed=draw(st.booleans()))
        alerts.append(replace(base, author_name=draw(hostile), change_key=f"{23 + i}:{base.kind.value}",
                              result=replace(base.result, id=23 + i)))
    return alerts


# --- chat ---------------------------------------------------------------------------------------

ALLOWED_TOKEN = re.compile(r"\[(?:/?[bius]|br)\]")
LINK_LINE = re.compile(rf"\[url={re.escape(TASK_URL)}\](?:[^\[]|\[{ZWSP})*\[/url\] #8017")
HEADLINE_LINE = re.compile(r"\[b\][^\[\]]+\[/b\]")


def assert_only_our_tags_live(message: str) -> None:
    lines = message.split("\n")
    assert HEADLINE_LINE.fullmatch(lines[0]), lines[0][:200]
    assert LINK_LINE.fullmatch(lines[1]), lines[1][:200]
    assert message.count("[url=") == 1 and message.count("[/url]") == 1
    body = "\n".join(lines[2:])
    stack: list[str] = []
    for i, char in enumerate(body):
        if char != "[" or body[i + 1 : i + 2] == ZWSP:
            continue
        token = ALLOWED_TOKEN.match(body, i)
        assert token, body[i : i + 20]
        if token.group() == "[br]":
            continue
        name = token.group().strip("[/]")
        if token.group().startswith("[/"):
            assert stack and stack.pop() == name, body[i : i + 20]
        else:
            stack.append(name)
    # A line may close its own formatting only: nothing is left open at the end of an entry.
    assert stack == []


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(digests(max_size=MAX_DIGEST_ENTRIES + 5), languages)
@example([replace(sample_alert(title="Pay [/url][url=https://evil.example]now\u202e[/URL]\r\n[b]x"),
                  author_name="[b]Eve\x00[/b]\n[user=all]")], "ru")
def test_chat_message_keeps_only_our_tags_live(alerts: list[Alert], language: str) -> None:
    message = render_chat(alerts, language)

    assert_only_our_tags_live(message)
    assert not BIDI_AND_CONTROLS.search(message.replace("\n", " ").replace("\t", " "))
    message.encode("utf-8")
    bound = 5_000 if len(alerts) == 1 else 30_000
    assert len(message) < bound < CHAT_LIMIT


# --- e-mail -------------------------------------------------------------------------------------

RENDERER = MailRenderer()
OUR_HEADERS = {
    "subject", "from", "to", "date", "message-id", "x-b24notify-key", "auto-submitted", "content-language",
    "mime-version", "content-type", "content-transfer-encoding",
}


class Elements(HTMLParser):
    """Every tag and attribute of an HTML document, entities decoded as a browser would."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [(name, value or "") for name, value in attrs]


def received(alerts: list[Alert], language: str) -> tuple[bytes, EmailMessage]:
    message = RENDERER.render(alerts, sender="alerts@example.com", recipients=["anna@example.com"],
                              language=language, key="acme.bitrix24.com:8017:23:new|email:u503")
    raw = message.as_bytes()
    parsed = email.message_from_bytes(raw, _class=EmailMessage, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return raw, parsed


def assert_headers_unbroken(raw: bytes, message: EmailMessage) -> None:
    head = raw.split(b"\n\n", 1)[0].decode("ascii")  # headers are ASCII: non-ASCII is encoded
    for line in head.split("\n"):
        line = line.rstrip("\r")
        # Each line starts a header of ours or continues the one before (folding whitespace).
        assert line[:1] in (" ", "\t") or line.partition(":")[0].lower() in OUR_HEADERS, line
    assert message["Bcc"] is None and message["X-Evil"] is None
    subject = str(message["Subject"])
    assert not re.search(r"[\r\n\x00-\x1f\x7f-\x9f\u2028\u2029]", subject)
    # Python's folding of a long Subject can add a space where it breaks the line.
    assert len(" ".join(subject.split())) <= MAX_SUBJECT_CHARS


def assert_html_runs_nothing(html: str) -> None:
    elements = Elements()
    elements.feed(html)
    elements.close()
    assert not {"script", "iframe", "img", "svg", "style", "object", "embed", "form"} & set(elements.tags)
    for name, value in elements.attributes:
        assert not name.startswith("on"), name
        if name in ("href", "src"):
            squeezed = re.sub(r"[\x00-\x20]", "", value).lower()
            assert squeezed.startswith(("https:", "http:", "mailto:")), value
    assert "<script" not in html.lower()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(digests(max_size=4), languages)
@example([replace(sample_alert(title="Invoice\r\nBcc: victim@example.com\nX-Evil: 1\u202e",
                               formatted_text='<a href="javascript:alert(1)" onclick="x">y</a><script>z</script>'),
                  author_name="<script>x</script>")], "ru")
def test_mail_breaks_no_header_and_its_html_runs_nothing(alerts: list[Alert], language: str) -> None:
    raw, message = received(alerts, language)
    text, html = email_part(message, "plain"), email_part(message, "html")

    assert_headers_unbroken(raw, message)
    assert_html_runs_nothing(html)
    for part in (text, htmllib.unescape(html)):  # what a reader's mail client shows
        assert not BIDI_AND_CONTROLS.search(part.replace("\n", " ").replace("\t", " "))
    per_result = MAX_MAIL_RESULT_CHARS + 5_000
    assert len(text) < len(alerts) * per_result
    # Escaping may grow the plain-text fallback up to 5 times ("&" is "&amp;").
    assert len(html) < len(alerts) * (max(MAX_MAIL_RESULT_HTML_CHARS, 5 * MAX_MAIL_RESULT_CHARS) + 10_000)


def test_template_and_format_syntax_in_portal_text_is_shown_as_typed() -> None:
    alert = replace(sample_alert(title="{{ 7*7 }} %(num)d {0}", text="{% raw %}%s", formatted_text=""),
                    author_name="%(author)s")
    _, message = received([alert], "ru")

    assert "{{ 7*7 }} %(num)d {0}" in render_chat(alert, "ru")
    assert "Автор: %(author)s" in render_chat(alert, "ru")
    assert message["Subject"] == "Новый результат в задаче #8017: {{ 7*7 }} %(num)d {0}"
    assert "{% raw %}%s" in email_part(message, "plain")
    assert "{% raw %}%s" in email_part(message, "html")


def test_bidi_overrides_are_dropped_and_marks_kept() -> None:
    alert = replace(sample_alert(title="\u202eabc.exe\u202c \u200fשלום", text="\u2067x\u2069"), author_name="\u202dEve")
    message = render_chat(alert)
    assert "abc.exe \u200fשלום" in message
    assert "By: Eve" in message
    assert "\nx\n" in message
