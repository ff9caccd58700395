"""The API docs at `/docs`, served whole by the service: Swagger UI's assets come from a
PyPI package (`fastapi-swagger`, which follows Swagger UI's releases), not from a CDN, so
the page works on a network with no way out."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

ASSETS = "/docs/assets"


def install(app: FastAPI) -> None:
    assert app.openapi_url is not None
    openapi_url = app.openapi_url
    app.mount(ASSETS, StaticFiles(packages=[("fastapi_swagger", "resources")]), "docs-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title}: API docs",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png",
            # The token "Authorize" takes is kept only while the page is open, never in the
            # browser's storage on an origin the public may share.
            swagger_ui_parameters={"persistAuthorization": False, "displayRequestDuration": True},
        )

    app.add_api_route("/docs", swagger_ui, include_in_schema=False)
