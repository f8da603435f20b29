"""AvatarView: the photo at rest is shown the way every viewer shows it, and the stream's frames fill the pane."""

from __future__ import annotations

from PIL import Image

from ui.widgets import AvatarView, crop_to_fill


def test_an_exif_rotated_portrait_is_shown_upright(qtbot, tmp_path):
    # A phone portrait: the pixels are stored landscape (300x200) with EXIF orientation 6 (turn 90 degrees).
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (300, 200), "white").save(path, exif=exif)
    view = AvatarView()
    qtbot.addWidget(view)
    assert view.set_image(path)
    assert (view._pixmap.width(), view._pixmap.height()) == (200, 300)


def test_the_stream_is_cropped_to_fill_the_pane_without_bars():
    assert crop_to_fill(1280, 720, 640, 360) == (0, 0, 1280, 720)  # same shape: all of it
    assert crop_to_fill(1280, 720, 721, 562) == (178, 0, 924, 720)  # a taller pane: the sides go
    assert crop_to_fill(1280, 720, 1000, 300) == (0, 168, 1280, 384)  # a wider pane: top and bottom go
    assert crop_to_fill(1280, 720, 0, 300) is None
