"""Devices: registration hands out a bearer token; device ids are stored only as HMACs."""
from __future__ import annotations

import secrets

from flask_smorest import Blueprint

from server.schemas import DeviceRequest, DeviceResponse
from server.store import sha256_hex
from server.web import Ctx, client_ip, require_json


def make_blueprint(c: Ctx) -> Blueprint:
    blp = Blueprint("devices", __name__, url_prefix="/v1", description="Device registration")
    cfg = c.config

    @blp.route("/devices", methods=["POST"])
    @c.limiter.limit(cfg.devices_limit_ip, key_func=client_ip)
    @require_json
    @blp.arguments(DeviceRequest)
    @blp.response(201, DeviceResponse)
    @blp.alt_response(429, schema=None, description="Too many registrations from this address")
    def register(req: dict):
        """Register a device (or re-register: the old token is replaced) and get a bearer token."""
        dhash = c.device_hash(req["device_id"])
        token = secrets.token_urlsafe(32)
        c.store.register_device(dhash, sha256_hex(token), req.get("platform"))
        return {"token": token, "reporter": "d" + dhash[:24], "daily_cap": cfg.daily_cap}

    return blp
