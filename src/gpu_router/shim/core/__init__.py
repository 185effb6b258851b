"""The service core: :class:`~.service.RouterService` composed of collaborators that
admit, execute, recover and report requests over the policy Router. Imports nothing of
``shim.http``; talks to durable state only through ``shim.store``."""
