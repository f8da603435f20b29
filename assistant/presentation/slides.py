"""Draw slides with Pillow: one picture per reveal state (title only, then one more bullet each), in one theme.

Sizes scale with the frame height, so a slide reads the same at 1280x720 and 1920x1080 (bullets at 4.6% of the
height: 33 px at 720p, 50 px at 1080p). Three layouts place the avatar:

- `corner`: the avatar small, bottom right, over the slide; bullets keep clear of it.
- `side`: the avatar in a full-height column on the right, the slide on the left.
- `full`: the avatar fills the frame; the slide title and the bullet being spoken are a caption band at the bottom.

Needs Pillow, numpy and a TrueType font (DejaVu Sans, Debian package fonts-dejavu-core); without the font, Pillow's
built-in one is used with a warning.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from assistant.presentation.script import Slide

log = logging.getLogger(__name__)

LAYOUTS = ("corner", "side", "full")
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))
FONT_REGULAR = "DejaVuSans.ttf"
FONT_BOLD = "DejaVuSans-Bold.ttf"
THEME_VERSION = 1  # part of every slide's job key: a change to the look below re-renders reused slides

# The theme, as RGB and as fractions of the frame height.
BACKGROUND = (245, 246, 248)
INK = (43, 45, 66)  # bullets
TITLE_INK = (20, 33, 61)
ACCENT = (14, 124, 134)
FOOTER = (20, 33, 61)
FOOTER_INK = (214, 220, 232)
TITLE_CARD_BG = (20, 33, 61)
TITLE_CARD_INK = (250, 250, 252)
BAND_ALPHA = 0.78  # the full layout's caption band over the avatar

MARGIN = 0.055  # of the height, around the content
TITLE_SIZE = 0.068
BULLET_SIZE = 0.046
MIN_BULLET_SIZE = 0.030  # smaller than this is hard to read at 720p (22 px): past it, bullets are cut with a warning
FOOTER_HEIGHT = 0.06
LINE_SPACING = 1.25
BULLET_GAP = 0.55  # extra space between bullets, in bullet lines


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class Geometry:
    """Where things go in a width x height frame for one layout."""

    width: int
    height: int
    layout: str
    avatar: Box  # the talking head's video is rendered at exactly this size
    text: Box  # the region for the title and bullets (corner, side) or the caption band (full)
    footer: Box | None

    @property
    def radius(self) -> int:
        return round(0.03 * self.height) if self.layout != "full" else 0


def _even(v: float) -> int:
    return max(2, int(round(v / 2)) * 2)


def geometry(width: int, height: int, layout: str, avatar_aspect: float = 0.8) -> Geometry:
    """Boxes for a layout. `avatar_aspect` (photo width / height) shapes the avatar box in corner and side, so the
    photo fills it without bars (kept between 3:5 and 5:4)."""
    aspect = min(1.25, max(0.6, avatar_aspect))
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    m = round(MARGIN * height)
    footer_h = round(FOOTER_HEIGHT * height)
    if layout == "full":
        band_h = round(0.24 * height)
        return Geometry(width, height, layout, Box(0, 0, width, height), Box(0, height - band_h, width, band_h), None)
    footer = Box(0, height - footer_h, width, footer_h)
    if layout == "corner":
        ah = _even(0.44 * height)
        aw = _even(aspect * ah)
        avatar = Box(width - m - aw, height - footer_h - m // 2 - ah, aw, ah)
    else:  # side: a column 36% of the width, as tall as the photo's shape allows, centred
        aw = _even(0.36 * width)
        room = height - footer_h - 2 * m
        ah = _even(min(room, aw / aspect))
        avatar = Box(width - m - aw, m + (room - ah) // 2, aw, ah)
    text = Box(2 * m, m, avatar.x - 3 * m, height - footer_h - 2 * m)
    return Geometry(width, height, layout, avatar, text, footer)


def _font_path(name: str) -> Path | None:
    for folder in FONT_DIRS:
        if (folder / name).is_file():
            return folder / name
    return None


_warned_font = False


def _font(name: str, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    global _warned_font
    path = _font_path(name)
    if path is not None:
        return ImageFont.truetype(str(path), size)
    if not _warned_font:
        log.warning("%s not found; slides use Pillow's built-in font (install fonts-dejavu-core)", name)
        _warned_font = True
    return ImageFont.load_default(size)


def _wrap(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a single word wider than that is cut with an ellipsis."""
    lines: list[str] = []
    for word in text.split():
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
            continue
        while font.getlength(word) > width and len(word) > 1:
            word = word[:-2] + "…"
        lines.append(word)
    return lines or [""]


