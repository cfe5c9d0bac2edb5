#!/usr/bin/python3
"""Render a terminal capture (tmux `capture-pane -p -e`: text with SGR colour escapes) to PNG.

Used by `cargo xtask screenshot`. Needs python3-pil and fonts-dejavu-core (Debian), which
`cargo xtask setup` installs. Usage: ansi2png.py CAPTURE COLS ROWS OUT.png
"""

import re
import sys

from PIL import Image, ImageDraw, ImageFont

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"
FONT_BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf"
SIZE = 15
PAD = 12

# A dark palette (xterm order: black red green yellow blue magenta cyan white, then bright).
BASE16 = [
    (0x1C, 0x1F, 0x24), (0xE0, 0x6C, 0x75), (0x98, 0xC3, 0x79), (0xE5, 0xC0, 0x7B),
    (0x61, 0xAF, 0xEF), (0xC6, 0x78, 0xDD), (0x56, 0xB6, 0xC2), (0xAB, 0xB2, 0xBF),
    (0x5C, 0x63, 0x70), (0xFF, 0x7B, 0x86), (0xB5, 0xE8, 0x90), (0xFF, 0xD6, 0x8A),
    (0x7C, 0xC5, 0xFF), (0xDE, 0x93, 0xF5), (0x7F, 0xD8, 0xE3), (0xF0, 0xF2, 0xF5),
]
FG, BG = (0xD7, 0xDA, 0xE0), (0x23, 0x27, 0x2E)


def xterm256(n):
    if n < 16:
        return BASE16[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return (steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    v = 8 + 10 * (n - 232)
    return (v, v, v)


class Style:
    def __init__(self):
        self.reset()

    def reset(self):
        self.fg, self.bg, self.bold, self.dim, self.reverse = None, None, False, False, False

    def apply(self, params):
        p = [int(x) if x else 0 for x in params.split(";")] if params else [0]
        i = 0
        while i < len(p):
            c = p[i]
            if c == 0:
                self.reset()
            elif c == 1:
                self.bold = True
            elif c == 2:
                self.dim = True
            elif c == 22:
                self.bold = self.dim = False
            elif c == 7:
                self.reverse = True
            elif c == 27:
                self.reverse = False
            elif 30 <= c <= 37:
                self.fg = BASE16[c - 30]
            elif 90 <= c <= 97:
                self.fg = BASE16[c - 90 + 8]
            elif c == 39:
                self.fg = None
            elif 40 <= c <= 47:
                self.bg = BASE16[c - 40]
            elif 100 <= c <= 107:
                self.bg = BASE16[c - 100 + 8]
            elif c == 49:
                self.bg = None
            elif c in (38, 48) and i + 1 < len(p):
                if p[i + 1] == 5 and i + 2 < len(p):
                    col = xterm256(p[i + 2])
                    i += 2
                elif p[i + 1] == 2 and i + 4 < len(p):
                    col = (p[i + 2], p[i + 3], p[i + 4])
                    i += 4
                else:
                    col = None
                if c == 38:
                    self.fg = col
                else:
                    self.bg = col
            i += 1

    def colours(self):
        fg, bg = self.fg or FG, self.bg or BG
        if self.reverse:
            fg, bg = bg, fg
        if self.dim:
            fg = tuple((a + b) // 2 for a, b in zip(fg, bg))
        return fg, bg


SGR = re.compile(r"\x1b\[([0-9;]*)m")


def cells(text, cols, rows):
    """Rows of (char, fg, bg, bold); tmux -e output restarts attributes on each line."""
    grid = []
    style = Style()
    for line in text.split("\n")[:rows]:
        row, pos = [], 0
        for m in SGR.finditer(line):
            for ch in line[pos:m.start()]:
                row.append((ch, *style.colours(), style.bold))
            style.apply(m.group(1))
            pos = m.end()
        for ch in line[pos:]:
            row.append((ch, *style.colours(), style.bold))
        fg, bg = style.colours()
        row = row[:cols] + [(" ", fg, bg, False)] * (cols - len(row))
        grid.append(row)
    while len(grid) < rows:
        grid.append([(" ", FG, BG, False)] * cols)
    return grid


def main():
    src, cols, rows, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with open(src, encoding="utf-8") as f:
        grid = cells(f.read(), cols, rows)
    font = ImageFont.truetype(FONT, SIZE)
    bold = ImageFont.truetype(FONT_BOLD, SIZE)
    cw = round(font.getlength("M"))
    ch = round(SIZE * 1.25)
    img = Image.new("RGB", (cols * cw + 2 * PAD, rows * ch + 2 * PAD), BG)
    d = ImageDraw.Draw(img)
    for y, row in enumerate(grid):
        for x, (c, fg, bg, b) in enumerate(row):
            x0, y0 = PAD + x * cw, PAD + y * ch
            if bg != BG:
                d.rectangle([x0, y0, x0 + cw - 1, y0 + ch - 1], fill=bg)
            if c == " ":
                continue
            if c in "▁▂▃▄▅▆▇█":
                # Block elements fill the cell exactly (font glyphs leave gaps between rows).
                h = ch * ("▁▂▃▄▅▆▇█".index(c) + 1) // 8
                d.rectangle([x0, y0 + ch - h, x0 + cw - 1, y0 + ch - 1], fill=fg)
                continue
            if c in "▏▎▍▌▋▊▉":
                w = cw * ("▏▎▍▌▋▊▉".index(c) + 1) // 8
                d.rectangle([x0, y0, x0 + w - 1, y0 + ch - 1], fill=fg)
                continue
            d.text((x0, y0), c, font=bold if b else font, fill=fg)
    img.save(out)


if __name__ == "__main__":
    main()
