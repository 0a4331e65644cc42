"""Appeals: number owners dispute labels; maintainers decide in the admin blueprint."""
from __future__ import annotations

from flask_smorest import Blueprint

from callmark.numbers import normalize
from server.errors import Unprocessable
from server.schemas import AppealCreated, AppealRequest
from server.web import Ctx, client_ip, require_json


def e164_or_422(raw: str, region: str) -> tuple[str, int]:
    f = normalize(raw, region)
    if not f.e164 or f.key is None:
        raise Unprocessable(f"cannot read {raw!r} as a phone number ({f.irregular or 'unknown'});"
                            " give it in international form, e.g. +8613812345678",
                            {"json": {"number": [f"not a readable number: {f.irregular}"]}})
    return f.e164, f.key


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("appeals", __name__, url_prefix="/v1", description="Appeals by number owners")

    @blp.route("/appeals", methods=["POST"])
    @c.limiter.limit(c.config.appeals_limit_ip, key_func=client_ip)
    @require_json
    @blp.arguments(AppealRequest)
    @blp.response(201, AppealCreated)
    @blp.alt_response(429, schema=None, description="Too many appeals from this address")
    def file_appeal(req: dict):
        """File an appeal against labels on a number you own; returns the appeal id."""
        e164, key = e164_or_422(req["number"], req["region"])
        aid = c.store.create_appeal(e164, key, req["contact"], req["evidence"],
                                    sorted(set(req["categories"])))
        return {"id": aid, "status": "pending", "number": e164}

    return blp
