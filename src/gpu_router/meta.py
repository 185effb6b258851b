"""The seed's ``meta`` block for another Starlette or FastAPI service, in one line:
``app.add_middleware(MetaMiddleware)`` (see :mod:`gpu_router.shim.http.meta_middleware`)."""

from gpu_router.shim.http.meta_middleware import (
    MetaMiddleware,
    add_metadata_to_response,
    current,
    span,
)

__all__ = ["MetaMiddleware", "add_metadata_to_response", "current", "span"]
