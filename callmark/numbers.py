"""Raw caller string -> canonical number key and facts.

`normalize()` accepts anything a phone or a crowd report may carry ("+86 138-1234-5678", "0086…",
"17951 13812345678", full-width digits, "95588", "400-810-8888", US 10-digit, German numbers …) and
never raises: what cannot be understood comes back with `valid=False` and an `irregular` reason.

Keys: an ordinary number's key is the integer of its E.164 digits (country code + national
significant number, < 10**15). Short service numbers (95xxx, 96xxx, 12xxx, 10086 …) are only
meaningful inside one country, so they live in their own key space at SHORT_KEY_BASE and above.

The one rule of what may carry a key (and so be labelled or published), used by every path
(ingest, consensus, pack build, server uploads, handset): a number valid in its country's numbering
plan (libphonenumber's possible- and valid-number data), or a valid short service number (its
short-number data, plus China's 95xxx / 96xxx / 10xxx / 12xxx families). Everything else (too
short or too long for the plan, a bare country or area code, a fragment) is an explicit irregular
fact: `key=None`, `valid=False`, `irregular` gives the reason. A CN service number dialled behind
an area code or the trunk prefix (`010 95566`, `+86 755 95555`) takes the service number's key
(ADR 0002). `publishable_key(key)` checks a key read from a file against the same rule.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass
from functools import lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType, carrier, geocoder, shortnumberinfo
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import NumberParseException, ValidationResult
# The one private helper used: classifying against one region's metadata without re-searching regions.
from phonenumbers.phonenumberutil import _number_type_helper

SHORT_KEY_BASE = 10**16  # short service numbers: SHORT_KEY_BASE + cc * 10**10 + int("1" + digits)
_SHORT_CC_SCALE = 10**10
MAX_SHORT_DIGITS = 8
MAX_INPUT_CHARS = 64

IP_DIAL_PREFIXES = ("12593", "17951", "17911", "10193")  # Chinese carriers' IP long-distance prefixes
MVNO_PREFIXES = ("170", "171", "162", "165", "167")  # virtual-operator mobile ranges (CN)

TYPES = ("mobile", "fixed_line", "fixed_line_or_mobile", "toll_free", "shared_cost", "premium",
         "voip", "mvno", "short_service", "personal", "uan", "pager", "voicemail", "unknown")

_TYPE_NAMES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.PREMIUM_RATE: "premium",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

_POSSIBLE_REASONS = {
    ValidationResult.INVALID_COUNTRY_CODE: "invalid_country_code",
    ValidationResult.TOO_SHORT: "too_short",
    ValidationResult.TOO_LONG: "too_long",
    ValidationResult.INVALID_LENGTH: "invalid_length",
}

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "invalid_country_code",
    NumberParseException.NOT_A_NUMBER: "not_a_number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too_short",
    NumberParseException.TOO_SHORT_NSN: "too_short",
    NumberParseException.TOO_LONG: "too_long",
}

# Chinese provinces as the `phone` package names them (zh) -> stable ASCII keys for file names.
PROVINCES = {
    "北京": "beijing", "天津": "tianjin", "河北": "hebei", "山西": "shanxi", "内蒙古": "neimenggu",
    "辽宁": "liaoning", "吉林": "jilin", "黑龙江": "heilongjiang", "上海": "shanghai",
    "江苏": "jiangsu", "浙江": "zhejiang", "安徽": "anhui", "福建": "fujian", "江西": "jiangxi",
    "山东": "shandong", "河南": "henan", "湖北": "hubei", "湖南": "hunan", "广东": "guangdong",
    "广西": "guangxi", "海南": "hainan", "重庆": "chongqing", "四川": "sichuan", "贵州": "guizhou",
    "云南": "yunnan", "西藏": "xizang", "陕西": "shaanxi", "甘肃": "gansu", "青海": "qinghai",
    "宁夏": "ningxia", "新疆": "xinjiang", "香港": "hongkong", "澳门": "macao", "台湾": "taiwan",
}
_PROVINCE_EN = {  # libphonenumber's English geocoder spellings -> the same keys
    "Inner Mongolia": "neimenggu", "Tibet": "xizang", "Shaanxi": "shaanxi", "Hong Kong": "hongkong",
    "Macau": "macao",
}
_CN_CARRIERS = {"移动": "China Mobile", "联通": "China Unicom", "电信": "China Telecom",
                "广电": "China Broadnet"}

_FULLWIDTH = {0xFF10 + i: ord("0") + i for i in range(10)}
_FULLWIDTH.update({0xFF0B: ord("+"), 0xFF08: ord("("), 0xFF09: ord(")"), 0xFF0D: ord("-"),
                   0x3000: ord(" "), 0x2212: ord("-"), 0x2013: ord("-"), 0x2014: ord("-")})
_SEPARATORS = re.compile(r"[\s\-().\u00a0/_\u200b\u2010\u2011]+")
_CN_SHORT = re.compile(r"^(?:9[56]\d{3,6}|1[0-2]\d{3,4}|11[0249]|12[02])$")
# A CN service number (95xxx/95xxxx, 96xxx/96xxxx, 10xxx, 12xxx) behind an area code: Beijing 10,
# the 2x two-digit codes, or a three-digit code 3xx..9xx. Longer 95/96 numbers after an area code
# are read as that city's landlines.
_CN_TRUNK_SERVICE = re.compile(r"^(?:9[56]\d{3,6}|1[02]\d{3,4})$")
_CN_AREA_SERVICE = re.compile(r"^(?:10|2\d|[3-9]\d\d)(9[56]\d{3,4}|1[02]\d{3})$")

_phone_db = None


@dataclass(frozen=True)
class NumberFacts:
    """What a caller string says about the number behind it."""

    input: str
    key: int | None  # canonical key; None when no number could be read at all
    e164: str | None  # "+8613812345678"; short numbers "+86" + digits
    region: str | None  # ISO 3166 country of the number, e.g. "CN"
    country_code: int | None
    type: str  # one of TYPES
    carrier: str | None
    province: str | None  # stable ASCII key, e.g. "jiangsu" (CN only)
    city: str | None
    valid: bool
    irregular: str | None  # why the number is not valid in its numbering plan, else None

    def to_dict(self) -> dict:
        return asdict(self)


def normalize(raw, region: str = "CN") -> NumberFacts:
    """Facts for a raw caller string as seen by a phone in `region`; never raises."""
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    region = (region or "CN").upper() if isinstance(region, str) else "CN"
    try:
        return _normalize(text, region)
    except Exception as exc:  # the contract is "never raises"; keep the reason visible
        return _irregular(text, f"internal_error:{type(exc).__name__}")


def key_of(raw, region: str = "CN") -> int | None:
    """The canonical key of a raw caller string, or None when it has none (cached).

    Same key as `normalize(raw, region).key`, without the carrier and place look-ups."""
    text = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    region = (region or "CN").upper() if isinstance(region, str) else "CN"
    try:
        return _key(text, region)
    except Exception:
        return None


def is_short_key(key: int) -> bool:
    """True for keys of short service numbers (their own key space)."""
    return key >= SHORT_KEY_BASE


def short_key(country_code: int, digits: str) -> int:
    """The key of short service number `digits` inside country `country_code`."""
    return SHORT_KEY_BASE + country_code * _SHORT_CC_SCALE + int("1" + digits)


def format_key(key: int) -> str:
    """The E.164 string of a key ('+8613812345678'; a short number as '+8695588')."""
    key = int(key)
    if key >= SHORT_KEY_BASE:
        rest = key - SHORT_KEY_BASE
        return f"+{rest // _SHORT_CC_SCALE}{str(rest % _SHORT_CC_SCALE)[1:]}"
    return f"+{key}"


def lookup_hash(e164: str) -> str:
    """Hex SHA-256 of an E.164 string: the k-anonymous lookup bucket is a prefix of it."""
    return hashlib.sha256(e164.encode("ascii")).hexdigest()


def _irregular(text: str, reason: str, **facts) -> NumberFacts:
    base = dict(key=None, e164=None, region=None, country_code=None, type="unknown", carrier=None,
                province=None, city=None)
    base.update(facts)
    return NumberFacts(input=text, valid=False, irregular=reason, **base)


@lru_cache(maxsize=1 << 19)
def _key(text: str, region: str) -> int | None:
    return _normalize.__wrapped__(text, region, details=False).key


@lru_cache(maxsize=1 << 19)
def _normalize(text: str, region: str, details: bool = True) -> NumberFacts:
    if len(text) > MAX_INPUT_CHARS:
        return _irregular(text, "too_long_input")
    cleaned = _SEPARATORS.sub("", text.translate(_FULLWIDTH))
    if cleaned.lower().startswith("tel:"):
        cleaned = cleaned[4:]
    if not cleaned:
        return _irregular(text, "empty")
    plus = cleaned.startswith("+")
    digits = cleaned[1:] if plus else cleaned
    if not digits.isdigit() or not digits.isascii():
        return _irregular(text, "non_digit_characters")
    if region == "CN" and not plus:
        if digits.startswith("0086"):
            digits, plus = digits[4:], True
            digits = "86" + digits
        else:
            digits = _strip_ip_dial_prefix(digits)
        if not plus and len(digits) <= MAX_SHORT_DIGITS and _CN_SHORT.match(digits):
            return _short(text, 86, digits, region)
        if not plus and digits[:1] == "0" and _CN_TRUNK_SERVICE.match(digits[1:]):
            return _short(text, 86, digits[1:], region)  # the trunk prefix before a service number
    try:
        number = phonenumbers.parse(("+" if plus else "") + digits, region)
    except NumberParseException as exc:
        return _irregular(text, _PARSE_REASONS.get(exc.error_type, "unparseable"))
    return _facts(text, number, details)


def _strip_ip_dial_prefix(digits: str) -> str:
    for prefix in IP_DIAL_PREFIXES:
        if digits.startswith(prefix):
            rest = digits[len(prefix):]
            if (len(rest) == 11 and rest.startswith("1")) or (rest.startswith("0") and len(rest) >= 10):
                return rest
    return digits


def _short(text: str, cc: int, digits: str, region: str | None) -> NumberFacts:
    e164 = f"+{cc}{digits}"
    return NumberFacts(input=text, key=short_key(cc, digits), e164=e164,
                       region=region or phonenumbers.region_code_for_country_code(cc),
                       country_code=cc, type="short_service", carrier=None, province=None,
                       city=None, valid=True, irregular=None)


def _facts(text: str, number: phonenumbers.PhoneNumber, details: bool = True) -> NumberFacts:
    cc = number.country_code
    nsn = phonenumbers.national_significant_number(number)
    region, kind = _region_and_type(number, nsn)
    if kind is None:
        if len(nsn) <= MAX_SHORT_DIGITS and (
                shortnumberinfo.is_valid_short_number(number)
                or (cc == 86 and _CN_SHORT.match(nsn))):
            return _short(text, cc, nsn, region)
        service = _cn_area_service(cc, nsn)
        if service:
            return _short(text, cc, service, region)
        reason = _POSSIBLE_REASONS.get(phonenumbers.is_possible_number_with_reason(number),
                                       "not_in_numbering_plan")
        digits = f"{cc}{nsn}"
        readable = len(digits) <= 15 and nsn[:1].isdigit() and nsn[0] != "0"
        # no key: a fragment, a bare country/area code or a number outside the plan is never
        # labelled; the digits read stay visible in `e164` for display and model features
        return _irregular(text, reason, e164=f"+{digits}" if readable else None,
                          region=region, country_code=cc)
    service = _cn_area_service(cc, nsn)
    if service:
        return _short(text, cc, service, region)
    if len(nsn) + len(str(cc)) > 15:  # E.164 caps numbers at 15 digits; keys rely on it
        return _irregular(text, "too_long", region=region, country_code=cc)
    carrier_name = province = city = None
    if not details:
        pass
    elif cc == 86 and kind == "mobile":
        kind, carrier_name, province, city = _cn_mobile(nsn)
    elif cc == 86 and kind == "fixed_line":
        province, city = _cn_fixed_place(number)
    else:
        if kind in ("mobile", "fixed_line_or_mobile", "pager"):
            carrier_name = carrier.name_for_valid_number(number, "en") or None
        if kind == "fixed_line":
            city = geocoder.description_for_valid_number(number, "en") or None
    return NumberFacts(input=text, key=int(f"{cc}{nsn}"), e164=f"+{cc}{nsn}", region=region,
                       country_code=cc, type=kind, carrier=carrier_name, province=province,
                       city=city, valid=True, irregular=None)


def _region_and_type(number: phonenumbers.PhoneNumber, nsn: str) -> tuple[str | None, str | None]:
    """The number's region and type name, or (region, None) when it is not valid.

    One pass over the numbering plan: `is_valid_number` and `number_type` would each repeat the
    region search, which dominates the cost for shared country codes such as +1.
    """
    cc = number.country_code
    regions = phonenumbers.region_codes_for_country_code(cc)
    candidates = regions if len(regions) > 1 else regions or ()
    for region in candidates:
        metadata = PhoneMetadata.metadata_for_region_or_calling_code(cc, region)
        if metadata is None:
            continue
        if len(candidates) > 1 and metadata.leading_digits is not None:
            if not re.match(metadata.leading_digits, nsn):
                continue
        ntype = _number_type_helper(nsn, metadata)
        if ntype != PhoneNumberType.UNKNOWN:
            return (None if region == "001" else region), _TYPE_NAMES.get(ntype, "unknown")
    if len(candidates) == 1:
        return (None if candidates[0] == "001" else candidates[0]), None
    return (candidates[0] if candidates and candidates[0] != "001" else None), None


def _cn_area_service(cc: int, nsn: str) -> str | None:
    """The CN service number inside `nsn` when it is one dialled behind an area code, else None."""
    if cc != 86:
        return None
    m = _CN_AREA_SERVICE.match(nsn)
    return m.group(1) if m else None


def publishable_key(key) -> bool:
    """True when `key` is the key of a dialable subscriber or service number (the rule above).

    For keys read from files (LABELS.csv `key` column, pack tables): a key of a fragment such as
    +1833 or +8686 is refused even though it is an integer."""
    try:
        key = int(key)
    except (TypeError, ValueError):
        return False
    if key <= 0:
        return False
    return _key(format_key(key), "CN") == key


def calling_region(key: int) -> str | None:
    """The region whose packs carry `key`: the main ISO region of its country calling code
    (every +1 number -> "US", +49 -> "DE", +86 -> "CN"); None for a key of no country."""
    key = int(key)
    if key >= SHORT_KEY_BASE:
        cc = (key - SHORT_KEY_BASE) // _SHORT_CC_SCALE
    else:
        e164 = format_key(key)
        try:
            cc = phonenumbers.parse(e164, None).country_code
        except NumberParseException:
            return None
    region = phonenumbers.region_code_for_country_code(cc)
    return None if region in (None, "ZZ", "001") else region


def region_calling_code(region: str) -> int | None:
    """The country calling code of ISO region `region` ("US" -> 1), None when unknown."""
    cc = phonenumbers.country_code_for_valid_region((region or "").upper())
    return cc or None


def _cn_mobile(nsn: str) -> tuple[str, str | None, str | None, str | None]:
    """Type, carrier, province and city of a Chinese mobile number from the `phone` prefix data."""
    global _phone_db
    if _phone_db is None:
        from phone import Phone
        _phone_db = Phone()
    info = _phone_db.find(nsn[:7]) or {}
    op = info.get("phone_type") or ""
    kind = "mvno" if ("虚拟" in op or nsn.startswith(MVNO_PREFIXES)) else "mobile"
    base = op.replace("虚拟运营商", "")
    name = _CN_CARRIERS.get(base)
    if name and kind == "mvno":
        name += " (MVNO)"
    province = PROVINCES.get(info.get("province") or "")
    return kind, name, province, info.get("city") or None


def _cn_fixed_place(number: phonenumbers.PhoneNumber) -> tuple[str | None, str | None]:
    described = geocoder.description_for_number(number, "en")  # e.g. "Guangzhou, Guangdong"
    if not described:
        return None, None
    parts = [p.strip() for p in described.split(",")]
    city = parts[0]
    prov = parts[-1]
    key = _PROVINCE_EN.get(prov) or prov.lower().replace(" ", "")
    if key not in PROVINCES.values():
        key = None
    return key, city
