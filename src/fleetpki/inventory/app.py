"""The admin listener's application: the REST API under /api/v1, the dashboard at /."""

from __future__ import annotations

from fastapi import Depends, FastAPI

from fleetpki import __version__
from fleetpki.inventory.api import administration, certificates, enrollment, errors
from fleetpki.inventory.api.auth import known_query_only
from fleetpki.inventory.api.body_limit import BodyLimit
from fleetpki.inventory.api.schemas import ERRORS
from fleetpki.inventory.context import AdminContext
from fleetpki.inventory.dashboard import pages
from fleetpki.inventory.dashboard.pages import PageHeaders

API = "/api/v1"


def admin_app(context: AdminContext) -> FastAPI:
    app = FastAPI(
        title="fleetpki admin API", version=__version__,
        description="Inventory and operations of a fleetpki CA: certificates, devices, "
        "revocations, bootstrap credentials, approvals, the audit log. Authenticate with "
        "`Authorization: Bearer <token>`; tokens come from `fleetpki admin token create`.",
        openapi_url=f"{API}/openapi.json", docs_url=f"{API}/docs", redoc_url=None,
        responses=ERRORS)
    app.state.admin = context
    errors.install(app, api_prefix=API + "/", html_problem=pages.html_problem)
    for router in (certificates.router, enrollment.router, administration.router):
        app.include_router(router, prefix=API, dependencies=[Depends(known_query_only)])
    pages.install(app)
    app.add_middleware(PageHeaders, api_prefix=API + "/")
    app.add_middleware(BodyLimit, max_bytes=context.max_body_bytes)
    return app
