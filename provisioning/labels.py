"""Printable label sheet (SVG): serial, claim code, setup secret and a QR code per device.

The QR code holds the claim URL (`<claim URL base><claim code>`); segno encodes it
(error correction M, so a scuffed label still scans). Labels are 70 x 37 mm, three
across and eight down on an A4 sheet (a common 24-up label stock); sheets follow one
another down the same SVG page by page.
"""

from __future__ import annotations

import os
from html import escape
from pathlib import Path

import segno

LABEL_W_MM, LABEL_H_MM = 70, 37
COLUMNS, ROWS = 3, 8
PAGE_W_MM, PAGE_H_MM = 210, 297
QR_MM = 31


def qr_matrix(url: str) -> list[list[bool]]:
    qr = segno.make_qr(url, error="m")
    return [[bool(cell) for cell in row] for row in qr.matrix]


def _qr_path(url: str, x_mm: float, y_mm: float, size_mm: float) -> str:
    matrix = qr_matrix(url)
    border = 2
    modules = len(matrix) + 2 * border
    cell = size_mm / modules
    parts = []
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark:
                parts.append(f"M{x_mm + (c + border) * cell:.3f} {y_mm + (r + border) * cell:.3f}"
                             f"h{cell:.3f}v{cell:.3f}h-{cell:.3f}z")
    return f'<path d="{"".join(parts)}" fill="black"/>'


def label_svg(devices, claim_url_base: str) -> str:
    per_page = COLUMNS * ROWS
    pages = max(1, -(-len(devices) // per_page))
    height = PAGE_H_MM * pages
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{PAGE_W_MM}mm" '
           f'height="{height}mm" viewBox="0 0 {PAGE_W_MM} {height}" '
           f'font-family="DejaVu Sans Mono, monospace">',
           f'<rect width="{PAGE_W_MM}" height="{height}" fill="white"/>']
    margin_y = (PAGE_H_MM - ROWS * LABEL_H_MM) / 2
    for i, device in enumerate(devices):
        page, slot = divmod(i, per_page)
        row, col = divmod(slot, COLUMNS)
        x = col * LABEL_W_MM
        y = page * PAGE_H_MM + margin_y + row * LABEL_H_MM
        url = claim_url_base + device.claim_code
        out.append(f'<g id="label-{escape(device.serial)}" data-claim-url="{escape(url)}">')
        out.append(f'<rect x="{x + 1}" y="{y + 1}" width="{LABEL_W_MM - 2}" '
                   f'height="{LABEL_H_MM - 2}" rx="2" fill="none" stroke="#bbb" stroke-width="0.2"/>')
        out.append(_qr_path(url, x + 2, y + 3, QR_MM))
        tx = x + QR_MM + 4
        out.append(f'<text x="{tx}" y="{y + 8}" font-size="2.6">{escape(device.model)}</text>')
        out.append(f'<text x="{tx}" y="{y + 12}" font-size="2.4">{escape(device.serial)}</text>')
        out.append(f'<text x="{tx}" y="{y + 18}" font-size="2.2">claim code</text>')
        out.append(f'<text x="{tx}" y="{y + 22}" font-size="3.0" font-weight="bold">'
                   f'{escape(device.claim_code)}</text>')
        out.append(f'<text x="{tx}" y="{y + 28}" font-size="2.2">setup secret</text>')
        out.append(f'<text x="{tx}" y="{y + 32}" font-size="3.0" font-weight="bold">'
                   f'{escape(device.setup_secret)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def write_label_sheet(path: Path, devices, claim_url_base: str) -> None:
    # Claim codes and setup secrets are secrets until the box is opened: owner-only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(label_svg(devices, claim_url_base))
