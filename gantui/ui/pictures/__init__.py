"""Samples at full resolution in terminals that draw pixels: Kitty graphics, sixel, iTerm2.

`terminal` asks the terminal what it draws (before Textual takes it), `encode` turns an image
into that protocol's escape sequences, `layer` puts one widget's picture on the screen over its
cells, sent once when it changes and taken off when it goes stale. gantui's own, not
textual-image's: the versions of that library that install on Python 3.10 and 3.11 (0.12) cannot
reach the terminal through tmux, give a slow SSH link 100 ms to answer, and encode a picture again
at every repaint of its widget.
"""