@dataclass(frozen=True)
class SlidePictures:
    """A slide's reveal states, each an RGBA picture the size of the frame (state k shows the first k bullets).

    For `corner`/`side` the pictures are opaque and the avatar goes on top, inside `geometry.avatar` (the picture
    already has its frame and shadow). For `full` they are transparent except the caption band, drawn over the avatar.
    """

    geometry: Geometry
    states: tuple[np.ndarray, ...]  # each (H, W, 4) uint8 RGBA
    shown_bullets: int  # bullets that fit (the rest were cut, with a warning)
    warnings: tuple[str, ...]


def _layout_bullets(
    bullets: tuple[str, ...], box: Box, top: int, height: int
) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, list[tuple[int, list[str]]], int, int]:
    """Pick the largest bullet size (down to MIN_BULLET_SIZE) at which the bullets fit the box below `top`.

    Returns (font, [(y, lines) per bullet that fits], line height, indent).
    """
    size = BULLET_SIZE
    while True:
        px = max(8, round(size * height))
        font = _font(FONT_REGULAR, px)
        line_h = round(px * LINE_SPACING)
        indent = round(px * 1.3)
        placed: list[tuple[int, list[str]]] = []
        y = top
        fits = True
        for bullet in bullets:
            lines = _wrap(bullet, font, box.w - indent)
            need = len(lines) * line_h
            if y + need > box.y + box.h:
                fits = False
                break
            placed.append((y, lines))
            y += need + round(BULLET_GAP * line_h)
        if fits or size <= MIN_BULLET_SIZE:
            return font, placed, line_h, indent
        size = max(MIN_BULLET_SIZE, size - 0.004)


def _shadowed_frame(img: Image.Image, box: Box, radius: int) -> None:
    """A soft shadow and a white rim where the avatar will sit."""
    h = img.height
    pad = max(2, round(0.006 * h))
    shadow = Image.new("L", img.size, 0)
    ImageDraw.Draw(shadow).rounded_rectangle(
        (box.x - pad, box.y - pad + 2 * pad, box.x + box.w + pad, box.y + box.h + 3 * pad), radius + pad, fill=90
    )
    shadow = shadow.filter(ImageFilter.GaussianBlur(3 * pad))
    img.paste(Image.new("RGBA", img.size, (0, 0, 0, 255)), (0, 0), shadow)
    ImageDraw.Draw(img).rounded_rectangle(
        (box.x - pad, box.y - pad, box.x + box.w + pad - 1, box.y + box.h + pad - 1), radius + pad, fill=(255, 255, 255)
    )


