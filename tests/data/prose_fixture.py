"""Small files in the real formats of the Debian packages behind the ``prose`` corpus (for tests without them)."""

from __future__ import annotations

import os
from pathlib import Path

DEMO_RST = """\
.. _demo-top:

**********************
:mod:`demo` --- A Demo
**********************

.. module:: demo
   :synopsis: A demonstration module.

.. moduleauthor:: Someone <someone@example.org>

.. index:: single: demo; module

**Source code:** :source:`Lib/demo.py`

The |name| module shows how *markup* becomes **plain** English.  It calls
:func:`os.path.join`, :meth:`~collections.OrderedDict.move_to_end` and
:class:`Counter <collections.Counter>`; see `the website <https://example.org/demo>`_
and :pep:`8`.  Values such as ``None`` are literals.

.. |name| replace:: :mod:`demo`

.. This comment must disappear
   along with its indented continuation.

Usage
=====

A paragraph introduces an example::

   secret_literal_line = 1
   print(secret_literal_line)

And another with a directive:

.. code-block:: python
   :emphasize-lines: 1

   secret_code_block_line = 2

>>> secret_doctest_line()
42

.. function:: frobnicate(x, *, y=None)
   :noindex:

   Frobnicate *x*.  Returns ``x`` unchanged when :data:`y` is ``None``.

   .. versionadded:: 3.9

   .. versionchanged:: 3.11
      The *y* argument became keyword-only.

.. note::

   Notes keep their text, see :ref:`other-section` and :ref:`demo-top`.

+--------+--------+
| secret | grid   |
+========+========+
| table  | cells  |
+--------+--------+

=====  ======
col    secret
=====  ======
a      simple
=====  ======

Closing words
-------------

- first item with :term:`glossary term`
- second item spanning
  two lines

Last sentence of the demo [#]_.

.. [#] A footnote with text.
"""

OTHER_RST = """\
.. _other-section:

Another Section Title
=====================

Short other document about |version| features.
"""

FORTUNES_WISDOM = """\
A wise man once said nothing.
\t\t-- Anonymous
%
Wisdom is knowing what to do next.
%
Repeated   quotation   appears twice.
%
"""

FORTUNES_PEOPLE = """\
Repeated quotation
appears twice.
%
B\x08Bo\x08ol\x08ld words,\t\tspaced out.
\t\t-- Somebody Famous
%
"""


def write_prose_tree(root: Path, n_extra_fortunes: int = 0) -> Path:
    """An extracted-package layout (``usr/share/...``) under ``root``; returns ``root``."""
    sources = root / "usr/share/doc/python3.11/html/_sources"
    (sources / "library").mkdir(parents=True)
    (sources / "library/demo.rst.txt").write_text(DEMO_RST)
    (sources / "other.rst.txt").write_text(OTHER_RST)
    (sources / "library/notes.txt").write_text("not an .rst.txt source")
    fortunes = root / "usr/share/games/fortunes"
    (fortunes / "off").mkdir(parents=True)
    extra = "".join(f"Extra quotation number {i} about nothing in particular.\n%\n" for i in range(n_extra_fortunes))
    (fortunes / "wisdom").write_text(FORTUNES_WISDOM + extra)
    (fortunes / "people").write_text(FORTUNES_PEOPLE)
    (fortunes / "wisdom.dat").write_bytes(b"\x00\x00\x00\x02secret-index")
    os.symlink("wisdom", fortunes / "wisdom.u8")
    (fortunes / "ascii-art").write_text("  /\\_/\\\n ( o.o )\n%\n")
    (fortunes / "off" / "rude").write_text("An offensive secret quotation.\n%\n")
    (root / "usr/share/doc/fortunes").mkdir(parents=True)
    (root / "usr/share/doc/fortunes/copyright").write_text("BSD copyright text\n")
    return root


PACKAGES = [{"name": "python3.11-doc", "version": "3.11.2-6+deb12u9", "sha256": "0" * 64},
            {"name": "fortunes", "version": "1:1.99.1-7.3", "sha256": "1" * 64}]
