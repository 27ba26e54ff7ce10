"""Developer tooling, not the product: the Bitrix24 portal simulator, the demo that wires it to a
local SMTP sink, the embedded Redis and ``b24notify up`` (the one-machine launcher behind
``make run``).

Nothing of the product imports this package (``make lint`` checks it with import-linter); only the
CLI reaches it, inside the ``up`` and ``simulate`` commands. Its third-party dependencies come with
the ``devtools`` extra: ``pip install 'b24notify[devtools]'``.
"""
