"""Rendering alerts for people: the chat message (BBCode) and the e-mail (text + HTML).

Pure functions over an ``Alert``; the channels do the sending.
"""

from b24notify.render.bbcode import neutralize_bbcode, strip_bbcode
from b24notify.render.chat import render_chat
from b24notify.render.email import MailRenderer, render_email

__all__ = ["MailRenderer", "neutralize_bbcode", "render_chat", "render_email", "strip_bbcode"]
