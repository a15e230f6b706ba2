"""Writes a benchmark's table into docs/benchmarks.md between its markers, shared by the bench
scripts so a re-run replaces its own section and leaves the rest of the page alone."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_section(name, table, doc="docs/benchmarks.md"):
    """Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in `doc`, or appends both."""
    doc = os.path.join(ROOT, doc)
    if not os.path.exists(doc):
        open(doc, "w").write("")
    text = open(doc).read()
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin in text and end in text:
        text = text[:text.index(begin) + len(begin)] + "\n" + table + "\n" + text[text.index(end):]
    else:
        text += f"\n{begin}\n{table}\n{end}\n"
    open(doc, "w").write(text)
    print(f"\nwritten to {doc}")
