"""What every admin blueprint shares: the /v1/admin prefix and the auth documentation.

Every admin endpoint needs an X-API-Key with the named scope ('admin' implies all)."""
from __future__ import annotations

from typing import Callable

from flask_smorest import Blueprint

from server.web import ADMIN_AUTH


def admin_blueprint(name: str, description: str) -> tuple[Blueprint, Callable]:
    """A blueprint under /v1/admin and the decorator documenting its 401/403 answers."""
    blp = Blueprint(name, __name__, url_prefix="/v1/admin", description=description)

    def doc(fn):
        fn = blp.alt_response(401, schema=None, description="Missing or unknown API key")(fn)
        fn = blp.alt_response(403, schema=None, description="API key lacks the scope")(fn)
        return blp.doc(security=ADMIN_AUTH)(fn)

    return blp, doc
