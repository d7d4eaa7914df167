"""Deterministic, realistic sample migrants for demos, load tests and tests.

How this works: everything is drawn from the ``random.Random`` the caller
passes, and "now" is the ``today`` the caller passes, so the same seed and
date always give the same people. Each person gets a household (户籍)
province and a residence province; about one in five stays inside their
home province, the rest move, with destinations weighted towards the big
receiving provinces and origins towards the big sending ones so the data
has the skew of real flows. Every yielded dict passes ``validate_person``
with the same ``today``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING

from core.errors import ValidationError
from core.idnumber import make_id_number
from core.person import validate_person
from core.provinces import PROVINCES, check_province

if TYPE_CHECKING:  # the caller's generator, only named in annotations: core draws no randomness of its own
    import random

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐"
    "许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢"
)
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊峰建国志文龙海"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀玲桂英华红梅琳燕萍雪婷慧颖晶欣佳倩莉兰凤"

# A few common destination cities per province; the first is the capital. The area
# code prefix (first 4 digits of an ID number) is the capital's.
CITIES: dict[str, tuple[str, ...]] = {
    "11": ("北京市",),
    "12": ("天津市",),
    "13": ("石家庄市", "唐山市", "保定市", "邯郸市"),
    "14": ("太原市", "大同市", "运城市"),
    "15": ("呼和浩特市", "包头市", "鄂尔多斯市"),
    "21": ("沈阳市", "大连市", "鞍山市"),
    "22": ("长春市", "吉林市"),
    "23": ("哈尔滨市", "大庆市", "齐齐哈尔市"),
    "31": ("上海市",),
    "32": ("南京市", "苏州市", "无锡市", "常州市"),
    "33": ("杭州市", "宁波市", "温州市", "义乌市"),
    "34": ("合肥市", "芜湖市", "阜阳市"),
    "35": ("福州市", "厦门市", "泉州市"),
    "36": ("南昌市", "赣州市", "九江市"),
    "37": ("济南市", "青岛市", "烟台市", "临沂市"),
    "41": ("郑州市", "洛阳市", "南阳市"),
    "42": ("武汉市", "宜昌市", "襄阳市"),
    "43": ("长沙市", "株洲市", "衡阳市"),
    "44": ("广州市", "深圳市", "东莞市", "佛山市"),
    "45": ("南宁市", "柳州市", "桂林市"),
    "46": ("海口市", "三亚市"),
    "50": ("重庆市",),
    "51": ("成都市", "绵阳市", "南充市"),
    "52": ("贵阳市", "遵义市"),
    "53": ("昆明市", "曲靖市", "大理市"),
    "54": ("拉萨市", "日喀则市"),
    "61": ("西安市", "宝鸡市", "榆林市"),
    "62": ("兰州市", "天水市"),
    "63": ("西宁市", "海东市"),
    "64": ("银川市", "石嘴山市"),
    "65": ("乌鲁木齐市", "喀什市", "伊宁市"),
    "66": ("石河子市", "阿拉尔市", "五家渠市"),
}

AREA_PREFIX: dict[str, str] = {
    "11": "1101", "12": "1201", "13": "1301", "14": "1401", "15": "1501",
    "21": "2101", "22": "2201", "23": "2301", "31": "3101", "32": "3201",
    "33": "3301", "34": "3401", "35": "3501", "36": "3601", "37": "3701",
    "41": "4101", "42": "4201", "43": "4301", "44": "4401", "45": "4501",
    "46": "4601", "50": "5001", "51": "5101", "52": "5201", "53": "5301",
    "54": "5401", "61": "6101", "62": "6201", "63": "6301", "64": "6401",
    "65": "6501", "66": "6601",
}  # fmt: skip

# Rough shape of inter-provincial migration: a few coastal provinces receive
# most migrants, a band of inland provinces sends most of them.
_DESTINATION_WEIGHT: dict[str, int] = {
    "44": 8, "33": 6, "32": 5, "31": 5, "11": 4, "35": 3, "12": 2, "37": 2,
}  # fmt: skip
_ORIGIN_WEIGHT: dict[str, int] = {
    "41": 5, "51": 5, "34": 5, "43": 4, "36": 4, "42": 3, "45": 3, "52": 3, "50": 3,
}  # fmt: skip

CONTRACEPTION_FEMALE: tuple[str, ...] = (
    "宫内节育器", "皮下埋植", "口服避孕药", "避孕套", "输卵管结扎", "未避孕",
)  # fmt: skip
CONTRACEPTION_MALE: tuple[str, ...] = ("避孕套", "输精管结扎", "未避孕")

MIN_AGE = 16
MAX_AGE = 50
INTRA_PROVINCE_SHARE = 0.2
MARITAL_ORDER: tuple[str, ...] = ("unmarried", "married", "divorced", "widowed")


def _years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap target year
        return day.replace(year=day.year - years, day=28)


def _day_between(rng: random.Random, first: date, last: date) -> date:
    return date.fromordinal(rng.randint(first.toordinal(), last.toordinal()))


def _name(rng: random.Random, sex: str) -> str:
    pool = GIVEN_MALE if sex == "M" else GIVEN_FEMALE
    given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2, 2))))
    return rng.choice(SURNAMES) + given


def _family(rng: random.Random, age: int) -> tuple[str, int]:
    if age < 22:
        status = rng.choices(MARITAL_ORDER, (90, 10, 0, 0))[0]
    else:
        status = rng.choices(MARITAL_ORDER, (22, 70, 6, 2))[0]
    if status == "unmarried":
        children = rng.choices((0, 1), (95, 5))[0]
    else:
        children = rng.choices((0, 1, 2, 3), (15, 50, 30, 5))[0]
    return status, children



def sample_person(
    rng: random.Random, *, household: str, residence: str, today: date
) -> dict[str, object]:
    """One plausible migrant registered in ``household`` living in ``residence``."""
    household = check_province("household", household)
    residence = check_province("residence", residence)
    sex = rng.choice(("M", "F"))
    oldest = _years_before(today, MAX_AGE + 1) + timedelta(days=1)
    birth = _day_between(rng, oldest, _years_before(today, MIN_AGE))
    age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    area6 = AREA_PREFIX[household] + f"{rng.randint(1, 9):02d}"
    serial = rng.randrange(0, 1000, 2) + (1 if sex == "M" else 0)
    id_number = make_id_number(area6, birth, serial)

    home_city = rng.choice(CITIES[household])
    cities = CITIES[residence]
    if household == residence and len(cities) > 1:
        # Intra-province migrants still move between cities.
        cities = tuple(c for c in cities if c != home_city)
    moved_in = _day_between(rng, _years_before(birth, -MIN_AGE), today)

    marital, children = _family(rng, age)
    person: dict[str, object] = {
        "id_number": id_number,
        "name": _name(rng, sex),
        "sex": sex,
        "birth_date": birth.isoformat(),
        "household_province": household,
        "residence_province": residence,
        "residence_city": rng.choice(cities),
        "moved_in_on": moved_in.isoformat(),
        "marital_status": marital,
        "children": children,
    }
    if marital != "unmarried" and age <= 49:
        pool = CONTRACEPTION_FEMALE if sex == "F" else CONTRACEPTION_MALE
        person["contraception"] = rng.choice(pool)

    # 流动人口婚育证明: issued by the household province, checked on arrival.
    cert = rng.choices(
        ("none", "requested", "issued", "verified", "expired", "revoked"), (20, 10, 25, 35, 9, 1)
    )[0]
    person["marriage_cert_status"] = cert
    if cert not in ("none", "requested"):
        issued_year = rng.randint(max(moved_in.year - 1, birth.year + MIN_AGE), today.year)
        person["marriage_cert_no"] = f"{area6}{issued_year}{rng.randint(0, 999999):06d}"
    if rng.random() < 0.7:
        person["last_service_on"] = _day_between(rng, moved_in, today).isoformat()
    return validate_person(person, today=today)


def sample_people(
    rng: random.Random,
    n: int,
    *,
    provinces: Sequence[str] | None = None,
    today: date,
) -> Iterator[dict[str, object]]:
    """Yield ``n`` distinct sample people whose provinces are all in ``provinces``."""
    if isinstance(provinces, str):
        # A bare "44" would otherwise be iterated as "4", "4".
        raise ValidationError("provinces", "must be a sequence of codes, not a string")
    if provinces is not None and len(provinces) == 0:
        raise ValidationError("provinces", "must name at least one province")
    chosen = tuple(PROVINCES) if provinces is None else provinces
    codes = list(dict.fromkeys(check_province("provinces", p) for p in chosen))
    origin_w = [_ORIGIN_WEIGHT.get(c, 1) for c in codes]
    dest_w = [_DESTINATION_WEIGHT.get(c, 1) for c in codes]
    seen: set[str] = set()
    produced = 0
    while produced < n:
        household = rng.choices(codes, origin_w)[0]
        if len(codes) == 1 or rng.random() < INTRA_PROVINCE_SHARE:
            residence = household
        else:
            others = [(c, w) for c, w in zip(codes, dest_w, strict=True) if c != household]
            residence = rng.choices([c for c, _ in others], [w for _, w in others])[0]
        person = sample_person(rng, household=household, residence=residence, today=today)
        # Same area, birthday and serial is rare but possible; the ID number
        # is the record key, so skip repeats rather than yield a clash.
        if person["id_number"] in seen:
            continue
        seen.add(str(person["id_number"]))
        produced += 1
        yield person
