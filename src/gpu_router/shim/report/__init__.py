"""Periodic reports (seed 001, 4.4.4): a day's or a week's requests read from the store, as
Markdown with PNG charts (``gpu-router report``). Reads ``shim.store`` and ``shim.config``
only; nothing in the service imports it."""
