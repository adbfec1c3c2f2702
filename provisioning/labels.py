"""Printable label sheets: one A4 SVG page per sheet, serial, claim code, setup secret
and a QR code per device.

The QR code holds the claim URL (`<claim URL base><claim code>`); segno encodes it
(error correction M, so a scuffed label still scans). Labels are 70 x 37 mm, three
across and eight down on an A4 sheet (a common 24-up label stock). Each sheet is its
own file next to the manifest, `labels-0001.svg`, … sized 210 x 297 mm, so a print dialog prints one
sheet per page at 100 % and a batch of thousands is many small files rather than one
page metres long that viewers choke on. Each QR code is one path of merged runs of dark
modules, a few kilobytes per label.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import segno

LABEL_W_MM, LABEL_H_MM = 70, 37
COLUMNS, ROWS = 3, 8
PER_SHEET = COLUMNS * ROWS
PAGE_W_MM, PAGE_H_MM = 210, 297
QR_MM = 31
_MARGIN_Y_MM = (PAGE_H_MM - ROWS * LABEL_H_MM) / 2


def qr_matrix(url: str) -> list[list[bool]]:
    qr = segno.make_qr(url, error="m")
    return [[bool(cell) for cell in row] for row in qr.matrix]


def _qr_path(url: str, x_mm: float, y_mm: float, size_mm: float) -> str:
    matrix = qr_matrix(url)
    border = 2
    cell = size_mm / (len(matrix) + 2 * border)
    parts = []
    for r, row in enumerate(matrix):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            width = (c - start) * cell
            parts.append(f"M{x_mm + (start + border) * cell:.3f} "
                         f"{y_mm + (r + border) * cell:.3f}h{width:.3f}v{cell:.3f}"
                         f"h-{width:.3f}z")
    return f'<path d="{"".join(parts)}" fill="black"/>'


def _label(device, claim_url_base: str, x: float, y: float) -> list[str]:
    url = claim_url_base + device.claim_code
    tx = x + QR_MM + 4
    return [
        f'<g id="label-{escape(device.serial)}" data-claim-url="{escape(url)}">',
        f'<rect x="{x + 1}" y="{y + 1}" width="{LABEL_W_MM - 2}" height="{LABEL_H_MM - 2}" '
        f'rx="2" fill="none" stroke="#bbb" stroke-width="0.2"/>',
        _qr_path(url, x + 2, y + 3, QR_MM),
        f'<text x="{tx}" y="{y + 8}" font-size="2.6">{escape(device.model)}</text>',
        f'<text x="{tx}" y="{y + 12}" font-size="2.4">{escape(device.serial)}</text>',
        f'<text x="{tx}" y="{y + 18}" font-size="2.2">claim code</text>',
        f'<text x="{tx}" y="{y + 22}" font-size="3.0" font-weight="bold">'
        f'{escape(device.claim_code)}</text>',
        f'<text x="{tx}" y="{y + 28}" font-size="2.2">setup secret</text>',
        f'<text x="{tx}" y="{y + 32}" font-size="3.0" font-weight="bold">'
        f'{escape(device.setup_secret)}</text>',
        "</g>",
    ]


def sheet_svg(devices, claim_url_base: str) -> str:
    """One A4 page holding up to PER_SHEET labels."""
    if len(devices) > PER_SHEET:
        raise ValueError(f"a sheet holds {PER_SHEET} labels, not {len(devices)}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W_MM}mm" '
           f'height="{PAGE_H_MM}mm" viewBox="0 0 {PAGE_W_MM} {PAGE_H_MM}" '
           f'font-family="DejaVu Sans Mono, monospace">',
           f'<rect width="{PAGE_W_MM}" height="{PAGE_H_MM}" fill="white"/>']
    for slot, device in enumerate(devices):
        row, col = divmod(slot, COLUMNS)
        out += _label(device, claim_url_base, col * LABEL_W_MM,
                      _MARGIN_Y_MM + row * LABEL_H_MM)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def sheet_name(number: int) -> str:
    return f"labels-{number:04d}.svg"


def write_label_sheets(folder: Path, devices, claim_url_base: str) -> list[Path]:
    """`folder`/labels-0001.svg, … one A4 page per sheet; returns the paths."""
    # Claim codes and setup secrets are secrets until the box is opened: owner-only.
    paths = []
    for number, start in enumerate(range(0, len(devices), PER_SHEET), start=1):
        path = folder / sheet_name(number)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(sheet_svg(devices[start:start + PER_SHEET], claim_url_base))
        paths.append(path)
    return paths
