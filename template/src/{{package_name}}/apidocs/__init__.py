"""Interactive API docs served by this process: no CDN, and a CSP that allows no other origin."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from .._project import PROJECT_NAME
from ..errors import NotFound

DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
# Content-Security-Policy for the docs pages only; the API itself allows nothing at all.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

# Swagger UI 5 (OpenAPI 3.1, which FastAPI emits) as packaged, with no CDN, by fastapi-offline.
_BUNDLE_PACKAGE = "fastapi_offline"
_BUNDLE_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon.png": "image/png",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{title} — API docs</title>
  <link rel="stylesheet" href="{docs}/assets/swagger-ui.css">
  <link rel="icon" type="image/png" href="{docs}/assets/favicon.png">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{openapi}"></div>
  <script src="{docs}/assets/swagger-ui-bundle.js"></script>
  <script src="{docs}/assets/init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH, response_class=HTMLResponse)
async def docs_page() -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=PROJECT_NAME, docs=DOCS_PATH, openapi=OPENAPI_PATH))


@router.get(DOCS_PATH + "/assets/{name}")
async def docs_asset(name: str) -> FileResponse:
    if name == "init.js":
        path = Path(str(resources.files(__package__).joinpath("init.js")))
        return FileResponse(path, media_type="text/javascript")
    media_type = _BUNDLE_FILES.get(name)
    if media_type is None:
        raise NotFound()
    bundle = Path(str(resources.files(_BUNDLE_PACKAGE).joinpath("static", name)))
    return FileResponse(bundle, media_type=media_type)
