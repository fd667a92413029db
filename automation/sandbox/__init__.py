"""The sandbox: an emulated AWS on 127.0.0.1 for the capacity automation.

moto runs as a real HTTP server (``server``), wrapped by a small WSGI extension (``extension``)
adding what moto lacks for this job: capacity reservations with available-count accounting and
InsufficientInstanceCapacity, placement groups, RAM sharing of reservations, failed scaling
activities, server-side fault injection and a request log. ``seed`` builds the three accounts from
the stack files; ``control`` starts, stops and reports the server process.

Nothing here is imported by the product code paths: the automation reaches the sandbox only through
the standard ``AWS_ENDPOINT_URL`` variables.
"""
