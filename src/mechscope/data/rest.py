"""reStructuredText (Sphinx flavour) to readable plain English, for the ``prose`` corpus.

What is kept: headings (their text, without the adornment lines), paragraphs (continuation lines joined), list
items (as ``- item``), the bodies of admonitions (``note``, ``warning``, ``seealso`` ...) and of object descriptions
(``.. function::`` and friends, without the signature line and option lines), and version notes rendered the way
Sphinx words them (``New in version 3.10.``).

What is dropped: literal blocks (after ``::``), doctest blocks (``>>>``), code directives (``code-block``,
``doctest``, ``testcode``, ``productionlist`` ...), bookkeeping directives (``index``, ``toctree``, ``module``,
``highlight`` ...), comments, hyperlink targets, grid and simple tables.

Inline markup becomes its text: ``:func:`foo``` -> ``foo`` (``~a.b`` -> ``b``; ``title <target>`` -> ``title``;
a title-less ``:ref:`` -> the referenced section's title when known), ````literal```` -> ``literal``,
```link <url>`_`` -> ``link``, ``*emph*`` / ``**strong**`` -> text, ``|name|`` -> its ``replace::`` text,
``:pep:`8``` -> ``PEP 8``; footnote references are removed.

:func:`rest_blocks` gives ``(kind, text)`` blocks (``"heading"`` or ``"text"``); :func:`rest_to_text` joins them;
:func:`rest_sections` groups them into section-sized documents; :func:`section_labels` maps Sphinx labels to
section titles.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}$")
DIRECTIVE = re.compile(r"^\.\.\s+([\w:.-]+)::(?:\s+(.*))?$")
SUBST_DEF = re.compile(r"^\.\.\s+\|([^|]+)\|\s+([\w:-]+)::\s*(.*)$")
TARGET = re.compile(r"^\.\.\s+_([^:]+):\s*$")
SIMPLE_TABLE_BORDER = re.compile(r"^=+(\s+=+)+$")
GRID_BORDER = re.compile(r"^\+[-=+]+\+$")
LIST_MARKER = re.compile(r"^(?:(?:[-*+•]|#\.|\d+\.|\(?[a-zA-Z0-9]\))\s+)+")

# Directives dropped with their whole body (code, bookkeeping, generated tables).
DROP = frozenset("""code-block code sourcecode doctest testcode testoutput testsetup testcleanup productionlist
    toctree include literalinclude highlight index module currentmodule sectionauthor moduleauthor codeauthor
    tabularcolumns program image figure audit-event audit-event-table limited-api-list contents parsed-literal raw
    csv-table miscnews literal math autosummary graphviz""".split())
# Directives whose argument line is running text (kept as the first words of the body).
ARG_IS_TEXT = frozenset("""note warning seealso important caution tip attention hint danger error admonition
    availability rubric topic sidebar centered epigraph table""".split())
VERSION_NOTES = {"versionadded": "New in version {}", "versionchanged": "Changed in version {}",
                 "deprecated": "Deprecated since version {}",
                 "deprecated-removed": "Deprecated since version {}, will be removed in version {}"}
# Object descriptions: the argument is a signature (code), the body is prose.
SIGNATURES = frozenset("""function method attribute data class exception cmdoption option opcode envvar decorator
    decoratormethod coroutinemethod coroutinefunction awaitablemethod awaitablefunction classmethod staticmethod
    abstractmethod property describe object pdbcommand""".split())

INLINE = re.compile(
    r"(?P<esc>\\(?P<escaped>.))"
    r"|``(?P<literal>.+?)``"
    r"|(?::[\w.-]+)?:(?P<role>[\w.-]+):`(?P<role_text>[^`]+)`"
    r"|`(?P<link>[^`]+?)`__?"
    r"|`(?P<interp>[^`]+)`(?::[\w.-]+:)?"
    r"|\|(?P<subst>[\w.-](?:[\w .-]*[\w.-])?)\|_{0,2}"
    r"|\s?\[(?:#\w*|\d+|\*)\]_"
    r"|(?<![\w*])\*\*(?P<strong>[^*\s](?:[^\n]*?[^*\s])?)\*\*(?![\w*])"
    r"|(?<![\w*])\*(?P<emph>[^*\s](?:[^*\n]*?[^*\s])?)\*(?![\w*])",
    re.S,
)
TITLE_TARGET = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _is_adornment(s: str) -> bool:
    return bool(ADORNMENT.match(s))


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index of the first non-blank line at or after ``start`` indented ``indent`` or less."""
    i = start
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        i += 1
    return i


