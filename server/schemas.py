"""Marshmallow schemas at the HTTP edge (request validation and the OpenAPI document)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from marshmallow import (EXCLUDE, RAISE, Schema, ValidationError, fields, validate,
                         validates_schema)

from callmark.categories import KEYS as CATEGORY_KEYS
from server.store import ALL_SCOPES

HEX = validate.Regexp(r"^[0-9a-fA-F]*$", error="must be hexadecimal")
EVENT_ID = validate.Regexp(r"^[A-Za-z0-9._:@-]+$",
                           error="use letters, digits and . _ : @ - only (e.g. a UUID)")
REGION = validate.Regexp(r"^[A-Za-z]{2}$", error="must be a 2-letter ISO country code, e.g. CN")
MAX_BATCH = 500


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# --- sync ---------------------------------------------------------------------------------------
class ManifestQuery(StrictSchema):
    channel = fields.Str(load_default="stable", validate=validate.Length(1, 32),
                         metadata={"description": "release channel, e.g. stable or beta"})
    region = fields.Str(load_default=None, validate=REGION,
                        metadata={"description": "only answer if the manifest has a pack for it"})


class SyncHints(Schema):
    min_wait_s = fields.Int(required=True, metadata={"description": "seconds before next sync"})
    jitter_s = fields.Int(required=True,
                          metadata={"description": "add a uniform random 0..jitter_s seconds"})


class UpdateRequest(StrictSchema):
    channel = fields.Str(load_default="stable", validate=validate.Length(1, 32))
    pack = fields.Str(load_default=None, validate=validate.Length(1, 64),
                      metadata={"description": "pack name from the manifest, e.g. CN-full"})
    region = fields.Str(load_default=None, validate=REGION,
                        metadata={"description": "used when `pack` is absent: the region's full pack"})
    pack_version = fields.Int(required=True, validate=validate.Range(0, 2**53),
                              metadata={"description": "the device's pack version (0 = none)"})
    state_hash = fields.Str(load_default="", validate=[validate.Length(0, 128), HEX],
                            metadata={"description": "hex state hash of the device's pack"})

    @validates_schema
    def _pack_or_region(self, data, **kwargs):
        if not data.get("pack") and not data.get("region"):
            raise ValidationError("give the pack name (e.g. 'CN-full') or a region (e.g. 'CN')",
                                  field_name="pack")


class UpdateResponse(SyncHints):
    status = fields.Str(required=True, validate=validate.OneOf(["up_to_date", "delta", "full"]))
    reason = fields.Str()
    channel = fields.Str()
    manifest_version = fields.Int(allow_none=True)
    pack = fields.Dict(metadata={"description": "the published pack entry (with url)"})
    deltas = fields.List(fields.Dict(), metadata={"description": "delta entries to apply in order"})
    full = fields.Dict(metadata={"description": "the full pack entry when status is full"})


# --- devices and tags -------------------------------------------------------------------------
class DeviceRequest(StrictSchema):
    device_id = fields.Str(required=True, validate=validate.Length(8, 128),
                           metadata={"description": "app-generated install id (stored only as "
                                                    "an HMAC)"})
    platform = fields.Str(load_default=None, validate=validate.Length(0, 32))


class DeviceResponse(Schema):
    token = fields.Str(required=True, metadata={"description": "bearer token for POST /v1/tags"})
    reporter = fields.Str(required=True, metadata={"description": "your pseudonymous reporter id"})
    daily_cap = fields.Int(required=True)


class TagEvent(Schema):
    class Meta:
        unknown = EXCLUDE        # newer clients may send more fields: ignored

    event_id = fields.Str(required=True, validate=[validate.Length(1, 64), EVENT_ID])
    number = fields.Str(required=True, validate=validate.Length(1, 64),
                        metadata={"description": "the caller string as displayed"})
    category = fields.Str(required=True, validate=validate.OneOf(CATEGORY_KEYS))
    ts = fields.DateTime(required=True, metadata={"description": "ISO-8601 time of the call/tag"})
    company = fields.Str(load_default=None, allow_none=True, validate=validate.Length(0, 100))
    note = fields.Str(load_default=None, allow_none=True, validate=validate.Length(0, 500))
    ring_s = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                          validate=validate.Range(0, 86400))
    talk_s = fields.Float(load_default=None, allow_none=True, allow_nan=False,
                          validate=validate.Range(0, 86400))
    answered = fields.Bool(load_default=None, allow_none=True)
    direction = fields.Str(load_default=None, allow_none=True, validate=validate.OneOf(["in", "out"]))
    region = fields.Str(load_default=None, allow_none=True, validate=REGION,
                        metadata={"description": "region to read the number in (default: batch's)"})

    @validates_schema
    def _ts_range(self, data, **kwargs):
        ts = data.get("ts")
        if ts is None:
            return
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        if ts > now + timedelta(days=1) or ts.year < 2000:
            raise ValidationError("time is in the future or before 2000; send the device's UTC "
                                  "time of the tag", field_name="ts")


class TagBatch(StrictSchema):
    region = fields.Str(load_default="CN", validate=REGION,
                        metadata={"description": "the phone's region for reading numbers"})
    events = fields.List(fields.Nested(TagEvent), required=True,
                         validate=validate.Length(1, MAX_BATCH))


class TagAck(SyncHints):
    acked = fields.Int(required=True, metadata={"description": "events now durable (all sent)"})
    stored = fields.Int(required=True, metadata={"description": "new events stored"})
    duplicates = fields.Int(required=True, metadata={"description": "already stored (retries)"})
    flagged = fields.Int(required=True,
                         metadata={"description": "new events past the daily cap (kept, flagged)"})
    irregular = fields.Int(required=True,
                           metadata={"description": "new events whose number is irregular"})


# --- lookup -----------------------------------------------------------------------------------
class LookupInfo(Schema):
    entries = fields.Int()
    version = fields.Str(allow_none=True)
    k = fields.Int(metadata={"description": "minimum expected labels per bucket"})
    min_prefix = fields.Int()
    max_prefix = fields.Int(metadata={"description": "longest accepted prefix (hex chars)"})
    hash = fields.Str(metadata={"description": "how to hash: sha256 of the E.164 string"})


class LookupAnswer(Schema):
    prefix = fields.Str()
    version = fields.Str(allow_none=True)
    labels = fields.List(fields.Dict())


# --- appeals and admin --------------------------------------------------------------------------
class AppealRequest(StrictSchema):
    number = fields.Str(required=True, validate=validate.Length(1, 64))
    region = fields.Str(load_default="CN", validate=REGION)
    contact = fields.Str(required=True, validate=validate.Length(3, 200),
                         metadata={"description": "how to reach the owner (e-mail or phone)"})
    evidence = fields.Str(required=True, validate=validate.Length(1, 5000),
                          metadata={"description": "why the label is wrong (business licence ...)"})
    categories = fields.List(fields.Str(validate=validate.OneOf(CATEGORY_KEYS)), required=True,
                             validate=validate.Length(1, 20),
                             metadata={"description": "the labels disputed"})


class AppealCreated(Schema):
    id = fields.Int(required=True)
    status = fields.Str(required=True)
    number = fields.Str(required=True)


class Appeal(Schema):
    id = fields.Int()
    number = fields.Str()
    contact = fields.Str()
    evidence = fields.Str()
    categories = fields.Str()
    status = fields.Str()
    filed_ts = fields.Str()
    decided_ts = fields.Str(allow_none=True)
    decided_by = fields.Str(allow_none=True)
    decision_note = fields.Str(allow_none=True)


class AppealListQuery(StrictSchema):
    status = fields.Str(load_default="pending",
                        validate=validate.OneOf(["pending", "accepted", "rejected", "all"]))
    limit = fields.Int(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Int(load_default=0, validate=validate.Range(0, 10**9))


class Decision(StrictSchema):
    note = fields.Str(load_default="", validate=validate.Length(0, 1000))


class KeyRequest(StrictSchema):
    scopes = fields.List(fields.Str(validate=validate.OneOf(ALL_SCOPES)), required=True,
                         validate=validate.Length(1, len(ALL_SCOPES)))
    label = fields.Str(load_default="", validate=validate.Length(0, 100))


class KeyCreated(Schema):
    key = fields.Str(required=True, metadata={"description": "shown once; store it safely"})
    key_id = fields.Str(required=True)
    scopes = fields.List(fields.Str())


class KeyInfo(Schema):
    key_id = fields.Str()
    scopes = fields.Str()
    label = fields.Str(allow_none=True)
    created_at = fields.Int()
    revoked_at = fields.Int(allow_none=True)


class VerifiedRequest(StrictSchema):
    number = fields.Str(required=True, validate=validate.Length(1, 64))
    region = fields.Str(load_default="CN", validate=REGION)
    company = fields.Str(required=True, validate=validate.Length(1, 200))


class Verified(Schema):
    number = fields.Str()
    company = fields.Str()


class PageQuery(StrictSchema):
    limit = fields.Int(load_default=100, validate=validate.Range(1, 1000))
    offset = fields.Int(load_default=0, validate=validate.Range(0, 10**9))


CHANNEL = validate.Regexp(r"^[a-z0-9][a-z0-9_-]{0,31}$", error="channel names look like 'stable'")
SERVER_DIR = validate.Regexp(r"^[^\x00-\x1f-][^\x00-\x1f]{0,499}$",
                             error="a directory path on the release host")


class PublishRequest(StrictSchema):
    channel = fields.Str(load_default="beta", validate=CHANNEL)
    packs = fields.Str(load_default=None, validate=SERVER_DIR,
                       metadata={"description": "pack build directory (index.json) on the server"})
    deltas = fields.List(fields.Str(validate=SERVER_DIR), load_default=list,
                         validate=validate.Length(0, 100))
    model = fields.Str(load_default=None, validate=SERVER_DIR)
    version = fields.Int(load_default=None, validate=validate.Range(1, 2**53))
    percent = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(0, 100))
    note = fields.Str(load_default="", validate=validate.Length(0, 500))


class PromoteRequest(StrictSchema):
    from_channel = fields.Str(load_default="beta", validate=CHANNEL)
    to_channel = fields.Str(load_default="stable", validate=CHANNEL)
    percent = fields.Float(load_default=None, allow_nan=False, validate=validate.Range(0, 100))


class RollbackRequest(StrictSchema):
    channel = fields.Str(load_default="stable", validate=CHANNEL)
    to_version = fields.Int(load_default=None, validate=validate.Range(1, 2**53),
                            metadata={"description": "default: the previous different release"})


class LabelsLoaded(Schema):
    version = fields.Str()
    entries = fields.Int()


class Message(Schema):
    status = fields.Str()
    detail = fields.Dict()
