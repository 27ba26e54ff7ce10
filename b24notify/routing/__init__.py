"""Who gets an alert: routes from the configuration (rules.py) and, per sync, the recipients of
each change (recipients.py). Pure: no I/O."""
