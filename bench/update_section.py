#!/usr/bin/env python3
"""Replace the text between <!-- NAME:begin --> and <!-- NAME:end --> in a
Markdown file with the contents of SECTION_FILE (append the block if absent).
   update_section.py FILE NAME SECTION_FILE"""
import sys

path, name, section_file = sys.argv[1:4]
begin, end = "<!-- %s:begin -->" % name, "<!-- %s:end -->" % name
body = open(section_file).read().rstrip("\n")
try:
    text = open(path).read()
except FileNotFoundError:
    text = "# Benchmarks\n"
block = "%s\n%s\n%s" % (begin, body, end)
if begin in text and end in text:
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    text = head + block + tail
else:
    text = text.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(text)
