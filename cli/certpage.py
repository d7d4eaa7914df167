"""The printable certificate page (PDF or PNG), in Chinese, with the whole document as a QR code.

How this works: the page shows the holder and the signed fields, the issuing
province and the validity, and a QR code (segno, byte mode, error correction
M) whose content is the document's exact bytes, so scanning the page and
passing the text to ``yipanqi certificate verify -`` checks it offline. PDF
is laid out with fpdf2, PNG with Pillow. Both need a CJK font: the file named
by $YIPANQI_CJK_FONT, else the first Chinese font fontconfig knows
(``fc-list :lang=zh-cn``), else the usual Debian paths of fonts-wqy-microhei
and fonts-noto-cjk (``apt-get install fonts-wqy-microhei``).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import segno

from core import certdoc
from core.provinces import PROVINCES

TITLE = "流动人口婚育证明（电子）"
SEX = {"M": "男", "F": "女"}
MARITAL = {"unmarried": "未婚", "married": "已婚", "divorced": "离婚", "widowed": "丧偶"}
KNOWN_FONTS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
)


class NoFont(Exception):
    pass


def find_font() -> Path:
    env = os.environ.get("YIPANQI_CJK_FONT")
    if env:
        if not Path(env).is_file():
            raise NoFont(f"YIPANQI_CJK_FONT: font file not found: {env}")
        return Path(env)
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":lang=zh-cn", "file"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        files = sorted(line.split(":", 1)[0].strip() for line in out.splitlines() if line.strip())
        # Prefer the two fonts the README names, then any other.
        for preferred in ("wqy-microhei", "NotoSansCJK", "wqy-zenhei"):
            for f in files:
                if preferred in f and f.lower().endswith((".ttc", ".ttf", ".otf")):
                    return Path(f)
        for f in files:
            if f.lower().endswith((".ttc", ".ttf", ".otf")):
                return Path(f)
    for f in KNOWN_FONTS:
        if Path(f).is_file():
            return Path(f)
    raise NoFont("no Chinese (CJK) font found: install one (apt-get install fonts-wqy-microhei) "
                 "or set YIPANQI_CJK_FONT to a .ttf/.ttc file")


def _province(code: str) -> str:
    name = PROVINCES.get(code, "")
    return f"{name.split(' ')[-1]}（{code}）" if name else code


def lines(doc: certdoc.Document) -> list[tuple[str, str]]:
    c = doc.certificate
    return [
        ("姓名", str(c["name"])),
        ("性别", SEX.get(str(c["sex"]), str(c["sex"]))),
        ("出生日期", str(c["birth_date"])),
        ("公民身份号码", str(c["id_number"])),
        ("婚姻状况", MARITAL.get(str(c.get("marital_status")), "未登记") if c.get("marital_status") else "未登记"),
        ("现有子女数", str(c["children"]) if c.get("children") is not None else "未登记"),
        ("避孕节育情况", str(c.get("contraception") or "未登记")),
        ("证明编号", str(c["cert_no"])),
        ("发证地（户籍地）", _province(str(c["issuer"]))),
        ("有效期", f"{c['issued_on']} 至 {c['expires_on']}"),
    ]


FOOTNOTE = "本证明由户籍地省级节点电子签名。扫描二维码，用 yipanqi certificate verify - 可离线核验。"


def qr_png(raw: bytes, scale: int) -> bytes:
    buf = io.BytesIO()
    segno.make(raw, error="m", mode="byte", boost_error=False).save(buf, kind="png", scale=scale, border=4)
    return buf.getvalue()


def render(data: bytes, kind: str) -> bytes:
    """The page for document ``data`` (refused as malformed if it is not one) as PDF or PNG bytes."""
    doc = certdoc.decode(data)
    raw = data.strip()  # the exact bytes: the QR code must verify as the file does
    font = find_font()
    return _pdf(doc, raw, font) if kind == "pdf" else _png(doc, raw, font)


def _pdf(doc: certdoc.Document, raw: bytes, font: Path) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.add_page()
    pdf.add_font("cjk", fname=str(font))
    pdf.set_font("cjk", size=20)
    pdf.set_xy(15, 18)
    pdf.cell(180, 12, TITLE, align="C")
    pdf.set_font("cjk", size=12)
    y = 40.0
    for label, value in lines(doc):
        pdf.set_xy(25, y)
        pdf.cell(45, 8, label)
        pdf.cell(120, 8, value)
        y += 9
    pdf.image(io.BytesIO(qr_png(raw, 4)), x=55, y=y + 6, w=100, h=100)
    pdf.set_font("cjk", size=9)
    pdf.set_xy(15, y + 112)
    pdf.multi_cell(180, 6, FOOTNOTE, align="C")
    return bytes(pdf.output())


def _png(doc: certdoc.Document, raw: bytes, font: Path) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    qr = Image.open(io.BytesIO(qr_png(raw, 4))).convert("L")
    width = max(960, qr.width + 120)
    rows = lines(doc)
    height = 140 + 44 * len(rows) + qr.height + 120
    page = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(page)
    title, body, small = (ImageFont.truetype(str(font), s) for s in (40, 26, 18))
    draw.text((width // 2, 50), TITLE, font=title, fill=0, anchor="mt")
    y = 130
    for label, value in rows:
        draw.text((70, y), label, font=body, fill=0)
        draw.text((330, y), value, font=body, fill=0)
        y += 44
    page.paste(qr, ((width - qr.width) // 2, y + 20))
    draw.text((width // 2, y + 40 + qr.height), FOOTNOTE, font=small, fill=0, anchor="mt")
    out = io.BytesIO()
    page.save(out, format="PNG")
    return out.getvalue()
