"""The edge: the Starlette app, endpoints, schemas, auth, the ALT_LAS envelope, OpenAPI,
strict JSON and the ASGI factory. Validates and authenticates, then calls ``shim.core``."""