def render_slide(slide: Slide, deck_title: str | None, geo: Geometry) -> SlidePictures:
    """The slide's pictures for every reveal state."""
    if geo.layout == "full":
        return _render_band(slide, geo)
    W, H = geo.width, geo.height
    title_card = slide.kind == "title"
    base = Image.new("RGBA", (W, H), TITLE_CARD_BG if title_card else BACKGROUND)
    draw = ImageDraw.Draw(base)
    box = geo.text
    warnings: list[str] = []
    if title_card:
        px = round(0.095 * H)
        font = _font(FONT_BOLD, px)
        lines = _wrap(slide.title, font, box.w)
        line_h = round(px * 1.15)
        y = box.y + (box.h - len(lines) * line_h) // 2
        draw.rectangle((box.x, y - round(0.05 * H), box.x + round(0.1 * W), y - round(0.04 * H)), fill=ACCENT)
        for line in lines:
            draw.text((box.x, y), line, font=font, fill=TITLE_CARD_INK)
            y += line_h
    else:
        px = round(TITLE_SIZE * H)
        font = _font(FONT_BOLD, px)
        # The title may run over the avatar's column in the corner layout (the avatar sits low); not in side.
        title_w = W - box.x - round(MARGIN * H) if geo.layout == "corner" else box.w
        lines = _wrap(slide.title, font, title_w)[:2]
        y = box.y
        for line in lines:
            draw.text((box.x, y), line, font=font, fill=TITLE_INK)
            y += round(px * 1.15)
        bar_y = y + round(0.015 * H)
        draw.rectangle((box.x, bar_y, box.x + round(0.08 * W), bar_y + max(3, round(0.007 * H))), fill=ACCENT)
        top = bar_y + round(0.05 * H)
        if geo.layout == "corner":
            top = min(top, geo.avatar.y)  # bullets start above the avatar at the latest
    if geo.footer is not None:
        f = geo.footer
        draw.rectangle((f.x, f.y, f.x + f.w, f.y + f.h), fill=FOOTER)
        if deck_title and not title_card:
            ff = _font(FONT_REGULAR, round(0.45 * f.h))
            draw.text((box.x, f.y + f.h // 2), deck_title, font=ff, fill=FOOTER_INK, anchor="lm")
    _shadowed_frame(base, geo.avatar, geo.radius)
    if title_card or not slide.bullets:
        return SlidePictures(geo, (np.asarray(base),), 0, ())

    font, placed, line_h, indent = _layout_bullets(slide.bullets, box, top, H)
    if len(placed) < len(slide.bullets):
        warnings.append(
            f"slide {slide.title!r}: {len(slide.bullets) - len(placed)} of {len(slide.bullets)} bullets do not fit "
            "and are left off; shorten them or split the slide"
        )
    states = [np.asarray(base)]
    current = base
    dot_r = max(3, round(line_h * 0.13))
    for y, lines in placed:
        current = current.copy()
        d = ImageDraw.Draw(current)
        cy = y + line_h // 2
        d.ellipse((box.x, cy - dot_r, box.x + 2 * dot_r, cy + dot_r), fill=ACCENT)
        for i, line in enumerate(lines):
            d.text((box.x + indent, y + i * line_h + line_h // 2), line, font=font, fill=INK, anchor="lm")
        states.append(np.asarray(current))
    return SlidePictures(geo, tuple(states), len(placed), tuple(warnings))


def _render_band(slide: Slide, geo: Geometry) -> SlidePictures:
    """The full layout: a caption band with the slide title and the bullet being spoken (the last one revealed)."""
    W, H = geo.width, geo.height
    band = geo.text
    m = round(MARGIN * H)
    empty = Image.new("RGBA", (W, H), (0, 0, 0, 0))
    ImageDraw.Draw(empty).rectangle(
        (band.x, band.y, band.x + band.w, band.y + band.h), fill=(*FOOTER, round(255 * BAND_ALPHA))
    )
    title_px = round(0.040 * H)
    small = _font(FONT_BOLD, title_px)
    big_px = round(BULLET_SIZE * H)
    big = _font(FONT_REGULAR, big_px)

    def state(caption: str | None) -> np.ndarray:
        img = empty.copy()
        d = ImageDraw.Draw(img)
        if caption is None:  # the title alone, large
            lines = _wrap(slide.title, _font(FONT_BOLD, round(0.06 * H)), band.w - 2 * m)[:2]
            y = band.y + band.h // 2 - (len(lines) - 1) * round(0.035 * H)
            for line in lines:
                d.text((m, y), line, font=_font(FONT_BOLD, round(0.06 * H)), fill=TITLE_CARD_INK, anchor="lm")
                y += round(0.07 * H)
            return np.asarray(img)
        d.text((m, band.y + round(0.035 * H)), slide.title, font=small, fill=(120, 210, 215), anchor="lm")
        lines = _wrap(caption, big, band.w - 2 * m)[:2]
        y = band.y + round(0.035 * H) + round(0.07 * H)
        for line in lines:
            d.text((m, y), line, font=big, fill=TITLE_CARD_INK, anchor="lm")
            y += round(big_px * LINE_SPACING)
        return np.asarray(img)

    states = [state(None)] + [state(b) for b in slide.bullets]
    warnings = []
    for b in slide.bullets:
        if len(_wrap(b, big, band.w - 2 * m)) > 2:
            warnings.append(f"slide {slide.title!r}: bullet {b[:30]!r}... is longer than two caption lines; cut")
    return SlidePictures(geo, tuple(states), len(slide.bullets), tuple(warnings))