def _object_name(signature: str, c_like: bool) -> str:
    """``abs(x)`` -> ``abs``; ``PyObject* PyList_New(Py_ssize_t n)`` -> ``PyList_New``; ``int ob_refcnt`` ->
    ``ob_refcnt`` (C declarations name the object last)."""
    m = re.search(r"([\w.]+)\s*\(", signature)
    if m:
        return m.group(1)
    words = re.findall(r"[\w.-]+", signature)
    return (words[-1] if c_like else words[0]) if words else ""


def _role(role: str, text: str, labels: Mapping[str, str]) -> str:
    m = TITLE_TARGET.match(text)
    if m and m.group(1):
        return m.group(1)
    target = m.group(2) if m else text
    if role == "ref":
        return labels.get(target.lower(), target)
    if role in ("pep", "rfc"):
        return f"{role.upper()} {target}"
    if role == "issue":
        return f"bpo-{target}"
    if role == "gh":
        return f"gh-{target}"
    if role == "abbr":
        return target.split(" (")[0]
    if role == "samp":
        return target.replace("{", "").replace("}", "")
    if role == "menuselection":
        return target.replace("-->", ">")
    if role == "doc":
        return target.rstrip("/").rsplit("/", 1)[-1]
    target = re.sub(r"\\(.)", r"\1", target.lstrip("!"))
    if target.startswith("~"):
        return target[1:].rsplit(".", 1)[-1]
    return target


def inline_to_text(text: str, substitutions: Mapping[str, str] | None = None,
                   labels: Mapping[str, str] | None = None) -> str:
    """Replace reST/Sphinx inline markup in ``text`` by its plain words (see the module docstring)."""
    subs, labs = substitutions or {}, labels or {}

    def repl(m: re.Match[str]) -> str:
        g = m.groupdict()
        if g["esc"] is not None:
            return "" if g["escaped"].isspace() else g["escaped"]
        if g["literal"] is not None:
            return g["literal"]
        if g["role"] is not None:
            return _role(g["role"], g["role_text"], labs)
        if g["link"] is not None:
            t = TITLE_TARGET.match(g["link"])
            return t.group(1) if t and t.group(1) else g["link"]
        if g["interp"] is not None:
            return g["interp"]
        if g["subst"] is not None:
            name = g["subst"]
            return inline_to_text(subs[name], None, labs) if name in subs else name
        if g["strong"] is not None:
            return inline_to_text(g["strong"], subs, labs)
        if g["emph"] is not None:
            return inline_to_text(g["emph"], subs, labs)
        return ""  # footnote reference

    return INLINE.sub(repl, text)


def _join_paragraph(para: list[tuple[int, str]]) -> str:
    """Paragraph lines (indent, stripped text) -> lines of text: list items and definitions start new lines."""
    out: list[str] = []
    col = -1
    for indent, s in para:
        marker = LIST_MARKER.match(s)
        if marker:
            out.append("- " + s[marker.end():])
            col = indent + marker.end()
        elif out and indent == col:
            out[-1] += " " + s
        else:
            out.append(s)
            col = indent
    return "\n".join(out)


