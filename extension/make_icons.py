#!/usr/bin/env python3
"""Draws Quiver's toolbar icons (a white "Q" on a rounded blue square) as PNG files.

Standard library only. Run from anywhere: writes extension/webext/icons/quiver-{16,32,48,128}.png.
"""
import math
import os
import struct
import zlib

BG = (31, 78, 121)  # #1f4e79
FG = (255, 255, 255)
SS = 4  # supersampling per axis


def coverage(u, v):
    """Returns (in_background, in_glyph) for a point in the unit square."""
    r = 0.2  # corner radius of the rounded square
    cx = min(max(u, r), 1 - r)
    cy = min(max(v, r), 1 - r)
    in_bg = (u - cx) ** 2 + (v - cy) ** 2 <= r * r
    # ring of the Q
    d = math.hypot(u - 0.47, v - 0.46)
    in_ring = 0.19 <= d <= 0.31
    # tail: a thick segment from (0.56, 0.58) to (0.80, 0.84)
    ax, ay, bx, by = 0.56, 0.58, 0.80, 0.84
    t = ((u - ax) * (bx - ax) + (v - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    t = min(max(t, 0.0), 1.0)
    px, py = ax + t * (bx - ax), ay + t * (by - ay)
    in_tail = math.hypot(u - px, v - py) <= 0.065
    return in_bg, in_bg and (in_ring or in_tail)


def render(size):
    rows = []
    for y in range(size):
        row = bytearray([0])  # filter: none
        for x in range(size):
            bg = fg = 0
            for sy in range(SS):
                for sx in range(SS):
                    u = (x + (sx + 0.5) / SS) / size
                    v = (y + (sy + 0.5) / SS) / size
                    b, f = coverage(u, v)
                    bg += b
                    fg += f
            n = SS * SS
            alpha = bg / n
            if bg:
                mix = fg / bg
                rgb = [round(BG[i] * (1 - mix) + FG[i] * mix) for i in range(3)]
            else:
                rgb = [0, 0, 0]
            row += bytes(rgb + [round(alpha * 255)])
        rows.append(bytes(row))
    return png(size, size, b"".join(rows))


def png(w, h, raw):
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "webext", "icons")
    os.makedirs(out, exist_ok=True)
    for size in (16, 32, 48, 128):
        with open(os.path.join(out, f"quiver-{size}.png"), "wb") as f:
            f.write(render(size))


if __name__ == "__main__":
    main()
