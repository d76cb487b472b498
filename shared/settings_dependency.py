"""The app's settings as a request dependency, typed as each service's own settings."""

from __future__ import annotations

from fastapi import Request

from shared.config import PlatformSettings


async def app_settings(request: Request) -> PlatformSettings:
    """The settings the app was built with (`create_app(settings)`).

    `async` so that FastAPI calls it on the event loop, not in its thread pool as it would a plain `def`.

    Each service names it once, typed as its own settings, in its router:
    `ServiceSettings = Annotated[Settings, Depends(app_settings)]`.
    """
    settings: PlatformSettings = request.app.state.settings
    return settings