class _Parser:
    """Line-based block parser; one instance per document (shares substitutions and labels with nested bodies)."""

    def __init__(self, substitutions: dict[str, str], labels: Mapping[str, str]) -> None:
        self.subs = substitutions
        self.labels = labels

    def text(self, raw: str) -> str:
        return inline_to_text(raw, self.subs, self.labels).strip()

    def parse(self, lines: list[str]) -> list[tuple[str, str]]:
        blocks: list[tuple[str, str]] = []
        para: list[tuple[int, str]] = []
        literal_col: int | None = None  # a paragraph ended with '::': an indented literal block may follow

        def flush() -> None:
            nonlocal literal_col
            if not para:
                return
            body = _join_paragraph(para)
            if body.endswith("::"):  # 'text::' -> 'text:', 'text ::' and '::' -> 'text' / nothing
                body = body[:-2].rstrip() if body[:-2][-1:] in ("", " ", "\n") else body[:-1]
                last_indent, last = para[-1]
                marker = LIST_MARKER.match(last)
                literal_col = last_indent + (marker.end() if marker and len(para) == 1 else 0)
            if body.strip():
                blocks.append(("text", self.text(body)))
            para.clear()

        i, n = 0, len(lines)
        while i < n:
            line = lines[i]
            s, ind = line.strip(), _indent(line)
            if not s:
                flush()
                i += 1
                continue
            if literal_col is not None:
                col, literal_col = literal_col, None
                if ind > col and not para:
                    i = _block_end(lines, i, col)
                    continue
            nxt = lines[i + 1].strip() if i + 1 < n else ""
            if (_is_adornment(s) and nxt and i + 2 < n and lines[i + 2].strip() == s
                    and not _is_adornment(nxt)):  # overlined heading
                flush()
                blocks.append(("heading", self.text(nxt)))
                i += 3
                continue
            if (not para and not _is_adornment(s) and nxt and _is_adornment(nxt) and len(nxt) >= min(len(s), 4)
                    and _indent(lines[i + 1]) == ind):  # underlined heading
                blocks.append(("heading", self.text(s)))
                i += 2
                continue
            if _is_adornment(s) and len(s) >= 4 and not para:  # transition
                i += 1
                continue
            if s.startswith(".. ") or s == "..":
                flush()
                i = self._explicit(lines, i, blocks)
                continue
            if not para and s.startswith(">>>"):  # doctest block: up to the next blank line
                while i < n and lines[i].strip():
                    i += 1
                continue
            if not para and (GRID_BORDER.match(s) or SIMPLE_TABLE_BORDER.match(s)):
                i = self._skip_table(lines, i)
                continue
            if s.startswith("| ") or s == "|":  # line block
                s = s[2:]
            para.append((ind, s))
            i += 1
        flush()
        return blocks

    @staticmethod
    def _skip_table(lines: list[str], i: int) -> int:
        if GRID_BORDER.match(lines[i].strip()):
            while i < len(lines) and lines[i].strip():
                i += 1
            return i
        borders = 0
        while i < len(lines):
            s = lines[i].strip()
            i += 1
            if SIMPLE_TABLE_BORDER.match(s):
                borders += 1
                if borders >= 2 and (i >= len(lines) or not lines[i].strip()):
                    return i
        return i

    def _explicit(self, lines: list[str], i: int, blocks: list[tuple[str, str]]) -> int:
        """Handle an explicit markup block (directive, comment, target, substitution) starting at line ``i``."""
        line = lines[i]
        ind, s = _indent(line), line.strip()
        end = _block_end(lines, i + 1, ind)
        m = DIRECTIVE.match(s)
        if not m or SUBST_DEF.match(s):  # comment, target, footnote, substitution definition
            if s.startswith(".. [") and "]" in s:  # footnote / citation body is prose
                first = s[s.index("]") + 1:].strip()
                blocks += self._nested([" " * (ind + 3) + first] + lines[i + 1:end], ind)
            return end
        name, arg = m.group(1).lower(), (m.group(2) or "").strip()
        if name in DROP or (":" in name and name.split(":", 1)[1] in DROP):
            return end
        body_start = i + 1
        # argument continuation (signatures) and option lines run up to the first blank line
        while body_start < end and lines[body_start].strip():
            cont = lines[body_start].strip()
            if not (cont.startswith(":") or name in SIGNATURES or ":" in name):
                break
            body_start += 1
        body = lines[body_start:end]
        if name in SIGNATURES or ":" in name:  # keep the described object's name as a one-line paragraph
            blocks.append(("text", _object_name(arg, c_like=":" in name)))
            blocks += self._nested(body, ind)
            return end
        if name in VERSION_NOTES:
            parts = arg.split(None, 2 if name == "deprecated-removed" else 1)
            versions = parts[:2] if name == "deprecated-removed" else parts[:1]
            head = VERSION_NOTES[name].format(*(versions + ["?"] * (VERSION_NOTES[name].count("{}") - len(versions))))
            rest = parts[len(versions)] if len(parts) > len(versions) else ""
            inner = self._nested(([" " * (ind + 3) + rest] if rest else []) + body, ind)
            if inner and inner[0][0] == "text":
                blocks.append(("text", f"{head}: {inner[0][1]}"))
                blocks += inner[1:]
            else:
                blocks.append(("text", head + "."))
                blocks += inner
            return end
        if name == "availability":
            blocks.append(("text", self.text(f"Availability: {arg}").rstrip(".") + "."))
            blocks += self._nested(body, ind)
            return end
        if name in ("rubric", "topic", "sidebar", "table", "admonition"):  # the argument is a title
            if arg:
                blocks.append(("heading", self.text(arg)))
            blocks += self._nested(body, ind)
            return end
        lead = [" " * (ind + 3) + arg] if arg and name in ARG_IS_TEXT else []
        blocks += self._nested(lead + body, ind)
        return end

    def _nested(self, body: list[str], ind: int) -> list[tuple[str, str]]:
        content = [ln for ln in body if ln.strip()]
        if not content:
            return []
        cut = min(_indent(ln) for ln in content)
        return self.parse([ln[cut:] if ln.strip() else "" for ln in body])


def substitution_defs(src: str) -> dict[str, str]:
    """``{name: text}`` of every ``.. |name| replace:: text`` in ``src``."""
    subs: dict[str, str] = {}
    for line in src.splitlines():
        m = SUBST_DEF.match(line.strip())
        if m and m.group(2) == "replace":
            subs[m.group(1)] = m.group(3)
    return subs


def section_labels(src: str) -> dict[str, str]:
    """``{label: section title}`` for every ``.. _label:`` target placed right before a heading (lower-case keys)."""
    lines = src.expandtabs(8).splitlines()
    labels: dict[str, str] = {}
    pending: list[str] = []
    for i, line in enumerate(lines):
        s = line.strip()
        m = TARGET.match(s)
        if m:
            pending.append(m.group(1).strip().lower())
            continue
        if not s:
            continue
        title = None
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if _is_adornment(s) and nxt and not _is_adornment(nxt):
            title = nxt
        elif nxt and _is_adornment(nxt) and not _is_adornment(s):
            title = s
        if title and pending:
            labels.update({label: inline_to_text(title) for label in pending})
        pending = []
    return labels


def rest_blocks(src: str, *, substitutions: Mapping[str, str] | None = None,
                labels: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``(kind, text)`` blocks of a reST document: ``"heading"`` (a section title) or ``"text"`` (a paragraph)."""
    subs = dict(substitutions or {}) | substitution_defs(src)
    parser = _Parser(subs, dict(labels or {}) | section_labels(src))
    return [(k, t) for k, t in parser.parse(src.expandtabs(8).splitlines()) if t.strip()]


def rest_to_text(src: str, *, substitutions: Mapping[str, str] | None = None,
                 labels: Mapping[str, str] | None = None) -> str:
    """A reST document as plain text: blocks separated by blank lines."""
    return "\n\n".join(t for _, t in rest_blocks(src, substitutions=substitutions, labels=labels))


def rest_sections(src: str, *, target_chars: int = 4000, substitutions: Mapping[str, str] | None = None,
                  labels: Mapping[str, str] | None = None) -> list[str]:
    """Plain-text documents of about ``target_chars`` or more: one per section, small sections merged forward.

    A document starts at a heading; consecutive sections are merged while the document is shorter than
    ``target_chars``, so a page of many one-line entries does not become many tiny documents.
    """
    docs: list[list[str]] = []
    size = 0
    for kind, text in rest_blocks(src, substitutions=substitutions, labels=labels):
        if not docs or (kind == "heading" and size >= target_chars):
            docs.append([])
            size = 0
        docs[-1].append(text)
        size += len(text) + 2
    return [d for d in ("\n\n".join(parts) for parts in docs) if d.strip()]
